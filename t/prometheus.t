#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# What ships for Prometheus and Grafana works with what snapcache
# exposes: docs/prometheus/alerts.yml passes `promtool check rules`, the
# scrape example `promtool check config`; every query of
# docs/grafana/snapcache.json parses (promtool check rules on a file of
# recording rules built from them); and every metric that a query or an
# alert names is one a running snapcache exposes, scraped here after
# the requests that make each family appear; and docs/admin.md lists
# every family exposed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call);

my $promtool = '/usr/bin/promtool';
plan skip_all => 'promtool (Debian: prometheus) or snapmark missing'
    unless -x $promtool && -x build_dir() . '/bin/snapmark';

my $docs = "$FindBin::Bin/../docs";
my $t = Snapcache::Test->new(keys => ['k1']);
my $d = $t->dir;

sub slurp { open my $f, '<', $_[0] or die "$_[0]: $!"; local $/; <$f> }
sub spew { open my $f, '>', $_[0] or die "$_[0]: $!"; print $f $_[1] }

# ------------------------------------------------------------- the rules

my $out = `'$promtool' check rules '$docs/prometheus/alerts.yml' 2>&1`;
is($? >> 8, 0, 'promtool check rules: alerts.yml') or diag $out;
my @alerts = slurp("$docs/prometheus/alerts.yml")
    =~ /^\s+expr: (?:>-\n((?:\s{10}.*\n)+)|(.*)\n)/mg;
my @alert_exprs = map { my $e = $_; $e =~ s/\s+/ /g; $e } grep { defined }
    @alerts;
cmp_ok(scalar @alert_exprs, '>=', 10, scalar(@alert_exprs) . ' alerts');

# the scrape example, with its files where they can be found
mkdir "$d/prom";
my $conf = slurp("$docs/prometheus/prometheus.yml");
spew("$d/prom/token", "x\n");
spew("$d/prom/ca.pem", '');
$conf =~ s{/etc/prometheus/snapcache-admin\.token}{$d/prom/token};
$conf =~ s{/etc/prometheus/snapcache-ca\.pem}{$d/prom/ca.pem};
spew("$d/prom/prometheus.yml", $conf);
spew("$d/prom/alerts.yml", slurp("$docs/prometheus/alerts.yml"));
$out = `'$promtool' check config '$d/prom/prometheus.yml' 2>&1`;
is($? >> 8, 0, 'promtool check config: the scrape example, with its rules')
    or diag $out;

# --------------------------------------------------------- the dashboard

my $dash = JSON::PP->new->decode(slurp("$docs/grafana/snapcache.json"));
my @panels = @{ $dash->{panels} };
push @panels, @{ $_->{panels} || [] } for @panels;
my @dash_exprs = map { $_->{expr} } map { @{ $_->{targets} || [] } } @panels;
cmp_ok(scalar @dash_exprs, '>=', 19, scalar(@dash_exprs) . ' queries');
my %titles = map { $_->{title} => 1 } @panels;
for my $want ('Hit ratio', 'Latency by cache status', 'Origin errors',
    'Purges', 'Adaptation reasons', 'Store usage')
{
    ok($titles{$want}, "the dashboard has \"$want\"");
}

# Grafana's variables, as Grafana would put them in
my @queries = map {
    my $e = $_;
    $e =~ s/\$__rate_interval/5m/g;
    $e =~ s/\$job/snapcache/g;
    $e
} @dash_exprs;
unlike(join("\n", @queries), qr/\$/, 'no other variable is used');
my $rules = "groups:\n  - name: dashboard\n    rules:\n";
for my $i (0 .. $#queries) {
    (my $q = $queries[$i]) =~ s/'/''/g;
    $rules .= "      - record: dashboard:query_$i\n        expr: '$q'\n";
}
spew("$d/prom/dashboard.yml", $rules);
$out = `'$promtool' check rules '$d/prom/dashboard.yml' 2>&1`;
is($? >> 8, 0, 'every dashboard query parses (promtool check rules)')
    or diag $out;

# -------------------------------------------------- what a node exposes

my ($tok, $file) = write_token($t, 'admin');
$t->start_origin(image_size => '640x360');
$t->start(
    http => "    snapcache_store $d/store size=16m;\n",
    server_extra => admin_location($file),
);
my %id = (account => 'acct-p', device => 'cam-1', v => 'thumb');
$t->request($t->sign_url(%id, snapshot => 's1'));            # a miss
$t->request($t->sign_url(%id, snapshot => 's1'));            # a hit
$t->request($t->sign_url(%id, snapshot => 'e500-1'));        # an origin error
$t->request($t->sign_url(%id, snapshot => 's1') =~ s/sig=[^&]+/sig=AAAA/r);
admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-p","device":"cam-1"}');

my $scrape = '';
my $end = time + 10;
while (time < $end) {
    $scrape = admin_call($t->port, 'GET', 'metrics', token => $tok)->{body};
    last if $scrape =~ /^snapcache_requests_total\{status="denied"\} [1-9]/m;
    sleep 0.1;
}
spew("$d/prom/scrape.txt", $scrape);
$out = `'$promtool' check metrics < '$d/prom/scrape.txt' 2>&1`;
is($? >> 8, 0, 'promtool check metrics: the scrape') or diag $out;

my %exposed;
for (split /\n/, $scrape) {
    next unless /^# TYPE (\S+) (\S+)$/;
    $exposed{$1} = 1;
    @exposed{ map { "$1$_" } qw(_bucket _sum _count) } = (1) x 3
        if $2 eq 'histogram';
}
# docs/admin.md lists every family a node exposes
my $admin_md = slurp("$docs/admin.md");
my %listed = map { $_ => 1 } $admin_md =~ /`(snapcache_[a-z_]+)`/g;
for my $fam (sort map { /^# TYPE (\S+) / ? $1 : () } split /\n/, $scrape) {
    ok($listed{$fam}, "docs/admin.md lists $fam");
}

my %sampled = map { /^([a-z_:]+)[{ ]/ ? ($1 => 1) : () }
    grep { !/^#/ } split /\n/, $scrape;

# the metric names of a PromQL expression: every identifier that is not
# a function, a keyword, a label name or inside a string
sub metric_names {
    my ($e) = @_;
    $e =~ s/"(?:[^"\\]|\\.)*"//g;                      # strings
    $e =~ s/\{[^}]*\}//g;                              # label matchers
    $e =~ s/\[[^\]]*\]//g;                             # ranges
    $e =~ s/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)//g;
    my %kw = map { $_ => 1 } qw(and or unless bool offset);
    my @names;
    while ($e =~ /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?/g) {
        next if $2 || $kw{$1};
        push @names, $1;
    }
    return @names;
}

my %named;
$named{$_}++ for map { metric_names($_) } @queries, @alert_exprs;
ok(scalar(keys %named) >= 15, scalar(keys %named) . ' metrics named');
for my $n (sort keys %named) {
    ok($exposed{$n}, "$n: exposed by snapcache");
    ok($sampled{$n}, "$n: with samples after this test's requests");
}

done_testing;
