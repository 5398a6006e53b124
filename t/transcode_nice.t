#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# snapcache_transcode_nice: after a fill, the thread-pool thread that ran
# it and every thread libvips runs a pipeline on (those the event loop
# started when the encoders were probed at start too, which do most of a
# transcode's work) have the nice value asked for, or the SCHED_IDLE
# policy for "idle", and nice 10 when the directive is not there, while
# the worker's event loop keeps nice 0 and SCHED_OTHER; and the
# directive's bad values stop nginx -t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test;

my $SCHED_OTHER = 0;
my $SCHED_IDLE = 5;

# (policy, nice) of every thread of a process, by thread id
sub threads_of {
    my ($pid) = @_;
    my %t;
    for my $dir (glob "/proc/$pid/task/*") {
        my ($tid) = $dir =~ m{/(\d+)$};
        open my $f, '<', "$dir/stat" or next;
        my $stat = <$f>;
        # fields after the command, which may hold spaces
        my @f = split ' ', substr($stat, rindex($stat, ')') + 2);
        # field 19 of stat is nice, 41 is policy (1-based, with pid, comm)
        $t{$tid} = { nice => $f[16], policy => $f[38],
            name => substr($stat, index($stat, '(') + 1,
                rindex($stat, ')') - index($stat, '(') - 1) };
    }
    return \%t;
}

for my $case ([ '19', $SCHED_OTHER, 19 ], [ 'idle', $SCHED_IDLE, 0 ],
    [ undef, $SCHED_OTHER, 10 ])
{
    my ($set, $policy, $nice) = @$case;
    my $value = $set // 'default';
    my $t = Snapcache::Test->new(workers => 1);
    $t->start_origin(image_size => '640x360');
    my $d = $t->dir;
    $t->start(
        main => 'thread_pool snapcache threads=1;',
        http => "    snapcache_store $d/store size=16m;\n",
        server_extra => "        snapcache_thread_pool snapcache;\n"
            . (defined $set ? "        snapcache_transcode_nice $set;\n"
                : ''),
    );

    my $r = $t->request($t->sign_url(account => 'acct-n', device => 'cam-1',
        snapshot => "s-$value", v => 'sd'));
    is($r->{status}, 200, "nice $value: a fill");

    my ($worker) = grep { Snapcache::Test::_title($_) eq
        'nginx: worker process' } $t->worker_pids;
    my $threads = threads_of($worker);
    my $main = $threads->{$worker};
    is($main->{policy}, $SCHED_OTHER, "nice $value: the event loop's policy");
    is($main->{nice}, 0, "nice $value: the event loop's nice value");

    my @set = grep { $_ != $worker && $threads->{$_}{policy} == $policy
        && $threads->{$_}{nice} == $nice } keys %$threads;
    ok(@set >= 1, "nice $value: the pool's thread took it ("
        . scalar(@set) . " threads)");

    my @vips = grep { $threads->{$_}{name} eq 'libvips worker' }
        keys %$threads;
    ok(@vips >= 1, "nice $value: libvips has threads of its own ("
        . scalar(@vips) . ")");
    my @wrong = grep { $threads->{$_}{policy} != $policy
        || $threads->{$_}{nice} != $nice } @vips;
    is(scalar(@wrong), 0, "nice $value: every libvips thread took it")
        or diag explain { map { $_ => $threads->{$_} } @wrong };
    $t->teardown;
}

my $c = Snapcache::Test->new;
for my $bad ('20', '-1', 'low', '') {
    $c->write_config(server_extra =>
        "        snapcache_transcode_nice \"$bad\";\n");
    my ($rc, $out) = $c->test_config;
    isnt($rc, 0, "snapcache_transcode_nice \"$bad\": nginx -t fails");
    like($out, qr/from 0 to 19, or "idle"/, "\"$bad\": says why");
}

done_testing;
