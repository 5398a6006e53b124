#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The snapcache CLI against a real nginx with the module: for URLs that
# fail each check, verify says what the module answers (its status and
# its one-word body), and a URL it calls ok is served.  stats --json,
# purge --json and inspect --json describe the node and its store as
# they are: the records a purge removed per scope, the counters, the
# records left.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location inspect_records);

my $cli = build_dir() . '/snapcache';
plan skip_all => 'snapmark or the CLI not built'
    unless -x build_dir() . '/bin/snapmark' && -x $cli;

# Under AddressSanitizer every run of the CLI (not nginx's) checks for
# leaks too: a leak makes its exit status 23, which no test here expects.
my $env = ($ENV{SNAPCACHE_SAN} // '') eq 'address'
    ? 'ASAN_OPTIONS=detect_leaks=1:exitcode=23 ' : '';
delete local $ENV{SNAPCACHE_NODES};
delete local $ENV{SNAPCACHE_TOKEN_FILE};

my $t = Snapcache::Test->new(keys => ['k1', 'k2']);
my $d = $t->dir;
my ($tok, $token) = write_token($t, 'admin');
$t->start_origin(image_size => '640x360');
$t->start(
    http => "    snapcache_store $d/store size=32m;\n",
    server_extra => "        snapcache_url_max_lifetime 1h;\n"
        . admin_location($token),
);

sub cli {
    my (@args) = @_;
    my $cmd = join ' ', map { my $a = $_; $a =~ s/'/'\\''/g; "'$a'" }
        $cli, @args;
    my $out = `$env$cmd 2>'$d/stderr'`;
    my $rc = $? >> 8;
    open my $e, '<', "$d/stderr" or die;
    local $/;
    return ($rc, $out, <$e> // '');
}

# ------------------------------------------------------------ verify

my $now = time;
my %ids = (account => 'acct-v', device => 'cam-1', snapshot => 's1');
my $good = $t->sign_url(%ids);
my ($q) = $good =~ /\?(.*)/;
my %urls = (
    'ok' => $good,
    'ok, a device grant' => $t->sign_url(%ids, scope => 'device'),
    'ok, the second key' => $t->sign_url(%ids, kid => 'k2'),
    'percent-escape' => "/snap/acct-v/cam-%31/s1?$q",
    'dot segment' => "/snap/acct-v/../s1?$q",
    'unknown parameter' => "$good&foo=1",
    'repeated kid' => "$good&kid=k1",
    'unknown kid' => $t->sign_url(%ids, kid => 'k3', key => 'x' x 32),
    'another key' => $t->sign_url(%ids, key => $t->key('k2')),
    'a changed snapshot' => $good =~ s{/s1\?}{/s2?}r,
    'a short signature' => $good =~ s/(sig=.{42})./$1/r,
    'expired' => $t->sign_url(%ids, exp => $now - 30),
    'beyond the lifetime' => $t->sign_url(%ids, exp => $now + 7200),
);

my @keys = map { ('--key', "$_=" . $t->key_file($_)) } qw(k1 k2);
for my $name (sort keys %urls) {
    my $u = $urls{$name};
    my ($rc, $out) = cli('verify', "http://127.0.0.1:" . $t->port . $u,
        @keys, '--json');
    my $v = eval { decode_json($out) };
    ok($v, "$name: verify --json parses") or next;
    my $r = $t->request($u);
    if ($v->{ok}) {
        is($rc, 0, "$name: verify says ok");
        is($r->{status}, 200, "$name: and nginx serves it");
    } else {
        is($rc, 1, "$name: verify says $v->{check}: $v->{reason}");
        is($r->{status}, $v->{status}, "$name: nginx answers $v->{status}");
        is($r->{body}, "$v->{body}\n", "$name: with \"$v->{body}\"");
    }
}

# ------------------------------------------------------------ --json

my $base = 'http://127.0.0.1:' . $t->port;
my @node = ('--node', $base, '--admin-path', '/_admin/', '--token-file',
    $token);
my ($rc, $out, $err) = cli('stats', @node, '--json');
my $s0 = eval { decode_json($out)->{nodes}[0]{stats} };
ok($s0, 'stats --json before the fills');

# six snapshots, each stored as its original and one variant
for my $dev (qw(cam-1 cam-2)) {
    for my $s (qw(s1 s2 s3)) {
        my $r = $t->request($t->sign_url(account => 'acct-j', device => $dev,
            snapshot => $s, v => 'thumb'));
        die "fill: $r->{status}\n" unless $r->{status} == 200;
    }
}
($rc, $out, $err) = cli('inspect', "$d/store", '--account', 'acct-j',
    '--json');
is($rc, 0, 'inspect --json: exit 0') or diag $err;
my $i = eval { decode_json($out) };
ok($i, 'inspect --json parses') or diag $out;
is(scalar @{ $i->{records} }, 12, 'twelve records of the account')
    or diag $out;
is($i->{summary}{records}, 12, 'the summary says so');
is(scalar(grep { $_->{check} eq 'ok' && $_->{bytes} > 0
    && $_->{snapshot} =~ /^s[123]$/ && $_->{account_tag} =~ /^[0-9a-f]{32}$/ }
    @{ $i->{records} }), 12, 'each with its tags, snapshot, bytes, ok');
is(scalar(grep { $_->{variant} eq 'original' } @{ $i->{records} }), 6,
    'six of them originals');
is($i->{damaged}, undef, 'the store is not damaged');
ok($i->{lmdb}{entries} >= 12, 'LMDB\'s own count');
is(scalar(inspect_records("$d/store", '--account', 'acct-j')), 12,
    'as the text listing counts');

($rc, $out, $err) = cli('stats', @node, '--json');
is($rc, 0, 'stats --json: exit 0') or diag $out . $err;
my $s = eval { decode_json($out) };
ok($s && $s->{ok}, 'stats --json parses, ok') or diag $out;
my $st = $s->{nodes}[0]{stats};
is($st->{counters}{misses} - $s0->{counters}{misses}, 6,
    'the node\'s misses: six more');
is($st->{counters}{fills} - $s0->{counters}{fills}, 6, 'and fills');
is($s->{nodes}[0]{url}, "$base/_admin/stats", 'asked at --admin-path');

($rc, $out, $err) = cli('purge', @node, '--account', 'acct-j', '--device',
    'cam-1', '--json');
is($rc, 0, 'purge --json: exit 0') or diag $out . $err;
my $p = eval { decode_json($out) };
ok($p && $p->{ok}, 'purge --json parses, ok') or diag $out;
my $n = $p->{nodes}[0];
is($n->{records}, 6, 'six records removed');
is_deeply($n->{purged}, [{ account => 'acct-j', device => 'cam-1',
    records => 6 }], 'by the scope');
ok($n->{generation} >= 1, 'with the node\'s generation');
is($n->{retries}, 0, 'at the first try');
unlike($out, qr/\Q$tok\E/i, 'the token is not printed');

open my $in, '>', "$d/scopes" or die;
print $in "acct-j cam-2 s1\nacct-j/cam-2/s9\n";
close $in;
$out = `$env'$cli' purge @node --stdin --json < '$d/scopes'`;
is($? >> 8, 0, 'purge --stdin --json: exit 0');
$p = eval { decode_json($out) };
is_deeply([map { $_->{records} } @{ $p->{nodes}[0]{purged} }], [2, 0],
    'per scope: 2 removed, and 0 for a snapshot it never had');

($rc, $out) = cli('inspect', "$d/store", '--account', 'acct-j', '--json');
$i = eval { decode_json($out) };
is_deeply([sort map { $_->{snapshot} } @{ $i->{records} }],
    [qw(s2 s2 s3 s3)],
    'inspect --json: what is left');

($rc, $out) = cli('stats', @node, '--json');
$s = eval { decode_json($out) };
is($s->{nodes}[0]{stats}{purge}{ok}, 3, 'stats: three scopes purged');

done_testing;
