#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# An owner dies under load.  Clients keep asking the two other nodes for
# new snapshots of every account, so each request needs its original
# from the account's owner.  The owner of some accounts is killed
# (SIGKILL, every process) in the middle: every request, before and
# after, is answered with its owner's image, the dead node's accounts
# now through one next owner each, and the other accounts' originals
# still come from the nodes that owned them before.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir wait_until);
use Snapcache::Cluster;

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $c = Snapcache::Cluster->new(nodes => 3);
$c->start;
my $d = $c->dir;

sub lines { scalar(my @l = $c->cloud_requests) }

# who owns what: one snapshot of each account, through node 1
my @accounts = map { "acct-$_" } 1 .. 12;
for my $a (@accounts) {
    my $r = $c->get(0, account => $a, device => 'cam', snapshot => 's0',
        v => 'thumb');
    die "warm-up: $r->{status}\n" unless $r->{status} == 200;
}
my %owner = map { (split m{/}, $_->[1])[0] => $_->[0] } $c->cloud_requests;
is(scalar keys %owner, 12, 'every account has an owner');

my $victim = $owner{'acct-1'};
my ($vi) = grep { $c->node_name($_) eq $victim } 0 .. 2;
my @live = grep { $_ != $vi } 0 .. 2;
my @theirs = grep { $owner{$_} eq $victim } @accounts;
my @others = grep { $owner{$_} ne $victim } @accounts;
note "node $victim owns @theirs";

# ---------------------------------------------------------------- load

my @kids;
for my $k (0 .. 3) {
    my $pid = fork // die;
    if (!$pid) {
        open my $o, '>', "$d/load.$k" or _exit(1);
        my $i = 0;
        until (-e "$d/stop") {
            my $a = $i % 2 ? $theirs[$i % @theirs] : $others[$i % @others];
            my $s = "l$k-$i";
            my $r = eval { $c->get($live[$i % 2], account => $a,
                device => 'cam', snapshot => $s, v => 'thumb') }
                // { status => 0, body => '' };
            my $f = "$d/body.$k.$i";
            if ($r->{status} == 200) {
                open my $b, '>:raw', $f or _exit(1);
                print $b $r->{body};
                close $b;
            }
            print $o "$r->{status} $f $a cam $s\n";
            $i++;
        }
        close $o;
        _exit(0);
    }
    push @kids, $pid;
}

sub wait_lines {
    my ($n) = @_;
    my $end = time + 60;
    sleep 0.05 while lines() < $n && time < $end;
    return lines() >= $n;
}

ok(wait_lines(12 + 24), 'load is running');

my $t = $c->node($vi);
my @procs = ($t->master_pid, $t->worker_pids);
kill 'KILL', @procs;
ok(wait_until(sub { !grep { kill 0, $_ } @procs }),
    "the owner $victim is dead, killed");
my $mark = lines();

ok(wait_lines($mark + 40), 'load went on after the death');
open my $stop, '>', "$d/stop" or die;
close $stop;
waitpid $_, 0 for @kids;

# -------------------------------------------------------------- checks

my @res;
for my $k (0 .. 3) {
    open my $o, '<', "$d/load.$k" or die;
    push @res, map { chomp; [split / /] } <$o>;
}
my @failed = grep { $_->[0] != 200 } @res;
is(scalar @failed, 0, scalar(@res) . ' requests at the two other nodes: '
    . 'every one answered 200')
    or diag join "\n", map { "@$_" } @failed[0 .. ($#failed < 9 ? $#failed : 9)];
my @wrong = $c->wrong_owners(map { [@$_[1 .. 4]] } grep { $_->[0] == 200 }
    @res);
is(scalar @wrong, 0, 'every body shows the owner in its URL')
    or diag join "\n", map { "@$_" } @wrong;

my @log = $c->cloud_requests;
my (%after, %moved);
for my $i (12 .. $#log) {
    my ($node, $path) = @{ $log[$i] };
    my ($a) = split m{/}, $path;
    if ($owner{$a} ne $victim) {
        $moved{$a}{$node} = 1 if $node ne $owner{$a};
    } elsif ($i >= $mark) {
        $after{$a}{$node} = 1;
    }
}
is(scalar keys %moved, 0, 'the other accounts\' originals did not move')
    or diag explain \%moved;
cmp_ok(scalar keys %after, '>', 0,
    'the dead node\'s accounts were asked for after its death');
is(scalar(grep { keys %{ $after{$_} } != 1 || $after{$_}{$victim} }
    keys %after), 0, 'each through one next owner: '
    . join(' ', map { "$_=" . join(',', keys %{ $after{$_} }) }
        sort keys %after));

# every node left, one more request for each of the dead node's accounts
for my $i (@live) {
    for my $a (@theirs) {
        my $r = $c->get($i, account => $a, device => 'cam',
            snapshot => 'after', v => 'sd');
        ok($r->{status} == 200
            && $c->owner_is($r->{body}, $a, 'cam', 'after'),
            $c->node_name($i) . ": $a after the death");
    }
}

done_testing;
