#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# snapcache inspect: it opens a store read-only, so that data.mdb and
# lock.mdb keep every byte and their mtime and nothing is created; it
# lists records of the older layout as such; it exits non-zero with
# what to do when the LMDB file itself is damaged.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA;
use File::Temp qw(tempdir);
use Snapcache::Test qw(build_dir);

my $cli = build_dir() . '/snapcache';
my $fill = build_dir() . '/bin/snapfill';
my $damage = build_dir() . '/bin/snapdamage';
plan skip_all => 'snapcache, snapfill or snapdamage not built'
    unless -x $cli && -x $fill && -x $damage;

my $d = tempdir('snapcache-inspect-XXXXXX', TMPDIR => 1,
    CLEANUP => !$ENV{SNAPCACHE_KEEP});

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub inspect { run("'$cli' inspect @_") }

sub listing {
    my ($dir) = @_;
    opendir my $h, $dir or return 'none';
    return join ',', sort grep { !/^\.\.?$/ } readdir $h;
}

# Every byte and the mtime of both files, after setting the mtimes far
# in the past: any write moves them.
sub age { utime 1_000_000_000, 1_000_000_000, map { "$_[0]/$_" } qw(data.mdb lock.mdb) }

sub files_state {
    my ($dir) = @_;
    return join ' ', map {
        my $f = "$dir/$_";
        -e $f ? join(':', (stat $f)[7, 9],
                     Digest::SHA->new(256)->addfile($f)->hexdigest)
              : 'absent'
    } qw(data.mdb lock.mdb);
}

# ------------------------------------------------------------ no store

mkdir "$d/empty";
my ($rc, $out) = inspect("'$d/empty'");
is($rc, 2, 'an empty directory: exit 2');
like($out, qr/no store in/, 'saying there is no store');
is(listing("$d/empty"), '', 'and nothing is created there');

($rc, $out) = inspect("'$d/nowhere'");
isnt($rc, 0, 'a missing directory: non-zero');
ok(!-e "$d/nowhere", 'and it is not created');

# ------------------------------------------------------------ read-only

($rc, $out) = run("'$fill' '$d/store' 120 outdated 7");
is($rc, 0, 'a store of 120 records and 7 of the older layout') or diag $out;

age("$d/store");
my $before = files_state("$d/store");
my $files = listing("$d/store");

($rc, $out) = inspect("'$d/store'");
is($rc, 0, 'inspect: exit 0') or diag $out;
like($out, qr/^# records 127 \(0 expired, 7 of an older layout, 0 failing checks\)/m,
    'it counts 127 records, 7 of the older layout');
is(scalar(() = $out =~ /outdated/g), 7, 'and lists those 7 as outdated');
is(scalar(() = $out =~ / w320-q50-p1 jpeg 320x180 \d+ bytes .* ok$/mg), 120,
    'and the 120 others as 320/q50 JPEG, ok');
like($out, qr/^# store: 127 entries/m, 'LMDB counts 127 as well');

is(files_state("$d/store"), $before,
    'data.mdb and lock.mdb: the same bytes and mtimes');
is(listing("$d/store"), $files, 'no file created');

($rc, $out) = inspect("'$d/store' --account acct-1");
is($rc, 0, 'one account: exit 0');
like($out, qr/^# records 42 /m, 'its 40 records and 2 outdated ones');

($rc, $out) = inspect("'$d/store' --account acct-1 --device cam-2");
like($out, qr/^# records 8 /m, 'one device: 8 records');
is(files_state("$d/store"), $before, 'still not a byte changed');

# ------------------------------------------------------------ records

($rc, $out) = run("'$fill' '$d/flipped' 20");
($rc, $out) = run("'$damage' '$d/flipped' flip 150");
is($rc, 0, 'a body byte of each of 20 records flipped');
($rc, $out) = inspect("'$d/flipped'");
is($rc, 1, 'records failing their checks: exit 1');
like($out, qr/20 failing checks/, 'all 20 counted');

# ------------------------------------------------------------ damaged

($rc, $out) = run("'$fill' '$d/damaged' 400");
($rc, $out) = run("'$damage' '$d/damaged' branches");
chomp $out;
is($rc, 0, 'zeroed the branch pages of a 400-record store');
cmp_ok($out, '>=', 1, "$out pages");

age("$d/damaged");
$before = files_state("$d/damaged");

($rc, $out) = inspect("'$d/damaged'");
is($rc, 3, 'a damaged file: exit 3');
like($out, qr/the store in "[^"]+" is damaged/, 'it says the store is damaged');
like($out, qr/Stop nginx, move the store directory away and start nginx/,
    'and what to do');
unlike($out, qr/^# records/m, 'and prints no summary of records');
is(files_state("$d/damaged"), $before, 'and changes nothing either');

done_testing();
