#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The camera wall in a real browser (Debian's chromium, chromium-driver and
# python3-selenium, headless), against `make run`'s demo with live
# cameras.  t/browser_wall.py drives the browser and reads, from each
# tile, the pixels the browser rendered; this test judges them:
#
# - the page loads, and every camera's tile shows an image;
# - each tile's image is its own camera's (the owner marker, decoded from
#   those pixels), and the tile says what was served (HIT or MISS, the
#   rung, bytes, time to image);
# - the tiles refresh: each shows newer content, still its own;
# - a tile whose grant is expired, or whose URL was tampered with (another
#   household's camera under one's own signature), shows an error and no
#   image;
# - when a tile's grant dies while it is on screen, the tile says so and
#   keeps its last good image.
#
# A screenshot is kept in the build directory (browser-wall.png).  The
# wall on a shaped link is t/browser_weak.t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(setsid);
use Snapcache::Test qw(build_dir free_port raw_request hmac_sig);

my $root = "$FindBin::Bin/..";
my $python = '/usr/bin/python3';
my $snapmark = build_dir() . '/bin/snapmark';

plan skip_all => 'snapmark not built' unless -x $snapmark;
for my $need ('/usr/bin/chromium', '/usr/bin/chromedriver', $python) {
    plan skip_all => "$need is missing (make deps installs it)" unless -x $need;
}
plan skip_all => 'python3-selenium is missing (make deps installs it)'
    if system("$python -c 'import selenium' 2>/dev/null") != 0;

my $port = free_port();
my $oport = free_port();
my $tport = free_port();
my $tmp = tempdir(CLEANUP => 1);
my $log = "$tmp/demo.out";

my $log_watch = Snapcache::Test->watch_log("$root/var/log/error.log");

my $pid = fork // die;
if (!$pid) {
    setsid();
    open STDOUT, '>', $log or die;
    open STDERR, '>&', \*STDOUT;
    $ENV{PORT} = $port;
    $ENV{ORIGIN_PORT} = $oport;
    $ENV{TLS_PORT} = $tport;
    exec "$root/tools/run-demo" or die;
}

my @lists;
END {
    if ($pid) {
        kill 'INT', -$pid;
        waitpid $pid, 0;
    }
    unlink @lists;
}

