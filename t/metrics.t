#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# GET <admin>/metrics is Prometheus text that `promtool check metrics`
# accepts (it parses and lints: base units, _total counters), and its
# counters move as the requests of this test say they should: requests
# by cache status, their durations by status and HTTP class, responses
# by HTTP status, verified and denied requests by configured kid, fills
# by result and in flight (across both workers, and across a reload's
# overlap), origin fetches by status with their durations, images served
# by variant and reason, transcodes by variant and format, fill and
# purge histograms, purges by scope and result, purged records, thread
# pool rejections, damaged records, evictions, the fill locks and link
# history, the zone, the build and the store's gauges.  The counters
# are the zone's, summed over both workers.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    inspect_records);

my $promtool = '/usr/bin/promtool';
plan skip_all => 'snapmark, snapdamage or promtool (Debian: prometheus) '
    . 'missing'
    unless -x build_dir() . '/bin/snapmark'
        && -x build_dir() . '/bin/snapdamage' && -x $promtool;

my $t0 = time;
my $t = Snapcache::Test->new(workers => 2, keys => ['k1', 'k2']);
$t->start_origin(image_size => '640x360');
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');
$t->start(
    main => "thread_pool snapcache threads=2 max_queue=64;\n"
        . "thread_pool tiny threads=1 max_queue=1;",
    http => "    snapcache_store $d/store size=64m;\n"
        . "    snapcache_fill_below off;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        location /tiny/ {\n"
        . "            snapcache;\n"
        . "            snapcache_thread_pool tiny;\n"
        . "            snapcache_max_fills 2;\n"
        . "        }\n"
        . admin_location($file),
    origin_extra => "            proxy_read_timeout 30s;\n",
);

# the scrape, checked by promtool, as { 'name{labels}' => value }
sub scrape {
    my ($inst, $tk, $name) = @_;
    my $r = admin_call($inst->port, 'GET', 'metrics', token => $tk);
    is($r->{status}, 200, "$name: 200");
    like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
        "$name: the text format's content type");
    my $f = $inst->dir . '/metrics.txt';
    open my $o, '>', $f or die;
    print $o $r->{body};
    close $o;
    my $out = `'$promtool' check metrics < '$f' 2>&1`;
    is($? >> 8, 0, "$name: promtool check metrics accepts it") or diag $out;
    my %m;
    for (split /\n/, $r->{body}) {
        next if /^#/;
        my ($k, $v) = /^(\S+) (\S+)$/ or next;
        $m{$k} = $v;
    }
    return \%m;
}

sub delta {
    my ($a, $b, $k) = @_;
    return ($b->{$k} // 0) - ($a->{$k} // 0);
}

# Requests are counted in their log phase, which may come a moment after
# the client read the last byte (a lingering close): scrape until the
# count of requests has caught up with what the test made, or 10 s.
sub scrape_until {
    my ($inst, $tk, $name, $m0, $n) = @_;
    my $m;
    for (1 .. 100) {
        $m = scrape($inst, $tk, $name);
        my $got = 0;
        $got += delta($m0, $m, "snapcache_requests_total{status=\"$_\"}")
            for qw(hit miss stale bypass denied error);
        return $m if $got >= $n;
        select undef, undef, undef, 0.1;
    }
    return $m;
}

sub get {
    my ($snap, %o) = @_;
    my $h = delete $o{headers};
    my $prefix = delete $o{prefix};
    return $t->request($t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => $snap, %o, $prefix ? (prefix => $prefix) : ()),
        $h ? (headers => $h) : ());
}

