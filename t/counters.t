#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The zone's counters say what happened: every refused signature counts
# as denied, a hit as a hit, a miss and its fill as such, and a failed
# fill, and each request waiting on it, as an error.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
$t->start(
    http => "    snapcache_store $d/store size=32m;\n",
    origin_extra => "            proxy_read_timeout 10s;\n",
);

my %id = (account => 'acct-1', device => 'cam-1', snapshot => 's1');

for my $i (1 .. 7) {
    my $u = $t->sign_url(%id) =~ s/sig=[^&]+/sig=AAAA$i/r;
    is($t->request($u)->{status}, 403, "bad signature $i is refused");
}
is($t->request($t->sign_url(%id, exp => time() - 10))->{status}, 403,
    'an expired URL is refused');
is($t->stats->{denied}, 8, 'every refusal counts as denied');

is($t->request($t->sign_url(%id))->{status}, 200, 'a miss');
is($t->request($t->sign_url(%id))->{status}, 200, 'then a hit');
my $s = $t->stats;
is($s->{misses}, 1, 'one miss');
is($s->{hits}, 1, 'one hit');
is($s->{fills}, 1, 'one fill');
is($s->{errors}, 0, 'no errors yet');

# a failing origin, slow enough (a second) that three requests wait on
# one fill: the first starts it, and the two others come once the origin
# has been asked, so that they find it running
my @kids;
my $fetches = $t->origin_count;
for my $i (1 .. 3) {
    my $pid = fork // die;
    if (!$pid) {
        my $r = raw_request($t->port, $t->sign_url(%id,
            snapshot => 'slowe500-1'));
        _exit($r->{status} == 502 ? 0 : 1);
    }
    push @kids, $pid;
    ok(wait_until(sub { $t->origin_count > $fetches }),
        'the failing fill is at the origin') if $i == 1;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad++ if $? }
is($bad, 0, 'the failed fill and its waiters all get 502');
$s = $t->stats;
is($s->{errors}, 3, 'the failed fill and each waiter count as errors');
is($s->{coalesced}, 2, 'two of them waited on the first');

done_testing;
