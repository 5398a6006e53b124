# SPDX-License-Identifier: BSD-2-Clause
package Snapcache::Soak;

# The isolation soak: a cluster of snapcache nodes on loopback under a
# long mixed load while faults are injected, and every answer checked.
#
# The load: client processes ask random nodes for random snapshots of
# accounts x devices x snapshots, at random rungs and formats, with
# single-snapshot URLs and device grants; some read slowly through a
# small receive buffer, some reset the connection mid-body, and a share
# of the URLs are tampered with or expired.  A node that is down is
# skipped, as a balancer's health check would.
#
# The faults, from one controller: SIGKILL of a random worker of a
# random node, `nginx -s reload` (SIGHUP) of a node, a node stopped and
# started again (gracefully or by SIGKILL of every process, in turn),
# and purges of random devices through `snapcache purge`, the cloud
# serving a new image (marker) for the device first, as a camera
# company's backend would.  One node's map is so small that it evicts
# all the time.
#
# The checks:
#   - every 200 body decodes to its own account, device and snapshot
#     (of some generation): else a foreign body;
#   - no 200 body is of a generation older than one whose purge had
#     answered (on every node that was up) before the request began;
#   - no 5xx and no failed connection or truncated body outside the
#     fault windows (from a fault's start to a while after it ended);
#   - every tampered or expired URL is refused with 403;
#   - worker RSS at the start and the end, printed.
# run() prints the report and returns the number of breaches.

use strict;
use warnings;

use Digest::SHA qw(sha1_hex);
use File::Path qw(make_path);
use IO::Select;
use IO::Socket::INET;
use List::Util qw(sum0 max);
use POSIX qw(_exit WNOHANG);
use Socket qw(SOL_SOCKET SO_RCVBUF SO_LINGER inet_aton pack_sockaddr_in);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir mint_query wait_until);
use Snapcache::Cluster;

our %DEFAULTS = (
    requests      => 100_000,
    clients       => 6,
    nodes         => 3,
    accounts      => 20,
    devices       => 3,
    snapshots     => 5,
    small_map     => '2m',      # the last node's store
    kill_every    => 5,         # seconds between worker kills
    reload_every  => 20,
    restart_every => 45,
    restart_down  => 3,         # seconds a restarted node stays down
    purge_every   => 2,
    window        => 1.5,       # seconds after a fault still excused
    tampered      => 0.05,      # shares of the requests
    expired       => 0.03,
    slow          => 0.03,
    reset         => 0.03,
    grant         => 0.20,
    seed          => undef,
    cold_start    => 1,         # off only to see the soak catch it
);

my @RUNGS = (undef, qw(thumb sd hd full));

sub new {
    my ($class, %p) = @_;
    my $self = bless { %DEFAULTS, %p }, $class;
    $self->{seed} //= int(time) ^ $$;
    return $self;
}

