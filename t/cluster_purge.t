#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A purge is final across the cluster.  Every node has served a device's
# snapshots (variants on every node, originals kept too).  The camera
# company's images change and `snapcache purge` goes to every node; no
# node serves the old image afterwards, not even a node that answered
# the purge before the owner of the originals had it.  Then with the device's
# owner stopped during the purge: the CLI says that node failed, the
# others purge, the next owner fetches the new image, and when the owner
# starts again (cold: records from before its start are not served) it
# serves the new image too, as does every node that asks it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(admin_call admin_json inspect_records);
use Snapcache::Cluster;

my $cli = build_dir() . '/snapcache';
plan skip_all => 'snapmark or the CLI not built'
    unless -x build_dir() . '/bin/snapmark' && -x $cli;

my $c = Snapcache::Cluster->new(nodes => 3);
$c->start;

my @rungs = qw(thumb sd);
my @snaps = qw(s1 s2);

# every node serves every rung of the device's snapshots: each answer
# must show generation $g
sub serve_all {
    my ($acct, $dev, $g, $name) = @_;
    my @jobs;
    for my $i (0 .. 2) {
        for my $s (@snaps) {
            push @jobs, map { { node => $i, account => $acct,
                device => $dev, snapshot => $s, v => $_ } } @rungs;
        }
    }
    my @res = $c->run_clients(1, @jobs);
    my @bad = grep { $res[$_]{status} != 200 } 0 .. $#res;
    my @wrong = $c->wrong_owners(map {
        [$res[$_]{file}, $acct, $dev,
         Snapcache::Cluster::marked($jobs[$_]{snapshot}, $g)]
    } grep { $res[$_]{file} } 0 .. $#res);
    ok(!@bad && !@wrong, "$name: all " . @jobs
        . " answers show generation $g")
        or diag join "\n", (map { "node $jobs[$_]{node} "
            . "$jobs[$_]{snapshot} $jobs[$_]{v}: $res[$_]{status}" } @bad),
            map { "@$_" } @wrong;
}

sub purge {
    my (@args) = @_;
    my $cmd = join ' ', map { "'$_'" } $cli, 'purge',
        (map { ('--node', $_) } $c->admin_urls), '--token-file',
        $c->admin_token_file, '--timeout', '5', @args;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub records {
    my ($i, $acct, $dev) = @_;
    return scalar inspect_records($c->node($i)->dir . '/store', '--account',
        $acct, '--device', $dev);
}

# --------------------------------------------------------- all nodes up

serve_all('acct-u', 'cam-1', 0, 'before');
serve_all('acct-u', 'cam-2', 0, 'the other device');
is(scalar(grep { $_->[1] =~ m{^acct-u/cam-1/} } $c->cloud_requests), 2,
    'two originals fetched from the cloud');

$c->new_generation('acct-u', 'cam-1');
my ($rc, $out) = purge('--account', 'acct-u', '--device', 'cam-1');
is($rc, 0, 'the purge answered ok on every node') or diag $out;
is(scalar(() = $out =~ /ok records=[1-9]/g), 3,
    'every node removed records of the device') or diag $out;
is(records($_, 'acct-u', 'cam-1'), 0, "node $_ keeps nothing of it")
    for 0 .. 2;

serve_all('acct-u', 'cam-1', 1, 'after the purge');
serve_all('acct-u', 'cam-2', 0, 'the other device, untouched');

# ------------------------------------- a node purged before the owner

my $r;

# The purge reaches the nodes at once, but not at the same instant: a
# node that has answered may ask an owner that has not begun yet.  Its
# fills then ask for a fresh copy from the cloud, not the owner's kept
# one, which is from before the purge.
my $owner_u = (grep { $_->[1] =~ m{^acct-u/cam-1/} } $c->cloud_requests)[-1][0];
my ($ou) = grep { $c->node_name($_) eq $owner_u } 0 .. 2;
my $first = ($ou + 1) % 3;

# a kept original stored in the second of a purge is not used (it may be
# from just before it), so the owner keeps a copy from a later second
$c->settle;
for my $s (@snaps) {
    $r = $c->get($ou, account => 'acct-u', device => 'cam-1',
        snapshot => $s, v => 'full');
    die "full: $r->{status}\n" unless $r->{status} == 200;
}
$c->new_generation('acct-u', 'cam-1');
$r = admin_call($c->node($first)->port, 'POST', 'purge',
    token => $c->admin_token, body => '{"account":"acct-u","device":"cam-1"}');
is($r->{status}, 200, "node $first purged, the owner $owner_u not yet");
my $n = scalar(my @l0 = $c->cloud_requests);
for my $s (@snaps) {
    $r = $c->get($first, account => 'acct-u', device => 'cam-1',
        snapshot => $s, v => 'hd');
    ok($r->{status} == 200 && $c->owner_is($r->{body}, 'acct-u', 'cam-1',
        "$s.g2"), "node $first: $s is the new image");
}
my @fresh = $c->cloud_requests;
is(scalar(grep { $_->[0] eq $owner_u } @fresh[$n .. $#fresh]), 2,
    'the owner fetched both from the cloud again, for that node');
($rc, $out) = purge('--account', 'acct-u', '--device', 'cam-1');
is($rc, 0, 'then the purge reaches every node');
serve_all('acct-u', 'cam-1', 2, 'after it');

# ---------------------------------------------------- the owner stopped

my %owner = map { $_->[1] =~ m{^acct-u/} ? ($_->[0] => 1) : () }
    $c->cloud_requests;
my ($oname) = keys %owner;
my ($oi) = grep { $c->node_name($_) eq $oname } 0 .. 2;
is(scalar keys %owner, 1, "the account has one owner, $oname");
cmp_ok(records($oi, 'acct-u', 'cam-2'), '>', 0,
    'which keeps the other device\'s records');

$c->stop_node($oi);
$c->new_generation('acct-u', 'cam-2');
($rc, $out) = purge('--account', 'acct-u', '--device', 'cam-2');
is($rc, 1, 'the purge failed on one node');
like($out, qr/^\Q@{[ ($c->admin_urls($oi))[0] ]}\E failed: /m,
    'the stopped owner');
is(scalar(() = $out =~ /^\S+ ok records=[1-9]/mg), 2,
    'the two others purged');

# the two others: the next owner fetches the new image
my $before = scalar(my @l = $c->cloud_requests);
for my $i (grep { $_ != $oi } 0 .. 2) {
    for my $s (@snaps) {
        my $r = $c->get($i, account => 'acct-u', device => 'cam-2',
            snapshot => $s, v => 'thumb');
        ok($r->{status} == 200 && $c->owner_is($r->{body}, 'acct-u',
            'cam-2', "$s.g1"), "node $i, owner down: $s is new");
    }
}
my @log = $c->cloud_requests;
ok(!(grep { $_->[0] eq $oname } @log[$before .. $#log]),
    'fetched by the next owner');

# the owner comes back with its old records, and serves none of them
cmp_ok(records($oi, 'acct-u', 'cam-2'), '>', 0,
    'the stopped owner still holds the old records');
$c->start_node($oi);
serve_all('acct-u', 'cam-2', 1, 'the owner started again');
@log = $c->cloud_requests;
# at least once each: for a minute after their purge, the other nodes
# ask for fresh copies, each its own
cmp_ok(scalar(grep { $_->[0] eq $oname && $_->[1] =~ m{^acct-u/cam-2/} }
    @log[$before .. $#log]), '>=', 2,
    'the owner fetched the two originals again, not its old copies');

# a purge sent again once the node is back finds what it still had
($rc, $out) = purge('--account', 'acct-u', '--device', 'cam-2');
is($rc, 0, 'the purge sent again answers ok everywhere');

done_testing;
