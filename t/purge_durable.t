#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A purge holds across a crash and a reload.  Right after the purge has
# answered, every nginx process is killed (SIGKILL, no shutdown): the
# store, opened read-only, no longer has the purged records, and nginx
# started again fills them from the origin while the others stay hits.
# Across `nginx -s reload`, the generations live on in the zone: fills
# that old workers started before a purge, which new workers answered,
# never serve their bodies.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    inspect_records start_gated_origin set_phase origin_lines fire collect
    owner_of wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new(workers => 2);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');
start_gated_origin($t);
set_phase($t, 'before');

$t->start(
    main => 'thread_pool snapcache threads=2 max_queue=64;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_ttl_min 60s;\n"
        . "        snapcache_lock_timeout 30s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . admin_location($file),
    origin_extra => "            proxy_read_timeout 30s;\n",
);

sub url {
    my ($dev, $snap) = @_;
    return $t->sign_url(account => 'acct-d', device => $dev,
        snapshot => $snap, v => 'thumb');
}

sub x_of { $t->request(url(@_))->{headers}{'x-snapcache'} // '' }

# ---------------------------------------------------------------- crash

for my $dev (qw(cam-1 cam-2)) {
    is(x_of($dev, $_), 'MISS', "$dev $_ filled") for qw(s1 s2 s3);
}
is(scalar(inspect_records("$d/store", '--account', 'acct-d')), 12,
    'twelve records: three snapshots of two devices, rung and original');

my $r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-d","device":"cam-1"}');
my @procs = ($t->master_pid, $t->worker_pids);
kill 'KILL', @procs;
is($r->{status}, 200, 'the purge answered');
is(admin_json($r)->{records}, 6, 'six records purged');

ok(wait_until(sub { !grep { kill 0, $_ } @procs }),
    'every nginx process is gone, killed');

is(scalar(inspect_records("$d/store", '--account', 'acct-d',
    '--device', 'cam-1')), 0, 'the store has none of the purged records');
is(scalar(inspect_records("$d/store", '--account', 'acct-d',
    '--device', 'cam-2')), 6, 'and all of the others');

$t->stop;
$t->start(keep_config => 1);

my $fetched = origin_lines($t, 'before', 'cam-1');
is(x_of('cam-1', $_), 'MISS', "after the restart, cam-1 $_ is a miss")
    for qw(s1 s2 s3);
is(origin_lines($t, 'before', 'cam-1'), $fetched + 3,
    'filled again from the origin');
is(x_of('cam-2', $_), 'HIT', "after the restart, cam-2 $_ is a hit")
    for qw(s1 s2 s3);

# --------------------------------------------------------------- reload

my $gen = admin_json(admin_call($t->port, 'GET', 'stats', token => $tok))
    ->{purge}{generation};

open my $h, '>', "$d/hold" or die;
close $h;
my @targets = map { url('cam-3', "s$_") } 1 .. 6;
my @kids = fire($t, 'reload', @targets);
ok(wait_until(sub { origin_lines($t, 'before', 'cam-3') >= 6 }),
    'six fills of cam-3 wait on the origin');

# new workers up is not enough: the old ones, told to quit a moment
# later, must have stopped accepting, or one of them could take the purge
ok($t->reload_and_wait, 'nginx reloaded: new workers are up, the old ones '
    . 'shutting down');

set_phase($t, 'after');
$r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-d","device":"cam-3"}');
is($r->{status}, 200, 'a new worker answered the purge');
is(admin_json($r)->{generation}, $gen + 1,
    'the purge generation went on from before the reload');
unlink "$d/hold";

my @res = collect($t, 'reload', scalar @targets, @kids);
is(scalar(grep { ($_->{status} // 0) == 200 } @res), 6,
    'the old workers answered all six');
my $old = grep { !owner_of($t, $res[$_]{body}, 'acct-d', 'cam-3',
    "s" . ($_ + 1) . '.after') } 0 .. 5;
is($old, 0, 'with the image from after the purge, every one');

done_testing;
