#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The store under pressure: a tiny map serves every request even when it
# cannot keep them; a worker killed mid-fill under load does not stop the
# service and leaves nothing corrupt; a reload under load drops no request
# that had started.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request wait_until);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => "snapmark not built" unless -x $snapmark;

my $t = Snapcache::Test->new(workers => 2);
# a quarter of a full HD frame: a slow fill still takes seconds (the
# origin sends 4 KB every 50 ms), and 100 of them still overflow the map
$t->start_origin(image_size => '960x540');
my $d = $t->dir;
my %conf = (
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=4m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_lock_timeout 3s;\n",
);
$t->start(%conf);

sub check_bodies {
    my ($name, @items) = @_;
    open my $l, '>', "$d/list" or die;
    my $i = 0;
    for my $it (@items) {
        my $f = "$d/rb." . $i++;
        open my $fh, '>:raw', $f or die;
        print $fh $it->{body};
        close $fh;
        print $l "$f $it->{a} $it->{d} $it->{s}\n";
    }
    close $l;
    my $out = `'$snapmark' check-list '$d/list' 2>&1`;
    is($? >> 8, 0, "$name: every body shows its owner") or diag $out;
}

# Runs $clients client processes of $per requests each; returns their
# pids.  Client c asks first for the c-th id from the end (the newest ones
# go last), then for random ones.  Each child seeds its own generator: a
# forked child inherits its parent's, so without it every client made the
# same picks, and 10 picks in a row missed all 4 new ids of 12 in about
# one run in 60.
sub load {
    my ($clients, $per, @ids) = @_;
    my @kids;
    for my $c (1 .. $clients) {
        my $pid = fork // die;
        if (!$pid) {
            srand($$ ^ time);
            open my $o, '>', "$d/load.$c" or _exit(1);
            for my $i (1 .. $per) {
                my ($a, $dv, $s) = @{ $i == 1 ? $ids[-$c] : $ids[rand @ids] };
                my $r = eval { raw_request($t->port,
                    $t->sign_url(account => $a, device => $dv,
                        snapshot => $s, v => 'thumb'), timeout => 20) };
                my $st = $r ? $r->{status} : 0;
                my $f = "$d/lb.$c.$i";
                if ($st == 200) {
                    open my $fh, '>:raw', $f or next;
                    print $fh $r->{body};
                    close $fh;
                }
                print $o "$st $f $a $dv $s\n";
            }
            close $o;
            _exit(0);
        }
        push @kids, $pid;
    }
    return @kids;
}

sub collect {
    my ($clients) = @_;
    my @res;
    for my $c (1 .. $clients) {
        open my $o, '<', "$d/load.$c" or next;
        for (<$o>) {
            my ($st, $f, $a, $dv, $s) = split;
            push @res, { st => $st, f => $f, a => $a, d => $dv, s => $s };
        }
    }
    return @res;
}

# ------------------------------------------------------------ full map

my @fails;
for my $i (1 .. 100) {
    my $r = $t->request($t->sign_url(account => 'acct-f',
        device => 'cam-' . ($i % 4), snapshot => "s$i", v => 'full'));
    push @fails, $i if $r->{status} != 200;
}
is(scalar @fails, 0, 'a 4 MB map with 100 full-size snapshots answers 200 '
    . 'to every request');
my $s = $t->stats;
ok($s->{stored} > 0, "some fills were stored ($s->{stored})");
ok($s->{not_stored} + $s->{stored} >= 100, 'every fill was accounted for');
my $again = $t->request($t->sign_url(account => 'acct-f', device => 'cam-0',
    snapshot => 's100', v => 'full'));
is($again->{status}, 200, 'the newest snapshot is served');
is($again->{headers}{'x-snapcache'}, 'HIT', 'from the store, after eviction');
my $first = $t->request($t->sign_url(account => 'acct-f', device => 'cam-1',
    snapshot => 's1', v => 'full'));
is($first->{status}, 200, 'the oldest snapshot is served');
isnt($first->{headers}{'x-snapcache'}, 'HIT',
    'the oldest is no longer in the store: the map overflowed');

# ------------------------------------------------------------ killed worker

$t->stop;
$t->start(%conf,
    http => "    snapcache_store $d/store2 size=64m;\n");

my @ids = map { my $a = $_; map { ["acct-k$a", "cam-$_", "slow-$a$_"] } 1 .. 2 }
    1 .. 4;
my $fetched = $t->origin_count;
my @kids = load(4, 12, @ids);
ok(wait_until(sub { $t->origin_count > $fetched }),
    'the load is running: a slow fill is at the origin');
my @w = $t->worker_pids;
ok(@w >= 1, 'workers are up');
$t->expect_log(qr/worker process $w[0] exited on signal 9$/);
kill 'KILL', $w[0];
waitpid $_, 0 for @kids;

my @res = collect(4);
my @ok = grep { $_->{st} == 200 } @res;
ok(@ok >= @res - 8, scalar(@ok) . ' of ' . scalar(@res)
    . ' requests succeeded across the kill (only those on the killed '
    . 'worker may fail)');

# after the kill, every snapshot is served and verifies
my @after;
for my $id (@ids) {
    my $r = $t->request($t->sign_url(account => $id->[0], device => $id->[1],
        snapshot => $id->[2], v => 'thumb'));
    is($r->{status}, 200, "after the kill: $id->[0]/$id->[1] is served");
    push @after, { body => $r->{body}, a => $id->[0], d => $id->[1],
        s => $id->[2] };
}
check_bodies('after the kill', @after,
    map { open my $fh, '<:raw', $_->{f}; local $/;
          { body => scalar <$fh>, a => $_->{a}, d => $_->{d}, s => $_->{s} } }
    @ok);

ok(wait_until(sub {
        my @w2 = $t->worker_pids;
        @w2 == 2 && !grep { $_ == $w[0] } @w2;
    }), 'the master replaced the killed worker');

# ------------------------------------------------------------ reload

# the new snapshots' fills are slow: the reloads come while they run
@kids = load(4, 10, @ids, map { ["acct-r$_", 'cam-1', "slow-r$_"] } 1 .. 4);
ok(wait_until(sub { grep { m{/slow-r} } $t->origin_requests }),
    'the load is running: a slow fill is at the origin');
$t->reload_and_wait;
$t->reload_and_wait;
waitpid $_, 0 for @kids;
@res = collect(4);
is(scalar(grep { $_->{st} != 200 } @res), 0,
    'two reloads under load dropped no request (' . scalar(@res) . ')');

done_testing;
