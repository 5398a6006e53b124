#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Purge is final, even for fills that were running when it came in.
#
# Each round sends 30 cold requests for one device (10 snapshots, 3
# variants each, so most wait on a fill) while the origin holds every
# answer.  With all of them in flight, the origin switches to a new
# image for each snapshot (its owner marker names the snapshot with
# ".after") and the device is purged.  Only after the purge has
# answered does the origin let the held answers go, with the old
# images.  Every one of the 30 responses must be the new image: a fill
# that started before the purge never serves its body, even though its
# client asked before the purge.  Repeated over many rounds.
#
# Then the same for a stale copy: an expired record that would stand in
# for a failing origin is never served once a purge of its device began.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call
    start_gated_origin set_phase origin_lines fire collect owner_of
    wait_until wait_expired);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $ROUNDS = $ENV{SNAPCACHE_RACE_ROUNDS} || 12;

my $t = Snapcache::Test->new(workers => 2);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');

start_gated_origin($t);

$t->start(
    main => 'thread_pool snapcache threads=2 max_queue=256;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_lock_timeout 30s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . "        snapcache_ttl_min 1s;\n"
        . admin_location($file),
    origin_extra => "            proxy_read_timeout 30s;\n",
);

# -------------------------------------------------------------- rounds

my @variants = qw(thumb sd hd);

for my $round (1 .. $ROUNDS) {
    my $dev = "cam-r$round";
    my @req;
    for my $s (1 .. 10) {
        push @req, [ "s$s", $_ ] for @variants;
    }

    set_phase($t, 'before');
    open my $h, '>', "$d/hold" or die;
    close $h;

    my $misses = $t->stats->{misses};
    my @kids = fire($t, $round, map {
        $t->sign_url(account => 'acct-race', device => $dev,
            snapshot => $_->[0], v => $_->[1])
    } @req);

    ok(wait_until(
            sub { origin_lines($t, 'before', $dev) >= 10 }),
        "round $round: ten fills are at the origin");
    ok(wait_until(
            sub { $t->stats->{misses} - $misses >= 30 }),
        "round $round: all 30 requests are in, as misses");

    set_phase($t, 'after');
    my $r = admin_call($t->port, 'POST', 'purge', token => $tok,
        body => qq({"account":"acct-race","device":"$dev"}));
    is($r->{status}, 200, "round $round: the purge answered");

    # only now do the fills from before the purge get their originals
    unlink "$d/hold";

    my @res = collect($t, $round, scalar @req, @kids);
    my ($old, $bad) = (0, 0);
    for my $i (0 .. $#req) {
        my $x = $res[$i];
        if (($x->{status} // 0) != 200) { $bad++; next }
        $old++ unless owner_of($t, $x->{body}, 'acct-race', $dev,
            "$req[$i][0].after");
    }
    is($bad, 0, "round $round: every request got 200");
    is($old, 0, "round $round: every body is the image from after the purge");
}

my $m = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
my ($thrown) = $m =~ /^snapcache_fills_total\{result="purged"\} (\d+)/m;
cmp_ok($thrown // 0, '>=', 10 * $ROUNDS,
    "the fills from before each purge were thrown away ($thrown)");

# ------------------------------------------------------------ stale copy

# an expired record of the old image, and an origin that fails: the
# stale copy may stand in, but not once a purge of the device began
my $stale = $t->sign_url(account => 'acct-race', device => 'cam-stale',
    snapshot => 'st1', v => 'thumb');
set_phase($t, 'before');
is($t->request($stale)->{status}, 200, 'stale: the record is filled');
ok(wait_expired("$d/store", account => 'acct-race', device => 'cam-stale'),
    'stale: the record and its original read as expired (max-age=1)');

open my $fl, '>', "$d/fail" or die;
close $fl;
my $r = $t->request($stale);
is($r->{headers}{'x-snapcache'}, 'STALE',
    'stale: an expired copy stands in for a failing origin');

open $fl, '>', "$d/hold" or die;
close $fl;
my @kids = fire($t, 'stale', $stale);
ok(wait_until(
        sub { origin_lines($t, 'before', 'cam-stale') >= 3 }),
    'stale: the next fill is at the origin');
set_phase($t, 'after');
$r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-race","device":"cam-stale"}');
is($r->{status}, 200, 'stale: the purge answered');
unlink "$d/hold";
my ($res) = collect($t, 'stale', 1, @kids);
is($res->{status}, 502, 'stale: the origin failed and no stale copy stood in');
unlike($res->{x} // '', qr/STALE/, 'stale: not STALE');
unlink "$d/fail";

done_testing;
