# SPDX-License-Identifier: BSD-2-Clause
package Snapcache::Test;

# End-to-end test harness: a real nginx with the built module, on a free
# loopback port, with a generated config, its own keys, and a fake origin
# that counts requests and can be slow, truncate, fail or hang.
#
# The signer here is independent of sign/: it uses Perl's Digest::SHA, so
# the C implementation is checked against a second one.
#
# Every instance is checked when the test ends (at done_testing, or when
# the instance goes away before): nginx is stopped, and its error log
# must hold no sanitizer report and no [alert], [crit] or [emerg] line
# but those the test declared with expect_log().  That check is one more
# test result per instance.

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(hmac_sha256);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64url);
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(weaken);
use Socket qw(SOL_SOCKET SO_RCVBUF SO_LINGER);
use Test::More ();
use Test2::API qw(test2_add_callback_testing_done);
use Time::HiRes qw(sleep time);

use Exporter 'import';
our $IMAGE_SIZE = '1920x1080';
our @EXPORT_OK = qw(sign_url mint_query hmac_sig raw_request free_port
    reserve_port release_port build_dir wait_until);

my $ROOT = abs_path(__FILE__ . '/../../../..');

sub build_dir { $ENV{SNAPCACHE_BUILD} || "$ROOT/build" }

# ----------------------------------------------------------------- ports

# Ports are reserved as nginx-tests' port() does: a port is chosen by
# binding it, and stays bound until just before the server that uses it
# binds it, so no other process can take it in between.  Each port holds
# a listening TCP socket (the kernel picks a port no one listens on) and
# a UDP socket on the same number, kept for the whole test, so that
# other instances of this harness, on this machine, never choose it even
# while the TCP socket is closed for nginx.
my %held;

sub reserve_port {
    for (1 .. 50) {
        my $tcp = IO::Socket::INET->new(Listen => 128, Proto => 'tcp',
            LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
            or die "no free port: $!";
        my $port = $tcp->sockport;
        my $udp = IO::Socket::INET->new(Proto => 'udp',
            LocalAddr => "127.0.0.1:$port") or next;
        $held{$port} = { tcp => $tcp, udp => $udp };
        return $port;
    }
    die "no free port: every one the kernel offered is held by another "
        . "test\n";
}

# Closes a reserved port's TCP socket, so that a server can bind it; the
# UDP lock stays.
sub release_port {
    my ($port) = @_;
    my $h = $held{$port} or return;
    close delete $h->{tcp} if $h->{tcp};
}

# Takes a reserved port back after its server stopped; a port someone
# else took meanwhile is left alone (the next start says so).
sub rehold_port {
    my ($port) = @_;
    my $h = $held{$port} or return;
    $h->{tcp} //= IO::Socket::INET->new(Listen => 128, Proto => 'tcp',
        LocalAddr => "127.0.0.1:$port", ReuseAddr => 1);
}

# The reserved listening socket itself, for a server run by this process.
sub take_port_socket {
    my ($port) = @_;
    my $h = $held{$port} or return;
    return delete $h->{tcp};
}

# A free port for a server started by another program (tools/run-demo):
# reserved, then released at once, keeping the UDP lock.
sub free_port {
    my $port = reserve_port();
    release_port($port);
    return $port;
}

# ---------------------------------------------------------------- teardown

my %live;

test2_add_callback_testing_done(sub {
    $_->teardown for grep { defined } values %live;
});

sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        dir => tempdir('snapcache-t-XXXXXX', TMPDIR => 1,
            CLEANUP => !$ENV{SNAPCACHE_KEEP}),
        port => reserve_port(),
        origin_port => reserve_port(),
        stats_port => reserve_port(),
        workers => $opt{workers} || 2,
        keys => {},
        pids => [],
        owner => $$,
        expect_log => [@{ $opt{expect_log} || [] }],
    }, $class;

    chmod 0755, $self->{dir};
    make_path("$self->{dir}/$_") for qw(keys tmp logs origin);
    chmod 0700, "$self->{dir}/keys";

    $self->add_key($_) for @{ $opt{keys} || ['k1'] };

    $self->_track;

    return $self;
}