sub log_line {
    my ($self, @l) = @_;
    print { $self->{out} // \*STDOUT } @l;
}

# ------------------------------------------------------------- setup

sub setup {
    my ($self) = @_;
    my $n = $self->{nodes};
    my @sizes = ((undef) x ($n - 1), $self->{small_map});
    my $c = Snapcache::Cluster->new(nodes => $n, workers => 2,
        store_size => \@sizes, image_size => '640x360',
        cold_start => $self->{cold_start},
        expect_log => [qr/worker process \d+ exited on signal 9/]);
    $self->{c} = $c;
    $self->{dir} = $c->dir . '/soak';
    make_path("$self->{dir}/bodies");
    $self->{key} = $c->node(0)->key('k1');

    my @ids;
    for my $a (1 .. $self->{accounts}) {
        for my $d (1 .. $self->{devices}) {
            push @ids, [sprintf('home-%02d', $a), "cam-$d", $_]
                for ('latest', map { "s$_" } 2 .. $self->{snapshots});
        }
    }
    $self->{ids} = \@ids;
    $self->{ports} = [map { $_->port } $c->nodes];
    $c->start;
    return $c;
}

# ------------------------------------------------------------- clients

sub mint {
    my ($self, %a) = @_;
    return "/snap/$a{account}/$a{device}/$a{snapshot}?"
        . mint_query(key => $self->{key}, kid => 'k1', %a);
}

# A target of this kind for (a, d, s); tampered ones keep their form but
# not their signature, so a refusal is a 403, never a 400.
sub target {
    my ($self, $kind, $a, $d, $s, $v) = @_;
    my $now = int time;
    my %u = (account => $a, device => $d, snapshot => $s,
        exp => $now + 300, defined $v ? (v => $v) : ());
    $u{scope} = 'device' if $kind eq 'grant';

    if ($kind eq 'expired') {
        $u{exp} = $now - 5 - int rand 600;
        return $self->mint(%u);
    }

    return $self->mint(%u) unless $kind eq 'tampered';

    my $how = int rand 5;
    my $other = $self->{ids}[rand @{ $self->{ids} }];
    if ($how == 0 && $other->[0] ne $a) {
        # the signature of one account under another's path
        my $t = $self->mint(%u);
        $t =~ s{^/snap/[^/]+/}{/snap/$other->[0]/};
        return $t;
    }
    if ($how == 1) {
        # a device grant stretched to another device
        $u{scope} = 'device';
        my $t = $self->mint(%u);
        my $dev = $d eq 'cam-1' ? 'cam-2' : 'cam-1';
        $t =~ s{^(/snap/[^/]+/)[^/]+/}{$1$dev/};
        return $t;
    }
    if ($how == 2) {
        # a single-snapshot URL used for another snapshot
        my $t = $self->mint(%u);
        $t =~ s{^(/snap/[^/]+/[^/]+/)[^?]+}{$1 . ($s eq 'latest' ? 's2'
            : 'latest')}e;
        return $t;
    }
    if ($how == 3) {
        # a later expiry than was signed
        my $t = $self->mint(%u);
        my $e = $u{exp} + 60;
        $t =~ s{exp=\d+}{exp=$e};
        return $t;
    }
    # one character of the signature changed
    my $t = $self->mint(%u);
    $t =~ s{sig=([^&]{5})(.)}{"sig=$1" . ($2 eq 'A' ? 'B' : 'A')}e;
    return $t;
}

# One request: { status, body, complete, x, variant }.  Modes: normal,
# slow (a 4 KB receive buffer, 2 KB reads with pauses), reset (an RST
# once the headers and some body arrived).
sub fetch {
    my ($port, $target, $accept, $mode) = @_;
    my $s = IO::Socket::INET->new(Proto => 'tcp') or return { status => 0 };
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) if $mode ne 'normal';
    $s->connect(pack_sockaddr_in($port, inet_aton('127.0.0.1')))
        or return { status => 0 };
    my $req = "GET $target HTTP/1.1\r\nHost: snapcache\r\n"
        . ($accept ? "Accept: $accept\r\n" : '') . "Connection: close\r\n\r\n";
    syswrite($s, $req) == length $req or return { status => 0 };

    my $sel = IO::Select->new($s);
    my $deadline = time + 30;
    my ($buf, $head, %r) = ('');
    $r{status} = 0;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread $s, $buf, $mode eq 'slow' ? 2048 : 65536,
            length $buf;
        last unless $n;
        if (!defined $head && $buf =~ /\r\n\r\n/) {
            ($head, $buf) = split /\r\n\r\n/, $buf, 2;
            ($r{status}) = $head =~ m{^HTTP/1\.\d (\d+)};
            ($r{len}) = $head =~ m{^Content-Length:\s*(\d+)}mi;
            ($r{x}) = $head =~ m{^X-Snapcache:\s*(\S+)}mi;
            ($r{variant}) = $head =~ m{^X-Snapcache-Variant:\s*(\S+)}mi;
            $r{status} //= 0;
        }
        if ($mode eq 'reset' && defined $head && length $buf > 0) {
            setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $s;
            $r{reset} = 1;
            return \%r;
        }
        sleep 0.005 + rand 0.02 if $mode eq 'slow';
    }
    close $s;
    $r{body} = $buf;
    $r{complete} = defined $head && defined $r{len} && length $buf == $r{len};
    return \%r;
}

