#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# conf/cluster/node.conf, as shipped, on two loopback nodes with
# certificates made here: originals travel between the nodes over TLS
# only, each side checking the other's certificate.
#
# - fills reach the accounts' owners over TLSv1.3, and every body shows
#   its owner;
# - the peer endpoint answers no plain HTTP, no client without a
#   certificate of the cluster's CA, nor one with a certificate of
#   another CA, token or not;
# - a peer whose certificate is of another CA, or lacks the cluster's
#   name, is sent nothing: the TLS handshake fails and the error log
#   says why;
# - the admin API and the health location over TLS, through snapcache
#   purge, stats and health with --cacert, and not without it.
#
# Only the addresses, paths and the clients' listener (plain HTTP here,
# for the test's clients) are changed from the file.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir raw_request reserve_port release_port);
use Snapcache::Cluster;

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';
plan skip_all => 'openssl or curl missing'
    unless -x '/usr/bin/openssl' && -x '/usr/bin/curl';

my $c = Snapcache::Cluster->new(nodes => 2, workers => 1);
my $d = $c->dir;
my @peer = map { reserve_port() } 0 .. 1;
my $cli = build_dir() . '/snapcache';

# ------------------------------------------------------------ certificates

my $tls = "$d/tls";
make_path($tls);

sub ossl {
    my $out = `openssl @_ 2>&1`;
    die "openssl @_: $out" if $?;
}

sub ca {
    my ($name) = @_;
    ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        . " -keyout $tls/$name.key -out $tls/$name.pem -days 2"
        . " -subj /CN=$name");
}

sub cert {
    my ($name, $ca, @dns) = @_;
    open my $e, '>', "$tls/$name.ext" or die;
    print $e "subjectAltName="
        . join(',', (map { "DNS:$_" } @dns), 'IP:127.0.0.1') . "\n"
        . "extendedKeyUsage=serverAuth,clientAuth\n"
        . "basicConstraints=CA:FALSE\n";
    close $e;
    ossl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        . " -keyout $tls/$name.key -out $tls/$name.csr -subj /CN=$name");
    ossl("x509 -req -in $tls/$name.csr -CA $tls/$ca.pem -CAkey $tls/$ca.key"
        . " -CAcreateserial -out $tls/$name.pem -days 2"
        . " -extfile $tls/$name.ext");
}

ca('cluster-ca');
ca('rogue-ca');
cert('n1', 'cluster-ca', 'peers.snapcache.internal', 'n1.snapcache.internal');
cert('n2', 'cluster-ca', 'peers.snapcache.internal', 'n2.snapcache.internal');
cert('n2-rogue', 'rogue-ca', 'peers.snapcache.internal');
cert('n2-noname', 'cluster-ca', 'n2.snapcache.internal');

# what node $i finds in /etc/nginx/tls/: the cluster's CA and its cert
sub tls_dir {
    my ($i, $cert) = @_;
    my $nd = "$tls/node$i";
    make_path($nd);
    for (['cluster-ca.pem', 'cluster-ca.pem'], ['node.pem', "$cert.pem"],
        ['node.key', "$cert.key"])
    {
        unlink "$nd/$_->[0]";
        symlink "$tls/$_->[1]", "$nd/$_->[0]" or die $!;
    }
    return $nd;
}

# ------------------------------------------------------------- the file

open my $f, '<', "$FindBin::Bin/../conf/cluster/node.conf" or die $!;
my $template = do { local $/; <$f> };
close $f;

