#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A purge bumps the generations at once and deletes a moment later, on
# the thread pool.  A fill that begins in between reads its generations
# after the bump, so they cannot tell it that the kept original it finds
# is one the purge is about to delete.  If the delete comes first, the
# fill must store nothing it made of it: otherwise a variant of the old
# image outlives the purge.  Here the delete is held back (LMDB's writer lock
# held by another process, one pool thread) while such a fill begins.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    start_gated_origin set_phase origin_lines fire collect owner_of
    wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new(workers => 1);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');
start_gated_origin($t);
set_phase($t, 'before');

$t->start(
    main => 'thread_pool snapcache threads=1 max_queue=16;',
    http => "    snapcache_store $d/store size=32m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_ttl_min 60s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . admin_location($file),
);

sub url {
    my ($v) = @_;
    return $t->sign_url(account => 'acct-k', device => 'cam-1',
        snapshot => 's1', v => $v);
}

my $r = $t->request(url('thumb'));
is($r->{headers}{'x-snapcache'}, 'MISS', 'thumb filled: the original kept');

# the store's writer lock, held: the purge's deletes will wait for it
my $pid = open(my $out, '-|', build_dir() . '/bin/snapdamage', "$d/store",
    'hold') or die;
is(scalar <$out>, "held\n", 'another process holds the writer lock');

set_phase($t, 'after');

my $purger = fork // die;
if (!$purger) {
    my $p = admin_call($t->port, 'POST', 'purge', token => $tok,
        body => '{"account":"acct-k","device":"cam-1"}');
    _exit($p->{status} == 200 ? 0 : 1);
}
ok(wait_until(sub {
        my $s = admin_json(admin_call($t->port, 'GET', 'stats',
            token => $tok));
        $s && $s->{purge}{generation} >= 1;
    }), 'the purge has begun: generations bumped, deletes waiting');

# a fill that begins now, for another rung of the snapshot: it has read
# the generations and queued its transcode, behind the held deletes on
# the one pool thread, once the zone counts it (the worker counts it in
# the same handler, before it answers the stats request)
my $fills = $t->stats->{fills};
my @kids = fire($t, 'sd', url('sd'));
ok(wait_until(sub { $t->stats->{fills} > $fills }),
    'the fill has begun, waiting on the pool');

kill 'TERM', $pid;
close $out;
my ($during) = collect($t, 'sd', 1, @kids);
is($during->{status}, 200, 'the fill that began during the purge answered');
waitpid $purger, 0;
is($? >> 8, 0, 'the purge answered');

for my $v (qw(sd thumb)) {
    $r = $t->request(url($v));
    is($r->{status}, 200, "$v after the purge");
    ok(owner_of($t, $r->{body}, 'acct-k', 'cam-1', 's1.after'),
        "$v after the purge is the new image ($r->{headers}{'x-snapcache'})");
}

done_testing;
