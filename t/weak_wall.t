#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Adaptation for a wall of camera tiles over HTTPS, end to end, on a
# shaped link, as a smart display or a dashboard sees it.
#
# Two network namespaces joined by a veth pair, with tbf on the server
# side (Snapcache::Netns).  The display shows 4 cameras of one
# household and refreshes all 4 together every 3 s, a new snapshot per
# camera each time, no client hints, no v=; every snapshot is a real
# photograph carrying its owner marker.  Once over HTTP/2 (one kept
# connection, every tile a stream on it), once over HTTP/1.1 with a
# pool of kept connections:
#
#   512 kbit/s   every tile within the 1 s budget from the 3rd refresh on,
#                and no tile changes its rung more than once in the 9
#                refreshes after its first
#   4 Mbit/s     every tile back on hd, within the budget, by the 3rd
#   512 kbit/s   within the budget again from the 2nd refresh after the drop
#
# A tile's time runs from the start of its refresh (all 4 asked for at
# once) to its last byte.  Every image decodes to its owner, and the
# connections are kept throughout.  Then one tile alone on 512 kbit/s
# gets a larger rung than the wall's tiles did, and a tile asked while a
# larger one is on its way counts the bytes queued ahead of it.  Needs
# root for ip netns; skips with the reason otherwise.
#
# The test re-runs itself inside the server's namespace (--inner,
# Snapcache::Netns->inner), as t/weak.t does.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Snapcache::Netns;

my $SRV_IP = Snapcache::Netns::SRV_IP;
my $PHOTO_DIR = '/usr/share/backgrounds/mate/nature';
my $PHOTO = "$PHOTO_DIR/GreenMeadow.jpg";
my $PYTHON = '/usr/bin/python3';
my $TILES = 4;
my $EVERY = 3;
my @PHASES = ([512, 10], [4000, 5], [512, 5]);
my $ALONE = 4;

inner(Snapcache::Netns->inner(kbit => $PHASES[0][0], needs => [
    [-r $PHOTO,
        "no photograph at $PHOTO (make deps installs mate-backgrounds)"],
    [system("$PYTHON -c 'import httpx, h2' 2>/dev/null") == 0,
        'python3 with httpx and h2 missing (make deps installs '
        . 'python3-httpx and python3-h2)'],
    [-x '/usr/bin/openssl', 'openssl missing'],
]));
exit 0;


# ------------------------------------------------------------- inner

sub inner {
    my ($cli_ns, $veth) = @_;

    require Test::More;
    Test::More->import;
    require Snapcache::Test;

    my $t = Snapcache::Test->new(workers => 2);
    my $d = $t->dir;
    my $snapmark = Snapcache::Test::build_dir() . '/bin/snapmark';
    my @modes = split ' ', ($ENV{SNAPCACHE_WALL_MODES} || 'h2 h1');
    my $n = $ALONE + 1;
    $n += $_->[1] for @PHASES;

    # a household per mode, 4 cameras, a new snapshot for every refresh
    for my $mode (@modes) {
        for my $cam (1 .. $TILES) {
            my $dir = "$d/origin/acct-$mode/cam$cam";
            system('mkdir', '-p', $dir);
            for my $i (1 .. $n) {
                system($snapmark, 'gen', '--account', "acct-$mode",
                    '--device', "cam$cam", '--snapshot', "s$i", '--photo',
                    $PHOTO, '-o', "$dir/s$i") == 0
                    or die "snapmark gen failed\n";
            }
        }
    }

    my $tls = "$d/tls";
    mkdir $tls;
    my $out = `openssl req -x509 -newkey ec -pkeyopt \\
        ec_paramgen_curve:prime256v1 -nodes -keyout $tls/srv.key \\
        -out $tls/srv.pem -days 2 -subj /CN=snapcache-test \\
        -addext subjectAltName=IP:$SRV_IP 2>&1`;
    die "openssl: $out" if $?;

    $t->start_origin;
    my $port = $t->port;
    my $origin = $t->origin_port;
    my $debug = $ENV{SNAPCACHE_WEAK_DEBUG}
        ? "error_log $d/logs/debug.log debug;\n" : '';

    $t->start(
        http => <<"CONF",
    log_format adapt '\$snapcache_status \$snapcache_variant '
                     '\$snapcache_adapt_reason \$snapcache_link_kbps '
                     '\$snapcache_link_rtt \$snapcache_link_queued '
                     '\$request_time \$remote_addr \$connection \$uri';
    snapcache_store $d/store size=128m;
CONF
        main => "thread_pool snapcache threads=2;\n$debug",
        servers => <<"CONF",
    server {
        listen 127.0.0.1:$port;
        listen $SRV_IP:$port ssl http2;
        ssl_certificate $tls/srv.pem;
        ssl_certificate_key $tls/srv.key;
        keepalive_timeout 120s;
        access_log $d/logs/adapt.log adapt;
        snapcache_sign_key k1 $d/keys/k1.key;

        snapcache_origin /_origin;
        snapcache_thread_pool snapcache;

        location /snap/ {
            snapcache;
        }

        # a display's own slow tile: the same link, a longer budget
        location /slow/ {
            snapcache;
            snapcache_adapt_budget 2500ms;
        }

        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$origin/;
        }
    }
CONF
    );

    for my $mode (@modes) {
        run_wall($t, $mode, $cli_ns, $veth);
    }

    Test::More::done_testing();
}


