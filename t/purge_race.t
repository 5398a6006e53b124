#!/usr/bin/perl

# Purge is final, even for fills that were running when it came in.
#
# Each round sends 30 cold requests for one device (10 snapshots, 3
# variants each, so most wait on a fill) while the origin holds every
# answer.  With all of them in flight, the origin switches to a new
# image for each snapshot (its owner marker names the snapshot with
# ".after") and the device is purged.  Only after the purge has
# answered does the origin let the held answers go, with the old
# images.  Every one of the 30 responses must be the new image: a fill
# that started before the purge never serves its body, even though its
# client asked before the purge.  Repeated over many rounds.
#
# Then the same for a stale copy: an expired record that would stand in
# for a failing origin is never served once a purge of its device began.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path);
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir raw_request);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => 'snapmark not built' unless -x $snapmark;

my $ROUNDS = $ENV{SNAPCACHE_RACE_ROUNDS} || 12;

my $t = Snapcache::Test->new(workers => 2);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');

# ---------------------------------------------------------- the origin

# Answers /<acct>/<dev>/<snap> with the owner-marked image of the phase
# it was asked in ("before", or "after" with ".after" in the marker).
# While $d/hold exists, answers of the "before" phase wait.  While
# $d/fail exists, it answers 500 instead.
sub origin_image {
    my ($acct, $dev, $snap) = @_;
    my $f = "$d/origin/$acct/$dev/$snap";
    return $f if -s $f;
    make_path("$d/origin/$acct/$dev");
    my $tmp = "$f.$$.jpg";
    system($snapmark, 'gen', '--account', $acct, '--device', $dev,
        '--snapshot', $snap, '--width', 640, '--height', 360, '-o', $tmp) == 0
        or die "snapmark gen failed\n";
    rename $tmp, $f;
    return $f;
}

sub phase {
    open my $f, '<', "$d/phase" or return 'before';
    my $p = <$f> // 'before';
    chomp $p;
    return $p;
}

sub set_phase {
    my ($p) = @_;
    open my $f, '>', "$d/phase.tmp" or die $!;
    print $f "$p\n";
    close $f;
    rename "$d/phase.tmp", "$d/phase";
}

sub serve_one {
    my ($c) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = sysread $c, $req, 4096, length $req;
        return unless $n;
    }
    my ($path) = $req =~ m{^\S+ (\S+)};
    my ($acct, $dev, $snap) = $path =~ m{^/([^/]+)/([^/]+)/([^/?]+)$};
    return unless defined $snap;
    my $phase = phase();
    open my $l, '>>', "$d/origin.log" or die;
    flock $l, 2;
    print $l "$phase $path\n";
    close $l;

    sleep 0.01 while $phase eq 'before' && -e "$d/hold";

    if (-e "$d/fail") {
        syswrite $c, "HTTP/1.1 500 Internal Server Error\r\n"
            . "Content-Length: 4\r\nConnection: close\r\n\r\nerr\n";
        return;
    }

    my $img = origin_image($acct, $dev,
        $phase eq 'before' ? $snap : "$snap.after");
    open my $f, '<:raw', $img or die;
    local $/;
    my $body = <$f>;
    syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "Cache-Control: max-age=1\r\nConnection: close\r\n\r\n" . $body;
}

sub start_origin {
    my $listen = Snapcache::Test::take_port_socket($t->origin_port)
        or die "no origin port\n";
    my $pid = fork // die;
    if ($pid) {
        close $listen;
        push @{ $t->{pids} }, $pid;
        return;
    }
    # its own process group, and none of the ports the harness holds
    # for nginx (their sockets are closed here, not in the harness)
    setpgrp(0, 0);
    for my $fd (map { m{/(\d+)$} ? $1 : () } glob '/proc/self/fd/*') {
        next if $fd <= 2 || $fd == fileno $listen;
        POSIX::close($fd) if (readlink("/proc/self/fd/$fd") // '')
            =~ /^socket:/;
    }
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        my $c = $listen->accept or next;
        my $kid = fork;
        if (!defined $kid || $kid) { close $c; next }
        close $listen;
        $SIG{CHLD} = 'DEFAULT';
        serve_one($c);
        _exit(0);
    }
}

