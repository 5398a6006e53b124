#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The signed-URL gate: every malformed, tampered, expired or unknown-key
# request is refused with the documented status and reason, and none of
# them reaches the origin.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test;

my $t = Snapcache::Test->new(keys => ['k1', 'k2']);
$t->start_origin;
$t->start(location_extra => '', http => '', servers => undef,
    server_extra => '        snapcache_url_max_lifetime 1h;');

my $now = time;
my %ids = (account => 'acct-1', device => 'cam.front', snapshot => 'snap_01');

sub get { $t->request(@_) }

# ------------------------------------------------------------ the good path

my $good = $t->sign_url(%ids);
my $r = get($good);
is($r->{status}, 200, 'a valid URL is answered');
is($t->origin_count, 1, 'by the origin, once');
my ($line) = $t->origin_requests;
like($line, qr{^GET /acct-1/cam\.front/snap_01 }, 'origin sees only the ids');
unlike($line, qr/sig=|exp=|kid=/, 'the client query never reaches the origin');
ok(length $r->{body} > 0, 'with a body');

$r = get($good, method => 'HEAD');
is($r->{status}, 200, 'HEAD is allowed');
is($r->{body}, '', 'HEAD has no body');

$r = get($t->sign_url(%ids, kid => 'k2'));
is($r->{status}, 200, 'a second key verifies too (rotation)');

$r = get($t->sign_url(%ids, max => 'hd', v => 'sd'));
is($r->{status}, 200, 'v at or below the signed max is allowed');

my $grant = $t->sign_url(%ids, scope => 'device');
is(get($grant)->{status}, 200, 'a device grant serves its snapshot');
(my $other_snap = $grant) =~ s{/snap_01\?}{/latest?};
is(get($other_snap)->{status}, 200, 'and any other snapshot of the device');
(my $other_dev = $grant) =~ s{/cam\.front/}{/cam.back/};
is(get($other_dev)->{body}, "signature\n", 'but not another device');

my $served = $t->origin_count;

# ------------------------------------------------------------ refusals

sub refused {
    my ($target, $status, $body, $name, %o) = @_;
    my $r = get($target, %o);
    is($r->{status}, $status, "$name: $status");
    is($r->{body}, "$body\n", "$name: body '$body'") if defined $body;
    unlike($r->{body}, qr/acct-1|cam\.front|snap_01/, "$name: no ids echoed");
}

# every character of the signature, changed to another base64url character
my ($sig) = $good =~ /sig=([^&]+)/;
my @alpha = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_');
for my $i (0 .. length($sig) - 1) {
    my $c = substr($sig, $i, 1);
    my ($n) = grep { $_ ne $c } @alpha[(($i * 7) % 64) .. 63], @alpha;
    (my $bad = $good) =~ s/sig=\Q$sig\E/'sig=' . substr($sig, 0, $i) . $n
        . substr($sig, $i + 1)/e;
    my $r = get($bad);
    ok($r->{status} == 403 && $r->{body} eq "signature\n",
        "signature character $i changed: 403 signature");
}

# flipping the low bits of the last character: same bytes, other spelling
{
    my $last = substr($sig, -1);
    my $idx = index(join('', @alpha), $last);
    my $twin = $alpha[$idx ^ 1];
    (my $bad = $good) =~ s/sig=\Q$sig\E/'sig=' . substr($sig, 0, -1) . $twin/e;
    refused($bad, 403, 'signature', 'non-canonical base64 tail');
}

refused($good =~ s/sig=\Q$sig\E/sig=${sig}A/r, 403, 'signature',
    'signature too long');
refused($good =~ s/sig=\Q$sig\E/'sig=' . substr($sig, 0, 42)/er, 403,
    'signature', 'signature too short');
refused($good =~ s/sig=\Q$sig\E/sig=${sig}=/r, 403, 'signature',
    'padded signature');