sub node_conf {
    my ($i, $cert) = @_;
    my $t = $c->node($i);
    my $nd = $t->dir;
    my $conf = $template;
    my $n = 0;
    my @sub = (
        [qr{load_module modules/ngx_http_snapcache_module\.so;},
            'load_module ' . Snapcache::Test::module_path() . ';'],
        [qr{worker_processes auto;}, "worker_processes 1;\npid $nd/nginx.pid;"],
        [qr{error_log /var/log/nginx/error\.log notice;},
            "error_log $nd/logs/error.log info;"],
        [qr{/var/log/nginx/snapcache\.log}, "$nd/logs/access.log"],
        [qr{snapcache_sign_key 2026-11 /etc/nginx/snapcache/2026-11\.key;},
            'snapcache_sign_key k1 ' . $t->key_file('k1') . ';'],
        [qr{/var/cache/snapcache size=64g}, "$nd/store size=64m"],
        [qr{snapcache_zone snapcache:64m;}, 'snapcache_zone snapcache:2m;'],
        [qr{/etc/nginx/snapcache/cluster\.token}, $c->cluster_token_file],
        [qr{/etc/nginx/snapcache/admin\.token}, $c->admin_token_file],
        [qr{server 10\.0\.1\.11:8443}, "server 127.0.0.1:$peer[0]"],
        [qr{server 10\.0\.1\.12:8443}, "server 127.0.0.1:$peer[1]"],
        [qr{ *server 10\.0\.1\.13:8443[^\n]*\n}, ''],
        [qr{listen 443 ssl;[^\n]*\n[^\n]*snap\.example\.com\.pem;\n[^\n]*snap\.example\.com\.key;},
            'listen 127.0.0.1:' . $t->port . ';'],
        [qr{listen 10\.0\.1\.11:8443 ssl;}, "listen 127.0.0.1:$peer[$i] ssl;"],
        [qr{allow 10\.0\.1\.0/24;}, 'allow 127.0.0.0/8;'],
        [qr{proxy_pass https://camera-cloud\.internal/snapshots/;},
            'proxy_pass http://127.0.0.1:' . $c->cloud_port . '/;'],
        [qr{http \{\n}, "http {\n" . join('', map {
            "    ${_}_temp_path $nd/tmp/$_;\n" }
            qw(client_body proxy fastcgi uwsgi scgi))],
    );
    for my $s (@sub) {
        $conf =~ s/$s->[0]/$s->[1]/ or die "node.conf: no $s->[0]\n";
    }
    # nginx keeps the last TLS session of each upstream server to resume
    # it, and never frees it when a worker exits: LeakSanitizer reports
    # it.  Under the sanitizer only, sessions are not resumed.
    $conf =~ s/proxy_ssl_session_reuse on;/proxy_ssl_session_reuse off;/
        if ($ENV{SNAPCACHE_SAN} // '') eq 'address';
    my $td = tls_dir($i, $cert);
    $conf =~ s{/etc/nginx/tls/}{$td/}g;
    (my $code = $conf) =~ s/#[^\n]*//g;
    die "node.conf: still a path to change: $1\n"
        if $code =~ m{(/etc/nginx\S*|10\.0\.1\.\d+)};
    open my $o, '>', "$nd/nginx.conf" or die;
    print $o $conf;
    close $o;
}

sub start_node {
    my ($i, $cert) = @_;
    node_conf($i, $cert);
    release_port($peer[$i]);
    $c->node($i)->start(keep_config => 1);
}

$c->start_cloud;
start_node(0, 'n1');
start_node(1, 'n2');
$c->settle;

# ------------------------------------------------------- fills over TLS

my @jobs = map {
    my $a = "acct-$_";
    map { { node => $_, account => $a, device => 'cam-1', snapshot => 's1',
        v => 'thumb' } } 0, 1
} 1 .. 8;
my @res = $c->run_clients(4, @jobs);
is(scalar(grep { $_->{status} == 200 } @res), scalar @jobs,
    'every request through either node: 200');
is(scalar($c->wrong_owners(map { [$res[$_]{file}, $jobs[$_]{account},
    'cam-1', 's1'] } 0 .. $#jobs)), 0, 'every body shows its owner');

# the owners' peer endpoints answered over TLS 1.3, and only so
my %owner;
for my $i (0, 1) {
    open my $l, '<', $c->node($i)->dir . '/logs/access.log' or die;
    for (<$l>) {
        next unless m{"GET /_peer/(acct-\d+)/cam-1/s1 HTTP/1\.1" 200 .* (\S+)$};
        is($2, 'TLSv1.3', "node $i answered $1's original over TLSv1.3");
        $owner{$1} = $i;
    }
}
is(scalar keys %owner, 8, 'each account has an owner that answered');
my ($remote) = grep { $owner{$_} == 1 } sort keys %owner;
ok($remote, "node 1 owns some accounts ($remote among them), so node 0 "
    . "fetched from a peer");

# ------------------------------------------------- the peer endpoint

my $r = raw_request($peer[0], '/_peer/acct-1/cam-1/s1');
is($r->{status}, 400, 'plain HTTP on the peer port: 400');

my $tok = $c->cluster_token;
sub curl {
    my ($port, $path, @opt) = @_;
    my $cmd = "curl -s -o /dev/null -w '%{http_code}' @opt "
        . "'https://127.0.0.1:$port$path' 2>&1";
    return scalar `$cmd`;
}
my @auth = ("-H 'Authorization: Bearer $tok'");
is(curl($peer[0], '/_peer/acct-1/cam-1/s1', @auth,
    "--cacert $tls/cluster-ca.pem"), '403',
    'a client with the token and no certificate: 403');
is(curl($peer[0], '/_peer/acct-1/cam-1/s1', @auth,
    "--cacert $tls/cluster-ca.pem", "--cert $tls/n2-rogue.pem",
    "--key $tls/n2-rogue.key"), '400',
    'a certificate of another CA: 400');
is(curl($peer[0], '/_peer/acct-1/cam-1/s1', @auth,
    "--cacert $tls/cluster-ca.pem", "--cert $tls/n2.pem",
    "--key $tls/n2.key"), '200',
    "a node's certificate and the token: the original");
is(curl($peer[0], '/_peer/acct-1/cam-1/s1', "--cacert $tls/cluster-ca.pem",
    "--cert $tls/n2.pem", "--key $tls/n2.key"), '401',
    'a node\'s certificate without the token: 401');
isnt(curl($peer[0], '/_peer/acct-1/cam-1/s1', @auth), '200',
    'and a client that checks the certificate against the system\'s CAs '
    . 'does not connect');

# --------------------------------------------------- admin and health

my @admin = map { "https://127.0.0.1:$_/snapcache-admin" } @peer;
my $nodes = join ' ', map { "--node $_" } @admin;
my $tf = $c->admin_token_file;
my $out = `'$cli' purge $nodes --token-file '$tf' --cacert '$tls/cluster-ca.pem' --account acct-1 2>&1`;
is($? >> 8, 0, 'snapcache purge over TLS with --cacert: exit 0') or diag $out;
is(scalar(() = $out =~ /^https:\S+ ok records=\d+/mg), 2, 'both nodes purged');
$out = `SNAPCACHE_CACERT='$tls/cluster-ca.pem' '$cli' stats $nodes --token-file '$tf' 2>&1`;
is($? >> 8, 0, 'snapcache stats over TLS, the CA from SNAPCACHE_CACERT: '
    . 'exit 0') or diag $out;
$out = `'$cli' purge $nodes --token-file '$tf' --retries 0 --account acct-1 2>&1`;
is($? >> 8, 1, 'without the cluster\'s CA: exit 1');
like($out, qr/failed: .*(?:certificate|SSL)/i, 'the certificate is not '
    . 'trusted') or diag $out;
$out = `'$cli' health --node https://127.0.0.1:$peer[0] --node https://127.0.0.1:$peer[1] --cacert '$tls/cluster-ca.pem' 2>&1`;
is($? >> 8, 0, 'snapcache health over TLS: exit 0') or diag $out;
is(scalar(() = $out =~ / ok$/mg), 2, 'both ok');

# ---------------------------------------- peers that fail their check

for my $bad (['n2-rogue', qr/upstream SSL certificate verify error/,
        'a certificate of another CA'],
    ['n2-noname', qr/upstream SSL certificate does not match "peers\.snapcache\.internal"/,
        'a certificate without the cluster\'s name'])
{
    my ($cert, $why, $name) = @$bad;
    $c->stop_node(1);
    start_node(1, $cert);
    # node 0 forgets that node 1 failed: a reload starts its upstream
    # anew (once its old worker, which remembers, takes no request)
    $c->node(0)->reload_and_wait;
    my $before = () = $c->node(1)->access_log =~ /_peer/g;
    my $snap = "s-$cert";
    $r = $c->get(0, account => $remote, device => 'cam-1', snapshot => $snap,
        v => 'thumb');
    is($r->{status}, 200, "node 1 with $name: node 0 still answers");
    ok($c->owner_is($r->{body}, $remote, 'cam-1', $snap), 'with the owner\'s '
        . 'image, from the next node on the ring');
    like($c->node(0)->error_log, $why, 'node 0 says why it sent nothing');
    my $after = () = $c->node(1)->access_log =~ /_peer/g;
    is($after, $before, 'node 1 got no request: the handshake failed first');
    $c->node(0)->expect_log($why);
}

done_testing;
