#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# `make run-cluster` works as docs/cluster.md says: three nodes and a
# balancer start, each printed URL is answered with its owner's image by
# the node it names and through the balancer, the original was fetched
# from the camera cloud once, the printed purge command purges every
# node, and Ctrl-C stops everything.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(setsid);
use IO::Socket::INET;
use Time::HiRes qw(time);
use Snapcache::Test qw(build_dir raw_request wait_until);

my $root = "$FindBin::Bin/..";
my @ports = (8180 .. 8183, 8189, 8191 .. 8193);

plan skip_all => 'the stream module is not installed (libnginx-mod-stream)'
    unless -f '/usr/lib/nginx/modules/ngx_stream_module.so';
plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';
for my $p (@ports) {
    plan skip_all => "port $p is in use"
        if IO::Socket::INET->new("127.0.0.1:$p");
}

my $tmp = tempdir(CLEANUP => 1);
my $log = "$tmp/run.out";

# cold stores, so that the first requests are misses
system('rm', '-rf', map { "$root/var/cluster/$_" } qw(n1 n2 n3 stock));

my $pid = fork // die;
if (!$pid) {
    setsid();
    open STDOUT, '>', $log or die;
    open STDERR, '>&', \*STDOUT;
    exec "$root/tools/run-cluster" or die;
}

my $out = '';
ok(wait_until(sub {
        $out = do { local $/; my $fh; open($fh, '<', $log) ? <$fh> // '' : '' };
        $out =~ /Ctrl-C stops/
            && !grep { !IO::Socket::INET->new("127.0.0.1:$_") } @ports;
    }, 60), 'the cluster is up: it says so and every port answers')
    or diag $out;

# a node started cold reads nothing stored in the second it started,
# which was before its ports answered: wait until the clock is past it
my $next = int(time) + 1;
select(undef, undef, undef, 0.05) while time < $next;

my @watch = map {
    Snapcache::Test->watch_log("$root/var/cluster/$_/error.log")
} qw(n1 n2 n3 stock);

my @urls = $out =~ m{^(http://127\.0\.0\.1:\d+/snap/\S+)$}mg;
is(scalar @urls, 8, 'it prints six URLs, one through the balancer, and a '
    . 'device grant') or diag $out;

my $snapmark = build_dir() . '/bin/snapmark';
for my $url (@urls) {
    my ($port, $target, $a, $d, $s) =
        $url =~ m{^http://127\.0\.0\.1:(\d+)((?:/[^/?]+){1}/([^/]+)/([^/]+)/([^/?]+)\?.*)$};
    my $r = raw_request($port, $target);
    my $f = "$tmp/img";
    open my $fh, '>:raw', $f or die;
    print $fh $r->{body};
    close $fh;
    system("'$snapmark' check '$f' '$a' '$d' '$s' >/dev/null 2>&1");
    ok($r->{status} == 200 && $? == 0, "port $port: $a/$d/$s, its image")
        or diag "status $r->{status}: $r->{raw}";
}

open my $cl, '<', "$root/var/cluster/stock/cloud.log" or die;
my @fetched = map { m{"GET (\S+)} ? $1 : () } <$cl>;
my %n;
$n{$_}++ for @fetched;
is(scalar(grep { $n{$_} > 1 } keys %n), 0,
    'each original fetched from the cloud once: ' . scalar @fetched);

my ($cmd) = $out =~ m{^purge a device on every node:\n((?:.*\\\n)*.*)$}m;
$cmd =~ s/\\\n//g;
my $purged = `cd '$root' && $cmd 2>&1`;
is($? >> 8, 0, 'the printed purge command works') or diag $purged;
is(scalar(() = $purged =~ /^\S+ ok records=\d+/mg), 3, 'on all three nodes');

my ($hcmd) = $out =~ m{^ask every node's health:\n((?:.*\\\n)*.*)$}m;
ok($hcmd, 'it prints a health command');
$hcmd =~ s/\\\n//g;
my $health = `cd '$root' && $hcmd 2>&1`;
is($? >> 8, 0, 'the printed health command works') or diag $health;
is(scalar(() = $health =~ /^\S+ ok$/mg), 3, 'every node is ok');

kill 'INT', -$pid;
waitpid $pid, 0;
ok(!(grep { IO::Socket::INET->new("127.0.0.1:$_") } @ports),
    'Ctrl-C stops every nginx');

done_testing;
