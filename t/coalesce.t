#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Coalescing: 50 concurrent cold requests for one key, spread over two
# workers, cost one origin request and one transcode, and all 50 bodies
# are the same image of the right owner.  A waiter whose fill failed gets
# the same error.  A client that disconnects mid-fill does not cancel the
# fill for the others.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request wait_until);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => "snapmark not built" unless -x $snapmark;

my $t = Snapcache::Test->new(workers => 2);
$t->start_origin;
my $d = $t->dir;
$t->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_lock_timeout 20s;\n"
        . "        snapcache_fill_timeout 20s;\n",
);

# Fires $n requests at once from $n processes; returns their responses.
sub burst {
    my ($n, $target, %o) = @_;
    my @kids;
    my $go = "$d/go.$$." . int(rand(1e9));
    for my $i (1 .. $n) {
        my $pid = fork // die;
        if (!$pid) {
            select(undef, undef, undef, 0.005) until -e $go;
            my $r = eval { raw_request($t->port, $target, %o) };
            open my $f, '>:raw', "$d/resp.$i" or _exit(1);
            print $f join("\n", $r->{status} // 0,
                $r->{headers}{'x-snapcache'} // '', ''), $r->{body} // '';
            close $f;
            _exit(0);
        }
        push @kids, $pid;
    }
    open my $g, '>', $go or die;
    close $g;
    waitpid $_, 0 for @kids;
    my @out;
    for my $i (1 .. $n) {
        open my $f, '<:raw', "$d/resp.$i" or next;
        local $/;
        my ($status, $xs, $body) = split /\n/, <$f>, 3;
        push @out, { status => $status, x => $xs, body => $body };
        unlink "$d/resp.$i";
    }
    return @out;
}

# a slow origin widens the window in which requests pile up
my %id = (account => 'acct-c', device => 'cam-1', snapshot => 'slow-1');
my $url = $t->sign_url(%id, v => 'thumb');

my $before = $t->stats;
my @r = burst(50, $url);
is(scalar @r, 50, '50 responses');
is(scalar(grep { $_->{status} == 200 } @r), 50, 'all 200');
is($t->origin_count, 1, 'exactly one origin request');
my $after = $t->stats;
is($after->{transcodes} - $before->{transcodes}, 1, 'exactly one transcode');
ok($after->{coalesced} - $before->{coalesced} >= 1,
    'some requests waited on the fill (' .
    ($after->{coalesced} - $before->{coalesced}) . ')');
my %bodies = map { $_->{body} => 1 } @r;
is(scalar keys %bodies, 1, 'all 50 bodies are equal');

my $f = "$d/body.jpg";
open my $fh, '>:raw', $f or die;
print $fh $r[0]{body};
close $fh;
my $out = `'$snapmark' check '$f' acct-c cam-1 slow-1`;
is($? >> 8, 0, 'and show their owner') or diag $out;

my @pids = $t->worker_pids;
is(scalar @pids, 2, 'two workers served them');

# ------------------------------------------------------------ failed fill

# the origin takes a second to fail, so all 20 requests meet one fill
my $furl = $t->sign_url(%id, snapshot => 'slowe500-x', v => 'thumb');
my $n0 = $t->origin_count;
my @fr = burst(20, $furl);
is(scalar(grep { $_->{status} == 502 } @fr), 20,
    'waiters of a failed fill get the same 502');
is($t->origin_count - $n0, 1, 'from one origin request');
my @fr2 = burst(1, $furl);
is($t->origin_count - $n0, 2, 'and the failure was not cached');

# ------------------------------------------------------------ disconnect

# the filler's client goes away; the others still get the image
my $durl = $t->sign_url(%id, snapshot => 'slow-2', v => 'thumb');
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port) or die;
print $s "GET $durl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
ok(wait_until(sub { grep { m{/slow-2 } } $t->origin_requests }),
    'the filler\'s fill is at the origin');
close $s;
my @dr = burst(5, $durl);
is(scalar(grep { $_->{status} == 200 } @dr), 5,
    'a disconnecting client does not fail the others');
my $r = $t->request($durl);
is($r->{headers}{'x-snapcache'}, 'HIT', 'and the fill was stored');

done_testing;
