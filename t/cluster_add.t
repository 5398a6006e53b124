#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A fourth node joins three.  Each account's owner is read from the
# cloud's log, through the nodes' real origin path (a snapshot the cloud
# does not have, so no image is made): once with three nodes, then with
# four, every node reloaded with the new member.  Consistent hashing
# moves about a quarter of the accounts, each to the new node, and no
# other: the measured fraction is printed, and bounded at 35%.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir);
use Snapcache::Cluster;

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $N = 500;
my $c = Snapcache::Cluster->new(nodes => 4);
$c->set_members(0 .. 2);
$c->start(0 .. 2);

my @accounts = map { sprintf 'home-%04d', $_ } 1 .. $N;

# asks for a missing snapshot of every account, spread over the nodes
sub owners {
    my ($snap, @via) = @_;
    my $from = scalar(my @l = $c->cloud_requests);
    my @jobs = map {
        { node => $via[$_ % @via], account => $accounts[$_], device => 'cam',
          snapshot => $snap, v => 'thumb' }
    } 0 .. $#accounts;
    my @res = $c->run_clients(4, @jobs);
    is(scalar(grep { $_->{status} == 404 } @res), $N,
        "$N accounts asked through " . @via . " nodes: 404 from the cloud");
    my @log = $c->cloud_requests;
    my %owner;
    for (@log[$from .. $#log]) {
        my ($a) = split m{/}, $_->[1];
        $owner{$a}{ $_->[0] } = 1;
    }
    is(scalar(grep { keys %{ $owner{$_} || {} } != 1 } @accounts), 0,
        'each account fetched by one node, once');
    return { map { $_ => (keys %{ $owner{$_} })[0] } @accounts };
}

my $three = owners('missing-3', 0 .. 2);
my %count;
$count{$_}++ for values %$three;
note 'three nodes: ' . join ' ', map { "$_=$count{$_}" } sort keys %count;

# the fourth node starts with four members, the others reload to them
$c->set_members(0 .. 3);
$c->start(3);
my @old = map { [sort $c->node($_)->worker_pids] } 0 .. 2;
$c->reload(0 .. 2);
my $end = time + 30;
for my $i (0 .. 2) {
    my %o = map { $_ => 1 } @{ $old[$i] };
    sleep 0.05 while time < $end
        && grep { $o{$_} } $c->node($i)->worker_pids;
}
ok(!(grep { my %o = map { $_ => 1 } @{ $old[$_] };
    grep { $o{$_} } $c->node($_)->worker_pids } 0 .. 2),
    'the three nodes reloaded: their old workers are gone');

my $four = owners('missing-4', 0 .. 3);
my @moved = grep { $three->{$_} ne $four->{$_} } @accounts;
my $fraction = @moved / $N;

diag sprintf 'node added: %d of %d accounts (%.1f%%) moved to another owner',
    scalar @moved, $N, 100 * $fraction;
cmp_ok($fraction, '<=', 0.35, 'at most 35% of the accounts moved');
cmp_ok($fraction, '>=', 0.10, 'and the new node took a share');
is(scalar(grep { $four->{$_} ne 'n4' } @moved), 0,
    'every account that moved, moved to the new node');

done_testing;
