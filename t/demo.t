#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# `make run`'s demo works as the README says: it prints signed URLs, the
# first request for one is a MISS from the demo origin, the second a HIT,
# and the image shows the owner its URL names.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(setsid);
use IO::Socket::INET;
use Snapcache::Test qw(build_dir free_port raw_request wait_until);

my $root = "$FindBin::Bin/..";
my $port = free_port();
my $oport = free_port();
my $log = tempdir(CLEANUP => 1) . '/demo.out';

# a cold store, so that the first request is a miss (the demo's keys and
# images are kept)
system('rm', '-rf', "$root/var/store");

# the demo's error log, from here on, is checked like a test instance's
my $log_watch = Snapcache::Test->watch_log("$root/var/log/error.log");

my $pid = fork // die;
if (!$pid) {
    setsid();
    open STDOUT, '>', $log or die;
    open STDERR, '>&', \*STDOUT;
    $ENV{PORT} = $port;
    $ENV{ORIGIN_PORT} = $oport;
    exec "$root/tools/run-demo" or die;
}

my $out = '';
ok(wait_until(sub {
        $out = do { local $/; my $fh; open($fh, "<", $log) ? <$fh> // "" : "" };
        $out =~ /Ctrl-C stops/ && IO::Socket::INET->new("127.0.0.1:$port");
    }, 60), 'the demo is up: it says so and its port answers')
    or diag $out;

my @urls = $out =~ m{^(http://127\.0\.0\.1:$port/snap/\S+)$}mg;
ok(@urls >= 18, 'the demo prints a URL for each of 18 snapshots ('
    . scalar(@urls) . ')');

my ($url) = grep { m{/acct-2/cam-back/latest\?} } @urls;
ok($url, 'including acct-2/cam-back/latest');
(my $target = $url // '') =~ s{^http://[^/]+}{};

my $r1 = raw_request($port, $target);
is($r1->{status}, 200, 'the first request is answered');
is($r1->{headers}{'x-snapcache'}, 'MISS', 'as a MISS');
my $r2 = raw_request($port, $target);
is($r2->{headers}{'x-snapcache'}, 'HIT', 'the second is a HIT');
ok($r1->{body} eq $r2->{body}, 'with the same bytes');

my $f = tempdir(CLEANUP => 1) . '/img';
open my $fh, '>:raw', $f or die;
print $fh $r2->{body};
close $fh;
my $snapmark = build_dir() . '/bin/snapmark';
my $check = `'$snapmark' check '$f' acct-2 cam-back latest`;
is($? >> 8, 0, 'the image is acct-2/cam-back/latest') or diag $check;

(my $tampered = $target) =~ s/acct-2/acct-1/;
is(raw_request($port, $tampered)->{status}, 403,
    'the same URL for another account is refused');

my ($grant) = $out =~ m{^(http://\S+scope=device\S*)$}m;
(my $g = $grant // '') =~ s{^http://[^/]+}{};
$g =~ s{/latest\?}{/2026-11-24T09-00?};
is(raw_request($port, $g)->{status}, 200,
    'the printed device grant works for another snapshot');

kill 'INT', -$pid;
waitpid $pid, 0;
ok(!IO::Socket::INET->new("127.0.0.1:$port"), 'Ctrl-C stops the demo');

done_testing;