my $out = '';
for (1 .. 600) {
    $out = do { local $/; my $fh; open($fh, '<', $log) ? <$fh> // '' : '' };
    last if $out =~ /Ctrl-C stops/ && IO::Socket::INET->new("127.0.0.1:$port");
    select(undef, undef, undef, 0.1);
}

my ($wall) = $out =~ m{^camera wall: (http://\S+)$}m;
is($wall, "http://127.0.0.1:$port/wall/", 'the demo prints the wall address')
    or diag $out;

my $page = raw_request($port, '/wall/');
is($page->{status}, 200, 'the page is served');
like($page->{headers}{'content-security-policy'} // '',
    qr/default-src 'none'/, 'with a content security policy');

# ------------------------------------------------ the grants the page gets

my $json = JSON::PP->new->canonical;
my $grants = $json->decode(slurp("$root/var/wall/cameras.json"));
my @cams = @{ $grants->{cameras} };
is(scalar @cams, 6, 'the demo writes a device grant for each of 6 cameras');
ok(!grep({ $_->{url} !~ m{^/snap/[^/]+/[^/]+/latest\?.*scope=device} } @cams),
    'each a device grant for the camera\'s latest snapshot');

# the page and what it is served never hold the signing key
my ($key_hex) = slurp("$root/var/keys/demo.key") =~ /^([0-9a-f]{64,})/;
my $key = pack 'H*', $key_hex // '';
ok($key_hex && !grep({ index(lc slurp($_), $key_hex) >= 0 }
        glob("$root/www/* $root/var/wall/*")),
    'the key is in no file served next to the page');
for my $path ('/wall/grants/../keys/demo.key', '/wall/grants/..%2fkeys/demo.key',
    '/wall/..%2f..%2fvar/keys/demo.key', '/wall/grants/%2e%2e/keys/demo.key')
{
    my $g = raw_request($port, $path);
    ok($g->{status} != 200 && index($g->{body}, $key_hex // 'x') < 0,
        "and $path does not reach it ($g->{status})");
}

# a grant that expired a minute ago, minted as the backend would
sub expired_grant {
    my ($acct, $dev) = @_;
    my $exp = time - 60;
    my $sig = hmac_sig($key, 'demo', $exp, $acct, $dev, '*');
    return "/snap/$acct/$dev/latest?exp=$exp&kid=demo&scope=device&sig=$sig";
}

my %good = map { $_->{id} => $_ } @cams;
my ($front1) = grep { $_->{id} eq 'acct-1/cam-front' } @cams;
(my $tampered = $front1->{url}) =~ s{^/snap/acct-1/}{/snap/acct-2/};

my @tiles = (@cams,
    { id => 'expired', label => 'expired grant',
      url => expired_grant('acct-1', 'cam-back') },
    { id => 'tampered', label => 'acct-1\'s grant on acct-2\'s camera',
      url => $tampered });

# the second list: acct-3/cam-back's grant has died meanwhile
my $fail_id = 'acct-3/cam-back';
my @next = map {
    $_->{id} eq $fail_id ? { %$_, url => expired_grant('acct-3', 'cam-back') }
                         : $_
} @tiles;

my $list = "$root/var/wall/browser-test-$$.json";
my $next = "$tmp/next.json";
push @lists, $list, "$list.next";
write_list($list, \@tiles);
write_list($next, \@next);

# ------------------------------------------------------------ the browser

my $shot = build_dir() . '/browser-wall.png';
unlink $shot;
my $name = ($list =~ m{([^/]+)\.json$})[0];
my @cmd = ($python, "$FindBin::Bin/browser_wall.py",
    '--url', "http://127.0.0.1:$port/wall/?cameras=$name",
    '--good', join(',', sort keys %good),
    '--list', $list, '--next-list', $next, '--fail-id', $fail_id,
    '--out', $tmp, '--screenshot', $shot);
system(@cmd) == 0 or diag "browser_wall.py exited with $?";

my $r = eval { $json->decode(slurp("$tmp/result.json")) } // {};
ok(!$r->{error}, 'the browser ran the page') or diag $r->{error};
is($r->{title}, 'snapcache camera wall', 'the page loads');
ok(defined $r->{steps}{first_image_s}, 'every camera\'s tile shows an image')
    and note sprintf 'all tiles shown after %.1f s', $r->{steps}{first_image_s};

my %first = tiles($r->{first});
my %second = tiles($r->{second});
my %third = tiles($r->{third});

for my $id (sort keys %good) {
    my $t = $first{$id} // {};
    ok($t->{shown} && $t->{state} eq 'ok', "$id: an image on screen");
    owner_ok($t, $id, "$id: the image is its own camera's");
    like($t->{meta} // '', qr/\b(?:HIT|MISS)\b/, "$id: says HIT or MISS");
    like($t->{meta} // '', qr/\bhd\b/, "$id: names the rung served");
    # the latest refresh may have been a 304: any image it showed counts
    like($r->{bytes_seen}{$id} // '', qr/\d kB/, "$id: says how many bytes");
    like($t->{meta} // '', qr/\d+ ms/, "$id: says the time to image");
    like($t->{adapt} // '', qr/^adapt: (?:unknown|ceiling)$/,
        "$id: says why that rung (nothing to step down for on loopback)");
}

for my $id (qw(expired tampered)) {
    my $t = $first{$id} // {};
    is($t->{state}, 'error', "$id: an error state");
    ok(!$t->{shown} && !$t->{png}, "$id: no image");
}
like($first{expired}{notice} // '', qr/403 grant expired/,
    'the expired grant is named as such');
like($first{tampered}{notice} // '', qr/403 signature refused/,
    'the tampered URL is refused for its signature');

ok(defined $r->{steps}{refresh_s}, 'every tile refreshes on its own')
    and note sprintf 'all tiles refreshed after %.1f s', $r->{steps}{refresh_s};
for my $id (sort keys %good) {
    my $t = $second{$id} // {};
    ok($t->{png} && $first{$id}{png}
        && slurp($t->{png}) ne slurp($first{$id}{png}),
        "$id: new content on screen");
    owner_ok($t, $id, "$id: still its own camera's");
}

my $f = $third{$fail_id} // {};
ok(defined $r->{steps}{fail_s}, "$fail_id: a refused refresh is noticed");
is($f->{state}, 'error', "$fail_id: the tile says its refresh failed");
like($f->{status} // '', qr/refresh failed: 403 grant expired/,
    "$fail_id: and why");
ok($f->{shown}, "$fail_id: it keeps its last good image");
owner_ok($f, $fail_id, "$fail_id: which is its own camera's");
for my $id (grep { $_ ne $fail_id } sort keys %good) {
    owner_ok($third{$id} // {}, $id, "$id: unaffected by that");
}

my @js_errors = grep { ($_->{message} // '') !~ /Failed to load resource/ }
    @{ $r->{console} // [] };
ok(!@js_errors, 'no script error in the console')
    or diag explain \@js_errors;

ok(-s $shot, "a screenshot in $shot");

my $group = $pid;
kill 'INT', -$pid;
waitpid $pid, 0;
$pid = 0;
ok(!IO::Socket::INET->new("127.0.0.1:$port"), 'the demo stops');
my @left = split ' ', `pgrep -g $group`;
ok(!@left, 'and its live cameras with it') or diag "left: @left";

done_testing;

# ----------------------------------------------------------------- helpers

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return <$fh> // '';
}

sub write_list {
    my ($file, $cams) = @_;
    my $tmpf = "$file.tmp";
    open my $fh, '>', $tmpf or die "$tmpf: $!";
    print $fh $json->encode({ refresh_s => 1, grants_refresh_s => 2,
                               cameras => $cams });
    close $fh;
    chmod 0644, $tmpf;
    rename $tmpf, $file or die "$file: $!";
}

sub tiles {
    my ($s) = @_;
    return map { $_->{id} => $_ } @{ $s->{tiles} // [] };
}

# The owner marker read from the pixels the browser rendered.
sub owner_ok {
    my ($t, $id, $name) = @_;
    my ($acct, $dev) = split m{/}, $id;
    my $png = $t->{png} // '';
    my $check = $png ? `'$snapmark' check '$png' '$acct' '$dev' latest 2>&1`
                     : 'no pixels';
    ok($png && $? == 0, $name) or diag $check;
}
