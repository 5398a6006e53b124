#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Lowering size= under a store that holds more than the new size: 75
# snapshots filled at size=256m (each a 1920x1080 original of about
# 700 KB, kept, and its thumb), then nginx restarted with size=4m.  The
# store must evict down to the new size and go on storing: a new fill is
# a MISS, and the next request for it a HIT.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => "snapmark not built" unless -x $snapmark;

my $t = Snapcache::Test->new(workers => 1);
$t->start_origin;
my $d = $t->dir;

sub config {
    my ($size) = @_;
    return (
        main => 'thread_pool snapcache threads=2;',
        http => "    snapcache_store $d/store size=$size;\n",
        server_extra => "        snapcache_thread_pool snapcache;\n",
    );
}

sub get {
    my ($snap) = @_;
    return $t->request($t->sign_url(account => 'acct', device => 'cam',
        snapshot => $snap, v => 'thumb'));
}

$t->start(config('256m'));

my $stored = 0;
for my $i (1 .. 75) {
    my $r = get("s$i");
    $stored++ if $r->{status} == 200
        && $r->{headers}{'x-snapcache'} eq 'MISS';
}
is($stored, 75, '75 snapshots filled at size=256m');
is(get('s75')->{headers}{'x-snapcache'}, 'HIT', 'and stored');
cmp_ok(-s "$d/store/data.mdb", '>=', 256 << 20,
    'the data file was preallocated to 256m');

$t->stop;
$t->start(config('4m'));

for my $i (1 .. 5) {
    my $r = get("new$i");
    is($r->{status}, 200, "new$i at size=4m: 200");
    is($r->{headers}{'x-snapcache'}, 'MISS', 'a MISS first');
    my $again = get("new$i");
    is($again->{headers}{'x-snapcache'}, 'HIT', 'then a HIT: it was stored');
    is($again->{body}, $r->{body}, 'the same bytes');
}

my $log = $t->error_log;
unlike($log, qr/served uncached/, 'no fill was served uncached');
unlike($log, qr/\[(alert|emerg)\]|exited on signal/, 'no worker crashed');

# and across one more restart at the small size
$t->stop;
$t->start(config('4m'));
is(get('new5')->{headers}{'x-snapcache'}, 'HIT',
    'after a restart at 4m the last fill still hits');
my $r = get('new6');
is($r->{headers}{'x-snapcache'}, 'MISS', 'a new fill is a MISS');
is(get('new6')->{headers}{'x-snapcache'}, 'HIT', 'and then a HIT');

done_testing();
