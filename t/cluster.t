#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Three nodes sharded by account.  Clients spread over the nodes ask, all
# at once, for every rung in JPEG and WebP of a set of snapshots: every
# answer shows its owner's image, and each original is fetched from the
# camera cloud exactly once across the cluster, by the node that owns
# its account (the same node for all of an account's snapshots).  A node
# that owns an account asks itself, over loopback, without waiting on
# itself.  The cluster token reaches no log and never the cloud.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use List::Util qw(shuffle);
use Snapcache::Test qw(build_dir);
use Snapcache::Cluster;

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $c = Snapcache::Cluster->new(nodes => 3);
$c->start;

my @accounts = map { "acct-$_" } 1 .. 8;
my @snaps;
for my $a (@accounts) {
    for my $dev (qw(cam-a cam-b)) {
        push @snaps, [$a, $dev, $_] for qw(s1 s2);
    }
}

my @jobs;
for my $s (@snaps) {
    for my $node (0 .. 2) {
        for my $v (qw(thumb sd hd full)) {
            for my $accept (undef, 'image/webp,*/*') {
                push @jobs, { node => $node, account => $s->[0],
                    device => $s->[1], snapshot => $s->[2], v => $v,
                    accept => $accept };
            }
        }
    }
}
@jobs = shuffle @jobs;

my @res = $c->run_clients(12, @jobs);

is(scalar(grep { $_->{status} == 200 } @res), scalar @jobs,
    scalar(@jobs) . ' requests over three nodes: every one answered 200')
    or diag join ' ', map { $_->{status} } grep { $_->{status} != 200 } @res;

my @wrong = $c->wrong_owners(map {
    [$res[$_]{file}, @{ $jobs[$_] }{qw(account device snapshot)}]
} grep { $res[$_]{file} } 0 .. $#res);
is(scalar @wrong, 0, 'every body shows the owner in its URL')
    or diag join "\n", map { "@$_" } @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)];

my $by = $c->fetchers;
is(scalar(keys %$by), scalar @snaps,
    'the cloud was asked for every original');
is(scalar(grep { @{ $by->{$_} } != 1 } keys %$by), 0,
    'each original was fetched from the cloud exactly once')
    or diag join "\n", map { "$_: @{ $by->{$_} }" }
        grep { @{ $by->{$_} } != 1 } sort keys %$by;

my %owner;
for my $path (keys %$by) {
    my ($a) = split m{/}, $path;
    $owner{$a}{$_} = 1 for @{ $by->{$path} };
}
is(scalar(grep { keys %{ $owner{$_} } != 1 } @accounts), 0,
    'all of an account\'s originals came through one node, its owner');
my %owners = map { (keys %{ $owner{$_} })[0] => 1 } @accounts;
cmp_ok(scalar keys %owners, '>=', 2, 'the accounts are spread over nodes: '
    . join(' ', map { "$_=" . join(',', keys %{ $owner{$_} }) } @accounts));

# every node asked for every account, its own included: through its
# own peer endpoint, over loopback, and never waiting on itself
for my $i (0 .. 2) {
    is($c->node($i)->stats->{lock_timeouts}, 0,
        'node ' . $c->node_name($i) . ': no fill waited out a lock');
}

# a second round: everything is in each node's store now
my @again = $c->run_clients(6, @jobs[0 .. 47]);
is(scalar(grep { $_->{status} == 200 && $_->{x} eq 'HIT' } @again), 48,
    'asked again, each node answers from its own store');
is(scalar $c->cloud_requests, scalar @snaps, 'and the cloud is not asked');

# the token goes from node to peer, and no further
is(scalar(grep { $_->[2] =~ /authorization/ } $c->cloud_requests), 0,
    'no request to the cloud carries an Authorization header');
my $token = $c->cluster_token;
for my $i (0 .. 2) {
    my $t = $c->node($i);
    my $logs = $t->error_log . $t->access_log;
    unlike($logs, qr/\Q$token\E/i, "node $i: the token is in no log");
}

done_testing;