sub client {
    my ($self, $k, $quota) = @_;
    srand($self->{seed} + 7919 * ($k + 1));
    my $d = $self->{dir};
    my $c = $self->{c};
    my @ids = @{ $self->{ids} };
    my $n = $self->{nodes};
    my %seen;
    open my $o, '>', "$d/res.$k" or _exit(1);
    for (1 .. $quota) {
        my ($a, $dev, $s) = @{ $ids[rand @ids] };
        my $node = int rand $n;
        for (1 .. $n) {
            last unless -e "$d/down.$node";
            $node = ($node + 1) % $n;
        }
        my $x = rand;
        my $kind = ($x -= $self->{tampered}) < 0 ? 'tampered'
            : ($x -= $self->{expired}) < 0 ? 'expired'
            : ($x -= $self->{grant}) < 0 ? 'grant' : 'single';
        my $mode = 'normal';
        if ($kind eq 'single' || $kind eq 'grant') {
            my $y = rand;
            $mode = $y < $self->{slow} ? 'slow'
                : $y < $self->{slow} + $self->{reset} ? 'reset' : 'normal';
        }
        my $v = $RUNGS[rand @RUNGS];
        my $accept = rand() < 0.5 ? 'image/webp,image/*;q=0.8' : undef;
        my $target = $self->target($kind, $a, $dev, $s, $v);
        my $t0 = time;
        my $r = fetch($self->{ports}[$node], $target, $accept, $mode);
        my $t1 = time;
        my $sum = '-';
        my $status = $r->{status};
        if ($r->{reset}) {
            $kind .= '+reset';
        } elsif ($status == 200 && !$r->{complete}) {
            $status = 'short';
        } elsif ($status == 200) {
            $sum = sha1_hex($r->{body});
            if (!$seen{$sum}++ && !-e "$d/bodies/$sum") {
                open my $b, '>:raw', "$d/bodies/$sum.$$" or _exit(1);
                print $b $r->{body};
                close $b;
                rename "$d/bodies/$sum.$$", "$d/bodies/$sum";
            }
        }
        $kind .= '+slow' if $mode eq 'slow';
        printf $o "%.3f %.3f %d %s %s %s %s %s %s %s\n", $t0, $t1, $node,
            $kind, $status, $a, $dev, $s, $sum, $r->{x} // '-';
    }
    close $o;
}

# ---------------------------------------------------------- controller

sub note_event {
    my ($self, @f) = @_;
    open my $l, '>>', "$self->{dir}/events" or die;
    print $l join(' ', @f), "\n";
    close $l;
}

sub window {
    my ($self, $from, $to, $what) = @_;
    push @{ $self->{windows} }, [$from, $to + $self->{window}, $what];
    $self->note_event(sprintf '%s %.3f %.3f', $what, $from, $to);
}

sub up_nodes {
    my ($self) = @_;
    return grep { !$self->{down}{$_} } 0 .. $self->{nodes} - 1;
}

sub kill_worker {
    my ($self) = @_;
    my @up = $self->up_nodes or return;
    my $t = $self->{c}->node($up[rand @up]);
    my @w = $t->worker_pids or return;
    my $now = time;
    my $victim = $w[rand @w];
    kill 'KILL', $victim;
    $self->window($now, $now, 'kill');
    $self->{count}{kill}++;
    # the next fault comes to a node whose master has replaced it
    $t->wait_respawn($victim);
}

# Its window, as a kill's, is the moment of the signal (a reload is to
# drop nothing); the next fault waits until the new workers serve.
sub reload_node {
    my ($self) = @_;
    my @up = $self->up_nodes or return;
    my $now = time;
    $self->{c}->node($up[rand @up])->reload_and_wait;
    $self->window($now, $now, 'reload');
    $self->{count}{reload}++;
}

