#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A binary upgrade, as Debian's nginx package makes one: USR2 to the
# master starts a new master, with a zone of its own, beside the old
# one; then the old one's workers are retired (WINCH) and it quits.
# Here, with snapcache_cold_start on:
#
# - the new master is not cold: it was no restart, nginx never stopped
#   answering, so records stored before the upgrade are still hits, and
#   snapcache_cold_start_time_seconds is the old master's;
# - a purge taken by the old master's workers while a fill runs in the
#   new master's is not missed: the fill, whose original is from before
#   the purge, is thrown away and fetched again, and the client gets the
#   image from after it (the purge generations are the store's ledger,
#   which both masters map, not either zone);
# - a real restart afterwards is cold, as before.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy qw(copy);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    start_gated_origin set_phase origin_lines fire collect owner_of
    wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new(workers => 1);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');
start_gated_origin($t);
$t->start(
    # the new binary gets only the environment nginx keeps (a
    # sanitizer's runtime must be preloaded in it too)
    main => "thread_pool snapcache threads=2 max_queue=64;\n"
        . "env LD_PRELOAD;\nenv ASAN_OPTIONS;\nenv LSAN_OPTIONS;",
    http => "    snapcache_store $d/store size=32m;\n"
        . "    snapcache_cold_start on;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_lock_timeout 30s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . "        snapcache_ttl_min 300s;\n"
        . admin_location($file),
    origin_extra => "            proxy_read_timeout 30s;\n",
);

