#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# `make run`'s demo works as the README says: it prints signed URLs, the
# first request for one is a MISS from the demo origin, the second a HIT,
# and the image shows the owner its URL names.
#
# Over HTTPS, on the port TLS_PORT= gives it: the printed certificate is
# the one served, and it verifies for 127.0.0.1 and localhost; the printed
# https URL is answered over HTTP/2 (and HTTP/1.1) with its owner's JPEG;
# the camera wall loads, and each of its grants is answered, over HTTP/2;
# a URL that is not signed, or not for what it asks, is refused as over
# plain HTTP; HTTP/1.1 on TLS is measured for adaptation; and the
# listener takes no weak cipher, and resumes sessions from its cache.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(setsid);
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use Time::Piece;
use Snapcache::Test qw(build_dir free_port raw_request wait_until);

plan skip_all => 'openssl or curl missing (make deps installs them)'
    unless -x '/usr/bin/openssl' && -x '/usr/bin/curl';

my $root = "$FindBin::Bin/..";
my $port = free_port();
my $oport = free_port();
my $tport = free_port();
my $tmp = tempdir(CLEANUP => 1);
my $log = "$tmp/demo.out";

# a cold store, so that the first request is a miss (the demo's keys and
# images are kept)
system('rm', '-rf', "$root/var/store");

# the demo's error log, from here on, is checked like a test instance's
my $log_watch = Snapcache::Test->watch_log("$root/var/log/error.log");

my $pid = fork // die;
if (!$pid) {
    setsid();
    open STDOUT, '>', $log or die;
    open STDERR, '>&', \*STDOUT;
    $ENV{PORT} = $port;
    $ENV{ORIGIN_PORT} = $oport;
    $ENV{TLS_PORT} = $tport;
    exec "$root/tools/run-demo" or die;
}