sub run_wall {
    my ($t, $mode, $cli_ns, $veth) = @_;
    my $d = $t->dir;

    require IPC::Open2;
    require Time::HiRes;

    my $pid = IPC::Open2::open2(my $out, my $in, 'ip', 'netns', 'exec',
        $cli_ns, $PYTHON, "$FindBin::Bin/weak_wall.py", $mode,
        "$d/tls/srv.pem", $TILES);

    my (@got, @list);
    my $i = 0;
    my $next = Time::HiRes::time();
    my @phases = (@PHASES, [$PHASES[0][0], $ALONE, 1]);

    for my $p (0 .. $#phases) {
        my ($kbit, $count, $alone) = @{ $phases[$p] };
        Snapcache::Netns::set_rate($veth, $kbit);

        for my $k (1 .. $count) {
            $i++;
            my $now = Time::HiRes::time();
            Time::HiRes::sleep($next - $now) if $next > $now;
            $next = Time::HiRes::time() + $EVERY;

            my @cams = $alone ? (1) : (1 .. $TILES);
            my @req;
            for my $cam (@cams) {
                my $url = $t->sign_url(account => "acct-$mode",
                    device => "cam$cam", snapshot => "s$i");
                my $file = "$d/got-$mode-$cam-$i";
                push @req, "https://$SRV_IP:" . $t->port . $url, $file;
                push @list, [$file, "acct-$mode cam$cam s$i"];
            }
            print $in "@req\n";
            my $line = <$out> // '';
            chomp $line;
            my @tiles = split / \| /, $line;
            my @r;
            for my $c (0 .. $#cams) {
                my ($status, $variant, $reason, $ms, $bytes)
                    = split ' ', $tiles[$c] // '0 - - 0 0';
                push @r, { status => $status, variant => $variant,
                    reason => $reason, ms => $ms, bytes => $bytes };
            }
            push @got, { phase => $p, k => $k, tiles => \@r };
            Test::More::diag(sprintf '%s %4d kbit/s  refresh %d.%d  %s',
                $mode, $kbit, $p + 1, $k, join '  ', map {
                    sprintf '%s %-5s %-7s %4d ms', @$_{qw(status variant
                        reason ms)}
                } @r);
        }
    }

    # a tile asked while a larger one is still on its way to the same
    # display: it shares the link with what is queued ahead of it
    $i++;
    my $slow = "https://$SRV_IP:" . $t->port . $t->sign_url(
        account => "acct-$mode", device => 'cam2', snapshot => "s$i",
        prefix => '/slow/');
    my $behind = "/snap/acct-$mode/cam3/s$i";
    my $url = "https://$SRV_IP:" . $t->port . $t->sign_url(
        account => "acct-$mode", device => 'cam3', snapshot => "s$i");
    # the slow tile is in the store already (from loopback, another
    # client), so that it is on its way at once
    for my $v (qw(sd hd)) {
        my $w = $t->request($t->sign_url(account => "acct-$mode",
            device => 'cam2', snapshot => "s$i", v => $v));
        die "warming $v: $w->{status}\n" unless $w->{status} == 200;
    }
    my $now = Time::HiRes::time();
    Time::HiRes::sleep($next - $now) if $next > $now;
    print $in "$slow $d/got-$mode-2-$i +300 $url $d/got-$mode-3-$i\n";
    push @list, ["$d/got-$mode-2-$i", "acct-$mode cam2 s$i"],
        ["$d/got-$mode-3-$i", "acct-$mode cam3 s$i"];
    my @queue = map { [split ' '] } split / \| /, <$out> // '';
    Test::More::diag("$mode: a $queue[0][1] tile with a 2.5 s budget, then "
        . "300 ms later a $queue[1][1] one ($queue[1][2], $queue[1][3] ms)");

    close $in;
    waitpid $pid, 0;

    my @all = map { @{ $_->{tiles} } } @got;
    Test::More::is(scalar(grep { $_->{status} == 200 } @all), scalar @all,
        "$mode: every tile of every refresh answered 200");

    my $late = sub {
        my ($phase, $from) = @_;
        return scalar map { grep { $_->{ms} > 1000 } @{ $_->{tiles} } }
            grep { $_->{phase} == $phase && $_->{k} >= $from } @got;
    };

    Test::More::is($late->(0, 3), 0,
        "$mode: at 512 kbit/s every tile within 1 s from the 3rd refresh");

    # no flapping on a steady link: after the step down, each tile
    # changes its rung at most once in the 8 refreshes that follow
    my @steady = grep { $_->{phase} == 0 && $_->{k} >= 2 } @got;
    my $flaps = 0;
    for my $c (0 .. $TILES - 1) {
        my @v = map { $_->{tiles}[$c]{variant} } @steady;
        my $changes = grep { $v[$_] ne $v[$_ - 1] } 1 .. $#v;
        $flaps++ if $changes > 1;
    }
    Test::More::is($flaps, 0, "$mode: at a steady 512 kbit/s no tile "
        . 'changes its rung more than once in ' . (@steady - 1)
        . ' refreshes');

    my @b = grep { $_->{phase} == 1 } @got;
    my ($first) = grep {
        !grep { $_->{variant} ne 'hd' || $_->{ms} > 1000 }
            @{ $b[$_]{tiles} }
    } 0 .. $#b;
    Test::More::ok(defined $first && $first < 3,
        "$mode: at 4 Mbit/s every tile on hd within the budget by the 3rd "
        . 'refresh (' . (defined $first ? 'refresh ' . ($first + 1)
        : 'never') . ')');

    Test::More::is($late->(2, 2), 0,
        "$mode: back at 512 kbit/s, every tile within 1 s from the 2nd "
        . 'refresh');

    # the wall shares the link; one tile alone has all of it.  After its
    # first refresh (the estimate still counts the wall's share), the
    # tile alone gets a larger rung than the wall's smallest, within the
    # budget: the best of its later refreshes counts, since one delivery
    # that a loss slowed steps any client down for a while, alone or not
    my %rank = (thumb => 0, sd => 1, hd => 2, full => 3);
    my ($wall) = sort { $a <=> $b } map { $rank{ $_->{variant} } // -1 }
        map { @{ $_->{tiles} } } grep { $_->{phase} == 2 } @got;
    my @alone = map { $_->{tiles}[0] } grep { $_->{phase} == 3 } @got;
    my ($best) = sort { ($rank{ $b->{variant} } // -1)
                        <=> ($rank{ $a->{variant} } // -1) }
        grep { $_->{ms} <= 1000 } @alone[1 .. $#alone];
    my $one = $best ? $rank{ $best->{variant} } // -1 : -1;
    Test::More::ok(defined $wall && $one > $wall,
        "$mode: one tile alone at 512 kbit/s gets a larger rung ("
        . join(', ', map { "$_->{variant} $_->{ms} ms" } @alone)
        . ") than the wall's smallest");

    # the connections nginx served this display's tiles on, and what
    # was queued ahead of the tile asked behind the slow one
    my (%conns, $queued);
    open my $al, '<', "$d/logs/adapt.log" or die $!;
    while (my $l = <$al>) {
        my @f = split ' ', $l;
        $conns{ $f[-2] }++
            if $f[-1] =~ m{/acct-$mode/} && $f[-3] eq Snapcache::Netns::CLI_IP;
        $queued = $f[5] if $f[-1] eq $behind;
    }
    close $al;

    Test::More::ok(($queued // '-') =~ /^\d+$/ && $queued > 0
        && ($rank{ $queue[1][1] // '' } // 9) <= $one,
        "$mode: a tile asked behind a larger one counts the "
        . ($queued // '-') . " bytes queued ahead of it and gets "
        . ($queue[1][1] // '-') . ', no more than the tile alone');
    Test::More::ok(keys %conns >= 1
        && keys %conns <= ($mode eq 'h2' ? 1 : $TILES),
        "$mode: the connections are kept (" . scalar(keys %conns)
        . ' for ' . scalar(@all) . ' tiles)');

    open my $lf, '>', "$d/list-$mode" or die $!;
    print $lf "$_->[0] $_->[1]\n" for @list;
    close $lf;
    my $snapmark = Snapcache::Test::build_dir() . '/bin/snapmark';
    my $check = `$snapmark check-list $d/list-$mode`;
    Test::More::is($?, 0, "$mode: every image decodes to its owner")
        or Test::More::diag($check);
    Test::More::like($check, qr/summary: (\d+) checked, \1 ok/,
        "$mode: all " . scalar(@list) . ' checked');

    # what the link looked like to nginx, for a failure's reader: each
    # of this display's responses with its rung, reason, estimate, RTT,
    # bytes queued ahead and time
    return if Test::More->builder->is_passing;
    open $al, '<', "$d/logs/adapt.log" or return;
    Test::More::diag("$mode: adapt.log: $_")
        for grep { m{/acct-$mode/} } <$al>;
    close $al;
}