# Takes a node down (the clients skip it from now on), gracefully or
# by killing every process, in turn.
sub stop_node {
    my ($self) = @_;
    my @up = $self->up_nodes;
    return if @up < 2;
    my $i = $up[rand @up];
    my $c = $self->{c};
    my $t = $c->node($i);
    open my $f, '>', "$self->{dir}/down.$i" or die;
    close $f;
    $self->{down}{$i} = time;
    if ($self->{count}{restart}++ % 2) {
        # the master's process group as well: a worker it forked after
        # the list was read (respawning a killed one) would survive as
        # an orphan holding the ports, serving a node that is "down"
        my $m = $t->master_pid;
        my @p = ($m, $t->worker_pids);
        kill 'KILL', -$m if $m;
        kill 'KILL', @p;
        # every process of the group, a respawned worker too, must be
        # gone before the node starts again on its ports
        wait_until(sub { !grep { kill 0, $_ } @p and !($m && kill 0, -$m) })
            or die "soak: node ${i}'s processes outlived SIGKILL by 30 s\n";
        $t->{started} = 0;
        $self->{count}{crash}++;
    } else {
        $c->stop_node($i);
    }
    $self->{restart_at}{$i} = time + $self->{restart_down};
}

sub start_node {
    my ($self, $i) = @_;
    my $c = $self->{c};
    # its old processes are gone (stop_node waited): a start that fails
    # now is a failure, and what answers on its ports is not the node
    # the soak thinks it is
    eval { $c->node($i)->start(keep_config => 1); 1 }
        or die "soak: node $i did not start again: $@";
    unlink "$self->{dir}/down.$i";
    $self->window(delete $self->{down}{$i}, time, 'restart');
    delete $self->{restart_at}{$i};
}

# The cloud's images of a device change, then the purge goes to every
# node; a node that is down is not asked (it starts cold), one whose
# answer failed (a worker killed under it) is asked again.  The purge
# has answered once every node that is up has said ok.
sub purge_device {
    my ($self) = @_;
    my $c = $self->{c};
    my ($a, $d) = @{ $self->{ids}[rand @{ $self->{ids} }] };
    my $g = $c->new_generation($a, $d);
    my $sent = time;
    my %todo = map { $_ => 1 } $self->up_nodes;
    my $cli = build_dir() . '/snapcache';
    for my $try (1 .. 50) {
        my @urls = $c->admin_urls(sort keys %todo);
        my $cmd = join ' ', map { "'$_'" } $cli, 'purge',
            (map { ('--node', $_) } @urls), '--token-file',
            $c->admin_token_file, '--timeout', '5', '--account', $a,
            '--device', $d;
        my @out = `$cmd 2>&1`;
        for my $i (keys %todo) {
            my $u = ($c->admin_urls($i))[0];
            delete $todo{$i} if grep { /^\Q$u\E ok / } @out;
            delete $todo{$i} if $self->{down}{$i};
        }
        last unless %todo;
        $self->{count}{purge_retry}++;
        sleep 0.2;
    }
    my $answered = %todo ? -1 : time;
    $self->note_event(sprintf 'purge %s %s g%d sent %.3f answered %.3f',
        $a, $d, $g, $sent, $answered);
    $self->{count}{purge}++;
    $self->{count}{purge_unanswered}++ if $answered < 0;
    push @{ $self->{purges}{"$a $d"} }, [$g, $sent, $answered];
}

# Each node's workers' resident memory in MB, summed: [total, anonymous
# (the heap), file-backed (pages of the store's map they have read)].
sub rss {
    my ($self) = @_;
    my @mb;
    for my $t ($self->{c}->nodes) {
        my ($all, $anon, $file) = (0, 0, 0);
        for my $pid ($t->worker_pids) {
            open my $f, '<', "/proc/$pid/status" or next;
            while (my $l = <$f>) {
                $all += $1 if $l =~ /^VmRSS:\s+(\d+)/;
                $anon += $1 if $l =~ /^RssAnon:\s+(\d+)/;
                $file += $1 if $l =~ /^RssFile:\s+(\d+)/;
            }
        }
        push @mb, [map { $_ / 1024 } $all, $anon, $file];
    }
    return \@mb;
}