my $out = '';
ok(wait_until(sub {
        $out = do { local $/; my $fh; open($fh, "<", $log) ? <$fh> // "" : "" };
        $out =~ /Ctrl-C stops/ && IO::Socket::INET->new("127.0.0.1:$port")
            && IO::Socket::INET->new("127.0.0.1:$tport");
    }, 60), 'the demo is up: it says so and its two ports answer')
    or diag $out;

my @urls = $out =~ m{^(http://127\.0\.0\.1:$port/snap/\S+)$}mg;
ok(@urls >= 18, 'the demo prints a URL for each of 18 snapshots ('
    . scalar(@urls) . ')');

my ($url) = grep { m{/acct-2/cam-back/latest\?} } @urls;
ok($url, 'including acct-2/cam-back/latest');
(my $target = $url // '') =~ s{^http://[^/]+}{};

my $r1 = raw_request($port, $target);
is($r1->{status}, 200, 'the first request is answered');
is($r1->{headers}{'x-snapcache'}, 'MISS', 'as a MISS');
my $r2 = raw_request($port, $target);
is($r2->{headers}{'x-snapcache'}, 'HIT', 'the second is a HIT');
ok($r1->{body} eq $r2->{body}, 'with the same bytes');

my $f = tempdir(CLEANUP => 1) . '/img';
open my $fh, '>:raw', $f or die;
print $fh $r2->{body};
close $fh;
my $snapmark = build_dir() . '/bin/snapmark';
my $check = `'$snapmark' check '$f' acct-2 cam-back latest`;
is($? >> 8, 0, 'the image is acct-2/cam-back/latest') or diag $check;

(my $tampered = $target) =~ s/acct-2/acct-1/;
is(raw_request($port, $tampered)->{status}, 403,
    'the same URL for another account is refused');

my ($grant) = $out =~ m{^(http://\S+scope=device\S*)$}m;
(my $g = $grant // '') =~ s{^http://[^/]+}{};
$g =~ s{/latest\?}{/2026-11-24T09-00?};
is(raw_request($port, $g)->{status}, 200,
    'the printed device grant works for another snapshot');

# ------------------------------------------------------------------ HTTPS

my $tls = "$root/var/tls";
my $cert = "$tls/demo.crt";

sub fingerprint {
    my ($file) = @_;
    my $fp = `openssl x509 -in '$file' -noout -fingerprint -sha256 2>&1`;
    return $fp =~ /=([0-9A-F:]+)$/m ? $1 : "none: $fp";
}

my ($fp) = $out =~ /^HTTPS certificate SHA-256 fingerprint: (\S+)$/m;
like($fp // '', qr/^(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$/,
    'the demo prints the certificate\'s SHA-256 fingerprint');
is(fingerprint($cert), $fp // '', 'of var/tls/demo.crt');
is((stat "$tls/demo.key")[2] & 07777, 0600, 'its key is 0600');

my $text = `openssl x509 -in '$cert' -noout -text`;
like($text, qr/NIST CURVE: P-256/, 'the key is ECDSA P-256');
like($text, qr/IP Address:127\.0\.0\.1/, 'the certificate names 127.0.0.1');
like($text, qr/DNS:localhost/, 'and localhost');
my %date = map { /^(\w+)=(.*\S)/ ? ($1 => $2) : () }
    split /\n/, `openssl x509 -in '$cert' -noout -dates`;
my @t = map { Time::Piece->strptime(($date{$_} // '') =~ s/\s+/ /gr,
    '%b %d %H:%M:%S %Y GMT') } qw(notBefore notAfter);
is($t[1] - $t[0], 30 * 86400, 'for 30 days');

# the certificate the listener presents is that one, and verifies
my $verify = "openssl s_client -connect 127.0.0.1:$tport -servername localhost"
    . " -CAfile '$cert' -verify_ip 127.0.0.1 -verify_return_error";
my $sc = `$verify </dev/null 2>&1`;
is($? >> 8, 0, 'the listener\'s certificate verifies for 127.0.0.1 against '
    . 'the printed one') or diag $sc;
like($sc, qr/^Verify return code: 0 \(ok\)$/m, 'openssl says so');
open my $pf, '>', "$tmp/served.pem" or die;
print $pf $sc;
close $pf;
is(fingerprint("$tmp/served.pem"), $fp // '',
    'the certificate served has the printed fingerprint');

# GETs over HTTPS on one connection, with curl checking the certificate
# against the demo's, with the options in @$opt (--http2, --http1.1).
# Each result: { status, version, type, cache (X-Snapcache), adapt
# (X-Snapcache-Adapt), connects (new connections curl made for it), body }
sub https_get {
    my ($opt, @urls) = @_;
    my @cmd = ('curl', '-sS', '--cacert', $cert, @$opt, '-w',
        '%{http_code}\t%{http_version}\t%{content_type}\t'
        . '%header{x-snapcache}\t%header{x-snapcache-adapt}\t'
        . '%{num_connects}\n');
    push @cmd, '-o', "$tmp/body.$_", $urls[$_] for 0 .. $#urls;
    open my $p, '-|', @cmd or die "curl: $!";
    my @lines = <$p>;
    close $p;
    my @names = qw(status version type cache adapt connects);
    return map {
        my %r = (status => 0, connects => 0, body => '');
        @r{@names} = split /\t/, ($lines[$_] // '') =~ s/\n$//r, -1;
        $r{$_} //= '' for @names;
        if (open my $b, '<:raw', "$tmp/body.$_") {
            local $/;
            $r{body} = <$b> // '';
        }
        unlink "$tmp/body.$_";
        \%r;
    } 0 .. $#urls;
}

# the image's owner, read back by snapmark
sub owner_is {
    my ($body, $owner, $name) = @_;
    my $f = "$tmp/owned";
    open my $fh, '>:raw', $f or die;
    print $fh $body;
    close $fh;
    my $check = `'$snapmark' check '$f' $owner 2>&1`;
    is($? >> 8, 0, $name) or diag $check;
}

my @https = $out =~ m{^(https://127\.0\.0\.1:$tport/snap/\S+)$}mg;
is(scalar(@https), 1, 'the demo prints a signed https URL');
my $surl = $https[0] // "https://127.0.0.1:$tport/snap/none";
my ($sowner) = $surl =~ m{/snap/([^/]+)/([^/]+)/([^/?]+)\?}
    ? ("$1 $2 $3") : ('none');

my ($h2) = https_get(['--http2'], $surl);
is($h2->{status}, 200, 'the https URL is answered over HTTPS');
is($h2->{version}, '2', 'over HTTP/2');
is($h2->{type}, 'image/jpeg', 'with a JPEG');
like($h2->{cache}, qr/^(?:MISS|HIT)$/, 'from snapcache');
ok(substr($h2->{body}, 0, 3) eq "\xFF\xD8\xFF", 'whose bytes are a JPEG');
owner_is($h2->{body}, $sowner, "the image is $sowner");

my ($h1) = https_get(['--http1.1'], $surl);
is($h1->{status} . ' ' . $h1->{version}, '200 1.1',
    'and over HTTP/1.1 on TLS');
owner_is($h1->{body}, $sowner, 'the same owner');

(my $local = $surl) =~ s{^https://127\.0\.0\.1:}{https://localhost:};
is((https_get(['--http2'], $local))[0]{status}, 200,
    'https://localhost: verifies too');

system('curl', '-s', '-o', '/dev/null', $surl);
is($? >> 8, 60, 'a client that does not trust the demo certificate refuses '
    . 'it (curl: 60)');

(my $other = $surl) =~ s{/snap/acct-1/}{/snap/acct-2/};
(my $nosig = $surl) =~ s{\?.*}{};
(my $badsig = $surl) =~ s{sig=[^&]*}{'sig=' . ('A' x 43)}e;
my ($r_other, $r_nosig, $r_badsig) = https_get(['--http2'], $other, $nosig,
    $badsig);
is("$r_other->{status} $r_other->{version} $r_other->{body}",
    "403 2 signature\n", 'over HTTP/2, the URL for another account: 403');
is("$r_badsig->{status} $r_badsig->{body}", "403 signature\n",
    'a signature that is not the URL\'s: 403');
is("$r_nosig->{status} $r_nosig->{body}", "400 malformed\n",
    'a URL with no signature: 400, as over plain HTTP');

# the camera wall over HTTPS: its page, style sheet, script and grants,
# and an image for every grant, on one HTTP/2 connection
my ($swall) = $out =~ m{^camera wall over HTTPS: (\S+)$}m;
is($swall, "https://127.0.0.1:$tport/wall/",
    'the demo prints the wall\'s https address');
my ($page, $css, $js, $list) = https_get(['--http2'], $swall,
    "${swall}wall.css", "${swall}wall.js", "${swall}grants/cameras.json");
is("$page->{status} $page->{version} $page->{type}",
    '200 2 text/html; charset=utf-8', 'the wall loads over HTTP/2');
like($page->{body}, qr{<title>snapcache camera wall</title>},
    'the wall\'s page');
is("$css->{status} $css->{type}", '200 text/css; charset=utf-8',
    'its style sheet');
is("$js->{status} $js->{type}", '200 application/javascript; charset=utf-8',
    'its script');
is($list->{status}, 200, 'its grants');
my $cams = eval { decode_json($list->{body})->{cameras} } || [];
is(scalar(@$cams), 6, 'a grant for each of the 6 cameras');
my @tiles = https_get(['--http2'],
    map { "https://127.0.0.1:$tport$_->{url}" } @$cams);
for my $i (0 .. $#$cams) {
    my ($acct, $dev) = split m{/}, $cams->[$i]{id};
    is("$tiles[$i]{status} $tiles[$i]{version}", '200 2',
        "the wall's grant for $acct/$dev is answered over HTTP/2");
    owner_is($tiles[$i]{body}, "$acct $dev latest", "with $acct/$dev/latest");
}
my $connects = 0;
$connects += $_->{connects} for @tiles;
is($connects, 1, 'all six on one connection');

# HTTP/1.1 on TLS is measured as plain HTTP is: once a response of
# acct-3's has been delivered over it (on a connection that closes after
# it, which nginx keeps open until the client has read everything), the
# next says the link carries the ceiling
my ($g3) = map { "https://127.0.0.1:$tport$_->{url}" }
    grep { $_->{id} eq 'acct-3/cam-back' } @$cams;
my $r3 = {};
ok(wait_until(sub {
        ($r3) = https_get(['--http1.1', '-H', 'Connection: close'],
            $g3 // "https://127.0.0.1:$tport/");
        $r3->{adapt} eq 'ceiling';
    }, 10), 'over HTTP/1.1 on TLS the link is measured: adapt ceiling')
    or diag explain $r3;

# TLS 1.2 with a forward-secret AEAD suite, not with a weak one; a
# session resumed from the shared cache (no tickets)
my $ossl = "openssl s_client -connect 127.0.0.1:$tport -CAfile '$cert' "
    . '-tls1_2';
my $ok12 = `$ossl -cipher ECDHE-ECDSA-AES128-GCM-SHA256 </dev/null 2>&1`;
like($ok12, qr/^\s*Cipher\s*: ECDHE-ECDSA-AES128-GCM-SHA256$/m,
    'TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256');
for my $weak (qw(ECDHE-ECDSA-AES128-SHA ECDHE-ECDSA-AES256-SHA384)) {
    my $o = `$ossl -cipher $weak </dev/null 2>&1`;
    isnt($? >> 8, 0, "not with $weak") or diag $o;
}
my $s1 = `$ossl -sess_out '$tmp/sess' </dev/null 2>&1`;
my $s2 = `$ossl -sess_in '$tmp/sess' </dev/null 2>&1`;
like($s2, qr/^Reused, TLSv1\.2/m, 'a TLS 1.2 session is resumed')
    or diag $s1, $s2;
unlike($s1, qr/TLS session ticket:/, 'from the cache, without a ticket');

kill 'INT', -$pid;
waitpid $pid, 0;
ok(!IO::Socket::INET->new("127.0.0.1:$port"), 'Ctrl-C stops the demo');
ok(!IO::Socket::INET->new("127.0.0.1:$tport"), 'its HTTPS listener too');

done_testing;
