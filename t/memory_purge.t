#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A purge is final in every worker's memory tier, before it answers,
# with hits and fills in flight.
#
# Each round fills twelve variants of one device and requests them
# until both workers have admitted all twelve into their tiers.  Then
# four clients keep hitting them (from the tiers) while six cold fills
# of the same device wait at the origin.  The origin switches to a new
# image for every snapshot (its owner marker names the snapshot with
# ".after"), the device is purged, and only after the purge has
# answered are the held fills let go.  Every request sent after the
# purge answered, hit or fill, in either worker, must get the image
# from after the purge; so must every cold fill; and both workers must
# then serve only the new images.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir raw_request);
use Snapcache::Admin qw(write_token admin_location admin_call
    start_gated_origin set_phase origin_lines fire collect wait_until);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => 'snapmark not built' unless -x $snapmark;

my $ROUNDS = $ENV{SNAPCACHE_MEMORY_ROUNDS} || 4;
my $HITTERS = 4;

my $t = Snapcache::Test->new(workers => 2);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');

start_gated_origin($t);

$t->start(
    main => 'thread_pool snapcache threads=2 max_queue=256;',
    http => "    snapcache_store $d/store size=64m;\n"
        . "    snapcache_memory_cache size=16m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_lock_timeout 30s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . "        snapcache_ttl_min 300s;\n"
        . "        add_header X-Worker \$pid always;\n"
        . admin_location($file),
    origin_extra => "            proxy_read_timeout 30s;\n",
);

sub mem {
    my $m = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
    my %v;
    $v{$1} = $2 while $m =~ /^snapcache_memory_(\S+) (\d+)$/mg;
    return \%v;
}

# One hitter: new connections over the targets until <dir>/stop.<tag>
# exists; a line "<time sent> <status> <x-snapcache> <worker> <file>
# <snapshot>" per response, the body in <file>.
sub hitter {
    my ($tag, $k, @targets) = @_;
    my $pid = fork // die;
    return $pid if $pid;
    open my $log, '>', "$d/hits.$tag.$k" or _exit(1);
    $log->autoflush(1);
    my $n = 0;
    until (-e "$d/stop.$tag") {
        my ($snap, $target) = @{ $targets[$n % @targets] };
        my $sent = time;
        my $r = eval { raw_request($t->port, $target, timeout => 60) }
            // { status => 0, headers => {} };
        my $f = "$d/hb.$tag.$k.$n";
        open my $b, '>:raw', $f or _exit(1);
        print $b $r->{body} // '';
        close $b;
        printf $log "%.6f %s %s %s %s %s\n", $sent, $r->{status},
            $r->{headers}{'x-snapcache'} // '-',
            $r->{headers}{'x-worker'} // '-', $f, $snap;
        $n++;
    }
    close $log;
    _exit(0);
}

sub hit_lines {
    my ($tag) = @_;
    my @l;
    for my $k (1 .. $HITTERS) {
        open my $f, '<', "$d/hits.$tag.$k" or next;
        push @l, map { [ split ' ' ] } grep { /\n$/ } <$f>;
    }
    return @l;
}

# snapmark check-list over "<file> <account> <device> <snapshot>" lines:
# the lines that fail
sub bad_bodies {
    my (@lines) = @_;
    return () unless @lines;
    open my $f, '>', "$d/list" or die;
    print $f "$_\n" for @lines;
    close $f;
    my @out = `'$snapmark' check-list '$d/list' 2>&1`;
    return grep { /mismatch|undecodable/i } @out;
}