# An error log written by an nginx this harness did not start (the demo),
# checked like an instance's from here on: only lines added from now.
sub watch_log {
    my ($class, $file, %opt) = @_;
    my $self = bless {
        log_file => $file,
        log_offset => -s $file // 0,
        pids => [],
        owner => $$,
        expect_log => [@{ $opt{expect_log} || [] }],
    }, $class;
    $self->_track;
    return $self;
}

sub _track {
    my ($self) = @_;
    $live{"$self"} = $self;
    weaken $live{"$self"};
}

# Declares [alert], [crit] or [emerg] lines this test causes on purpose
# (a killed worker, a broken config): each pattern allows the lines it
# matches, and only those.
sub expect_log {
    my ($self, @re) = @_;
    push @{ $self->{expect_log} }, @re;
    return $self;
}

# Stops nginx and checks its error log, once; called at done_testing (or
# at the end of a test that died), or when the instance goes away first.
sub teardown {
    my ($self) = @_;
    return if $self->{torn_down} || $self->{owner} != $$;
    $self->{torn_down} = 1;
    delete $live{"$self"};
    $self->stop;

    my $hub = Test2::API::test2_stack()->top;
    return if ($hub->plan // '') eq 'SKIP';

    my $log = $self->error_log;
    my @bad = grep {
        my $line = $_;
        !grep { $line =~ $_ } @{ $self->{expect_log} };
    } $log =~ /^.*\[(?:alert|crit|emerg)\].*$/mg;
    push @bad, $1
        if $log =~ /(ERROR: (?:AddressSanitizer|LeakSanitizer)[^\n]*)/;

    my $tb = Test::More->builder;
    my $name = $self->{log_file} // "$self->{dir}/logs/error.log";
    $tb->ok(!@bad, 'no sanitizer report and no unexpected alert, crit or '
        . "emerg line in the error log")
        or $tb->diag(join "\n", "in $name:",
            @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}
sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub origin_port { $_[0]{origin_port} }
sub stats_port { $_[0]{stats_port} }
sub key { $_[0]{keys}{$_[1]} }

# A fresh random key, stored as hex in a 0600 file like an operator would.
sub add_key {
    my ($self, $kid, $bytes) = @_;
    $bytes //= 32;
    open my $r, '<:raw', '/dev/urandom' or die $!;
    my $key;
    read $r, $key, $bytes;
    close $r;
    my $path = "$self->{dir}/keys/$kid.key";
    open my $f, '>', $path or die $!;
    chmod 0600, $path;
    print $f unpack('H*', $key), "\n";
    close $f;
    $self->{keys}{$kid} = $key;
    return $path;
}

sub key_file { "$_[0]{dir}/keys/$_[1].key" }

sub hmac_sig {
    my ($key, $kid, $exp, $acct, $dev, $snap, $max) = @_;
    my $msg = join("\n", 'snapcache1', $kid, $exp, $acct, $dev, $snap,
        $max // '');
    return encode_base64url(hmac_sha256($msg, $key));
}

# The signed query, in the order the CLI prints it.
sub mint_query {
    my (%a) = @_;
    my $grant = $a{scope} && $a{scope} eq 'device';
    my $sig = hmac_sig($a{key}, $a{kid}, $a{exp}, $a{account}, $a{device},
        $grant ? '*' : $a{snapshot}, $a{max});
    my $q = "exp=$a{exp}&kid=$a{kid}";
    $q .= "&max=$a{max}" if defined $a{max};
    $q .= "&scope=device" if $grant;
    $q .= "&sig=$sig";
    $q .= "&v=$a{v}" if defined $a{v};
    return $q;
}

# A signed target for this instance: /snap/A/D/S?exp=..&kid=..&sig=..
sub sign_url {
    my ($self, %a) = @_;
    $a{kid} //= 'k1';
    $a{key} //= $self->{keys}{ $a{kid} };
    $a{exp} //= time_int() + 300;
    my $prefix = $a{prefix} // '/snap/';
    return "$prefix$a{account}/$a{device}/$a{snapshot}?" . mint_query(%a);
}

sub time_int { int(CORE::time()) }

sub module_path {
    my $so = build_dir() . '/nginx/ngx_http_snapcache_module.so';
    die "module not built: $so\n" unless -f $so;
    return $so;
}

# The default server block: the gate on /snap/, the origin behind it.
sub default_server {
    my ($self, %o) = @_;
    my $keys = join '', map {
        "        snapcache_sign_key $_ $self->{dir}/keys/$_.key;\n"
    } sort keys %{ $self->{keys} };
    my $extra = $o{server_extra} // '';
    my $loc = $o{location_extra} // '';
    my $orig = $o{origin_extra} // '';
    return <<"EOF";
    server {
        listen 127.0.0.1:$self->{port};
$keys
        snapcache_origin /_origin;
$extra
        location /snap/ {
            snapcache;
$loc
        }

        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$self->{origin_port}/;
$orig
        }
    }
EOF
}

sub write_config {
    my ($self, %o) = @_;
    my $d = $self->{dir};
    my $so = module_path();
    my $http = $o{http} // '';
    my $servers = $o{servers} // $self->default_server(%o);
    my $main = $o{main} // '';
    my $conf = <<"EOF";
load_module $so;
worker_processes $self->{workers};
error_log $d/logs/error.log info;
pid $d/nginx.pid;
$main
events {
    worker_connections @{[ $o{worker_connections} // 1024 ]};
}

http {
    log_format snap '\$request_method \$status \$snapcache_status';
    access_log $d/logs/access.log snap;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
$http
$servers
    # the harness's own: \$t->stats reads the zone's counters here
    server {
        listen 127.0.0.1:$self->{stats_port};
        location = /stats {
            return 200 "\$snapcache_stats\\n";
        }
    }
}
EOF
    open my $f, '>', "$d/nginx.conf" or die $!;
    print $f $conf;
    close $f;
    return "$d/nginx.conf";
}

sub nginx_cmd {
    my ($self, @args) = @_;
    my @env;
    push @env, "LD_PRELOAD=$ENV{SNAPCACHE_PRELOAD}" if $ENV{SNAPCACHE_PRELOAD};
    return (@env ? ('env', @env) : ()),
        '/usr/sbin/nginx', '-p', "$self->{dir}/", '-c',
        "$self->{dir}/nginx.conf", @args;
}

# Runs `nginx -t` on the current config; returns (exit code, output).
sub test_config {
    my ($self) = @_;
    my $cmd = join ' ', map { "'$_'" } $self->nginx_cmd('-t');
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub start {
    my ($self, %o) = @_;
    $self->write_config(%o) unless $o{keep_config};
    my $cmd = join ' ', map { "'$_'" } $self->nginx_cmd();
    release_port($_) for $self->{port}, $self->{stats_port};
    # a killed master's pid file stays behind; the new master writes its
    # own only after the command has returned, so wait for that one
    unlink "$self->{dir}/nginx.pid";
    my $out = `$cmd 2>&1`;
    die "nginx failed to start: $out\n" . $self->error_log if $?;
    wait_until(sub { -s "$self->{dir}/nginx.pid" })
        or die "nginx wrote no pid file in 30 s\n" . $self->error_log;
    $self->wait_port($self->{port});
    $self->{started} = 1;
    $self->{master} = $self->master_pid;
    $self->wait_workers;
    return $self;
}

# ------------------------------------------------------------- waiting

# Polls a condition every 20 ms for up to $secs seconds (30 by default);
# true when it held.  Tests wait for what they need with this, never for
# a fixed time: ok(wait_until(sub { ... }), 'what was awaited').
sub wait_until {
    my ($cond, $secs) = @_;
    my $end = time + ($secs // 30);
    until ($cond->()) {
        return 0 if time > $end;
        sleep 0.02;
    }
    return 1;
}

# The port opens with the first worker; the others may still be in their
# init_process, opening the store.  A test that changes the store or
# counts on every worker must not race them: wait until each of the
# configured workers runs and has either mapped the store or said why it
# cannot.  With old => { pid => start time } (from worker_generation()),
# those workers do not count, and none of them may still accept
# connections: after a reload the old ones shut down (or are gone), after
# a kill the killed one was replaced.
sub wait_workers {
    my ($self, %o) = @_;
    my $old = $o{old} || {};
    my $secs = $o{secs} // 30;
    my $store = $self->store_dir;
    my ($w, $ready, $left) = ([], [], []);
    my $ok = wait_until(sub {
        my $log = $store ? $self->error_log : '';
        $w = [ grep {
            my $st = _start_time($_);
            _title($_) eq 'nginx: worker process'
                && !(defined $st && ($old->{$_} // -1) eq $st)
        } $self->worker_pids ];
        $ready = [ grep { _worker_ready($_, $store, $log) } @$w ];
        $left = [ grep {
            _title($_) eq 'nginx: worker process'
                && (_start_time($_) // -2) eq $old->{$_}
        } keys %$old ];
        @$w >= $self->{workers} && @$ready == @$w && !@$left;
    }, $secs);
    return 1 if $ok;
    die "nginx's $self->{workers} workers did not all start in $secs s "
        . "(new: @$w; ready: @$ready; old ones still accepting: @$left)\n"
        . $self->error_log;
}

# The workers running now, as { pid => start time }: what wait_workers
# is to see replaced.
sub worker_generation {
    my ($self) = @_;
    return { map { my $st = _start_time($_); defined $st ? ($_ => $st) : () }
        $self->worker_pids };
}

# Reloads (SIGHUP, with a new config if options are given) and returns
# once the new configuration serves: every configured worker is one the
# reload started, each has the store open, and every old worker is gone
# or shutting down (it has closed its listening sockets).  The master
# starts the new workers first and tells the old ones to quit a moment
# later, so new workers alone do not mean the old ones stopped accepting.
# Dies with the master's complaint when it refused the new config.
sub reload_and_wait {
    my ($self, %o) = @_;
    my $old = $self->worker_generation;
    my $from = $self->_log_size;
    $self->reload(%o);
    my $m = $self->master_pid;
    my $refused = sub {
        my ($line) = $self->_log_from($from) =~ /^(.*\[emerg\] $m#.*)$/m;
        die "nginx refused the reload: $line\n" if defined $line;
        return 0;
    };
    # a refused reload starts no worker: say so at once
    my $started = wait_until(sub {
        $refused->();
        my $g = $self->worker_generation;
        grep { ($old->{$_} // '') ne $g->{$_} } keys %$g;
    });
    die "nginx started no new worker in 30 s after SIGHUP\n"
        . $self->_log_from($from) unless $started;
    $self->wait_workers(old => $old);
    return 1;
}

# Waits until the workers given, which the test killed, are replaced and
# the configured workers are all up again, the store open.
sub wait_respawn {
    my ($self, @killed) = @_;
    my %old = map { my $st = _start_time($_); defined $st ? ($_ => $st) : () }
        @killed;
    return $self->wait_workers(old => \%old);
}

# Waits for a line of the error log matching $re, written after offset
# from (the start by default); returns the line, or undef after secs
# (30 by default).
sub wait_log {
    my ($self, $re, %o) = @_;
    my $line;
    wait_until(sub {
        ($line) = $self->_log_from($o{from} // 0) =~ /^(.*$re.*)$/m;
        defined $line;
    }, $o{secs});
    return $line;
}

sub store_dir {
    my ($self) = @_;
    open my $f, '<', "$self->{dir}/nginx.conf" or return undef;
    local $/;
    my ($store) = <$f> =~ /^\s*snapcache_store\s+(\S+)/m;
    return $store;
}

sub _worker_ready {
    my ($pid, $store, $log) = @_;
    return 1 unless $store;
    return _maps($pid, "$store/data.mdb")
        || $log =~ /\[emerg\] $pid#\d+: snapcache: cannot open the store/;
}

# A process's title as nginx set it ("nginx: worker process", "... is
# shutting down"), '' when it is gone.
sub _title {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/cmdline" or return '';
    my $cmd = <$f> // '';
    $cmd =~ s/\0.*//s;
    return $cmd;
}

# When a process started (clock ticks since boot): with its pid, it
# names one process, even after the pid is used again.
sub _start_time {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/stat" or return undef;
    my $stat = <$f> // return undef;
    $stat =~ s/^.*\) //s;
    return (split ' ', $stat)[19];
}

# (A lexical line, not $_: callers call this inside grep and map, where
# $_ is an alias of their list's element, and while (<$f>) would write
# the lines of the maps file into it.)
sub _maps {
    my ($pid, $file) = @_;
    open my $f, '<', "/proc/$pid/maps" or return 0;
    while (my $l = <$f>) {
        return 1 if $l =~ / \Q$file\E$/;
    }
    return 0;
}

sub master_pid {
    my ($self) = @_;
    open my $f, '<', "$self->{dir}/nginx.pid" or return $self->{master};
    my $pid = <$f>;
    chomp $pid;
    return $pid;
}

sub worker_pids {
    my ($self) = @_;
    my $m = $self->master_pid or return ();
    my @pids = split ' ', `pgrep -P $m`;
    return @pids;
}

# Sends SIGHUP and returns at once, for a reload that is to be refused:
# one that is to take effect is reload_and_wait.
sub reload {
    my ($self, %o) = @_;
    $self->write_config(%o) if %o;
    kill 'HUP', $self->master_pid;
}

sub stop {
    my ($self) = @_;
    return unless $self->{started};
    my $pid = $self->master_pid || $self->{master};
    if ($pid) {
        # a master killed below leaves its workers running: note them now
        my @workers = split ' ', `pgrep -P $pid 2>/dev/null`;
        kill 'QUIT', $pid;
        unless (wait_until(sub { !kill 0, $pid }, 10)) {
            Test::More::diag("nginx master $pid did not quit in 10 s: "
                . "killed, with its workers");
            kill 'KILL', $pid, @workers;
        }
        my $gone = sub { !grep { kill 0, $_ } @workers };
        unless (wait_until($gone, 5)) {
            kill 'KILL', grep { kill 0, $_ } @workers;
            # their listening sockets close only when they are gone
            wait_until($gone);
        }
    }
    $self->{started} = 0;
    rehold_port($_) for $self->{port}, $self->{stats_port};
}

sub wait_port {
    my ($self, $port) = @_;
    return 1 if wait_until(sub {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        close $s if $s;
        $s;
    });
    die "port $port did not open in 30 s\n";
}

sub error_log { $_[0]->_log_from(0) }

sub _log_path { $_[0]{log_file} // "$_[0]{dir}/logs/error.log" }

sub _log_size { -s $_[0]->_log_path // 0 }

# The error log from byte $from on (never before a watched log's start).
sub _log_from {
    my ($self, $from) = @_;
    open my $f, '<', $self->_log_path or return '';
    my $off = $self->{log_offset} // 0;
    $off = $from if $from > $off;
    seek $f, $off, 0 if $off;
    local $/;
    return <$f> // '';
}

# The zone's counters ($snapcache_stats) as { name => number }, from the
# server the harness adds to every config; {} when there is no zone.
sub stats {
    my ($self) = @_;
    my $r = raw_request($self->{stats_port}, '/stats');
    die "stats: status $r->{status}\n" unless $r->{status} == 200;
    return { map { split /=/, $_, 2 } split ' ', $r->{body} };
}

sub access_log {
    my ($self) = @_;
    open my $f, '<', "$self->{dir}/logs/access.log" or return '';
    local $/;
    return <$f>;
}

# ---------------------------------------------------------------- origin

# Behaviour is chosen by the snapshot id's prefix, so one origin serves
# every test: missing*, e500*, slowe500*, hang*, slow*, trunc*, notimg*,
# big* (8 MB of padding after the image), huge*; any
# other id gets that owner's marker image.
sub start_origin {
    my ($self, %o) = @_;
    my $port = $self->{origin_port};
    my $log = "$self->{dir}/origin.log";
    my $dir = "$self->{dir}/origin";
    my $snapmark = build_dir() . '/bin/snapmark';
    $self->{image_size} = $o{image_size} if $o{image_size};
    $Snapcache::Test::IMAGE_SIZE = $self->{image_size} // '1920x1080';

    my $listen = take_port_socket($port)
        // IO::Socket::INET->new(Listen => 128,
            LocalAddr => "127.0.0.1:$port", Proto => 'tcp', ReuseAddr => 1)
        or die "origin listen: $!";

    my $pid = fork // die;
    if ($pid) {
        close $listen;
        push @{ $self->{pids} }, $pid;
        $self->wait_port($port);
        return $pid;
    }

    # its own process group, so that hanging children die with it; and
    # no copy of the other reserved sockets, which nginx is to bind
    setpgrp(0, 0);
    close $_->{tcp} for grep { $_->{tcp} } values %held;
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        my $c = $listen->accept or next;
        my $kid = fork;
        if (!defined $kid || $kid) { close $c; next }
        close $listen;
        $SIG{CHLD} = 'DEFAULT';
        _origin_serve($c, $log, $dir, $snapmark);
        exit 0;
    }
}

sub _origin_serve {
    my ($c, $log, $dir, $snapmark) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = sysread $c, $req, 4096, length $req;
        return unless $n;
    }
    my ($method, $path) = $req =~ m{^(\S+) (\S+)};
    open my $l, '>>', $log or die;
    flock $l, 2;
    my $hdrs = join '|', map { lc } $req =~ m{^([\w-]+):}mg;
    print $l "$method $path $hdrs\n";
    close $l;

    # like some web frameworks, this origin lets X-Original-URL override
    # the path: snapcache must never pass it on
    my ($orig_url) = $req =~ m{^X-Original-URL:[ \t]*(\S+)}mi;
    $path = $orig_url if defined $orig_url;

    my ($acct, $dev, $snap) = $path =~ m{^/([^/]+)/([^/]+)/([^/?]+)$};
    $snap //= '';

    my $send = sub {
        my ($status, $body, %h) = @_;
        my $len = $h{len} // length $body;
        my $head = "HTTP/1.1 $status\r\nContent-Length: $len\r\n"
            . "Content-Type: " . ($h{type} // 'image/jpeg') . "\r\n"
            . ($h{extra} // '') . "Connection: close\r\n\r\n";
        syswrite $c, $head;
        syswrite $c, $body if length $body && $method ne 'HEAD';
    };

    if (!defined $acct) { $send->('400 Bad Request', "bad\n", type => 'text/plain'); return }
    if ($snap =~ /^missing/) { $send->('404 Not Found', "nope\n", type => 'text/plain'); return }
    if ($snap =~ /^slowe500/) { sleep 1; $send->('500 Internal Server Error', "err\n", type => 'text/plain'); return }
    if ($snap =~ /^e500/) { $send->('500 Internal Server Error', "err\n", type => 'text/plain'); return }
    if ($snap =~ /^hang/) { sleep 3600; return }

    my $body = _origin_image($dir, $snapmark, $acct, $dev, $snap);

    if ($snap =~ /^notimg/) { $send->('200 OK', "<html>not an image</html>\n", type => 'text/html'); return }
    if ($snap =~ /^trunc/) {
        $send->('200 OK', substr($body, 0, length($body) / 2),
            len => length $body);
        return;
    }
    if ($snap =~ /^big/) { $send->('200 OK', $body . ("\0" x (8 << 20))); return }
    if ($snap =~ /^huge/) { $send->('200 OK', $body . ("\0" x (64 << 20))); return }
    if ($snap =~ /^slow/) {
        syswrite $c, "HTTP/1.1 200 OK\r\nContent-Length: " . length($body)
            . "\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n";
        for (my $i = 0; $i < length $body; $i += 4096) {
            syswrite $c, substr($body, $i, 4096);
            sleep 0.05;
        }
        return;
    }
    $send->('200 OK', $body, extra => "Cache-Control: max-age=60\r\n");
}

# The owner-marked image for (acct, dev, snap), generated once and kept.
sub _origin_image {
    my ($dir, $snapmark, $acct, $dev, $snap) = @_;
    my $file = "$dir/$acct/$dev/$snap";
    unless (-s $file) {
        make_path("$dir/$acct/$dev");
        my $tmp = "$file.$$.tmp";
        if (-x $snapmark) {
            my ($w, $h) = split /x/, $IMAGE_SIZE;
            system($snapmark, 'gen', '--account', $acct, '--device', $dev,
                '--snapshot', $snap, '--width', $w, '--height', $h,
                '-o', "$tmp.jpg") == 0
                or die "snapmark gen failed";
            rename "$tmp.jpg", $tmp;
        } else {
            open my $f, '>', $tmp or die;
            print $f "\xff\xd8 owner=$acct/$dev/$snap \xff\xd9";
            close $f;
        }
        rename $tmp, $file;
    }
    open my $f, '<:raw', $file or die "$file: $!";
    local $/;
    return scalar <$f>;
}

sub origin_requests {
    my ($self) = @_;
    open my $f, '<', "$self->{dir}/origin.log" or return ();
    my @l = <$f>;
    chomp @l;
    return @l;
}

sub origin_count { scalar(my @l = $_[0]->origin_requests) }

# ---------------------------------------------------------------- client

# Sends exactly the bytes given as the request line's target, with no
# normalisation, and returns { status, headers => {lc name => value}, body }.
sub request {
    my ($self, $target, %o) = @_;
    return raw_request($self->{port}, $target, %o);
}

sub raw_request {
    my ($port, $target, %o) = @_;
    my $method = $o{method} // 'GET';
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Timeout => $o{timeout} // 30) or die "connect: $!";
    my $h = $o{headers} // {};
    my $req = "$method $target HTTP/1.1\r\nHost: localhost\r\n"
        . join('', map { "$_: $h->{$_}\r\n" } sort keys %$h)
        . "Connection: close\r\n";
    if (defined $o{body}) {
        $req .= "Content-Length: " . length($o{body}) . "\r\n\r\n$o{body}";
    } else {
        $req .= "\r\n";
    }
    print $s $req;
    local $/;
    my $resp = <$s> // '';
    close $s;
    return parse_response($resp);
}

# One GET on a connection of its own, closed after it, as a client of
# kind $mode: 'fast'; 'slow' (a 2 KB receive buffer, read 4 KB at a time
# with pauses); 'rst' (reads the first bytes, then resets the connection,
# and returns nothing).  The parsed response, or nothing.
sub fetch_as {
    my ($self, $target, $mode, %h) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $self->port,
        Timeout => 30) or return;
    if ($mode eq 'slow') {
        setsockopt($s, SOL_SOCKET, SO_RCVBUF, 2048);
    }
    my $hdrs = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
    print $s "GET $target HTTP/1.1\r\nHost: x\r\n${hdrs}"
        . "Connection: close\r\n\r\n";
    if ($mode eq 'rst') {
        my $buf;
        sysread $s, $buf, 512;
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $s;
        return;
    }
    my $resp = '';
    while (1) {
        my $n = sysread $s, $resp, 4096, length $resp;
        last unless $n;
        sleep(0.002) if $mode eq 'slow';
    }
    close $s;
    return parse_response($resp);
}

sub parse_response {
    my ($resp) = @_;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    $head //= '';
    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    for (split /\r\n/, $head) {
        $h{ lc $1 } = $2 if /^([\w-]+):\s*(.*)$/;
    }
    return { status => $status // 0, headers => \%h, body => $body // '',
        raw => $resp };
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@);
    return unless ($self->{owner} // 0) == $$;
    if (${^GLOBAL_PHASE} ne 'DESTRUCT') {
        $self->teardown;
    }
    $self->stop;
    kill 'KILL', map { -$_ } @{ $self->{pids} } if @{ $self->{pids} || [] };
    waitpid $_, 0 for @{ $self->{pids} || [] };
}

1;
