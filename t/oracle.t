#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The owner oracle for the identity invariant (docs/architecture.md):
# 20 accounts x 3 devices x 5 snapshots, random variants and formats,
# 8 concurrent clients, 5000 requests, some of them slow readers and some
# aborted with an RST.  Every body that is served must decode to the
# owner named in its URL: zero mismatches.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => "snapmark not built" unless -x $snapmark;

my $TOTAL = $ENV{SNAPCACHE_ORACLE_REQUESTS} || 5000;
my $CLIENTS = 8;

my $t = Snapcache::Test->new(workers => 2);
# small originals keep 5000 requests quick; the markers survive 320 px
$t->start_origin(image_size => '640x360');
my $d = $t->dir;
$t->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=256m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n",
);

my @accounts = map { sprintf 'acct-%02d', $_ } 1 .. 20;
my @devices = map { "cam-$_" } 1 .. 3;
my @snaps = map { "s$_" } 1 .. 5;
my @variants = qw(thumb sd hd full);

# warm the origin's image files so that generation time does not count
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
            $h{'Save-Data'} = 'on' if rand() < 0.1;
            my %v = rand() < 0.8 ? (v => $variants[rand @variants]) : ();
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

my $out = `'$snapmark' check-list '$d/list.all' 2>&1`;
my $rc = $? >> 8;
my @bad = grep { !/^ok\b/ && /\S/ && !/^(summary|#)/i } split /\n/, $out;
is($rc, 0, 'snapmark check-list passes');
is(scalar(grep { /mismatch/i } @bad), 0, 'zero owner mismatches');
is(scalar(grep { /undecodable/i } @bad), 0, 'zero undecodable bodies');
diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]) if @bad;

unlike($t->error_log, qr/identity|foreign/i, 'no foreign record was met');

done_testing;
