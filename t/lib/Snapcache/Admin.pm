# SPDX-License-Identifier: BSD-2-Clause
package Snapcache::Admin;

# Helpers for the admin API's tests: token files, the admin location's
# config, requests with a bearer token, the store's records as
# `snapcache inspect` lists them, and a gated origin for purge races.

use strict;
use warnings;

use File::Path qw(make_path);
use JSON::PP;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(raw_request build_dir wait_until);

# wait_until is the harness's, exported here too for the tests that
# always took it from here
use Exporter 'import';
our @EXPORT_OK = qw(write_token admin_location admin_call admin_json
    inspect_records wait_expired start_gated_origin set_phase origin_lines
    fire collect owner_of wait_until);

# A fresh token of 32 random bytes, hex on one line in a 0600 file.
sub write_token {
    my ($t, $name, $bytes) = @_;
    $bytes //= 32;
    open my $r, '<:raw', '/dev/urandom' or die $!;
    my $raw;
    read $r, $raw, $bytes;
    close $r;
    my $hex = unpack 'H*', $raw;
    my $path = $t->dir . "/keys/$name.token";
    open my $f, '>', $path or die $!;
    chmod 0600, $path;
    print $f "$hex\n";
    close $f;
    return ($hex, $path);
}

# The admin location, for server_extra: loopback only, and the tokens.
sub admin_location {
    my (@files) = @_;
    my $tokens = join '', map { "            snapcache_admin_token $_;\n" }
        @files;
    return "        location /_admin/ {\n"
        . "            allow 127.0.0.1;\n"
        . "            deny all;\n"
        . "            snapcache_admin;\n"
        . $tokens
        . "        }\n";
}

# One admin request: method, endpoint, and optionally token, body and
# content type (application/json by default for a body).
sub admin_call {
    my ($port, $method, $endpoint, %o) = @_;
    my %h;
    $h{Authorization} = $o{auth} if defined $o{auth};
    $h{Authorization} = "Bearer $o{token}" if defined $o{token};
    if (defined $o{body}) {
        $h{'Content-Type'} = $o{type} // 'application/json';
    }
    $h{'Content-Type'} = $o{type} if defined $o{type} && !defined $o{body};
    return raw_request($port, "/_admin/$endpoint", method => $method,
        headers => \%h, defined $o{body} ? (body => $o{body}) : ());
}

# The decoded JSON body of a response, or undef.
sub admin_json {
    my ($r) = @_;
    return eval { JSON::PP->new->decode($r->{body}) };
}

# Lines of `snapcache inspect` for records of the store (read-only).
sub inspect_records {
    my ($store, @args) = @_;
    my $cli = build_dir() . '/snapcache';
    my @out = `'$cli' inspect '$store' @args 2>&1`;
    return grep { /^[0-9a-f]{32}\s/ } @out;
}

# Waits until the store holds records of the scope (account, device,
# snapshot: each optional) and every one of them reads as expired, as
# the module reads them: for a test that needs a record past its
# max-age or TTL.  True when they did, within 30 s.
sub wait_expired {
    my ($store, %o) = @_;
    my @scope = map { defined $o{$_} ? ("--$_", $o{$_}) : () }
        qw(account device);
    return wait_until(sub {
        my @r = grep { !defined $o{snapshot} || /^\S+ \S+ \Q$o{snapshot}\E /
            } inspect_records($store, @scope);
        @r && !grep { !/ expired$/ } @r;
    });
}

# ------------------------------------------------------ the gated origin

# An origin on $t's origin port that answers /<acct>/<dev>/<snap> with
# the owner-marked image (640x360, or image_size) of the phase it was
# asked in:
# "before", or "after", whose marker names the snapshot "<snap>.after".
# While <dir>/hold exists, answers of the "before" phase wait; while
# <dir>/fail exists, it answers 500.  Every answer carries max-age=1.
# Its log, <dir>/origin.log, has one line "<phase> <path>" per request.
sub start_gated_origin {
    my ($t, %o) = @_;
    my $d = $t->dir;
    my ($w, $h) = split /x/, $o{image_size} // '640x360';
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
        _gated_serve($d, $c, $w, $h);
        _exit(0);
    }
}

sub _phase {
    my ($d) = @_;
    open my $f, '<', "$d/phase" or return 'before';
    my $p = <$f> // 'before';
    chomp $p;
    return $p;
}

sub set_phase {
    my ($t, $p) = @_;
    my $d = $t->dir;
    open my $f, '>', "$d/phase.tmp" or die $!;
    print $f "$p\n";
    close $f;
    rename "$d/phase.tmp", "$d/phase";
}

sub _gated_image {
    my ($d, $acct, $dev, $snap, $w, $h) = @_;
    my $f = "$d/origin/$acct/$dev/$snap";
    return $f if -s $f;
    make_path("$d/origin/$acct/$dev");
    my $tmp = "$f.$$.jpg";
    system(build_dir() . '/bin/snapmark', 'gen', '--account', $acct,
        '--device', $dev, '--snapshot', $snap, '--width', $w,
        '--height', $h, '-o', $tmp) == 0
        or die "snapmark gen failed\n";
    rename $tmp, $f;
    return $f;
}

sub _gated_serve {
    my ($d, $c, $w, $h) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = sysread $c, $req, 4096, length $req;
        return unless $n;
    }
    my ($path) = $req =~ m{^\S+ (\S+)};
    my ($acct, $dev, $snap) = $path =~ m{^/([^/]+)/([^/]+)/([^/?]+)$};
    return unless defined $snap;
    my $phase = _phase($d);
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

    my $img = _gated_image($d, $acct, $dev,
        $phase eq 'before' ? $snap : "$snap.after", $w, $h);
    open my $f, '<:raw', $img or die;
    local $/;
    my $body = <$f>;
    syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "Cache-Control: max-age=1\r\nConnection: close\r\n\r\n" . $body;
}

# Requests of one phase the gated origin got for a device.
sub origin_lines {
    my ($t, $phase, $dev) = @_;
    open my $f, '<', $t->dir . '/origin.log' or return 0;
    return scalar grep { /^$phase \/[^\/]+\/\Q$dev\E\// } <$f>;
}

# ---------------------------------------------------------------- clients

# One client process per target, started at once; collect() waits for
# them and returns { status, x (X-Snapcache), body } in target order.
sub fire {
    my ($t, $tag, @targets) = @_;
    my $d = $t->dir;
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
    my ($t, $tag, $n, @kids) = @_;
    my $d = $t->dir;
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

# Does an image carry this owner's marker?
sub owner_of {
    my ($t, $body, $acct, $dev, $snap) = @_;
    my $f = $t->dir . "/check.$$.img";
    open my $o, '>:raw', $f or die;
    print $o $body;
    close $o;
    my $snapmark = build_dir() . '/bin/snapmark';
    system("'$snapmark' check '$f' '$acct' '$dev' '$snap' >/dev/null 2>&1");
    my $rc = $? >> 8;
    unlink $f;
    return $rc == 0;
}

1;
