#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The origin's 404 is remembered for snapcache_negative_ttl, keyed like
# any record: a device grant with made-up snapshot ids costs one origin
# request per id, not one per request, and the 404 is asked again once
# the time has passed.  With snapcache_negative_ttl 0 nothing is kept.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(wait_expired);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
$t->start(
    http => "    snapcache_store $d/store size=32m;\n",
    server_extra => "        snapcache_negative_ttl 2s;\n"
        . "        location /off/ {\n"
        . "            snapcache;\n"
        . "            snapcache_negative_ttl 0;\n"
        . "        }\n",
);

sub grant {
    my ($snap, %o) = @_;
    return $t->sign_url(account => 'acct-1', device => 'cam-1',
        snapshot => $snap, scope => 'device', %o);
}

my @ids = map { "missing-$_" } 1 .. 10;

for my $round (1 .. 3) {
    my $bad = grep { $t->request(grant($_))->{status} != 404 } @ids;
    is($bad, 0, "round $round: every made-up id gets 404");
}
is($t->origin_count, scalar @ids, 'the origin was asked once per id');
is($t->stats->{negative}, 2 * @ids, 'the other answers came from the store');

# other variants of the same missing snapshot are not asked again either
is($t->request(grant('missing-1', v => 'thumb'))->{status}, 404,
    'another rung of a missing snapshot: 404');
is($t->origin_count, scalar @ids, 'without an origin request');

# a real snapshot next to them is unaffected
my $r = $t->request(grant('s1'));
is($r->{status}, 200, 'an existing snapshot is served');

ok(wait_expired("$d/store", account => 'acct-1', device => 'cam-1',
        snapshot => 'missing-1'),
    'the remembered 404 of missing-1 reads as expired: its TTL passed');
is($t->request(grant('missing-1'))->{status}, 404, 'after the TTL: 404');
is($t->origin_count, @ids + 2, 'asked of the origin again');

# without negative caching, every request goes to the origin
my $before = $t->origin_count;
$t->request(grant('missing-off', prefix => '/off/')) for 1 .. 3;
is($t->origin_count, $before + 3, 'snapcache_negative_ttl 0 keeps nothing');

done_testing;
