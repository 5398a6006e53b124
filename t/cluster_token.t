#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The cluster token opens every account's originals at the peer
# endpoints, so it goes only where an origin is marked as the peers
# (`snapcache_origin uri peers`).  With the token declared at http level,
# as a cluster's nodes declare it, a snapcache location of another server
# that fetches straight from its origin never sends it; nginx -t refuses
# the configurations that would send it anywhere else.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
my $op = $t->origin_port;
my ($tok, $file) = write_token($t, 'cluster');

my $store = "    snapcache_store $d/store size=16m;\n"
    . "    snapcache_cluster_token $file;\n";

# the plain location fetches from the origin; /peersnap/'s origin is
# marked as the peers (here the same fake origin, which logs headers)
$t->start(http => $store,
    server_extra => "        location /peersnap/ {\n"
        . "            snapcache;\n"
        . "            snapcache_origin /_peers peers;\n"
        . "        }\n"
        . "        location /_peers/ {\n"
        . "            internal;\n"
        . "            proxy_pass http://127.0.0.1:$op/;\n"
        . "        }\n");

sub headers_for {
    my ($path) = @_;
    my ($line) = grep { m{^GET \Q$path\E } } $t->origin_requests;
    return undef unless defined $line;
    my (undef, undef, $h) = split / /, $line, 3;
    return { map { $_ => 1 } split /\|/, $h // '' };
}

my $r = $t->request($t->sign_url(account => 'a1', device => 'd1',
    snapshot => 's1', v => 'thumb'));
is($r->{status}, 200, 'a single-node fill');
my $h = headers_for('/a1/d1/s1');
ok($h, 'the origin was asked');
ok(!$h->{authorization},
    'a plain origin never sees Authorization, with the token at http level')
    or diag join ',', sort keys %$h;

$r = $t->request($t->sign_url(prefix => '/peersnap/', account => 'a2',
    device => 'd1', snapshot => 's1', v => 'thumb'));
is($r->{status}, 200, 'a fill through the peers origin');
$h = headers_for('/a2/d1/s1');
ok($h && $h->{authorization}, 'the origin marked peers gets the token');

unlike($t->error_log . `cat $d/logs/access.log`, qr/\Q$tok\E/,
    'and the token is in no log');
$t->stop;

# ------------------------------------------------------------ nginx -t

sub refused {
    my ($name, $like, %o) = @_;
    $t->write_config(%o);
    my ($rc, $out) = $t->test_config;
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $like, "$name: and says why") or diag $out;
}

refused('peers without a cluster token',
    qr/"snapcache_origin \/_origin peers" requires a "snapcache_cluster_token"/,
    http => "    snapcache_store $d/store size=16m;\n",
    location_extra => "            snapcache_origin /_origin peers;\n");

refused('an unknown parameter', qr/invalid parameter "peer"/,
    http => $store,
    location_extra => "            snapcache_origin /_origin peer;\n");

my $peer = "        location /_peer/ {\n"
    . "            snapcache_peer;\n"
    . "            snapcache_origin %s;\n"
    . "        }\n";

refused('peers on a peer endpoint',
    qr/the origin of "snapcache_peer" is the camera cloud/,
    http => $store . "    snapcache_cold_start on;\n",
    server_extra => sprintf($peer, '/_origin peers'));

refused('one location as the peers and the camera cloud',
    qr/location "\/_origin\/" is both the peers' origin .* it would send the cluster token to the cloud/,
    http => $store . "    snapcache_cold_start on;\n",
    location_extra => "            snapcache_origin /_origin peers;\n",
    server_extra => sprintf($peer, '/_origin'));

done_testing;
