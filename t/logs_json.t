#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The JSON access log of docs/operations.md, as written there: every
# line parses as JSON, and the snapcache variables say what happened: a
# miss's fill time, a hit's none, the kid of verified and of refused
# URLs, the gate's reason for each refusal, the account only once
# verified, and the request line without its signature.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

# the example, from the document
open my $f, '<', "$FindBin::Bin/../docs/operations.md" or die $!;
my $doc = do { local $/; <$f> };
my ($conf) = $doc =~ /```nginx\n(log_format snapcache_json escape=json.*?)```/s
    or BAIL_OUT('no JSON log_format in docs/operations.md');
like($conf, qr{access_log /var/log/nginx/snapcache\.json snapcache_json;},
    'the example names its log');

my $t = Snapcache::Test->new(keys => ['k1']);
$t->start_origin(image_size => '640x360');
my $d = $t->dir;
$conf =~ s{/var/log/nginx/snapcache\.json}{$d/logs/snapcache.json};
$conf =~ s/^/    /mg;
$t->start(http => "    snapcache_store $d/store size=16m;\n$conf");

# each request its own snapshot id (the hit repeats the miss's), so that
# its line is found by its request line: lines come in the order the log
# phases ran, which a lingering close may change
my %id = (account => 'acct-j', device => 'cam-1', v => 'thumb');
my @want;
sub req {
    my ($name, $target, $status) = @_;
    is($t->request($target)->{status}, $status, "$name: $status");
    push @want, $name;
}
req('miss', $t->sign_url(%id, snapshot => 's1'), 200);
req('hit', $t->sign_url(%id, snapshot => 's1'), 200);
req('signature', $t->sign_url(%id, snapshot => 'signature')
    =~ s/sig=[^&]+/sig=AAAA/r, 403);
req('key', $t->sign_url(%id, snapshot => 'key', kid => 'k-old',
    key => 'x' x 32), 403);
req('expired', $t->sign_url(%id, snapshot => 'expired',
    exp => int(time) - 5), 403);
req('lifetime', $t->sign_url(%id, snapshot => 'lifetime',
    exp => int(time) + 86400), 403);
req('malformed', '/snap/acct-j/cam-1/malformed/?exp=1&kid=k1&sig=AAAA', 400);
req('variant', $t->sign_url(%id, snapshot => 'variant', v => 'nope'), 400);
req('error', $t->sign_url(%id, snapshot => 'e500-1'), 502);

# lines are written in each request's log phase: wait for all of them
my @lines;
my $end = time + 10;
while (time < $end) {
    open my $l, '<', "$d/logs/snapcache.json" or next;
    @lines = <$l>;
    last if @lines >= @want;
    sleep 0.05;
}
is(scalar @lines, scalar @want, 'a line per request');

my %got;
my $json = JSON::PP->new;
for my $i (0 .. $#lines) {
    my $o = eval { $json->decode($lines[$i]) };
    ok($o, "line $i is JSON") or diag $lines[$i];
    my ($snap) = ($o->{request} // '') =~ m{^GET /snap/acct-j/cam-1/([^/?]+)};
    my $name = !defined $snap ? '?' : $snap eq 's1'
        ? ($o->{cache} eq 'HIT' ? 'hit' : 'miss')
        : $snap eq 'e500-1' ? 'error' : $snap;
    $got{$name} = $o;
}
is_deeply([sort keys %got], [sort @want], 'each request has its line');

my $miss = $got{miss};
is($miss->{cache}, 'MISS', 'miss: cache MISS');
like($miss->{fill_ms}, qr/^\d+\.\d{3}$/, "miss: its fill time, "
    . "$miss->{fill_ms} ms");
ok($miss->{fill_ms} > 0 && $miss->{fill_ms} <= $miss->{request_time} * 1000
    + 1, 'within the request time');
is($miss->{kid}, 'k1', 'miss: kid k1');
is($miss->{account}, 'acct-j', 'miss: the verified account');
is($miss->{deny_reason}, '', 'miss: no deny reason');
is($miss->{variant}, 'thumb', 'miss: the rung');
is($miss->{status}, 200, 'miss: status, a JSON number');
like($miss->{request}, qr/sig=x[& ]/, 'the request line, signature redacted');
is($miss->{cache}, 'MISS', 'the first request of s1 was the miss');

is($got{hit}{cache}, 'HIT', 'hit: HIT');
is($got{hit}{fill_ms}, '', 'hit: no fill time');

for my $why (qw(signature key expired lifetime)) {
    my $o = $got{$why};
    is($o->{cache}, 'DENIED', "$why: DENIED");
    is($o->{deny_reason}, $why, "$why: deny reason $why");
    is($o->{account}, '', "$why: no account, since nothing verified");
    is($o->{fill_ms}, '', "$why: no fill time");
}
is($got{signature}{kid}, 'k1', 'a bad signature: the kid it claimed');
is($got{key}{kid}, 'k-old', 'an unknown kid: the kid it claimed');
is($got{malformed}{deny_reason}, 'malformed', 'malformed: its reason');
is($got{malformed}{kid}, '', 'malformed: no kid, the URL did not parse');
is($got{variant}{deny_reason}, 'variant', 'variant: its reason');
is($got{error}{cache}, 'ERROR', 'a failed fill: ERROR');
like($got{error}{fill_ms}, qr/^\d+\.\d{3}$/, 'with its fill time');
is($got{error}{deny_reason}, '', 'and no deny reason');
unlike(join('', @lines), qr/sig=(?!x)/, 'no signature in the log');

done_testing;
