#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A rung's records are keyed by what the rung is (width, quality,
# pipeline), never by its name or its place in the ladder: after a reload
# with a different ladder, a rung never gets a record made for another.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => 'snapmark not built' unless -x $snapmark;

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;

sub ladder {
    my (@rungs) = @_;
    return (
        http => "    snapcache_store $d/store size=64m;\n",
        location_extra => join('', map {
            "            snapcache_variant $_->[0] width=$_->[1] "
            . "quality=$_->[2];\n" } @rungs),
    );
}

sub width_of {
    my ($body) = @_;
    my $f = "$d/body-" . int(rand(1e9));
    open my $fh, '>:raw', $f or die;
    print $fh $body;
    close $fh;
    my ($w) = `'$snapmark' info '$f'` =~ /width[ =:]+(\d+)/;
    return $w // 0;
}

my %id = (account => 'acct-1', device => 'cam-1', snapshot => 's1');

$t->start(ladder(['thumb', 320, 50], ['sd', 480, 60], ['hd', 960, 70]));

for my $v (qw(thumb sd hd)) {
    my $r = $t->request($t->sign_url(%id, v => $v));
    is($r->{status}, 200, "first ladder: $v is served");
}
my $r = $t->request($t->sign_url(%id, v => 'sd'));
is($r->{headers}{'x-snapcache'}, 'HIT', 'first ladder: sd is a HIT');
is(width_of($r->{body}), 480, 'at 480 pixels');

# the same names, other rungs: sd is now what thumb was, and hd is new
$t->reload_and_wait(ladder(['thumb', 160, 40], ['sd', 320, 50],
    ['hd', 640, 60]));

$r = $t->request($t->sign_url(%id, v => 'sd'));
is($r->{status}, 200, 'second ladder: sd is served');
is(width_of($r->{body}), 320, 'at its new width, 320');
is($r->{headers}{'x-snapcache'}, 'HIT',
    'a HIT: the first ladder made exactly this rung, as "thumb"');

$r = $t->request($t->sign_url(%id, v => 'hd'));
is(width_of($r->{body}), 640, 'hd is 640, never the old 960 record');
is($r->{headers}{'x-snapcache'}, 'MISS', 'and a MISS: no record of that rung');

$r = $t->request($t->sign_url(%id, v => 'thumb'));
is(width_of($r->{body}), 160, 'thumb is 160');
is($r->{headers}{'x-snapcache'}, 'HIT',
    'a HIT made with the new hd, below it, never the old 320');

# same name and width, another quality: another rung
$t->reload_and_wait(ladder(['thumb', 160, 90], ['sd', 320, 50],
    ['hd', 640, 60]));
$r = $t->request($t->sign_url(%id, v => 'thumb'));
is($r->{headers}{'x-snapcache'}, 'MISS', 'another quality is another rung');

done_testing;