sub control {
    my ($self, @kids) = @_;
    my $t0 = time;
    my %next = (kill => $t0 + $self->{kill_every},
        reload => $t0 + $self->{reload_every},
        restart => $t0 + $self->{restart_every},
        purge => $t0 + $self->{purge_every});
    my %live = map { $_ => 1 } @kids;
    while (%live) {
        my $now = time;
        for my $i (keys %{ $self->{restart_at} }) {
            $self->start_node($i) if $now >= $self->{restart_at}{$i};
        }
        if ($now >= $next{purge}) {
            $self->purge_device;
            $next{purge} += $self->{purge_every};
        }
        if ($now >= $next{kill}) {
            $self->kill_worker;
            $next{kill} += $self->{kill_every};
        }
        if ($now >= $next{reload}) {
            $self->reload_node;
            $next{reload} += $self->{reload_every};
        }
        if ($now >= $next{restart}) {
            $self->stop_node;
            $next{restart} += $self->{restart_every};
        }
        while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
            delete $live{$pid};
        }
        sleep 0.05;
    }
    $self->start_node($_) for keys %{ $self->{restart_at} };
}

# ------------------------------------------------------------- the run

sub run {
    my ($self) = @_;
    my $c = $self->setup;

    # one request per node first, so that each worker has started libvips
    for my $i (0 .. $self->{nodes} - 1) {
        $c->get($i, account => 'home-01', device => 'cam-1',
            snapshot => 'latest', v => 'thumb');
    }
    $self->{rss_start} = $self->rss;

    my $per = int(($self->{requests} + $self->{clients} - 1)
        / $self->{clients});
    my $start = time;
    my @kids;
    for my $k (0 .. $self->{clients} - 1) {
        my $pid = fork // die;
        if (!$pid) {
            $self->client($k, $per);
            _exit(0);
        }
        push @kids, $pid;
    }
    $self->control(@kids);
    $self->{elapsed} = time - $start;
    $self->{rss_end} = $self->rss;
    return $self->report;
}

sub in_window {
    my ($self, $t0, $t1) = @_;
    for my $w (@{ $self->{windows} }) {
        return 1 if $t0 <= $w->[1] && $t1 >= $w->[0];
    }
    return 0;
}

