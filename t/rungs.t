#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A fill makes the rungs below the one asked for from the same decode,
# in the same task, and stores them in one transaction: a step down on a
# weak link is then a hit.  A rung made below is byte for byte the rung
# made alone (the same ETag), rungs already stored are not made again,
# and snapcache_fill_below off makes only the rung asked for.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => 'snapmark not built' unless -x $snapmark;

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');
$t->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=128m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        location /alone/ {\n"
        . "            snapcache;\n"
        . "            snapcache_fill_below off;\n"
        . "        }\n"
        . admin_location($file),
);

sub get {
    my ($snap, $v, %o) = @_;
    return $t->request($t->sign_url(account => 'acct-1', device => 'cam-1',
        snapshot => $snap, v => $v, %o));
}

sub owner_ok {
    my ($r, $s, $name) = @_;
    my $f = "$d/body-" . int(rand(1e9));
    open my $fh, '>:raw', $f or die;
    print $fh $r->{body};
    close $fh;
    my $out = `'$snapmark' check '$f' acct-1 cam-1 '$s' 2>&1`;
    is($? >> 8, 0, "$name: acct-1/cam-1/$s") or diag $out;
}

my $r = get('s1', 'hd');
is($r->{headers}{'x-snapcache'}, 'MISS', 'hd: a fill');
my $transcodes = $t->stats->{transcodes};
is($transcodes, 1, 'one transcode task');

for my $v (qw(sd thumb)) {
    my $b = get('s1', $v);
    is($b->{headers}{'x-snapcache'}, 'HIT', "$v, below hd: already a hit");
    owner_ok($b, 's1', $v);
}
is($t->origin_count, 1, 'one origin fetch');
is($t->stats->{transcodes}, 1, 'and no other transcode');

is(get('s1', 'full')->{headers}{'x-snapcache'}, 'MISS',
    'full, above: a fill of its own');

# a rung made below is byte for byte the rung made alone
my $below = get('s1', 'sd');
my $p = admin_json(admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-1","device":"cam-1","snapshot":"s1"}'));
ok($p && $p->{records}, 'the snapshot is purged');
my $alone = get('s1', 'sd');
is($alone->{headers}{'x-snapcache'}, 'MISS', 'sd, asked for: a fill');
is($alone->{headers}{etag}, $below->{headers}{etag},
    'with the ETag of the sd made below hd');
ok($alone->{body} eq $below->{body}, 'and the same bytes');

# a fill above rungs already stored
is(get('s1', 'hd')->{headers}{'x-snapcache'}, 'MISS', 'hd again: a fill');
is(get('s1', 'thumb')->{headers}{'x-snapcache'}, 'HIT',
    'thumb was made with sd');

# without fill_below, only the rung asked for
is(get('s2', 'hd', prefix => '/alone/')->{headers}{'x-snapcache'}, 'MISS',
    'fill_below off: hd is a fill');
is(get('s2', 'sd', prefix => '/alone/')->{headers}{'x-snapcache'}, 'MISS',
    'and sd is not there yet');

done_testing;
