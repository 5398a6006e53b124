#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A worker that cannot open the store answers 503, never anything it
# has not verified, and tries again: a worker respawned while the store
# was unreachable serves again once it is reachable, without a restart.
# Here the store's lock file is made unreadable for the worker user and
# the worker killed; the master respawns it into the unreadable store.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir wait_until);

plan skip_all => 'needs root: the worker user must differ from the '
    . 'lock file\'s reader' if $> != 0;
plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new(workers => 1);
$t->expect_log(qr/worker process \d+ exited on signal 9/,
    qr/snapcache: cannot open the store .*Permission denied/);
$t->start_origin;
my $d = $t->dir;
$t->start(http => "    snapcache_store $d/store size=16m;\n");

my $url = $t->sign_url(account => 'a1', device => 'd1', snapshot => 's1',
    v => 'thumb');
is($t->request($url)->{status}, 200, 'the store works');

my ($old) = $t->worker_pids;
chmod 0000, "$d/store/lock.mdb" or die $!;
kill 'KILL', $old;

# the master respawns the worker, which cannot open the store
my ($new, $said);
wait_until(sub {
    ($new) = grep { $_ != $old } $t->worker_pids;
    ($said) = $t->error_log
        =~ /(\[emerg\] $new#\d+: snapcache: cannot open the store[^\n]*)/
        if $new;
    $said;
});
ok($said, 'the respawned worker says it cannot open the store')
    or diag $t->error_log;
like($said // '', qr/trying again/, 'and that it will try again');

my $r = $t->request($url);
is($r->{status}, 503, 'meanwhile it fails closed');

chmod 0600, "$d/store/lock.mdb" or die $!;

# it tries again every second, and says when the store is open
my $open = qr/\[notice\] $new#\d+: snapcache: the store .* is open, /;
ok($t->wait_log(qr/${open}after \d+ failed attempts/),
    'once the store is reachable again, the worker says it has it open')
    or diag $t->error_log;
$r = $t->request($url);
is($r->{status}, 200, 'and it serves');
is($r->{headers}{'x-snapcache'}, 'HIT', 'from the same store');

done_testing;