# each signed field changed, keeping the old signature
my ($exp) = $good =~ /exp=(\d+)/;
my %swap = (
    'account' => [qr{/acct-1/}, '/acct-2/'],
    'device' => [qr{/cam\.front/}, '/cam.back/'],
    'snapshot' => [qr{/snap_01\?}, '/snap_02?'],
    'exp' => [qr/exp=\d+/, 'exp=' . ($exp + 1)],
    'kid (another valid key)' => [qr/kid=k1/, 'kid=k2'],
    'max added' => [qr/&sig=/, '&max=full&sig='],
);
for my $f (sort keys %swap) {
    my ($re, $to) = @{ $swap{$f} };
    (my $bad = $good) =~ s/$re/$to/;
    refused($bad, 403, 'signature', "changed $f");
}
{
    my $with_max = $t->sign_url(%ids, max => 'sd');
    refused($with_max =~ s/max=sd/max=hd/r, 403, 'signature', 'max raised');
    refused($with_max =~ s/&max=sd//r, 403, 'signature', 'max removed');
    refused($grant =~ s/&scope=device//r, 403, 'signature',
        'scope removed from a device grant');
    refused($good =~ s/&sig=/&scope=device&sig=/r, 403, 'signature',
        'scope added to a snapshot URL');
}

refused($t->sign_url(%ids, kid => 'k3', key => 'x' x 32), 403, 'key',
    'unknown kid');
refused($t->sign_url(%ids, exp => $now - 10), 403, 'expired', 'exp past');
refused($t->sign_url(%ids, exp => $now + 7200), 403, 'expired',
    'exp beyond snapcache_url_max_lifetime');

# parameters missing, repeated, unknown or malformed
for my $p (qw(exp kid sig)) {
    (my $bad = $good) =~ s/[?&]\Q$p\E=[^&]*//;
    $bad =~ s{/snap_01&}{/snap_01?};
    refused($bad, 400, 'malformed', "missing $p");
    my ($v) = $good =~ /[?&]\Q$p\E=([^&]*)/;
    refused("$good&$p=$v", 400, 'malformed', "repeated $p");
}
refused("$good&v=sd&v=sd", 400, 'malformed', 'repeated v');
refused($t->sign_url(%ids, max => 'sd') . '&max=sd', 400, 'malformed',
    'repeated max');
refused("$grant&scope=device", 400, 'malformed', 'repeated scope');
refused("$good&foo=1", 400, 'malformed', 'unknown parameter');
refused("$good&", 400, 'malformed', 'trailing &');
refused("$good&v", 400, 'malformed', 'parameter without value');
refused($good =~ s/exp=/exp=0/r, 400, 'malformed', 'exp with a leading zero');
refused($good =~ s/exp=(\d+)/exp=+$1/r, 400, 'malformed', 'exp with a sign');
refused($good =~ s/kid=k1/kid=k%31/r, 400, 'malformed', 'escape in query');
refused($good =~ s/&sig=/&scope=all&sig=/r, 400, 'malformed',
    'scope other than device');
refused($good =~ s/\?.*//r, 400, 'malformed', 'no query at all');
refused($t->sign_url(%ids, v => 'ultra'), 400, 'variant', 'unknown variant');
refused($t->sign_url(%ids, max => 'sd', v => 'hd'), 400, 'variant',
    'v above the signed max');

# non-canonical paths, each re-signed so that only the path is wrong
sub signed_path {
    my ($path) = @_;
    my $q = Snapcache::Test::mint_query(key => $t->key('k1'), kid => 'k1',
        exp => $now + 300, %ids);
    return "$path?$q";
}
refused(signed_path('/snap/acct-1/cam.front%2Fsnap_01'), 400, 'malformed',
    '%2F in a segment');
refused(signed_path('/snap/acct-1/cam%2efront/snap_01'), 400, 'malformed',
    'escaped dot');
refused(signed_path('/snap/acct-1/../acct-1/cam.front/snap_01'), 400,
    'malformed', 'dot-dot segment');
refused(signed_path('/snap/acct-1/./cam.front/snap_01'), 400, 'malformed',
    'dot segment');
refused(signed_path('/snap/acct-1//cam.front/snap_01'), 400, 'malformed',
    'doubled slash');
refused(signed_path('/snap//acct-1/cam.front/snap_01'), 400, 'malformed',
    'doubled slash after the prefix');
refused(signed_path('//snap/acct-1/cam.front/snap_01'), 400, 'malformed',
    'doubled slash before the prefix');
refused(signed_path('/snap/acct-1/cam.front/snap_01;x'), 400, 'malformed',
    ';x parameter');
refused(signed_path('/snap/acct-1/cam.front;x/snap_01'), 400, 'malformed',
    ';x in the middle');
refused(signed_path('/snap/acct-1/cam.front/snap_01/'), 400, 'malformed',
    'trailing slash');
refused(signed_path('/snap/acct-1/cam.front/snap_01/x'), 400, 'malformed',
    'four segments');
refused(signed_path('/snap/acct-1/cam.front'), 400, 'malformed',
    'two segments');

{
    my $long = 'a' x 65;
    my $ok64 = 'a' x 64;
    refused($t->sign_url(%ids, account => $long), 400, 'malformed',
        'a 65-character id');
    is(get($t->sign_url(%ids, account => $ok64))->{status}, 200,
        'a 64-character id is fine');
    $served++;
    refused($t->sign_url(%ids, device => "cam\xc3\xa9"), 400, 'malformed',
        'a non-ASCII id');
    refused($t->sign_url(%ids, device => '.hidden'), 400, 'malformed',
        'an id starting with a dot');
    refused($t->sign_url(%ids, device => 'a*b'), 400, 'malformed',
        'an id with *');
}

for my $m (qw(POST PUT DELETE OPTIONS PATCH)) {
    my $r = get($good, method => $m, body => $m eq 'OPTIONS' ? undef : 'x');
    is($r->{status}, 405, "$m is not allowed");
    is($r->{headers}{allow}, 'GET, HEAD', "$m: Allow header");
}

is($t->origin_count, $served, 'no refused request reached the origin');

# ------------------------------------------------------------ logging

my $log = $t->error_log;
like($log, qr/snapcache: denied: signature, kid "k1"/,
    'a denial is logged with its reason');
like($log, qr/snapcache: denied: key, kid "k3"/, 'unknown kid is logged');
like($log, qr/snapcache: rejected request: trailing slash/,
    'a malformed request is logged with its reason');
unlike($log, qr/\Q$sig\E/, 'the signature is never logged');
my $hexkey = unpack 'H*', $t->key('k1');
unlike($log, qr/$hexkey/i, 'the key is never logged');

my $access = $t->access_log;
like($access, qr/^GET 403 DENIED$/m, '$snapcache_status is DENIED on 403');
like($access, qr/^GET 400 ERROR$/m, 'and ERROR on 400');
like($access, qr/^GET 200 BYPASS$/m, 'and BYPASS when forwarded');

done_testing;
