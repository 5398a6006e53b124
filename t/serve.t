#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The serving path: a miss fills from the origin through libvips, a hit
# comes from LMDB byte for byte, every body shows its owner's marker, and
# origin failures are answered without caching anything.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => "snapmark not built" unless -x $snapmark;

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
$t->start(
    main => "thread_pool snapcache threads=2;",
    http => "    snapcache_store $d/store size=64m;\n"
        . "    snapcache_zone snapcache:1m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . "        snapcache_max_original_size 4m;\n"
        . "        location /avif/ {\n"
        . "            snapcache;\n"
        . "            snapcache_variant small width=320 quality=50 "
        . "formats=jpeg,webp,avif;\n"
        . "            snapcache_variant large width=640 quality=60;\n"
        . "        }\n",
    origin_extra => "            proxy_read_timeout 2s;\n",
);

sub save {
    my ($name, $body) = @_;
    my $f = "$d/$name";
    open my $fh, '>:raw', $f or die;
    print $fh $body;
    close $fh;
    return $f;
}

sub owner_ok {
    my ($body, $a, $dev, $s, $name) = @_;
    my $f = save("body-$$-" . int(rand(1e9)), $body);
    my $out = `'$snapmark' check '$f' '$a' '$dev' '$s' 2>&1`;
    is($? >> 8, 0, "$name: the owner marker is $a/$dev/$s") or diag $out;
}

sub width_of {
    my ($body) = @_;
    my $f = save("info-$$", $body);
    my ($w) = `'$snapmark' info '$f'` =~ /width[ =:]+(\d+)/;
    return $w // 0;
}

my %id = (account => 'acct-1', device => 'cam-1', snapshot => 'snap-1');

# ------------------------------------------------------------ miss, hit

my $url = $t->sign_url(%id, v => 'thumb');
my $r1 = $t->request($url);
is($r1->{status}, 200, 'a cold request is answered');
is($r1->{headers}{'x-snapcache'}, 'MISS', 'as a MISS');
is($r1->{headers}{'x-snapcache-variant'}, 'thumb', 'of the variant asked');
is($r1->{headers}{'content-type'}, 'image/jpeg', 'as JPEG');
like($r1->{headers}{'cache-control'}, qr/^private, max-age=\d+$/,
    'Cache-Control is private');