my $m0 = scrape($t, $tok, 'the first scrape');
my $sent = 0;
my %x;
my $count = sub {
    my ($r) = @_;
    $sent += length $r->{body};
    $x{ $r->{headers}{'x-snapcache'} // $r->{status} }++;
    return $r;
};

# pinned thumb: a miss, then a hit
$count->(get('s1', v => 'thumb'));
$count->(get('s1', v => 'thumb'));
# the default rung (hd): a miss from the kept original, then a hit
$count->(get('s1'));
$count->(get('s1'));
# Save-Data: the second-lowest rung, sd
$count->(get('s1', headers => { 'Save-Data' => 'on' }));
# a refused signature, and an origin that fails
my $bad = $t->sign_url(account => 'acct-m', device => 'cam-1',
    snapshot => 's1') =~ s/sig=[^&]+/sig=AAAA/r;
is($count->($t->request($bad))->{status}, 403, 'a refused signature');
is($count->($t->request($t->sign_url(account => 'acct-m', device => 'cam-1',
    snapshot => 's1', kid => 'nope', key => 'x' x 32)))->{status}, 403,
    'an unknown kid');
is($count->($t->request($t->sign_url(account => 'acct-m', device => 'cam-1',
    snapshot => 's1', kid => 'k2', exp => time - 5)))->{status}, 403,
    'an expired URL signed with k2');
is($count->(get('e500-1', v => 'thumb'))->{status}, 502, 'a failed fill');
is_deeply(\%x, { MISS => 3, HIT => 2, 403 => 3, 502 => 1 },
    'what the requests were');

# a full thread pool: 12 fills at once against 1 thread and a queue of 1;
# the origin sends each slowly (4 KB every 50 ms), so that the fills are
# still in flight while the rest of the burst arrives, however fast the
# machine
for my $s (map { "slowq$_" } 1 .. 12) {
    Snapcache::Test::_origin_image("$d/origin", build_dir() . '/bin/snapmark',
        'acct-m', 'cam-1', $s);
}
my @kids;
for my $i (1 .. 12) {
    my $pid = fork // die;
    if (!$pid) {
        my $r = raw_request($t->port, $t->sign_url(account => 'acct-m',
            device => 'cam-1', snapshot => "slowq$i", v => 'full',
            prefix => '/tiny/'));
        _exit($r->{status} == 200 ? 0 : $r->{status} == 503 ? 1 : 2);
    }
    push @kids, $pid;
}
my ($n200, $n503) = (0, 0);
for (@kids) {
    waitpid $_, 0;
    $n200++ if $? >> 8 == 0;
    $n503++ if $? >> 8 == 1;
}
is($n200 + $n503, 12, "the burst: $n200 answered, $n503 refused");
ok($n503 >= 1, 'some were refused');

# purges: a snapshot, a refused token, a bad body
my $j = admin_json(admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-m","device":"cam-1","snapshot":"s1"}'));
is($j->{records}, 4, 'the snapshot purge removed 4 records');
is(admin_call($t->port, 'POST', 'purge', token => 'b' x 64,
    body => '{"account":"acct-m"}')->{status}, 401, 'a wrong token: 401');
is(admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-m"')->{status}, 400, 'a bad body: 400');

# a damaged record, found by a read and replaced by a fill
is(get('s2', v => 'thumb')->{headers}{'x-snapcache'}, 'MISS', 's2 filled');
chomp(my $flipped = `'${\ build_dir()}/bin/snapdamage' '$d/store' flip 500`);
cmp_ok($flipped, '>=', 2, "damaged $flipped records");
is(get('s2', v => 'thumb')->{headers}{'x-snapcache'}, 'MISS',
    'the damaged record is a miss');
like($t->error_log, qr/snapcache: corrupt .*record, treated as a miss/,
    'and logged');

# every request this test made to /snap/ and /tiny/: 5 images, 3 refused,
# 1 failed, 12 in the burst, 2 of s2
my $m1 = scrape_until($t, $tok, 'the second scrape', $m0, 5 + 3 + 1 + 12 + 2);

my %want = (
    'snapcache_requests_total{status="hit"}' => 2,
    'snapcache_requests_total{status="miss"}' => 3 + $n200 + 2,
    'snapcache_requests_total{status="denied"}' => 3,
    'snapcache_requests_total{status="error"}' => 1 + $n503,
    'snapcache_requests_total{status="stale"}' => 0,
    'snapcache_fills_total{result="stored"}' => 3 + $n200 + 2,
    'snapcache_fills_total{result="failed"}' => 1,
    'snapcache_fills_total{result="rejected"}' => $n503,
    'snapcache_fills_total{result="purged"}' => 0,
    # the adaptation's reasons: a lowest-rung ceiling is "pinned", a
    # Save-Data cap "save-data"; on loopback the others are the ceiling,
    # "unknown" until a delivery was measured, then "ceiling"
    'snapcache_served_total{variant="thumb",reason="pinned"}' => 2 + 2,
    'snapcache_served_total{variant="sd",reason="save-data"}' => 1,
    'snapcache_transcode_duration_seconds_count{variant="thumb",format="jpeg"}'
        => 3,
    'snapcache_transcode_duration_seconds_count{variant="hd",format="jpeg"}'
        => 1,
    'snapcache_transcode_duration_seconds_count{variant="sd",format="jpeg"}'
        => 1,
    'snapcache_transcode_duration_seconds_count{variant="full",format="jpeg"}'
        => $n200,
    'snapcache_fill_duration_seconds_count' => 3 + $n200 + 2 + 1,
    'snapcache_purge_requests_total{scope="snapshot",result="ok"}' => 1,
    'snapcache_purge_requests_total{scope="none",result="unauthorized"}' => 1,
    'snapcache_purge_requests_total{scope="none",result="bad_request"}' => 1,
    'snapcache_purge_requests_total{scope="device",result="ok"}' => 0,
    'snapcache_purged_records_total' => 4,
    'snapcache_purge_duration_seconds_count' => 1,
    'snapcache_purges_begun_total' => 1,
    'snapcache_thread_pool_rejections_total' => $n503,
    # the damaged thumb, then the damaged kept original the fill read
    'snapcache_bad_record_reads_total{kind="corrupt"}' => 2,
    'snapcache_bad_record_reads_total{kind="foreign"}' => 0,
    # by cache status and class: the burst's 503s are errors, 5xx
    'snapcache_request_duration_seconds_count{status="hit",class="2xx"}' => 2,
    'snapcache_request_duration_seconds_count{status="miss",class="2xx"}'
        => 3 + $n200 + 2,
    'snapcache_request_duration_seconds_count{status="denied",class="4xx"}'
        => 3,
    'snapcache_request_duration_seconds_count{status="error",class="5xx"}'
        => 1 + $n503,
    'snapcache_request_duration_seconds_count{status="hit",class="5xx"}' => 0,
    'snapcache_responses_total{code="200"}' => 5 + $n200 + 2,
    'snapcache_responses_total{code="403"}' => 3,
    'snapcache_responses_total{code="502"}' => 1,
    'snapcache_responses_total{code="503"}' => $n503,
    'snapcache_responses_total{code="304"}' => 0,
    # the gate, by kid: both configured kids, and none for an unknown one
    'snapcache_verified_total{kid="k1"}' => 5 + 1 + 12 + 2,
    'snapcache_verified_total{kid="k2"}' => 0,
    'snapcache_denied_total{reason="signature",kid="k1"}' => 1,
    'snapcache_denied_total{reason="expired",kid="k2"}' => 1,
    'snapcache_denied_total{reason="key",kid=""}' => 1,
    'snapcache_denied_total{reason="lifetime",kid="k1"}' => 0,
    'snapcache_origin_fetches_total{code="500",result="error"}' => 1,
);
for my $k (sort keys %want) {
    is(delta($m0, $m1, $k), $want{$k}, "$k moved by $want{$k}");
}

for my $v (['hd', 2], ['full', $n200]) {
    my $moved = 0;
    $moved += delta($m0, $m1, "snapcache_served_total{variant=\"$v->[0]\","
        . "reason=\"$_\"}") for qw(unknown ceiling);
    is($moved, $v->[1], "snapcache_served_total{variant=\"$v->[0]\"} moved "
        . "by $v->[1] as unknown or ceiling");
    is(delta($m0, $m1, "snapcache_served_total{variant=\"$v->[0]\","
        . "reason=\"link\"}"), 0, "none of them chosen down by the link");
}

is($m1->{'snapcache_fill_duration_seconds_bucket{le="+Inf"}'},
    $m1->{snapcache_fill_duration_seconds_count},
    'the +Inf bucket is the count');

# nothing but configured kids as labels
my @klabels = sort keys %{{ map { /kid="([^"]*)"/ ? ($1 => 1) : () }
    grep { /^snapcache_(?:verified|denied)_total/ } keys %$m1 }};
is_deeply(\@klabels, ['', 'k1', 'k2'], 'kid labels: the configured kids, and '
    . 'none for an unknown one');

# every request once in the duration histogram, +Inf its count
my ($nreq, $nhist) = (0, 0);
for my $st (qw(hit miss stale bypass denied error)) {
    $nreq += delta($m0, $m1, "snapcache_requests_total{status=\"$st\"}");
    for my $c (qw(2xx 3xx 4xx 5xx)) {
        my $l = "status=\"$st\",class=\"$c\"";
        $nhist += delta($m0, $m1,
            "snapcache_request_duration_seconds_count{$l}");
        is($m1->{"snapcache_request_duration_seconds_bucket{$l,le=\"+Inf\"}"},
            $m1->{"snapcache_request_duration_seconds_count{$l}"},
            "request duration {$l}: +Inf is the count") if $st eq 'miss';
    }
}
is($nhist, $nreq, "each of the $nreq requests is in the duration histogram");

# origin fetches: as many as the origin saw, each timed
my $fetches = 0;
$fetches += delta($m0, $m1, $_) for grep { /^snapcache_origin_fetches_total/ }
    keys %$m1;
is($fetches, $t->origin_count, "origin fetches are what the origin saw "
    . "($fetches)");
is(delta($m0, $m1, 'snapcache_origin_fetch_duration_seconds_count'), $fetches,
    'and each is in the fetch histogram');

# the build and the zone
chomp(my $ver = `sed -n '1s/^[^(]*(\\([^)]*\\)).*/\\1/p' $FindBin::Bin/../debian/changelog`);
my ($ngx) = `/usr/sbin/nginx -v 2>&1` =~ m{nginx/(\S+)};
is($m1->{"snapcache_build_info{version=\"$ver\",nginx=\"$ngx\"}"}, 1,
    "snapcache_build_info{version=\"$ver\",nginx=\"$ngx\"}");
my $zs = $m1->{snapcache_zone_start_time_seconds};
ok($zs >= int($t0) - 1 && $zs <= time, "the zone started with this nginx "
    . "($zs)");
is($m1->{snapcache_zone_size_bytes}, 1 << 20, 'the default zone: 1 MB');
ok($m1->{snapcache_zone_free_bytes} >= 0
    && $m1->{snapcache_zone_free_bytes} < $m1->{snapcache_zone_size_bytes},
    'of which some is free');
is($m1->{snapcache_fill_locks_capacity}, 1024, 'room for 1024 fill locks');
ok($m1->{snapcache_link_history_capacity} > 0
    && $m1->{snapcache_link_history_entries} >= 1
    && $m1->{snapcache_link_history_entries}
        <= $m1->{snapcache_link_history_capacity},
    "the link history holds $m1->{snapcache_link_history_entries} of "
    . "$m1->{snapcache_link_history_capacity}");

# ----------------------------------------------------- fills in flight

# a fill that hangs at the origin: in flight, holding its lock, seen by
# either worker's scrape; across a reload, the old worker that runs it
# still counts it; when its client goes away it is gone
sub wait_metric {
    my ($k, $want, $name) = @_;
    my $m;
    for (1 .. 100) {
        $m = scrape($t, $tok, $name);
        last if ($m->{$k} // -1) == $want;
        select undef, undef, undef, 0.1;
    }
    is($m->{$k}, $want, "$name: $k is $want");
}
wait_metric('snapcache_fills_in_flight', 0, 'before the hanging fill');
my $hang = fork // die;
if (!$hang) {
    raw_request($t->port, $t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => 'hang-1', v => 'thumb'), timeout => 60);
    _exit(0);
}
wait_metric('snapcache_fills_in_flight', 1, 'a fill waits on the origin');
wait_metric('snapcache_fill_locks', 1, 'it holds its fill lock');
my @old = $t->worker_pids;
$t->reload_and_wait;
ok(scalar(grep { kill 0, $_ } @old), 'the reload is done, and the old '
    . 'worker with the fill still runs, shutting down');
my $m2 = scrape($t, $tok, 'after a reload');
is($m2->{snapcache_fills_in_flight}, 1,
    "after a reload, the old worker's fill is still counted by the new ones");
kill 'KILL', $hang;
waitpid $hang, 0;
wait_metric('snapcache_fills_in_flight', 0, 'its client went away');
wait_metric('snapcache_fill_locks', 0, 'the lock is free again');
cmp_ok(delta($m0, $m1, 'snapcache_sent_bytes_total'), '>=', $sent,
    "sent bytes cover the bodies ($sent)");
is($m1->{snapcache_store_records}, scalar(inspect_records("$d/store")),
    'snapcache_store_records is what the store holds');
cmp_ok($m1->{snapcache_store_used_bytes}, '>', 0, 'the store is in use');
is($m1->{snapcache_store_size_bytes}, 64 << 20, 'of its configured size');

# the stats JSON says the same
my $s = admin_json(admin_call($t->port, 'GET', 'stats', token => $tok));
is($s->{counters}{hits}, 2, 'stats: hits');
is($s->{fills}{rejected}, $n503, 'stats: rejected fills');
is($s->{store}{records}, $m1->{snapcache_store_records}, 'stats: records');
is($s->{fills}{in_flight}, 0, 'stats: no fill in flight');
is($s->{zone_start}, $m1->{snapcache_zone_start_time_seconds},
    'stats: the zone start');
is(admin_call($t->port, 'HEAD', 'stats', token => $tok)->{body}, '',
    'HEAD stats: no body');

# ------------------------------------------------------------- evictions

# a 1 MB store overfilled: records are evicted, and counted
my $e = Snapcache::Test->new(workers => 2);
$e->start_origin(image_size => '640x360');
my $ed = $e->dir;
my ($etok, $efile) = write_token($e, 'admin');
$e->start(
    http => "    snapcache_store $ed/store size=1m;\n",
    server_extra => admin_location($efile),
);
my $e0 = scrape($e, $etok, 'the small store, first scrape');
for my $i (1 .. 40) {
    $e->request($e->sign_url(account => 'acct-e', device => 'cam-1',
        snapshot => "e$i", v => 'thumb'));
}
my $e1 = scrape($e, $etok, 'the small store, second scrape');
my $evicted = delta($e0, $e1, 'snapcache_evictions_total');
cmp_ok($evicted, '>', 0, "records were evicted ($evicted)");
is($e1->{snapcache_store_records}, 80 - $evicted,
    'the store holds what was stored less what was evicted');

done_testing;
