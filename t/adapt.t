#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Adaptation on loopback, where the link is open: every ceiling is served
# as it was before adaptation, the reason is always visible (header and
# variables), hints are a prior only without history, history is per
# account, Save-Data caps, snapcache_adapt off changes nothing, the budget
# is range-checked, and every body decodes to its owner.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => 'snapmark not built' unless -x $snapmark;

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;

my $logfmt = <<"EOF";
    log_format adapt '\$snapcache_variant \$snapcache_adapt_reason '
                     '"\$snapcache_link_kbps" "\$snapcache_link_rtt" '
                     '"\$snapcache_link_queued"';
    snapcache_store $d/store size=64m;
EOF

$t->start(
    http => $logfmt,
    location_extra => "            access_log $d/logs/adapt.log adapt;\n",
    server_extra => <<"EOF",
        location /off/ {
            snapcache;
            snapcache_adapt off;
        }
EOF
);

my $n = 0;

sub owner_ok {
    my ($r, $acct, $dev, $snap, $what) = @_;
    my $f = "$d/body-" . ++$n;
    open my $fh, '>:raw', $f or die;
    print $fh $r->{body};
    close $fh;
    my $out = `'$snapmark' check '$f' '$acct' '$dev' '$snap'`;
    is($? >> 8, 0, "$what: the body is $acct/$dev/${snap}'s") or diag($out);
}

sub get {
    my (%a) = @_;
    my $h = delete $a{headers};
    my $prefix = delete $a{prefix};
    my $r = $t->request($t->sign_url(%a, $prefix ? (prefix => $prefix) : ()),
        $h ? (headers => $h) : ());
    is($r->{status}, 200, "$a{account}/$a{snapshot}: 200");
    return $r;
}

# a new client: nothing known, the ceiling
my $r = get(account => 'acct-1', device => 'cam-1', snapshot => 's1');
is($r->{headers}{'x-snapcache-variant'}, 'hd', 'nothing known: hd, the '
    . 'default ceiling');
is($r->{headers}{'x-snapcache-adapt'}, 'unknown', 'reason: unknown');
like($r->{headers}{vary}, qr/^Accept, Save-Data, ECT, Downlink, RTT$/,
    'Vary names the headers that can change the rung');
owner_ok($r, 'acct-1', 'cam-1', 's1', 'first');

# measured on loopback: every ceiling is served
for my $v (qw(full hd sd thumb full)) {
    $r = get(account => 'acct-1', device => 'cam-1', snapshot => "v-$v",
        v => $v);
    is($r->{headers}{'x-snapcache-variant'}, $v, "v=$v on an open link: $v");
    is($r->{headers}{'x-snapcache-adapt'}, $v eq 'thumb' ? 'pinned'
        : 'ceiling', "v=$v: reason");
    owner_ok($r, 'acct-1', 'cam-1', "v-$v", "v=$v");
}

$r = get(account => 'acct-1', device => 'cam-1', snapshot => 's2');
is($r->{headers}{'x-snapcache-variant'}, 'hd', 'no v=: hd');
is($r->{headers}{'x-snapcache-adapt'}, 'ceiling', 'reason: ceiling');

$r = get(account => 'acct-1', device => 'cam-1', snapshot => 's3',
    headers => { 'Save-Data' => 'on' });
is($r->{headers}{'x-snapcache-variant'}, 'sd', 'Save-Data: sd');
is($r->{headers}{'x-snapcache-adapt'}, 'save-data', 'reason: save-data');

# history wins over hints
$r = get(account => 'acct-1', device => 'cam-1', snapshot => 's4',
    headers => { ECT => 'slow-2g', Downlink => '0.05', RTT => '2000' });
is($r->{headers}{'x-snapcache-variant'}, 'hd',
    'with history, hints of a slow-2g link change nothing');

# another account from the same address has no history: hints decide
$r = get(account => 'acct-2', device => 'cam-9', snapshot => 's1',
    headers => { ECT => 'slow-2g', Downlink => '0.05', RTT => '2000' });
is($r->{headers}{'x-snapcache-variant'}, 'thumb',
    'another account: no history, hints of slow-2g give thumb');
is($r->{headers}{'x-snapcache-adapt'}, 'hint', 'reason: hint');
owner_ok($r, 'acct-2', 'cam-9', 's1', 'hinted thumb');

$r = get(account => 'acct-3', device => 'cam-1', snapshot => 's1',
    headers => { ECT => '4g', Downlink => '10', RTT => '0' });
is($r->{headers}{'x-snapcache-adapt'}, 'unknown',
    "Chromium's Downlink 10 and RTT 0 say nothing");
is($r->{headers}{'x-snapcache-variant'}, 'hd', 'and the ceiling is served');

# HEAD and 304 are answered, and measured or not, served as before
$r = $t->request($t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's2'), method => 'HEAD');
is($r->{status}, 200, 'HEAD: 200');
my $etag = get(account => 'acct-1', device => 'cam-1', snapshot => 's2')
    ->{headers}{etag};
$r = $t->request($t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's2'), headers => { 'If-None-Match' => $etag });
is($r->{status}, 304, 'If-None-Match: 304');

# snapcache_adapt off: as before adaptation
$r = get(account => 'acct-1', device => 'cam-1', snapshot => 's5',
    prefix => '/off/');
is($r->{headers}{'x-snapcache-variant'}, 'hd', 'off: the default');
ok(!exists $r->{headers}{'x-snapcache-adapt'}, 'off: no X-Snapcache-Adapt');
is($r->{headers}{vary}, 'Accept, Save-Data', 'off: Vary as before');
$r = get(account => 'acct-2', device => 'cam-9', snapshot => 's2',
    prefix => '/off/',
    headers => { ECT => 'slow-2g', Downlink => '0.05' });
is($r->{headers}{'x-snapcache-variant'}, 'hd', 'off: hints change nothing');

# the access log sees what was chosen and why
my $log = do {
    open my $f, '<', "$d/logs/adapt.log" or die $!;
    local $/;
    <$f>;
};
like($log, qr/^hd unknown "-" "-" "-"$/m, 'log: unknown, no figures');
like($log, qr/^full ceiling "\d+" "\d+" "\d+"$/m, 'log: ceiling with the '
    . 'rate, RTT and queued bytes it was chosen with');
like($log, qr/^thumb hint "50" "2000" "0"$/m, 'log: the hints as figures, '
    . 'nothing queued');

# the budget is range-checked
$t->stop;
$t->write_config(http => $logfmt . "    snapcache_adapt_budget 5ms;\n");
my ($rc, $out) = $t->test_config;
isnt($rc, 0, 'nginx -t refuses a 5ms budget');
like($out, qr/snapcache_adapt_budget|between/, 'and says why');
$t->write_config(http => $logfmt . "    snapcache_adapt_budget 2500ms;\n");
($rc, $out) = $t->test_config;
is($rc, 0, 'a 2500ms budget is fine') or diag($out);

done_testing();
