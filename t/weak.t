#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Adaptation on a shaped link, end to end, as a display sees it.
#
# Two network namespaces joined by a veth pair, with tbf on the server
# side: nginx runs in one, a display client in the other.  The display
# refreshes a camera every 2 s, a new snapshot each time and no client
# hints; the snapshots are a real photograph carrying its owner marker.
#
#   256 kbit/s   every image within the 1 s budget from the 3rd refresh on,
#                and at most one rung change once it stepped down
#   2 Mbit/s     back on hd within 3 refreshes, and staying there
#   256 kbit/s   within the budget again from the 2nd refresh after the drop
#
# and every image decodes to its owner.  Once with a new connection per
# refresh, once with keepalive; there, the connection is kept throughout:
# a held-down response is paced instead, so that the window a kept
# connection grew does not send it as a burst the shaper drops.  Needs
# root for ip netns; skips with the reason otherwise.
#
# The test re-runs itself inside the server's namespace (--inner), so
# that the harness, the fake origin and nginx all live there; this outer
# run only makes the namespaces and always removes them.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Snapcache::Netns;

my $SRV_IP = Snapcache::Netns::SRV_IP;
my $PHOTO_DIR = '/usr/share/backgrounds/mate/nature';
my $PHOTO = "$PHOTO_DIR/GreenMeadow.jpg";

inner(Snapcache::Netns->inner(kbit => 256, needs => [[-r $PHOTO,
    "no photograph at $PHOTO (make deps installs mate-backgrounds)"]]));
exit 0;


# ------------------------------------------------------------- inner

sub inner {
    my ($cli_ns, $veth) = @_;

    require Test::More;
    Test::More->import;
    require Snapcache::Test;
    require IPC::Open2;
    require Time::HiRes;

    my $t = Snapcache::Test->new(workers => 2);
    my $d = $t->dir;
    my $snapmark = Snapcache::Test::build_dir() . '/bin/snapmark';
    my @modes = qw(close keepalive);
    my @phases = ([256, 10], [2000, 5], [256, 5]);

    # one camera per mode, a new snapshot for every refresh
    for my $mode (@modes) {
        my $dir = "$d/origin/acct-$mode/cam";
        system('mkdir', '-p', $dir);
        my $n = 0;
        $n += $_->[1] for @phases;
        for my $i (1 .. $n) {
            system($snapmark, 'gen', '--account', "acct-$mode", '--device',
                'cam', '--snapshot', "s$i", '--photo', $PHOTO, '-o',
                "$dir/s$i") == 0 or die "snapmark gen failed\n";
        }
    }

    $t->start_origin;
    my $port = $t->port;
    my $keys = join '', map {
        "        snapcache_sign_key $_ $d/keys/$_.key;\n"
    } 'k1';

    $t->start(
        http => <<"EOF",
    log_format adapt '\$snapcache_status \$snapcache_variant '
                     '\$snapcache_adapt_reason \$snapcache_link_kbps '
                     '\$snapcache_link_rtt \$request_time';
    snapcache_store $d/store size=64m;
EOF
        main => "thread_pool snapcache threads=2;\n"
            . ($ENV{SNAPCACHE_WEAK_DEBUG} ? "error_log $d/logs/debug.log debug;\n" : ''),
        servers => <<"EOF",
    server {
        listen 127.0.0.1:$port;
        listen $SRV_IP:$port;
        access_log $d/logs/adapt.log adapt;
$keys
        snapcache_origin /_origin;
        snapcache_thread_pool snapcache;

        location /snap/ {
            snapcache;
        }

        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:@{[ $t->origin_port ]}/;
        }
    }
EOF
    );

    my $client = "$d/display.pl";
    open my $f, '>', $client or die $!;
    print $f display_client();
    close $f;

    for my $mode (@modes) {
        run_display($t, $mode, $cli_ns, $veth, $client, \@phases);
    }

    Test::More::done_testing();
}