sub metric {
    my ($name) = @_;
    my $m = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
    return $m =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

sub cmdline {
    open my $f, '<', "/proc/$_[0]/cmdline" or return '';
    my $c = <$f> // '';
    $c =~ s/\0/ /g;
    return $c;
}

# the workers of a master that take requests (not those shutting down)
sub serving {
    my ($master) = @_;
    return grep { cmdline($_) =~ /^nginx: worker process\s*$/ }
        split ' ', `pgrep -P $master 2>/dev/null`;
}

sub pid_of {
    open my $f, '<', $_[0] or return 0;
    my $p = <$f> // 0;
    chomp $p;
    return $p;
}

sub snap {
    my ($dev, $snap) = @_;
    return $t->request($t->sign_url(account => 'acct-u', device => $dev,
        snapshot => $snap, v => 'thumb'));
}

# records of the second nginx started in are not read after a cold start
my $start = int(time);
sleep 0.01 while time < $start + 1.05;

set_phase($t, 'before');
is(snap('cam-keep', 'r1')->{headers}{'x-snapcache'}, 'MISS', 'r1: a miss');
is(snap('cam-keep', 'r1')->{headers}{'x-snapcache'}, 'HIT', 'then a hit');
my $cold0 = metric('snapcache_cold_start_time_seconds');
my $zone0 = metric('snapcache_zone_start_time_seconds');
ok($cold0 && $cold0 == $zone0, "cold start: since nginx started ($cold0)");

# ----------------------------------------------------- USR2: two masters

my $old = $t->master_pid;
sleep 0.01 while time < $zone0 + 1.05;    # a zone of another second
kill 'USR2', $old;
my $new;
ok(wait_until(sub {
    $new = pid_of("$d/nginx.pid");
    $new && $new != $old && -e "$d/nginx.pid.oldbin" && serving($new) >= 1
        && $t->error_log =~ /\b$new#\d+: .*snapcache|using inherited sockets/
}), "USR2: a new master ($new) and its worker run beside the old ($old)")
    or die "no new master: the rest cannot run\n" . $t->error_log;
ok(wait_until(sub {
    my ($w) = serving($new);
    $w && Snapcache::Test::_maps($w, "$d/store/data.mdb");
}), 'its worker has the store open');

# the old workers go; only the new master's answer
kill 'WINCH', $old;
ok(wait_until(sub { !grep { $_ != $new } split ' ', `pgrep -P $old` }),
    'WINCH: the old workers are gone');
my $zone1 = metric('snapcache_zone_start_time_seconds');
ok($zone1 > $zone0, "the new master's zone is its own ($zone1)");
is(metric('snapcache_cold_start_time_seconds'), $cold0,
    'and it is not cold: records are read since the old master started');
is(snap('cam-keep', 'r1')->{headers}{'x-snapcache'}, 'HIT',
    'r1 stored before the upgrade: still a hit');

# ---------------------- a fill in the new master, a purge in the old one

open my $h, '>', "$d/hold" or die;
close $h;
my @kids = fire($t, 'race', $t->sign_url(account => 'acct-u',
    device => 'cam-race', snapshot => 's1', v => 'thumb'));
ok(wait_until(sub { origin_lines($t, 'before', 'cam-race') >= 1 }),
    "a fill runs in the new master's worker, held at the origin");

# the new master's worker stops taking requests (it finishes the fill);
# the old master starts workers again, which take the purge
kill 'WINCH', $new;
kill 'HUP', $old;
ok(wait_until(sub { serving($old) >= 1 && !serving($new) }),
    'the old master serves again, the new one only finishes its fill');
set_phase($t, 'after');
my $r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-u","device":"cam-race"}');
is($r->{status}, 200, "the old master's worker answered the purge");
unlink "$d/hold";
my ($res) = collect($t, 'race', 1, @kids);
is($res->{status}, 200, 'the fill from before the purge answered 200');
ok(owner_of($t, $res->{body}, 'acct-u', 'cam-race', 's1.after'),
    'with the image from after the purge: it threw its own away');
is(origin_lines($t, 'after', 'cam-race'), 1, 'fetched again after it');
like($t->error_log, qr/a purge came in during the fill/, 'and said why');

# the upgrade finishes: the old master's workers go, then the old master
# (nginx's master quits at once, without its workers, if it has none it
# counts as live: they are retired first), and the new one serves again
kill 'WINCH', $old;
ok(wait_until(sub { !grep { $_ != $new } split ' ', `pgrep -P $old` }),
    'WINCH: the old workers are gone again');
kill 'QUIT', $old;
kill 'HUP', $new;
ok(wait_until(sub { !kill(0, $old) && serving($new) >= 1 }),
    'the old master quit, the new one serves');
$r = snap('cam-race', 's1');
ok($r->{status} == 200
    && owner_of($t, $r->{body}, 'acct-u', 'cam-race', 's1.after'),
    'the purged snapshot is the new image');
is(snap('cam-keep', 'r1')->{headers}{'x-snapcache'}, 'HIT',
    'r1 is still a hit');
is(metric('snapcache_cold_start_time_seconds'), $cold0,
    'still since the first start');

# ------------------------------------------------------ a restart: cold

# nginx stopped, and started again on the same store (on ports of its
# own: the old ones may still be closing)
$t->stop;
sleep 0.01 while time < $zone1 + 1.05;
my $t2 = Snapcache::Test->new(workers => 1);
copy($t->key_file('k1'), $t2->key_file('k1')) or die $!;
$t2->{keys}{k1} = $t->key('k1');
$t2->start_origin(image_size => '640x360');
$t2->start(
    http => "    snapcache_store $d/store size=32m;\n"
        . "    snapcache_cold_start on;\n",
    server_extra => admin_location($file),
);
my $m2 = admin_call($t2->port, 'GET', 'metrics', token => $tok)->{body};
my ($cold2) = $m2 =~ /^snapcache_cold_start_time_seconds (\d+)$/m;
ok($cold2 > $cold0, "a restart is cold: since now ($cold2)");
is($t2->request($t2->sign_url(account => 'acct-u', device => 'cam-keep',
    snapshot => 'r1', v => 'thumb'))->{headers}{'x-snapcache'} // '', 'MISS',
    'r1 from before it is a miss');

done_testing;
