#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Records that fail their checks, in a live store: every record's body
# damaged by hand, then every record given another's value (another
# owner's, or another variant's).  None of them is ever served: each is
# a logged miss, the fill replaces it, and every body shows its owner.
# Then a damaged LMDB file (its branch pages zeroed): every request is
# served from the origin, uncached, and each worker says so once, at
# crit, with what to do.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
my $damage = build_dir() . '/bin/snapdamage';
my $fill = build_dir() . '/bin/snapfill';
plan skip_all => "snapmark, snapdamage or snapfill not built"
    unless -x $snapmark && -x $damage && -x $fill;

my $t = Snapcache::Test->new(workers => 2);
$t->start_origin;
my $d = $t->dir;
$t->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n",
);

my @owners = (['alice', 'door', 's1'], ['bob', 'door', 's1'],
    ['alice', 'yard', 's1']);

sub get {
    my ($o) = @_;
    return $t->request($t->sign_url(account => $o->[0], device => $o->[1],
        snapshot => $o->[2], v => 'thumb'));
}

sub owner_ok {
    my ($r, $o, $name) = @_;
    my $f = "$d/body";
    open my $fh, '>:raw', $f or die;
    print $fh $r->{body};
    close $fh;
    my $out = `'$snapmark' check '$f' $o->[0] $o->[1] $o->[2] 2>&1`;
    is($? >> 8, 0, "$name: the body shows $o->[0]/$o->[1]") or diag $out;
}

sub corrupt_count { $t->stats->{corrupt} // -1 }

sub log_count {
    my ($re) = @_;
    return scalar(my @l = grep { /$re/ } split /\n/, $t->error_log);
}

# a MISS, then a HIT, for each owner
for my $o (@owners) {
    my $r = get($o);
    is($r->{status}, 200, "$o->[0]/$o->[1]: 200");
    is($r->{headers}{'x-snapcache'}, 'MISS', 'a MISS first');
    is(get($o)->{headers}{'x-snapcache'}, 'HIT', 'then a HIT');
}
is($t->origin_count, 3, 'one origin request per owner');

# every record's body damaged (past the 80-byte header)
my $n = `'$damage' '$d/store' flip 500`;
is($? >> 8, 0, 'damaged a body byte of every record');
cmp_ok($n, '>=', 6, "$n records: the variants and the kept originals");

for my $o (@owners) {
    my $r = get($o);
    is($r->{status}, 200, "$o->[0]/$o->[1] after the damage: 200");
    is($r->{headers}{'x-snapcache'}, 'MISS', 'a MISS, not the damaged bytes');
    owner_ok($r, $o, 'refilled');
    my $again = get($o);
    is($again->{headers}{'x-snapcache'}, 'HIT', 'the fill replaced it: HIT');
    owner_ok($again, $o, 'the replacement');
}
is($t->origin_count, 6, 'the damaged originals were fetched again');
cmp_ok(log_count(qr/snapcache: corrupt .*record, treated as a miss/), '>=', 3,
    'each damaged record was logged');
cmp_ok(corrupt_count(), '>=', 3, '$snapcache_stats counts them');

# every record now holds the next record's value: another owner's, or
# another variant of the same owner's
`'$damage' '$d/store' rotate`;
is($? >> 8, 0, 'rotated the values of every record');
my $before = corrupt_count();

for my $o (@owners) {
    my $r = get($o);
    is($r->{status}, 200, "$o->[0]/$o->[1] after the rotation: 200");
    is($r->{headers}{'x-snapcache'}, 'MISS', 'a MISS, not the bytes under '
        . 'this key');
    owner_ok($r, $o, 'refilled');
    owner_ok(get($o), $o, 'and then served');
}
cmp_ok(log_count(qr/snapcache: foreign .*record, treated as a miss/), '>=', 1,
    'another owner\'s record was logged as foreign');
cmp_ok(corrupt_count(), '>=', $before + 3, 'and counted');

# ---------------------------------------------------- a damaged file

$t->stop;

my $store = "$d/damaged";
`'$fill' '$store' 400`;
is($? >> 8, 0, 'a store of 400 records');
my $pages = `'$damage' '$store' branches`;
chomp $pages;
cmp_ok($pages, '>=', 1, "its branch pages zeroed ($pages)");

my $t2 = Snapcache::Test->new(workers => 1);
$t2->expect_log(qr/\[crit\].*snapcache: the store ".*" is damaged/);
$t2->start_origin;
$t2->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n",
);

for my $i (1 .. 3) {
    my $o = ['carol', 'porch', 's1'];
    my $r = $t2->request($t2->sign_url(account => $o->[0],
        device => $o->[1], snapshot => $o->[2], v => 'thumb'));
    is($r->{status}, 200, "request $i on the damaged store: 200");
    is($r->{headers}{'x-snapcache'}, 'MISS', 'a MISS, served from the origin');
    owner_ok($r, $o, "request $i");
}

my $log = $t2->error_log;
my @crit = grep { /\[crit\].*snapcache: the store "\Q$store\E" is damaged/ }
    split /\n/, $log;
is(scalar @crit, 1, 'one crit line from the worker, naming the store');
like($crit[0] // '', qr/stop nginx, move the store directory away and start nginx/,
    'with what to do');
like($log, qr/fill served uncached: the store file is damaged/,
    'each fill is served uncached');
unlike($log, qr/\[(alert|emerg)\]|exited on signal/, 'no worker crashed');

done_testing();
