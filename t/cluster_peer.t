#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The peer endpoint is closed to clients.  A caller outside the allowed
# addresses gets 403 even with the token; inside them, no token, a wrong
# token or a malformed one gets 401; a target that is not exactly three
# valid ids gets 400; and none of these fetches anything from the cloud.
# Clients cannot reach the origin locations either.  A peer with a token
# gets the original (the cloud asked once, then the kept copy), and a
# 404 stays a 404.  Every configured token is accepted, for rotation.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token);
use Snapcache::Cluster;

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $c = Snapcache::Cluster->new(nodes => 1);
my ($next, $next_file) = write_token($c->node(0), 'cluster-next');
$c->{opt}{more_tokens} = [$next_file];
$c->start;
my $t = $c->node(0);
my $token = $c->cluster_token;

# One request from a chosen local address.
sub from {
    my ($addr, $target, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port,
        LocalAddr => $addr, Timeout => 30) or die "connect: $!";
    my $h = $o{headers} // {};
    print $s ($o{method} // 'GET') . " $target HTTP/1.1\r\nHost: localhost\r\n"
        . join('', map { "$_: $h->{$_}\r\n" } sort keys %$h)
        . "Connection: close\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    return Snapcache::Test::parse_response($resp);
}

sub bearer { { Authorization => "Bearer $_[0]" } }

sub fetched { scalar(my @l = $c->cloud_requests) }

my $peer = '/_peer/acct-p/cam-1/s1';

# ------------------------------------------------------------- refused

my $r = from('127.0.0.1', $peer, headers => bearer($token));
is($r->{status}, 403, 'a client address outside allow: 403, token or not');

$r = from('127.0.0.2', $peer);
is($r->{status}, 401, 'no token: 401');
is($r->{headers}{'www-authenticate'}, 'Bearer', 'asking for a bearer token');

my $wrong = unpack 'H*', join '', map { chr int rand 256 } 1 .. 32;
is(from('127.0.0.2', $peer, headers => bearer($wrong))->{status}, 401,
    'a wrong token: 401');
is(from('127.0.0.2', $peer, headers => bearer(substr $token, 0, 62))
    ->{status}, 401, 'a truncated token: 401');
is(from('127.0.0.2', $peer, headers => { Authorization => "Basic $token" })
    ->{status}, 401, 'the token, but not as a bearer token: 401');

for my $target ('/_owner/acct-p/cam-1/s1', '/_cloud/acct-p/cam-1/s1') {
    is(from('127.0.0.1', $target)->{status}, 404,
        "$target: internal, a client gets 404");
}

my @bad = ('/_peer/acct-p/cam-1', '/_peer/acct-p/cam-1/s1/x',
    '/_peer/acct-p/cam-1/s1/', '/_peer/acct-p//s1', '/_peer/acct-p/cam-1/s1?x=1',
    '/_peer/acct-p/cam-1/s1;x', '/_peer/acct-p/%63am-1/s1',
    '/_peer/acct-p/../cam-1/s1', '/_peer/acct-p/./s1', '/_peer/.x/cam-1/s1',
    '/_peer/' . ('a' x 65) . '/cam-1/s1');
for my $target (@bad) {
    my $st = from('127.0.0.2', $target, headers => bearer($token))->{status};
    ok($st == 400 || $st == 404, "$target with the token: refused ($st)");
}
is(from('127.0.0.2', $peer, method => 'POST', headers => bearer($token))
    ->{status}, 405, 'POST with the token: 405');

is(fetched(), 0, 'nothing refused reached the cloud');
my $st = $t->stats;
is($st->{fills} + $st->{origin_fetches}, 0, 'and no fill started');

# ------------------------------------------------------------- answered

$r = from('127.0.0.2', $peer, headers => bearer($token));
is($r->{status}, 200, 'a peer with the token gets the original');
is($r->{headers}{'content-type'}, 'image/jpeg', 'as it came, a JPEG');
like($r->{headers}{'cache-control'} // '', qr/max-age=(29\d|300)\b/,
    'with the lifetime it has left');
is($r->{headers}{'x-snapcache'}, 'MISS', 'fetched now');
ok($c->owner_is($r->{body}, 'acct-p', 'cam-1', 's1'), 'the right image');
is(fetched(), 1, 'from the cloud, once');

$r = from('127.0.0.2', $peer, headers => bearer($next));
is($r->{status}, 200, 'the second configured token is accepted too');
is($r->{headers}{'x-snapcache'}, 'HIT', 'from the kept original');
is(fetched(), 1, 'the cloud is not asked again');

$r = from('127.0.0.2', $peer, method => 'HEAD', headers => bearer($token));
is($r->{status}, 200, 'HEAD');
is($r->{body}, '', 'without a body');

my $missing = '/_peer/acct-p/cam-1/missing-1';
is(from('127.0.0.2', $missing, headers => bearer($token))->{status}, 404,
    'a snapshot the cloud does not have: 404');
is(from('127.0.0.2', $missing, headers => bearer($token))->{status}, 404,
    'again: 404');
is(fetched(), 2, 'remembered: the cloud was asked once');

# a client of the node, whose fill asks its own peer endpoint
$r = $c->get(0, account => 'acct-p', device => 'cam-1', snapshot => 's1',
    v => 'thumb');
is($r->{status}, 200, 'a client of the node gets the snapshot');
ok($c->owner_is($r->{body}, 'acct-p', 'cam-1', 's1'), 'its image');
is(fetched(), 2, 'from the original the node keeps');

# ---------------------------------------------------------------- logs

my $log = $t->error_log;
like($log, qr/snapcache: peer: refused, no bearer token/,
    'the refusals are logged');
like($log, qr/snapcache: peer: refused, wrong bearer token/, 'both kinds');
unlike($log . $t->access_log, qr/\Q$token\E|\Q$next\E|\Q$wrong\E/i,
    'no token reaches a log');

done_testing;