sub run_display {
    my ($t, $mode, $cli_ns, $veth, $client, $phases) = @_;
    my $d = $t->dir;

    my $pid = IPC::Open2::open2(my $out, my $in, 'ip', 'netns', 'exec',
        $cli_ns, $^X, $client, $SRV_IP, $t->port, $mode);

    my (@got, @list);
    my $i = 0;
    my $next = Time::HiRes::time();

    for my $p (0 .. $#$phases) {
        my ($kbit, $count) = @{ $phases->[$p] };
        Snapcache::Netns::set_rate($veth, $kbit);

        for my $k (1 .. $count) {
            $i++;
            my $now = Time::HiRes::time();
            Time::HiRes::sleep($next - $now) if $next > $now;
            $next = Time::HiRes::time() + 2;

            my $url = $t->sign_url(account => "acct-$mode", device => 'cam',
                snapshot => "s$i");
            my $file = "$d/got-$mode-$i";
            print $in "$url $file\n";
            my $line = <$out> // "0 - - 0 0 -\n";
            chomp $line;
            my ($status, $variant, $reason, $ms, $bytes, $conn)
                = split ' ', $line;
            push @got, { phase => $p, k => $k, status => $status,
                variant => $variant, reason => $reason, ms => $ms,
                bytes => $bytes, kbit => $kbit, conn => $conn };
            push @list, "$file acct-$mode cam s$i" if $status == 200;
            Test::More::diag(sprintf '%-9s %4d kbit/s  refresh %d.%d  %s  '
                . '%-5s %-8s %5d ms  %6d bytes  %s', $mode, $kbit, $p + 1,
                $k, $status, $variant, $reason, $ms, $bytes, $conn);
        }
    }

    close $in;
    waitpid $pid, 0;

    Test::More::is(scalar(grep { $_->{status} == 200 } @got), scalar @got,
        "$mode: every refresh answered 200");

    my @a = grep { $_->{phase} == 0 && $_->{k} >= 3 } @got;
    Test::More::is(scalar(grep { $_->{ms} > 1000 } @a), 0,
        "$mode: at 256 kbit/s every image within 1 s from the 3rd refresh "
        . 'on');
    Test::More::is($got[0]{variant}, 'hd',
        "$mode: the first refresh, nothing known, gets the ceiling");
    Test::More::ok((grep { $_->{variant} ne 'hd' } @a) == @a,
        "$mode: at 256 kbit/s the display is below hd");

    my @b = grep { $_->{phase} == 1 } @got;
    my ($first) = grep { $b[$_]{variant} eq 'hd' } 0 .. $#b;
    Test::More::ok(defined $first && $first < 3
        && !grep({ $_->{variant} ne 'hd' } @b[$first .. $#b]),
        "$mode: at 2 Mbit/s back on hd within 3 refreshes ("
        . (defined $first ? 'refresh ' . ($first + 1) : 'never')
        . ') and staying');
    Test::More::is($b[-1]{reason}, 'ceiling',
        "$mode: at 2 Mbit/s the reason is ceiling");

    my @c = grep { $_->{phase} == 2 && $_->{k} >= 2 } @got;
    Test::More::is(scalar(grep { $_->{ms} > 1000 } @c), 0,
        "$mode: back at 256 kbit/s, within 1 s from the 2nd refresh");
    Test::More::ok((grep { $_->{reason} =~ /^(?:link|hold)$/ } @c) == @c,
        "$mode: back at 256 kbit/s the reason is link (or hold)");

    # on a steady link the rung stays put: the first refresh knows
    # nothing, the second steps down, then at most one change in the 8
    # after that (the first phase is 10 refreshes)
    my @steady = grep { $_->{phase} == 0 && $_->{k} >= 2 } @got;
    my $changes = grep { $steady[$_]{variant} ne $steady[$_ - 1]{variant} }
        1 .. $#steady;
    Test::More::ok($changes <= 1,
        "$mode: at a steady 256 kbit/s at most one rung change in "
        . (@steady - 1) . " refreshes ($changes)");

    if ($mode eq 'keepalive') {
        # held down, a response is paced, not closed: the display keeps
        # its connection on every link
        Test::More::ok(!grep({ $_->{conn} ne 'keep' } @got),
            'keepalive: every response kept its connection ('
            . scalar(@got) . ')');
    }

    open my $lf, '>', "$d/list-$mode" or die $!;
    print $lf "$_\n" for @list;
    close $lf;
    my $snapmark = Snapcache::Test::build_dir() . '/bin/snapmark';
    my $check = `$snapmark check-list $d/list-$mode`;
    Test::More::is($?, 0, "$mode: every image decodes to its owner")
        or Test::More::diag($check);
    Test::More::like($check, qr/summary: (\d+) checked, \1 ok/,
        "$mode: all " . scalar(@list) . ' checked');
}


# The display: one line "URL FILE" per refresh on stdin, one line
# "status variant reason ms bytes close|keep" back; the time runs from
# the connect (a new connection per refresh, or after the server closed
# one) or from the request (keepalive) to the last byte.
sub display_client {
    return <<'EOF';
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time);

my ($host, $port, $mode) = @ARGV;
my $keep = $mode eq 'keepalive';
my $s;
$| = 1;

while (my $line = <STDIN>) {
    my ($url, $file) = split ' ', $line;
    my $t0 = time;
    if (!$s || !$keep) {
        $s = IO::Socket::INET->new(PeerAddr => "$host:$port", Timeout => 30)
            or do { print "0 - - 0 0\n"; next };
    }
    syswrite $s, "GET $url HTTP/1.1\r\nHost: display\r\nConnection: "
        . ($keep ? 'keep-alive' : 'close') . "\r\n\r\n";
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        my $n = sysread $s, $buf, 65536, length $buf;
        last unless $n;
    }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    $head //= '';
    $body //= '';
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my ($len) = $head =~ m{^Content-Length: (\d+)}mi;
    my ($variant) = $head =~ m{^X-Snapcache-Variant: (\S+)}mi;
    my ($reason) = $head =~ m{^X-Snapcache-Adapt: (\S+)}mi;
    $len //= 0;
    while (length $body < $len) {
        my $n = sysread $s, $body, 65536, length $body;
        last unless $n;
    }
    my $ms = int((time - $t0) * 1000);
    my $closed = $head =~ /^Connection: close/mi ? 'close' : 'keep';
    if (!$keep || $closed eq 'close') {
        close $s;
        undef $s;
    }
    open my $f, '>:raw', $file or die $!;
    print $f $body;
    close $f;
    printf "%d %s %s %d %d %s\n", $status // 0, $variant // '-',
        $reason // '-', $ms, length $body, $closed;
}
EOF
}