like($r1->{headers}{etag} // '', qr/^"[^"]+"$/, 'with a strong ETag');
is($r1->{headers}{'content-length'}, length $r1->{body},
    'Content-Length matches the body');
is(width_of($r1->{body}), 320, 'the thumb is 320 pixels wide');
owner_ok($r1->{body}, 'acct-1', 'cam-1', 'snap-1', 'miss');

my $r2 = $t->request($url);
is($r2->{status}, 200, 'the second request is answered');
is($r2->{headers}{'x-snapcache'}, 'HIT', 'as a HIT');
ok($r2->{body} eq $r1->{body}, 'with the same bytes');
is($r2->{headers}{etag}, $r1->{headers}{etag}, 'and the same ETag');
my ($age) = $r2->{headers}{'cache-control'} =~ /max-age=(\d+)/;
ok($age > 0 && $age <= 60, "max-age is the remaining TTL ($age)");
is($t->origin_count, 1, 'one origin request so far');

my $head = $t->request($url, method => 'HEAD');
is($head->{status}, 200, 'HEAD on a hit');
is($head->{body}, '', 'has no body');
is($head->{headers}{'content-length'}, length $r1->{body},
    'but the full Content-Length');

my $nm = $t->request($url, headers => { 'If-None-Match' => $r1->{headers}{etag} });
is($nm->{status}, 304, 'If-None-Match with the ETag gives 304');
is($nm->{body}, '', 'without a body');
my $nm2 = $t->request($url, headers => { 'If-None-Match' => '"other"' });
is($nm2->{status}, 200, 'another ETag gives the image');

# ------------------------------------------------------------ variants

for my $v (qw(sd hd full)) {
    my $r = $t->request($t->sign_url(%id, v => $v));
    is($r->{status}, 200, "$v is answered");
    is($r->{headers}{'x-snapcache-variant'}, $v, "$v is labelled");
    my $want = { sd => 640, hd => 1280, full => 1920 }->{$v};
    is(width_of($r->{body}), $want, "$v is $want pixels wide");
    owner_ok($r->{body}, 'acct-1', 'cam-1', 'snap-1', $v);
}
is($t->origin_count, 1, 'every variant came from one origin request');

my $dflt = $t->request($t->sign_url(%id));
is($dflt->{headers}{'x-snapcache-variant'}, 'hd',
    'without v=, the default variant (hd)');
my $capped = $t->request($t->sign_url(%id, max => 'sd'));
is($capped->{headers}{'x-snapcache-variant'}, 'sd',
    'the default is capped by the signed max');
my $save = $t->request($t->sign_url(%id), headers => { 'Save-Data' => 'on' });
is($save->{headers}{'x-snapcache-variant'}, 'sd',
    'Save-Data caps at the second-lowest variant');

my $webp = $t->request($t->sign_url(%id, v => 'thumb'),
    headers => { Accept => 'image/webp,*/*' });
is($webp->{headers}{'content-type'}, 'image/webp', 'Accept: image/webp gets WebP');
is($webp->{headers}{'x-snapcache'}, 'MISS', 'a WebP variant has its own key');
owner_ok($webp->{body}, 'acct-1', 'cam-1', 'snap-1', 'webp');

# a ladder of the location's own, with AVIF on its small rung
my $av = $t->request($t->sign_url(%id, snapshot => 'snap-av', v => 'small',
    prefix => '/avif/'), headers => { Accept => 'image/avif,image/webp' });
is($av->{status}, 200, 'a location with its own ladder');
is($av->{headers}{'content-type'}, 'image/avif',
    'Accept: image/avif gets AVIF where the rung enables it');
owner_ok($av->{body}, 'acct-1', 'cam-1', 'snap-av', 'avif');
my $lg = $t->request($t->sign_url(%id, snapshot => 'snap-av', v => 'large',
    prefix => '/avif/'), headers => { Accept => 'image/avif,image/webp' });
is($lg->{headers}{'content-type'}, 'image/webp',
    'and WebP on a rung without AVIF');
is($t->request($t->sign_url(%id, v => 'thumb', prefix => '/avif/'))->{status},
    400, 'a variant of another ladder is unknown there');
my $own = $t->request($t->sign_url(%id, v => 'large', prefix => '/avif/'));
is($own->{headers}{'x-snapcache'}, 'MISS',
    'the second rung of another ladder is not the cached sd of this one');
is(width_of($own->{body}), 640, 'and is its own 640-pixel variant');

# ------------------------------------------------------------ tampering

my $cached = $t->sign_url(%id, v => 'thumb');
(my $bad = $cached) =~ s/sig=(.)/'sig=' . ($1 eq 'A' ? 'B' : 'A')/e;
my $tr = $t->request($bad);
is($tr->{status}, 403, 'a tampered URL for a cached snapshot is refused');
is($tr->{body}, "signature\n", 'with the reason, not the cached bytes');

my $other = $t->request($t->sign_url(%id, device => 'cam-2', v => 'thumb'));
owner_ok($other->{body}, 'acct-1', 'cam-2', 'snap-1', 'another device');

# ------------------------------------------------------------ origin failures

my %fail = (
    'missing-1' => 404,
    'e500-1' => 502,
    'trunc-1' => 502,
    'notimg-1' => 502,
    'huge-1' => 502,
    'hang-1' => 504,
);
for my $snap (sort keys %fail) {
    my $u = $t->sign_url(%id, snapshot => $snap, v => 'thumb');
    my $before = $t->origin_count;
    my $r = $t->request($u);
    is($r->{status}, $fail{$snap}, "origin $snap: $fail{$snap}");
    unlike($r->{body}, qr/\xff\xd8/, "origin $snap: no image bytes");
    my $r2 = $t->request($u);
    is($r2->{status}, $fail{$snap}, "origin $snap: again $fail{$snap}");
    # a 404 is remembered for snapcache_negative_ttl; nothing else is kept
    my $again = $fail{$snap} == 404 ? 1 : 2;
    is($t->origin_count, $before + $again, $again == 2
        ? "origin $snap: the second request went to the origin again"
        : "origin $snap: the 404 was remembered, not asked again");
}

my $log = $t->error_log;
like($log, qr/fill failed: the origin answered 404/, '404 is logged');
like($log, qr/fill failed: the origin answered with a status other than 200/,
    '5xx is logged');
like($log, qr/fill failed: the original exceeds snapcache_max_original_size/,
    'oversize is logged');
like($log, qr/fill failed: (the original is not a usable image|the origin (response is incomplete|body is shorter))/,
    'truncation is logged');
like($log, qr/fill failed: the origin timed out/, 'a hang is logged');

my $s = $t->stats;
ok($s->{transcodes} >= 6, "stats count transcodes ($s->{transcodes})");
ok($s->{hits} >= 2, "stats count hits ($s->{hits})");

my $access = $t->access_log;
like($access, qr/^GET 200 HIT$/m, '$snapcache_status is HIT');
like($access, qr/^GET 200 MISS$/m, '$snapcache_status is MISS');
like($access, qr/^GET 502 ERROR$/m, '$snapcache_status is ERROR on 502');

done_testing;