for my $round (1 .. $ROUNDS) {
    my $dev = "cam-p$round";
    my @hot = map {
        my $s = "s$_";
        map { [ $s, $t->sign_url(account => 'acct-mp', device => $dev,
            snapshot => $s, v => $_) ] } qw(sd thumb);
    } 1 .. 6;

    set_phase($t, 'before');

    # both workers' tiers hold all twelve
    my $adm = mem()->{admissions_total};
    is($t->request($_->[1])->{status}, 200, "round $round: filled")
        for @hot[0, 1];
    $t->request($_->[1]) for @hot;
    my $i = 0;
    ok(wait_until(sub {
        $t->request($hot[$i++ % @hot][1]);
        mem()->{admissions_total} - $adm >= 2 * @hot;
    }), "round $round: both workers admitted all twelve");

    # hits in flight, from the tiers
    my @kids = map { hitter($round, $_, @hot) } 1 .. $HITTERS;
    ok(wait_until(sub { hit_lines($round) >= 40 }),
        "round $round: the hitters are hitting");

    # and fills in flight, held at the origin
    open my $h, '>', "$d/hold" or die;
    close $h;
    my $at_origin = origin_lines($t, 'before', $dev);
    my @cold = map { "c$_" } 1 .. 6;
    my @fills = fire($t, "f$round", map {
        $t->sign_url(account => 'acct-mp', device => $dev, snapshot => $_,
            v => 'thumb')
    } @cold);
    ok(wait_until(
            sub { origin_lines($t, 'before', $dev) - $at_origin >= 6 }),
        "round $round: six fills are at the origin");

    my $purged = mem()->{'evictions_total{reason="purged"}'};
    set_phase($t, 'after');
    my $r = admin_call($t->port, 'POST', 'purge', token => $tok,
        body => qq({"account":"acct-mp","device":"$dev"}));
    my $answered = time;
    is($r->{status}, 200, "round $round: the purge answered");
    unlink "$d/hold";

    # hits keep coming after the answer, in both workers
    ok(wait_until(sub {
        my %w;
        $w{ $_->[3] }++ for grep { $_->[0] > $answered } hit_lines($round);
        (grep { $_ >= 10 } values %w) >= 2;
    }), "round $round: both workers answered hits sent after the purge");
    open my $s, '>', "$d/stop.$round" or die;
    close $s;
    waitpid $_, 0 for @kids;

    my @after = grep { $_->[0] > $answered } hit_lines($round);
    my @not200 = grep { $_->[1] != 200 } @after;
    is(scalar @not200, 0, "round $round: every hit after the purge got 200");
    my @bad = bad_bodies(map { "$_->[4] acct-mp $dev $_->[5].after" }
        grep { $_->[1] == 200 } @after);
    is(scalar @bad, 0, "round $round: all " . scalar(@after)
        . " requests sent after the purge got the new image")
        or diag(join '', @bad[0 .. ($#bad < 4 ? $#bad : 4)]);

    my @res = collect($t, "f$round", scalar @cold, @fills);
    my @fbad;
    for my $j (0 .. $#cold) {
        my $f = "$d/fb.$round.$j";
        open my $o, '>:raw', $f or die;
        print $o $res[$j]{body} // '';
        close $o;
        push @fbad, "$f acct-mp $dev $cold[$j].after";
    }
    is(scalar(grep { ($_->{status} // 0) != 200 } @res), 0,
        "round $round: every fill in flight got 200");
    is(scalar(bad_bodies(@fbad)), 0,
        "round $round: and the image from after the purge");

    cmp_ok(mem()->{'evictions_total{reason="purged"}'}, '>', $purged,
        "round $round: the tiers let go of the purged entries");

    # every worker, every variant: only the new images now
    my (%seen, @late);
    $i = 0;
    ok(wait_until(sub {
        my ($snap, $q) = @{ $hot[$i % @hot] };
        my $x = $t->request($q);
        my $f = "$d/late.$round.$i";
        open my $o, '>:raw', $f or die;
        print $o $x->{body};
        close $o;
        push @late, "$f acct-mp $dev $snap.after";
        $seen{ $x->{headers}{'x-worker'} }{ $i % @hot } = 1
            if ($x->{headers}{'x-snapcache'} // '') eq 'HIT';
        $i++;
        (grep { keys %$_ == @hot } values %seen) >= 2;
    }), "round $round: both workers hit every variant again");
    is(scalar(bad_bodies(@late)), 0,
        "round $round: all of them the new image");

    unlink glob("$d/hb.$round.*"), glob("$d/late.$round.*");
}

unlike($t->error_log, qr/foreign|identity/i, 'no foreign record was met');

done_testing;
