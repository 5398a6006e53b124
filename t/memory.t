#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The memory tier (snapcache_memory_cache): a hit from the tier is byte
# for byte the hit from the store (headers but Date, and the body, for
# GET, HEAD and If-None-Match, small bodies sent from memory and large
# ones with sendfile() from the tier's memfd); an expired entry is not
# served; the gate still runs before the tier (a tampered or expired URL
# for a hot variant gets its 403, v= above max its 400); the tier's
# counters move; and the directive's bad uses stop nginx -t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call
    start_gated_origin set_phase owner_of wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new(workers => 2);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');

# the gated origin: its images say "<snap>.after" once the phase is
# "after", so that a body from before a change is told apart
start_gated_origin($t, image_size => '1920x1080');

$t->start(
    main => 'thread_pool snapcache threads=2;',
    http => "    snapcache_store $d/store size=64m;\n"
        . "    snapcache_memory_cache size=16m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_ttl_min 300s;\n"
        . "        add_header X-Worker \$pid always;\n"
        . "        location /lmdb/ {\n"
        . "            snapcache;\n"
        . "            snapcache_memory_cache off;\n"
        . "        }\n"
        . "        location /short/ {\n"
        . "            snapcache;\n"
        . "            snapcache_ttl_min 3s;\n"
        . "            snapcache_ttl_max 3s;\n"
        . "        }\n"
        . admin_location($file),
);

# the tier's figures from /metrics
sub mem {
    my $m = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
    my %v;
    $v{$1} = $2 while $m =~ /^snapcache_memory_(\S+) (\d+)$/mg;
    return \%v;
}

# a response as bytes to compare: status line, headers but Date and the
# worker's pid, body
sub canon {
    my ($r) = @_;
    my ($head, $body) = split /\r\n\r\n/, $r->{raw}, 2;
    my @h = grep { !/^(?:Date|X-Worker):/i } split /\r\n/, $head;
    # the lifetime left counts down between two requests
    s/max-age=\d+/max-age=N/ for @h;
    return join("\r\n", @h) . "\r\n\r\n" . ($body // '');
}

# Requests target on new connections until both workers have served it
# from their tier (each worker's first hit reads the store and admits).
sub warm_both {
    my ($target, %o) = @_;
    my %hits;
    my $ok = wait_until(sub {
        my $r = $t->request($target, %o);
        $hits{ $r->{headers}{'x-worker'} }++
            if ($r->{headers}{'x-snapcache'} // '') eq 'HIT';
        (grep { $_ >= 2 } values %hits) >= 2;
    });
    return $ok;
}

set_phase($t, 'before');

# ------------------------------------------------- byte for byte

my @cases = (
    [ 'thumb, JPEG', 's1', 'thumb', {} ],
    [ 'sd, WebP', 's1', 'sd', { Accept => 'image/webp' } ],
    [ 'full, JPEG: sendfile from the memfd', 's2', 'full', {} ],
);

for my $c (@cases) {
    my ($name, $snap, $v, $h) = @$c;
    my $q = $t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => $snap, v => $v);
    my $lq = $q =~ s{^/snap/}{/lmdb/}r;

    my $first = $t->request($q, headers => $h);
    is($first->{status}, 200, "$name: filled");
    my $store = $t->request($lq, headers => $h);
    is($store->{headers}{'x-snapcache'}, 'HIT', "$name: a hit from the store");

    my $before = mem();
    ok(warm_both($q, headers => $h), "$name: both workers hit the tier");
    my $after = mem();
    cmp_ok($after->{'lookups_total{result="hit"}'}
        - $before->{'lookups_total{result="hit"}'}, '>=', 2,
        "$name: the tier served hits");

    my @diff;
    my ($age) = $store->{headers}{'cache-control'} =~ /max-age=(\d+)/;
    for my $i (1 .. 6) {
        my $r = $t->request($q, headers => $h);
        my ($a) = $r->{headers}{'cache-control'} =~ /max-age=(\d+)/;
        push @diff, $i if canon($r) ne canon($store) || abs($a - $age) > 2;
    }
    is("@diff", '', "$name: six hits, byte for byte the store's hit");
    ok(owner_of($t, $store->{body}, 'acct-m', 'cam-1', $snap),
        "$name: and the owner's image");

    my $head = $t->request($q, method => 'HEAD', headers => $h);
    my $lhead = $t->request($lq, method => 'HEAD', headers => $h);
    is(canon($head), canon($lhead), "$name: HEAD as the store's");
    is($head->{body}, '', "$name: HEAD has no body");

    my $etag = $store->{headers}{etag};
    my $nm = $t->request($q, headers => { %$h, 'If-None-Match' => $etag });
    my $lnm = $t->request($lq, headers => { %$h, 'If-None-Match' => $etag });
    is($nm->{status}, 304, "$name: If-None-Match, 304");
    is(canon($nm), canon($lnm), "$name: the 304 as the store's");
}

my $full = $t->request($t->sign_url(account => 'acct-m', device => 'cam-1',
    snapshot => 's2', v => 'full'));
cmp_ok(length $full->{body}, '>', 64 * 1024,
    'the full variant is large enough for sendfile');

my $m = mem();
cmp_ok($m->{entries}, '>=', 6, 'entries in both workers\' tiers');
cmp_ok($m->{bytes}, '>', length $full->{body}, 'their bytes are counted');
cmp_ok($m->{admissions_total}, '>=', $m->{entries}, 'admissions counted');

# a location without the tier neither reads nor feeds it
{
    my $before = mem();
    my $q = $t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => 's3', v => 'thumb', prefix => '/lmdb/');
    $t->request($q) for 1 .. 6;
    my $after = mem();
    is($after->{admissions_total}, $before->{admissions_total},
        'snapcache_memory_cache off: nothing admitted');
    is($after->{'lookups_total{result="hit"}'},
        $before->{'lookups_total{result="hit"}'},
        'snapcache_memory_cache off: no hit from the tier');
}