sub report {
    my ($self) = @_;
    my $d = $self->{dir};
    my $c = $self->{c};
    my (@res, %by, %kinds, %breach, @examples);
    for my $k (0 .. $self->{clients} - 1) {
        open my $f, '<', "$d/res.$k" or next;
        push @res, map { chomp; [split / /] } <$f>;
    }

    my $breach = sub {
        my ($what, $r) = @_;
        $breach{$what}++;
        push @examples, "$what: @$r" if @examples < 20;
    };

    # the generation each distinct 200 body carries
    my %gens;
    my @lines;
    for my $r (grep { $_->[4] eq '200' && $_->[8] ne '-' } @res) {
        my ($a, $dev, $s, $sum) = @$r[5 .. 8];
        next if $gens{"$sum $a $dev $s"}++;
        my $top = Snapcache::Cluster::generation($c->dir, $a, $dev);
        push @lines, join ' ', "$d/bodies/$sum", $a, $dev,
            map { Snapcache::Cluster::marked($s, $_) } 0 .. $top;
    }
    open my $l, '>', "$d/which" or die;
    print $l "$_\n" for @lines;
    close $l;
    my %which;
    for (`'@{[ build_dir() ]}/bin/snapmark' which-list '$d/which' 2>&1`) {
        $which{$2} = $1 if m{^(\S+) \Q$d\E/bodies/(\S+)$};
    }

    my ($bodies, $refused, $tampered, $expired, $excused) = (0) x 5;
    for my $r (@res) {
        my ($t0, $t1, $node, $kind, $st, $a, $dev, $s, $sum) = @$r;
        $by{$st}++;
        $kinds{$st}{$kind}++;
        my ($base) = split /\+/, $kind;
        my $fault = $st eq '0' || $st eq 'short' || $st =~ /^5/;
        if ($fault) {
            if ($self->in_window($t0, $t1)) {
                $excused++;
            } else {
                $breach->('5xx or failure outside the fault windows', $r);
            }
            next;
        }
        if ($base eq 'tampered' || $base eq 'expired') {
            $base eq 'tampered' ? $tampered++ : $expired++;
            if ($st eq '403') { $refused++ }
            else { $breach->("$base URL answered $st", $r) }
            next;
        }
        if ($st ne '200') {
            $breach->("answered $st", $r);
            next;
        }
        next if $sum eq '-';          # reset mid-body: nothing to check
        $bodies++;
        my $g = $which{$sum};
        if (!defined $g || $g eq 'none' || $g eq 'undecodable') {
            $breach->('foreign or undecodable body', $r);
            next;
        }
        for my $p (@{ $self->{purges}{"$a $dev"} || [] }) {
            my ($pg, $sent, $answered) = @$p;
            if ($answered >= 0 && $answered < $t0 && $g < $pg) {
                $breach->('body from before an answered purge', $r);
                last;
            }
        }
    }

    my $n = scalar @res;
    my $wt = 0;
    my @w = sort { $a->[0] <=> $b->[0] } @{ $self->{windows} || [] };
    my ($ws, $we);
    for (@w) {
        if (defined $we && $_->[0] <= $we) { $we = max($we, $_->[1]); next }
        $wt += $we - $ws if defined $we;
        ($ws, $we) = @$_;
    }
    $wt += $we - $ws if defined $we;

    my %cnt = %{ $self->{count} || {} };
    $cnt{$_} //= 0 for qw(kill reload restart crash purge purge_retry
        purge_unanswered);
    my $total = sum0(values %breach) + $cnt{purge_unanswered};
    my @out;
    push @out, sprintf "snapcache soak: %d nodes (n%d's map %s), %d clients, "
        . "%d requests in %.0f s (%.0f/s), seed %d\n", $self->{nodes},
        $self->{nodes}, $self->{small_map}, $self->{clients}, $n,
        $self->{elapsed}, $n / ($self->{elapsed} || 1), $self->{seed};
    push @out, sprintf "faults: %d worker kills, %d reloads, %d restarts "
        . "(%d by SIGKILL of every process), %d purges (%d resent to a "
        . "node, %d never answered); fault windows %.0f%% of the time\n",
        @cnt{qw(kill reload restart crash purge purge_retry
            purge_unanswered)}, 100 * $wt / ($self->{elapsed} || 1);
    push @out, "requests by status:\n";
    for my $st (sort { $by{$b} <=> $by{$a} } keys %by) {
        push @out, sprintf "  %-6s %7d  (%s)\n", $st, $by{$st},
            join ', ', map { "$_ $kinds{$st}{$_}" }
                sort { $kinds{$st}{$b} <=> $kinds{$st}{$a} }
                keys %{ $kinds{$st} };
    }
    push @out, sprintf "bodies checked: %d (%d distinct), foreign or "
        . "undecodable: %d, from before an answered purge: %d\n", $bodies,
        scalar @lines, $breach{'foreign or undecodable body'} // 0,
        $breach{'body from before an answered purge'} // 0;
    push @out, sprintf "tampered URLs: %d, expired URLs: %d, refused "
        . "(403): %d\n", $tampered, $expired, $refused;
    push @out, sprintf "5xx, failed connections and truncated bodies: "
        . "%d in fault windows, %d outside\n", $excused,
        $breach{'5xx or failure outside the fault windows'} // 0;
    push @out, "worker RSS in MB, all workers of a node (anonymous + "
        . "file-backed, the store's pages):\n";
    push @out, map {
        my ($s, $e) = ($self->{rss_start}[$_], $self->{rss_end}[$_]);
        sprintf "  n%d  start %6.1f (%5.1f + %5.1f)   end %6.1f (%5.1f + "
            . "%5.1f)\n", $_ + 1, @$s, @$e
    } 0 .. $self->{nodes} - 1;
    push @out, map { "breach: $_\n" } @examples;
    push @out, $total ? "result: FAIL, $total breaches\n"
        : "result: PASS, 0 breaches\n";
    $self->{breaches} = $total;
    $self->{report} = join '', @out;
    return $total;
}

1;
