#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# `snapcache purge` and `snapcache stats` against three nginx nodes on
# loopback, one of them down: the purge reaches the two live nodes in
# parallel, prints one line per node with its result and time, and exits
# non-zero for the one that failed.  Scopes read from stdin go in
# batches of 256.  A wrong token and a node that never answers are
# failures too, and the token is never printed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    inspect_records);

my $cli = build_dir() . '/snapcache';
plan skip_all => 'snapmark or the CLI not built'
    unless -x build_dir() . '/bin/snapmark' && -x $cli;

my @nodes = map { Snapcache::Test->new } 1 .. 3;
my ($tok, $file) = write_token($nodes[0], 'admin');
for my $n (@nodes) {
    my $d = $n->dir;
    $n->start_origin(image_size => '640x360');
    $n->start(
        http => "    snapcache_store $d/store size=32m;\n",
        server_extra => admin_location($file),
    );
}
my @urls = map { 'http://127.0.0.1:' . $_->port . '/_admin' } @nodes;

for my $n (@nodes) {
    for my $dev (qw(cam-1 cam-2)) {
        for my $s (qw(s1 s2)) {
            my $r = $n->request($n->sign_url(account => 'acct-f',
                device => $dev, snapshot => $s, v => 'thumb'));
            die "fill: $r->{status}\n" unless $r->{status} == 200;
        }
    }
}

# the third node goes down, and nothing listens on its port
$nodes[2]->stop;
Snapcache::Test::release_port($nodes[2]->port);

sub run_cli {
    my ($stdin, @args) = @_;
    my $cmd = join ' ', map { "'$_'" } $cli, @args;
    my $in = $nodes[0]->dir . '/stdin';
    open my $f, '>', $in or die;
    print $f $stdin // '';
    close $f;
    my $out = `$cmd < '$in' 2>&1`;
    return ($? >> 8, $out);
}

sub records {
    my ($n, @scope) = @_;
    return scalar inspect_records($n->dir . '/store', @scope);
}

my @node_args = map { ('--node', $_) } @urls;

# ---------------------------------------------------------------- purge

my ($rc, $out) = run_cli(undef, 'purge', @node_args, '--token-file', $file,
    '--account', 'acct-f', '--device', 'cam-1', '--timeout', '5');
is($rc, 1, 'a node down: exit status 1');
my @lines = split /\n/, $out;
is(scalar @lines, 3, 'one line per node') or diag $out;
like($lines[0], qr{^\Q$urls[0]\E ok records=4 generation=\d+ time=[\d.]+ms$},
    'node 1: ok, 4 records, with the time');
like($lines[1], qr{^\Q$urls[1]\E ok records=4 generation=\d+ time=[\d.]+ms$},
    'node 2: ok, 4 records');
like($lines[2], qr{^\Q$urls[2]\E failed: .*[Cc]onnect.* time=[\d.]+ms$},
    'node 3: failed, cannot connect');
unlike($out, qr/\Q$tok\E/i, 'the token is not printed');

for my $i (0, 1) {
    is(records($nodes[$i], '--account', 'acct-f', '--device', 'cam-1'), 0,
        'node ' . ($i + 1) . ': the device is purged');
    is(records($nodes[$i], '--account', 'acct-f', '--device', 'cam-2'), 4,
        'node ' . ($i + 1) . ': the other device is not');
}
is(records($nodes[2], '--account', 'acct-f', '--device', 'cam-1'), 4,
    'node 3, down, still has it (it must be purged when it returns)');

($rc, $out) = run_cli(undef, 'purge', @node_args[0 .. 3], '--token-file',
    $file, '--account', 'acct-f', '--device', 'cam-1');
is($rc, 0, 'the live nodes only: exit status 0');
like($out, qr/ok records=0 .*\n.* ok records=0 /, 'nothing left: 0 records');

# -------------------------------------------------------------- stdin

my @scopes = map { "acct-f cam-2 x$_" } 1 .. 298;
push @scopes, 'acct-f/cam-2/s1', "# a comment\n", 'acct-f cam-2 s2';
my $gen0 = admin_json(admin_call($nodes[0]->port, 'GET', 'stats',
    token => $tok))->{purge};
($rc, $out) = run_cli(join("\n", @scopes) . "\n", 'purge',
    @node_args[0 .. 3], '--token-file', $file, '--stdin');
is($rc, 0, '300 scopes from stdin: exit status 0') or diag $out;
like($out, qr/^\Q$urls[0]\E ok records=4 /m, 'node 1 removed the 4 records');
like($out, qr/^\Q$urls[1]\E ok records=4 /m, 'node 2 too');
my $gen1 = admin_json(admin_call($nodes[0]->port, 'GET', 'stats',
    token => $tok))->{purge};
is($gen1->{ok} - $gen0->{ok}, 300, 'node 1 purged 300 scopes');
is($gen1->{generation} - $gen0->{generation}, 2,
    'in two requests: 256, then 44');

($rc, $out) = run_cli("acct-f ../etc\n", 'purge', @node_args[0 .. 3],
    '--token-file', $file, '--stdin');
is($rc, 2, 'a bad id on stdin: usage error, nothing sent');
like($out, qr/stdin line 1/, 'naming the line');

# --------------------------------------------------------- failures

my ($wrong) = (write_token($nodes[0], 'wrong'))[1];
($rc, $out) = run_cli(undef, 'purge', @node_args[0 .. 3], '--token-file',
    $wrong, '--account', 'acct-f');
is($rc, 1, 'a wrong token: exit status 1');
is(scalar(() = $out =~ /failed: HTTP 401: unauthorized/g), 2,
    'both nodes say 401 unauthorized');

# a node that accepts connections and never answers
my $hang = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
    LocalPort => 0, Proto => 'tcp') or die;
my $hang_url = 'http://127.0.0.1:' . $hang->sockport . '/_admin';
($rc, $out) = run_cli(undef, 'purge', @node_args[0 .. 1], '--node',
    $hang_url, '--token-file', $file, '--account', 'acct-f', '--timeout',
    '1');
is($rc, 1, 'a node that never answers: exit status 1');
like($out, qr/^\Q$hang_url\E failed: .*timed out/m, 'it timed out');
like($out, qr/^\Q$urls[0]\E ok /m, 'the other node was purged meanwhile');
close $hang;

# --------------------------------------------------------------- stats

($rc, $out) = run_cli(undef, 'stats', @node_args, '--token-file', $file);
is($rc, 1, 'stats with a node down: exit status 1');
@lines = split /\n/, $out;
like($lines[0], qr/^node\s+hits\s+misses\s+stale\s+errors\s+fills\s+purges\s+records/,
    'a table header');
# 4 misses and fills; 303 scopes purged: cam-1 twice, 300 from stdin,
# and the account while the other node hung
like($lines[1], qr/^\Q$urls[0]\E\s+0\s+4\s+0\s+0\s+4\s+303\s+0\s+\d+$/,
    'node 1: its counters, and no records left');
like($lines[3], qr/^\Q$urls[2]\E failed: /, 'node 3: failed');

done_testing;
