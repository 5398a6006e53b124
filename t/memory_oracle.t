#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The owner oracle through a churning memory tier: 10 accounts x 2
# devices x 5 snapshots, all with the same device and snapshot ids, in
# thumb, sd and hd, JPEG and WebP, through tiers of 4 MB per worker that
# hold a small part of them, so that entries are evicted and their pages
# punched out and written again all the time.  The hd bodies (about
# 100 KB) go out with sendfile() from the tier's memfd, the smaller ones
# from its mapping.  8 concurrent clients, 3000 requests, some of them
# slow readers that keep a response (and its entry) in flight while
# others evict it, some aborted with an RST.  Every body served must
# decode to the owner named in its URL: zero mismatches.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => "snapmark not built" unless -x $snapmark;

my $TOTAL = $ENV{SNAPCACHE_ORACLE_REQUESTS} || 3000;
my $CLIENTS = 8;

my $t = Snapcache::Test->new(workers => 2);
my ($tok, $file) = write_token($t, 'admin');
$t->start_origin(image_size => '1920x1080');
my $d = $t->dir;
$t->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=256m;\n"
        . "    snapcache_memory_cache size=4m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . admin_location($file),
);

my @accounts = map { sprintf 'acct-%02d', $_ } 1 .. 10;
my @devices = map { "cam-$_" } 1 .. 2;
my @snaps = map { "s$_" } 1 .. 5;
my @variants = qw(thumb sd hd);

# the origin's image files first, so that generating them does not count
{
    my @kids;
    for my $c (0 .. 3) {
        my $pid = fork // die;
        if (!$pid) {
            for my $i (0 .. $#accounts) {
                next unless $i % 4 == $c;
                for my $dev (@devices) {
                    for my $s (@snaps) {
                        Snapcache::Test::_origin_image("$d/origin",
                            $snapmark, $accounts[$i], $dev, $s);
                    }
                }
            }
            _exit(0);
        }
        push @kids, $pid;
    }
    waitpid $_, 0 for @kids;
}

sub mem {
    my $m = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
    my %v;
    $v{$1} = $2 while $m =~ /^snapcache_memory_(\S+) (\d+)$/mg;
    return \%v;
}

my @kids;
for my $c (1 .. $CLIENTS) {
    my $pid = fork // die;
    if (!$pid) {
        srand($c * 7919);
        open my $list, '>', "$d/list.$c" or _exit(1);
        open my $st, '>', "$d/status.$c" or _exit(1);
        for my $i (1 .. $TOTAL / $CLIENTS) {
            my $a = $accounts[rand @accounts];
            my $dev = $devices[rand @devices];
            my $s = $snaps[rand @snaps];
            my $roll = rand;
            my $mode = $roll < 0.05 ? 'rst' : $roll < 0.10 ? 'slow' : 'fast';
            my %h;
            $h{Accept} = 'image/webp' if rand() < 0.3;
            my %v = (v => $variants[rand @variants]);
            my $url = $t->sign_url(account => $a, device => $dev,
                snapshot => $s, %v);
            my $r = $t->fetch_as($url, $mode, %h);
            next if $mode eq 'rst';
            print $st(($r ? $r->{status} : 0), "\n");
            next unless $r && $r->{status} == 200;
            my $f = "$d/b.$c.$i";
            open my $fh, '>:raw', $f or next;
            print $fh $r->{body};
            close $fh;
            print $list "$f $a $dev $s\n";
        }
        close $list;
        close $st;
        _exit(0);
    }
    push @kids, $pid;
}
waitpid $_, 0 for @kids;

my (%status, $bodies);
for my $c (1 .. $CLIENTS) {
    open my $st, '<', "$d/status.$c" or next;
    $status{$_}++ for map { chomp; $_ } <$st>;
}
system("cat $d/list.* > $d/list.all");
$bodies = () = do { open my $f, '<', "$d/list.all"; <$f> };

diag(join ', ', map { "$_: $status{$_}" } sort keys %status);
my $non200 = grep { $_ != 200 } map { ($_) x $status{$_} } keys %status;
is($non200, 0, 'every completed request was answered 200');
ok($bodies > $TOTAL * 0.8, "$bodies bodies to check");

my $m = mem();
cmp_ok($m->{'lookups_total{result="hit"}'}, '>', $TOTAL / 15,
    "the tiers served $m->{'lookups_total{result=\"hit\"}'} hits");
cmp_ok($m->{'evictions_total{reason="size"}'}, '>', 100,
    "and evicted $m->{'evictions_total{reason=\"size\"}'} entries for room");
cmp_ok($m->{bytes}, '<=', 2 * 4 * 1024 * 1024, 'within their size');

my $out = `'$snapmark' check-list '$d/list.all' 2>&1`;
my $rc = $? >> 8;
my @bad = grep { !/^ok\b/ && /\S/ && !/^(summary|#)/i } split /\n/, $out;
is($rc, 0, 'snapmark check-list passes');
is(scalar(grep { /mismatch/i } @bad), 0, 'zero owner mismatches');
is(scalar(grep { /undecodable/i } @bad), 0, 'zero undecodable bodies');
diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]) if @bad;

unlike($t->error_log, qr/identity|foreign/i, 'no foreign record was met');

done_testing;
