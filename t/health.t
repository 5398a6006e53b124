#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# snapcache_health, the balancer's check: no token, 200 "ok" or 503 with
# one word and nothing else.  store: the worker's store cannot be
# opened (a worker respawned into an unreadable store); pool: fills were
# refused for snapcache_max_fills moments ago, and ok again once that
# is past; zone: every fill lock of the zone was held by a live fill (a
# miss found none and filled uncoalesced).  `snapcache health` against
# the real node says the same and exits 0 or 1.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir raw_request);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $cli = build_dir() . '/snapcache';
my $health_loc = "        location = /health {\n"
    . "            snapcache_health;\n"
    . "        }\n";

sub health { raw_request($_[0]->port, '/health', @_[1 .. $#_]) }

sub cli_health {
    my ($t) = @_;
    my $out = `'$cli' health --node http://127.0.0.1:@{[ $t->port ]} 2>&1`;
    return ($? >> 8, $out);
}

# waits until the health answer's body is $word, or 15 s
sub health_becomes {
    my ($t, $word) = @_;
    my $r;
    my $end = time + 15;
    while (time < $end) {
        $r = health($t);
        last if $r->{body} eq "$word\n";
        sleep 0.1;
    }
    return $r;
}

# --------------------------------------------------------- ok, and pool

my $t = Snapcache::Test->new(workers => 1);
$t->start_origin;
my $d = $t->dir;
$t->start(
    main => "thread_pool snapcache threads=1 max_queue=16;",
    http => "    snapcache_store $d/store size=16m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_max_fills 1;\n"
        . $health_loc,
    origin_extra => "            proxy_read_timeout 30s;\n",
);

my $r = health($t);
is($r->{status}, 200, 'a healthy node: 200');
is($r->{body}, "ok\n", 'saying ok');
like($r->{headers}{'content-type'}, qr{^text/plain}, 'in plain text');
is($r->{headers}{'cache-control'}, 'no-store', 'never cached');
ok(!exists $r->{headers}{'www-authenticate'}, 'no token asked for');
is(health($t, method => 'HEAD')->{status}, 200, 'HEAD works');
is(health($t, method => 'POST', body => 'x')->{status}, 405,
    'other methods: 405');

my ($rc, $out) = cli_health($t);
is($rc, 0, 'snapcache health: exit 0');
like($out, qr{^http://127\.0\.0\.1:\d+ ok$}m, 'and says ok') or diag $out;

# one fill hangs at the origin; with snapcache_max_fills 1 the next miss
# is refused with 503, and health says pool
my $hang = fork // die;
if (!$hang) {
    raw_request($t->port, $t->sign_url(account => 'a1', device => 'd1',
        snapshot => 'hang-1', v => 'thumb'), timeout => 60);
    _exit(0);
}
my $end = time + 10;
sleep 0.02 until grep({ m{/hang-1 } } $t->origin_requests) || time > $end;
ok(grep({ m{/hang-1 } } $t->origin_requests), 'a fill waits on the origin');
my $refused;
$end = time + 10;
while (time < $end) {
    $refused = $t->request($t->sign_url(account => 'a1', device => 'd1',
        snapshot => 's' . int(rand 1e9), v => 'thumb'));
    last if $refused->{status} == 503;
    sleep 0.05;
}
is($refused->{status}, 503, 'a miss beyond snapcache_max_fills: 503');
$r = health($t);
is($r->{status}, 503, 'health: 503');
is($r->{body}, "pool\n", 'saying pool');
($rc, $out) = cli_health($t);
is($rc, 1, 'snapcache health: exit 1');
like($out, qr{failed: pool \(HTTP 503\)}, 'naming the reason') or diag $out;
kill 'KILL', $hang;
waitpid $hang, 0;
$r = health_becomes($t, 'ok');
is($r->{status}, 200, 'some seconds after the last refusal: ok again');
unlike($t->error_log, qr/health.*(?:sig=|k1\.key)/, 'nothing secret logged');

# ---------------------------------------------------------------- store

SKIP: {
    skip 'needs root: the worker user must differ from the lock file\'s '
        . 'reader', 6 if $> != 0;
    $t->expect_log(qr/worker process \d+ exited on signal 9/,
        qr/snapcache: cannot open the store .*Permission denied/);
    my ($old) = $t->worker_pids;
    chmod 0000, "$d/store/lock.mdb" or die $!;
    kill 'KILL', $old;
    $r = health_becomes($t, 'store');
    is($r->{status}, 503, 'a worker whose store is not open: 503');
    is($r->{body}, "store\n", 'saying store');
    ($rc, $out) = cli_health($t);
    is($rc, 1, 'snapcache health: exit 1');
    like($out, qr{failed: store \(HTTP 503\)}, 'naming the reason')
        or diag $out;
    chmod 0600, "$d/store/lock.mdb" or die $!;
    $r = health_becomes($t, 'ok');
    is($r->{status}, 200, 'once the store opens: ok');
    ($rc, $out) = cli_health($t);
    is($rc, 0, 'snapcache health: exit 0 again');
}

# ----------------------------------------------------------------- zone

# 1025 misses of distinct snapshots at once, each waiting on an origin
# that takes connections and never answers: 1024 fill locks are held,
# the last miss finds none
my $n = 1025;
my $z = Snapcache::Test->new(workers => 1);
my $zd = $z->dir;
my $origin = Snapcache::Test::take_port_socket($z->origin_port);
listen $origin, 4096;
$z->start(
    main => "worker_rlimit_nofile 8192;",
    worker_connections => 4096,
    http => "    snapcache_store $zd/store size=16m;\n",
    server_extra => "        snapcache_max_fills 4096;\n"
        . "        snapcache_lock_timeout 30s;\n"
        . "        snapcache_fill_timeout 30s;\n"
        . $health_loc,
    origin_extra => "            proxy_read_timeout 30s;\n",
);
is(health($z)->{body}, "ok\n", 'the zone node starts healthy');

open my $uf, '>', "$zd/urls" or die;
print $uf $z->sign_url(account => 'az', device => 'dz', snapshot => "z$_",
    v => 'thumb'), "\n" for 1 .. $n;
close $uf;

# the client holds its connections in a process of its own, whose
# descriptor limit it raises first
my $holder = fork // die;
if (!$holder) {
    close $origin;
    my $port = $z->port;
    no warnings 'exec';
    exec { 'sh' } 'sh', '-c', 'ulimit -n 4096 2>/dev/null; exec "$0" -e "$1" "$2" '
        . '"$3" "$4"', $^X, <<'EOF', $port, "$zd/urls", "$zd/held";
use IO::Socket::INET;
my ($port, $urls, $held) = @ARGV;
open my $f, '<', $urls or die;
my @s;
while (my $u = <$f>) {
    chomp $u;
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or last;
    print $c "GET $u HTTP/1.1\r\nHost: localhost\r\n\r\n";
    push @s, $c;
}
open my $h, '>', "$held.tmp" or die;
print $h scalar(@s), "\n";
close $h;
rename "$held.tmp", $held;
sleep 120;
EOF
    _exit(2);
}

my $held = 0;
$end = time + 30;
while (time < $end) {
    if (open my $h, '<', "$zd/held") { $held = <$h>; chomp $held; last }
    sleep 0.1;
}
is($held, $n, "$n misses are in, each on a connection of its own");
$r = health_becomes($z, 'zone');
is($r->{status}, 503, 'every fill lock held: 503');
is($r->{body}, "zone\n", 'saying zone');
kill 'KILL', $holder;
waitpid $holder, 0;
$r = health_becomes($z, 'ok');
is($r->{status}, 200, 'once the misses are gone and some seconds passed: ok');
close $origin;

# ---------------------------------------------------------------- config

$z->write_config(location_extra => "            snapcache_health;\n");
my ($crc, $cout) = $z->test_config;
isnt($crc, 0, 'nginx -t refuses snapcache_health in a snapcache location');
like($cout, qr/"snapcache_health" needs a location of its own/, 'saying why');

done_testing;
