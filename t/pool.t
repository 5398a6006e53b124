#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The thread pool is never waited on: a full queue answers 503 with a log
# line, and a task that overruns snapcache_fill_timeout answers 504 while
# the task, detached, still finishes and stores its result.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new(workers => 1);
$t->start_origin;
my $d = $t->dir;
$t->start(
    main => 'thread_pool tiny threads=1 max_queue=1;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool tiny;\n"
        . "        snapcache_max_fills 2;\n"
        . "        location /slowfill/ {\n"
        . "            snapcache;\n"
        . "            snapcache_fill_timeout 1ms;\n"
        . "        }\n",
);

# warm the origin's files so that fills all reach the pool together
my @ids = map { "q$_" } 1 .. 12;
for my $s (@ids) {
    Snapcache::Test::_origin_image("$d/origin", build_dir() . '/bin/snapmark',
        'acct-p', 'cam-1', $s);
}

my @kids;
for my $i (0 .. $#ids) {
    my $pid = fork // die;
    if (!$pid) {
        my $r = raw_request($t->port, $t->sign_url(account => 'acct-p',
            device => 'cam-1', snapshot => $ids[$i], v => 'full'));
        open my $f, '>', "$d/st.$i" or _exit(1);
        print $f $r->{status};
        close $f;
        _exit(0);
    }
    push @kids, $pid;
}
waitpid $_, 0 for @kids;

my @st = map { open my $f, '<', "$d/st.$_"; scalar <$f> } 0 .. $#ids;
my $n503 = grep { $_ == 503 } @st;
my $n200 = grep { $_ == 200 } @st;
is($n200 + $n503, scalar @ids, 'every request got 200 or 503 ('
    . join(' ', @st) . ')');
ok($n503 >= 1, "a full queue answers 503 ($n503 of " . scalar(@ids) . ')');
ok($n200 >= 1, "and the pool still works ($n200 answered)");
like($t->error_log,
    qr/snapcache: \d+ fills in flight in this worker, "snapcache_max_fills" is reached/,
    'with a log line naming the limit');

# the pool's room (1 thread + 1 queued) is known before the origin fetch:
# a refused fill costs no origin request, and the 503s are counted
my $fetched = $t->origin_count;
ok($fetched <= $n200, "no origin fetch for a refused fill ($fetched "
    . "fetches for $n200 answered)");
is($t->stats->{errors}, $n503, 'each 503 is counted as an error');

# afterwards, every one of them is served
my $bad = grep {
    raw_request($t->port, $t->sign_url(account => 'acct-p',
        device => 'cam-1', snapshot => $_, v => 'full'))->{status} != 200
} @ids;
is($bad, 0, 'once the queue drains, every snapshot is served');

# a task that overruns its timer: 504 now, and the record is still stored
my $url = $t->sign_url(account => 'acct-p', device => 'cam-2',
    snapshot => 'q1', v => 'thumb', prefix => '/slowfill/');
my $stored = $t->stats->{stored};
my $r = raw_request($t->port, $url);
is($r->{status}, 504, 'a fill over snapcache_fill_timeout gets 504');
like($t->error_log, qr/snapcache: fill timed out after 1 ms, answering 504/,
    'and a log line');

# the record is committed on the pool thread before the task's end, in
# the worker, counts it stored
ok(wait_until(sub { $t->stats->{stored} > $stored }),
    'the detached task finished and counts a record stored');
$r = raw_request($t->port, $url);
is($r->{status}, 200, 'the next request is served');
is($r->{headers}{'x-snapcache'}, 'HIT',
    'the detached task still finished and stored its variant');

done_testing;
