#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# snapcache_cors_origin: a listed origin gets Access-Control-Allow-Origin
# naming it, the X-Snapcache headers exposed, and its preflight answered
# 204; any other origin gets no grant and its preflight the old 405.
# Every answer of such a location says Vary: Origin; a location without
# the directive sends no CORS header at all.  nginx -t refuses what is
# not an origin.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $dash = 'https://dash.example.com';
my $t = Snapcache::Test->new;
$t->start_origin(image_size => '640x360');
my $d = $t->dir;
$t->start(
    http => "    snapcache_store $d/store size=16m;\n",
    location_extra => "            snapcache_cors_origin $dash "
        . "http://localhost:3000;\n",
    server_extra => "        location /plain/ {\n"
        . "            snapcache;\n"
        . "        }\n",
);

# every value of a header, in order, from the raw answer
sub all {
    my ($r, $name) = @_;
    my ($head) = split /\r\n\r\n/, $r->{raw}, 2;
    return map { /^\Q$name\E:\s*(.*)$/i ? $1 : () } split /\r\n/, $head;
}

sub url { $t->sign_url(account => 'a1', device => 'd1', snapshot => 's1',
    v => 'thumb', @_) }

my $r = $t->request(url(), headers => { Origin => $dash });
is($r->{status}, 200, 'a listed origin: 200');
is_deeply([all($r, 'Access-Control-Allow-Origin')], [$dash],
    'Access-Control-Allow-Origin names it');
is_deeply([all($r, 'Access-Control-Expose-Headers')],
    ['X-Snapcache, X-Snapcache-Variant, X-Snapcache-Adapt'],
    'the X-Snapcache headers are exposed');
ok(grep({ /\bOrigin\b/ } all($r, 'Vary')), 'Vary: Origin');
ok(grep({ /\bAccept\b/ } all($r, 'Vary')), 'beside Vary: Accept');
ok(!all($r, 'Access-Control-Allow-Credentials'), 'no credentials');

$r = $t->request(url(), headers => { Origin => 'HTTPS://DASH.Example.COM' });
is_deeply([all($r, 'Access-Control-Allow-Origin')], [$dash],
    'an origin in another case is the same origin');
$r = $t->request(url(), headers => { Origin => 'http://localhost:3000' });
is_deeply([all($r, 'Access-Control-Allow-Origin')], ['http://localhost:3000'],
    'the second listed origin');

for my $o ('https://evil.example', "$dash.evil.example",
    'https://dash.example.co', 'http://dash.example.com', 'null')
{
    $r = $t->request(url(), headers => { Origin => $o });
    is($r->{status}, 200, "$o: the image still");
    ok(!all($r, 'Access-Control-Allow-Origin')
        && !all($r, 'Access-Control-Expose-Headers'), "$o: no grant");
    ok(grep({ /\bOrigin\b/ } all($r, 'Vary')), "$o: Vary: Origin");
}
$r = $t->request(url());
ok(!all($r, 'Access-Control-Allow-Origin'), 'no Origin: no grant');

# refusals carry it too, so a dashboard can read why
$r = $t->request(url() =~ s/sig=[^&]+/sig=AAAA/r, headers => { Origin => $dash });
is($r->{status}, 403, 'a bad signature from a listed origin: 403');
is_deeply([all($r, 'Access-Control-Allow-Origin')], [$dash],
    'with the grant, so that its reason can be read');

# ------------------------------------------------------------- preflight

my %pre = (Origin => $dash, 'Access-Control-Request-Method' => 'GET',
    'Access-Control-Request-Headers' => 'save-data');
$r = $t->request(url(), method => 'OPTIONS', headers => \%pre);
is($r->{status}, 204, 'a preflight from a listed origin: 204');
is_deeply([all($r, 'Access-Control-Allow-Origin')], [$dash], 'naming it');
is_deeply([all($r, 'Access-Control-Allow-Methods')], ['GET, HEAD'],
    'GET and HEAD');
like(join(',', all($r, 'Access-Control-Allow-Headers')), qr/\bSave-Data\b/,
    'the headers a display may send');
ok(all($r, 'Access-Control-Max-Age'), 'a lifetime for the preflight');
is($r->{body}, '', 'no body');
$r = $t->request('/snap/anything', method => 'OPTIONS', headers => \%pre);
is($r->{status}, 204, 'a preflight needs no signature: it fetches nothing');

$r = $t->request(url(), method => 'OPTIONS',
    headers => { %pre, Origin => 'https://evil.example' });
is($r->{status}, 405, 'a preflight from another origin: 405 as before');
ok(!all($r, 'Access-Control-Allow-Origin'), 'and no grant');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow says what is');
$r = $t->request(url(), method => 'OPTIONS',
    headers => { %pre, 'Access-Control-Request-Method' => 'POST' });
is($r->{status}, 405, 'a preflight for POST: 405');
$r = $t->request(url(), method => 'OPTIONS', headers => { Origin => $dash });
is($r->{status}, 405, 'an OPTIONS that is no preflight: 405');

# ------------------------------------------------ a location without it

$r = $t->request(url(prefix => '/plain/'), headers => { Origin => $dash });
is($r->{status}, 200, 'a location without snapcache_cors_origin: 200');
ok(!all($r, 'Access-Control-Allow-Origin')
    && !grep({ /\bOrigin\b/ } all($r, 'Vary')), 'and no CORS header at all');
$r = $t->request(url(prefix => '/plain/'), method => 'OPTIONS',
    headers => \%pre);
is($r->{status}, 405, 'its preflight: 405');

like($t->access_log, qr/^OPTIONS 204 -$/m, 'the preflight is logged, no '
    . 'cache status');

# ---------------------------------------------------------------- config

for my $bad ('*', 'null', 'dash.example.com', 'https://dash.example.com/',
    'https://dash.example.com/path', 'ftp://dash.example.com')
{
    $t->write_config(location_extra =>
        "            snapcache_cors_origin $bad;\n");
    my ($rc, $out) = $t->test_config;
    isnt($rc, 0, "nginx -t refuses snapcache_cors_origin $bad");
    like($out, qr/invalid origin/, 'saying why');
}

done_testing;