# ------------------------------------------------- the gate first

{
    my $q = $t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => 's1', v => 'thumb');
    (my $tampered = $q) =~ s/sig=(.)/'sig=' . ($1 eq 'A' ? 'B' : 'A')/e;
    my $r = $t->request($tampered);
    is($r->{status}, 403, 'a tampered URL for a hot variant: 403');
    unlike($r->{body}, qr/\xff\xd8/, 'and no image bytes');

    my $old = $t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => 's1', v => 'thumb', exp => int(time) - 10);
    is($t->request($old)->{status}, 403, 'an expired URL for it: 403');

    my $capped = $t->sign_url(account => 'acct-m', device => 'cam-1',
        snapshot => 's1', max => 'thumb', v => 'full');
    is($t->request($capped)->{status}, 400, 'v= above the signed max: 400');

    my $other = $t->sign_url(account => 'acct-other', device => 'cam-1',
        snapshot => 's1', v => 'thumb');
    my $o = $t->request($other);
    is($o->{status}, 200, 'another account, same device and snapshot ids');
    ok(owner_of($t, $o->{body}, 'acct-other', 'cam-1', 's1'),
        'gets its own image, not the hot one');
}

# ------------------------------------------------- expiry

{
    my $q = $t->sign_url(account => 'acct-m', device => 'cam-x',
        snapshot => 'e1', v => 'thumb', prefix => '/short/');
    my $before = mem();
    my $r = $t->request($q);
    is($r->{status}, 200, 'expiry: filled with a 3 s lifetime');
    my $stored = time;

    # hits while it is fresh: the workers that hit the store admit it
    while (time < $stored + 1.5) {
        $t->request($q);
    }
    my $admitted = mem()->{admissions_total} - $before->{admissions_total};
    cmp_ok($admitted, '>=', 1, "expiry: in $admitted workers' tiers");

    set_phase($t, 'after');
    # past its expiry (whole seconds: expired when expires <= now)
    ok(wait_until(sub { time >= int($stored) + 4 }), 'expiry: time passes');

    # every worker that holds it meets it expired, and serves it never
    my $exp = $before->{'evictions_total{reason="expired"}'};
    my @old;
    my $n = 0;
    ok(wait_until(sub {
        my $x = $t->request($q);
        $n++;
        push @old, $n unless $x->{status} == 200
            && owner_of($t, $x->{body}, 'acct-m', 'cam-x', 'e1.after');
        mem()->{'evictions_total{reason="expired"}'} - $exp >= $admitted;
    }), 'expiry: each tier that held it let it go as expired');
    is("@old", '', "expiry: none of $n requests got the expired image");
    set_phase($t, 'before');
}

# ------------------------------------------------- configuration

{
    my $c = Snapcache::Test->new;
    my $cd = $c->dir;
    my @bad = (
        [ 'size below 1m', "snapcache_memory_cache size=512k;", '',
            qr/at least 1m/ ],
        [ 'no size', "snapcache_memory_cache 64m;", '', qr/needs size=/ ],
        [ 'size= in a server', '', "snapcache_memory_cache size=8m;",
            qr/size= is set in http/ ],
        [ 'twice', "snapcache_memory_cache size=8m;\n"
            . "    snapcache_memory_cache size=8m;", '', qr/is duplicate/ ],
    );
    for my $b (@bad) {
        my ($name, $http, $srv, $re) = @$b;
        $c->write_config(http => "    snapcache_store $cd/store size=8m;\n"
            . "    $http\n", server_extra => "        $srv\n");
        my ($rc, $out) = $c->test_config;
        isnt($rc, 0, "config, $name: nginx -t fails");
        like($out, $re, "config, $name: says why");
    }
    $c->write_config(http => "    snapcache_store $cd/store size=8m;\n"
        . "    snapcache_memory_cache size=8m;\n",
        server_extra => "        snapcache_memory_cache off;\n");
    my ($rc, $out) = $c->test_config;
    is($rc, 0, 'config: size in http, off in a server') or diag $out;
}

done_testing;