sub origin_lines {
    my ($phase, $dev) = @_;
    open my $f, '<', "$d/origin.log" or return 0;
    return scalar grep { /^$phase \/[^\/]+\/$dev\// } <$f>;
}

start_origin();

$t->start(
    main => 'thread_pool snapcache threads=2 max_queue=256;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_lock_timeout 30s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . "        snapcache_ttl_min 1s;\n"
        . admin_location($file),
    origin_extra => "            proxy_read_timeout 30s;\n",
);

# ------------------------------------------------------------ clients

# Starts one client per target; returns their pids and result files.
sub fire {
    my ($tag, @targets) = @_;
    my @kids;
    for my $i (0 .. $#targets) {
        my $pid = fork // die;
        if (!$pid) {
            my $r = eval { raw_request($t->port, $targets[$i],
                timeout => 60) } // { status => 0, headers => {} };
            open my $f, '>:raw', "$d/resp.$tag.$i" or _exit(1);
            print $f join("\n", $r->{status}, $r->{headers}{'x-snapcache'}
                // '', ''), $r->{body};
            close $f;
            _exit(0);
        }
        push @kids, $pid;
    }
    return @kids;
}

sub collect {
    my ($tag, $n, @kids) = @_;
    waitpid $_, 0 for @kids;
    my @out;
    for my $i (0 .. $n - 1) {
        open my $f, '<:raw', "$d/resp.$tag.$i" or do { push @out, {}; next };
        local $/;
        my ($status, $x, $body) = split /\n/, <$f>, 3;
        push @out, { status => $status, x => $x, body => $body };
        unlink "$d/resp.$tag.$i";
    }
    return @out;
}

sub owner_of {
    my ($body, $acct, $dev, $snap) = @_;
    my $f = "$d/check.$$.img";
    open my $o, '>:raw', $f or die;
    print $o $body;
    close $o;
    system("'$snapmark' check '$f' '$acct' '$dev' '$snap' >/dev/null 2>&1");
    my $rc = $? >> 8;
    unlink $f;
    return $rc == 0;
}

sub wait_until {
    my ($what, $cond) = @_;
    my $end = time + 30;
    until ($cond->()) {
        return 0 if time > $end;
        sleep 0.02;
    }
    return 1;
}

# -------------------------------------------------------------- rounds

my @variants = qw(thumb sd hd);
my ($served_old, $bad_status, $purged_fills) = (0, 0, 0);

for my $round (1 .. $ROUNDS) {
    my $dev = "cam-r$round";
    my @req;
    for my $s (1 .. 10) {
        push @req, [ "s$s", $_ ] for @variants;
    }

    set_phase('before');
    open my $h, '>', "$d/hold" or die;
    close $h;

    my $misses = $t->stats->{misses};
    my @kids = fire($round, map {
        $t->sign_url(account => 'acct-race', device => $dev,
            snapshot => $_->[0], v => $_->[1])
    } @req);

    ok(wait_until('fills at the origin',
            sub { origin_lines('before', $dev) >= 10 }),
        "round $round: ten fills are at the origin");
    ok(wait_until('all requests in',
            sub { $t->stats->{misses} - $misses >= 30 }),
        "round $round: all 30 requests are in, as misses");

    set_phase('after');
    my $r = admin_call($t->port, 'POST', 'purge', token => $tok,
        body => qq({"account":"acct-race","device":"$dev"}));
    is($r->{status}, 200, "round $round: the purge answered");

    # only now do the fills from before the purge get their originals
    unlink "$d/hold";

    my @res = collect($round, scalar @req, @kids);
    my ($old, $bad) = (0, 0);
    for my $i (0 .. $#req) {
        my $x = $res[$i];
        if (($x->{status} // 0) != 200) { $bad++; next }
        $old++ unless owner_of($x->{body}, 'acct-race', $dev,
            "$req[$i][0].after");
    }
    is($bad, 0, "round $round: every request got 200");
    is($old, 0, "round $round: every body is the image from after the purge");
    $served_old += $old;
    $bad_status += $bad;
}

my $m = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
my ($thrown) = $m =~ /^snapcache_fills_total\{result="purged"\} (\d+)/m;
cmp_ok($thrown // 0, '>=', 10 * $ROUNDS,
    "the fills from before each purge were thrown away ($thrown)");

# ------------------------------------------------------------ stale copy

# an expired record of the old image, and an origin that fails: the
# stale copy may stand in, but not once a purge of the device began
my $stale = $t->sign_url(account => 'acct-race', device => 'cam-stale',
    snapshot => 'st1', v => 'thumb');
set_phase('before');
is($t->request($stale)->{status}, 200, 'stale: the record is filled');
sleep 2.2;    # past its max-age=1

open my $fl, '>', "$d/fail" or die;
close $fl;
my $r = $t->request($stale);
is($r->{headers}{'x-snapcache'}, 'STALE',
    'stale: an expired copy stands in for a failing origin');

open $fl, '>', "$d/hold" or die;
close $fl;
my @kids = fire('stale', $stale);
ok(wait_until('stale fill at the origin',
        sub { origin_lines('before', 'cam-stale') >= 3 }),
    'stale: the next fill is at the origin');
set_phase('after');
$r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-race","device":"cam-stale"}');
is($r->{status}, 200, 'stale: the purge answered');
unlink "$d/hold";
my ($res) = collect('stale', 1, @kids);
is($res->{status}, 502, 'stale: the origin failed and no stale copy stood in');
unlike($res->{x} // '', qr/STALE/, 'stale: not STALE');
unlink "$d/fail";

done_testing;
