#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Nothing read from the store before a purge's deletes finished is served
# once the purge has answered.  A purge moves the generations at once and
# deletes a moment later, on the thread pool; a request that reads a
# record in between reads it under the new generations.  Here the
# deletes are held back (LMDB's writer lock held by another process)
# while such requests read what the purge is about to remove:
#
#  - an expired record, kept as the stale fallback of a fill whose origin
#    then fails once the purge has answered;
#  - the kept original, read by a fill that overran the lock timeout and
#    does not store, whose transcode queues behind the purge's deletes.
#
# Neither may be served once the deletes are committed: the stale copy
# gives way to the origin's error, and the fill starts again from the
# origin's new image.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    start_gated_origin set_phase origin_lines fire collect owner_of
    wait_until wait_expired);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

sub touch { open my $f, '>', $_[0] or die $!; close $f }

# The store's writer lock, held until release() of what this returns.
sub hold_writer {
    my ($t) = @_;
    my $pid = open(my $out, '-|', build_dir() . '/bin/snapdamage',
        $t->dir . '/store', 'hold') or die;
    my $said = <$out> // '';
    return { pid => $pid, fh => $out, held => $said eq "held\n" };
}

sub release { kill 'TERM', $_[0]{pid}; close $_[0]{fh} }

# A purge of the device, in a child: its exit code says 200 or not.
sub purge_in_child {
    my ($t, $tok, $acct, $dev) = @_;
    my $pid = fork // die;
    if (!$pid) {
        my $p = admin_call($t->port, 'POST', 'purge', token => $tok,
            body => qq({"account":"$acct","device":"$dev"}));
        _exit($p->{status} == 200 ? 0 : 1);
    }
    return $pid;
}

sub purge_begun {
    my ($t, $tok, $n) = @_;
    return wait_until(sub {
        my $s = admin_json(admin_call($t->port, 'GET', 'stats',
            token => $tok));
        $s && $s->{purge}{generation} >= $n;
    });
}

# ------------------------------------------------------------ stale

{
    my $t = Snapcache::Test->new(workers => 1);
    my $d = $t->dir;
    my ($tok, $file) = write_token($t, 'admin');
    start_gated_origin($t);
    set_phase($t, 'before');
    $t->start(
        main => 'thread_pool snapcache threads=2 max_queue=16;',
        http => "    snapcache_store $d/store size=32m;\n",
        server_extra => "        snapcache_thread_pool snapcache;\n"
            . "        snapcache_fill_timeout 30s;\n"
            . admin_location($file),
    );
    my $url = $t->sign_url(account => 'acct-s', device => 'cam-1',
        snapshot => 's1', v => 'thumb');

    my $r = $t->request($url);
    is($r->{headers}{'x-snapcache'}, 'MISS', 'stale: the record is filled');
    # the origin says max-age=1: the records read as expired in a second
    ok(wait_expired("$d/store", account => 'acct-s', device => 'cam-1'),
        'stale: the records expired');

    my $w = hold_writer($t);
    ok($w->{held}, 'stale: another process holds the writer lock');
    my $purger = purge_in_child($t, $tok, 'acct-s', 'cam-1');
    ok(purge_begun($t, $tok, 1),
        'stale: the purge began; its deletes wait for the lock');

    # the next fill reads the expired record as its fallback, then waits
    # at the origin, which will fail
    touch("$d/hold");
    touch("$d/fail");
    my @kids = fire($t, 'stale', $url);
    ok(wait_until(sub { origin_lines($t, 'before', 'cam-1') >= 2 }),
        'stale: a fill with the old record in hand is at the origin');

    release($w);
    waitpid $purger, 0;
    is($? >> 8, 0, 'stale: the purge answered 200');

    unlink "$d/hold";
    my ($res) = collect($t, 'stale', 1, @kids);
    is($res->{status}, 502,
        'stale: the origin failed, and the purged copy did not stand in');
    unlike($res->{x} // '', qr/STALE/, 'stale: no STALE answer');
    ok(!($res->{status} == 200
            && owner_of($t, $res->{body}, 'acct-s', 'cam-1', 's1')),
        'stale: the purged image was not served');

    # the purge removed the record: there is no fallback any more
    $r = $t->request($url);
    is($r->{status}, 502, 'stale: the next request has no stale copy either');
    unlink "$d/fail";
}

# ------------------------------------------------------------ no store

{
    my $t = Snapcache::Test->new(workers => 1);
    my $d = $t->dir;
    my ($tok, $file) = write_token($t, 'admin');
    start_gated_origin($t);
    set_phase($t, 'before');
    # one pool thread: the purge's deletes and the fills queue on it
    $t->start(
        main => 'thread_pool snapcache threads=1 max_queue=16;',
        http => "    snapcache_store $d/store size=64m;\n",
        server_extra => "        snapcache_thread_pool snapcache;\n"
            . "        snapcache_ttl_min 60s;\n"
            . "        snapcache_lock_timeout 100ms;\n"
            . "        snapcache_fill_timeout 60s;\n"
            . "        snapcache_fill_below off;\n"
            . admin_location($file),
    );
    sub nurl {
        my ($t, $v) = @_;
        return $t->sign_url(account => 'acct-n', device => 'cam-1',
            snapshot => 's1', v => $v);
    }

    my $r = $t->request(nurl($t, 'thumb'));
    is($r->{headers}{'x-snapcache'}, 'MISS',
        'no store: thumb filled, the original kept');

    my $w = hold_writer($t);
    ok($w->{held}, 'no store: another process holds the writer lock');

    # a fill of sd from the kept original: its put waits for the writer
    # lock, holding the snapshot's fill lock and the pool's one thread
    my @first = fire($t, 'first', nurl($t, 'sd'));
    ok(wait_until(sub { $t->stats->{fills} >= 2 }),
        'no store: a fill of sd began');

    my $purger = purge_in_child($t, $tok, 'acct-n', 'cam-1');
    ok(purge_begun($t, $tok, 1),
        'no store: the purge began; its deletes wait behind the fill');

    # hd waits on the fill lock, overruns the lock timeout, and fills
    # without storing, from the kept original it reads now, between the
    # purge's bump and its deletes; its transcode queues behind both
    set_phase($t, 'after');
    my @second = fire($t, 'second', nurl($t, 'hd'));
    ok(wait_until(sub { $t->stats->{lock_timeouts} >= 1 }),
        'no store: hd overran the lock timeout and fills without storing');

    release($w);
    waitpid $purger, 0;
    is($? >> 8, 0, 'no store: the purge answered 200');

    my ($a) = collect($t, 'first', 1, @first);
    my ($b) = collect($t, 'second', 1, @second);
    for ([sd => $a], [hd => $b]) {
        my ($v, $res) = @$_;
        is($res->{status}, 200, "no store: $v answered");
        ok(owner_of($t, $res->{body}, 'acct-n', 'cam-1', 's1.after'),
            "no store: $v is the image from after the purge");
    }
}

done_testing;
