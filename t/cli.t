#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The snapcache CLI's surface, offline: --help for the tool and for each
# command exits 0 with that command's usage, --version is the package's
# version, unknown options and commands exit 2 with the usage on stderr,
# and the man page covers every command, option, environment variable
# and exit status.  sign takes its key either way; verify names the check
# a URL fails (form, kid, signature, expired, lifetime), with --json,
# and never prints the signature or a key.  URLs are crafted with the
# harness's own signer, independent of sign/.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Snapcache::Test qw(build_dir mint_query hmac_sig);

my $cli = build_dir() . '/snapcache';
plan skip_all => 'the CLI is not built' unless -x $cli;
my $root = "$FindBin::Bin/..";

# Under AddressSanitizer every run of the CLI (not nginx's) checks for
# leaks too: a leak makes its exit status 23, which no test here expects.
my $env = ($ENV{SNAPCACHE_SAN} // '') eq 'address'
    ? 'ASAN_OPTIONS=detect_leaks=1:exitcode=23 ' : '';

my $t = Snapcache::Test->new(keys => ['k1', 'k2']);
my $d = $t->dir;

# (exit status, stdout, stderr)
sub cli {
    my (@args) = @_;
    my $cmd = join ' ', map { my $a = $_; $a =~ s/'/'\\''/g; "'$a'" }
        $cli, @args;
    my $out = `$env$cmd 2>'$d/stderr'`;
    my $err = slurp("$d/stderr");
    return ($? >> 8, $out, $err);
}

sub slurp {
    open my $f, '<', $_[0] or return '';
    local $/;
    return <$f> // '';
}

my @commands = qw(sign verify inspect purge stats health);

# ------------------------------------------------------------ help

my ($rc, $out, $err) = cli('--help');
is($rc, 0, '--help: exit 0');
like($out, qr/^usage: snapcache <command>/, 'the tool\'s usage on stdout');
for my $c (@commands) {
    like($out, qr/^  $c\s+\S/m, "it lists $c");
}
($rc, $out) = cli('-h');
is($rc, 0, '-h: exit 0');

my %usage;
for my $c (@commands) {
    ($rc, $out, $err) = cli($c, '--help');
    is($rc, 0, "$c --help: exit 0");
    like($out, qr/^usage: snapcache \Q$c\E /, "$c --help: its own usage");
    is($err, '', "$c --help: nothing on stderr");
    $usage{$c} = $out;
    my ($rc2, $out2) = cli('help', $c);
    is($rc2, 0, "help $c: exit 0");
    is($out2, $out, "help $c: the same usage");
}
($rc, $out) = cli('purge', '--account', 'x', '-h');
is($rc, 0, '-h after other options: exit 0, nothing sent');
like($out, qr/^usage: snapcache purge /, 'with the usage');

# ------------------------------------------------------------ version

my ($version) = slurp("$root/debian/changelog") =~ /^\S+ \(([^)]+)\)/;
($rc, $out) = cli('--version');
is($rc, 0, '--version: exit 0');
is($out, "snapcache $version\n", "it prints the package's version ($version)");
($rc, $out) = cli('-V');
is($out, "snapcache $version\n", '-V too');
($rc, $out) = cli('stats', '--version');
is($out, "snapcache $version\n", 'and after a command');
like(slurp("$root/debian/snapcache.1"),
    qr/^\.TH SNAPCACHE 1 "[^"]*" "snapcache \Q$version\E"/m,
    'the man page names the same version');

# ------------------------------------------------------------ usage errors

# An error in the options: exit 2, why, and the usage on stderr.  An
# error in a value says why in one line.
sub usage_error {
    my ($name, $want, @args) = @_;
    my $bad_value = ref $args[0] eq 'HASH' ? shift(@args)->{value} : 0;
    my ($rc, $out, $err) = cli(@args);
    is($rc, 2, "$name: exit 2");
    is($out, '', "$name: nothing on stdout");
    like($err, $want, "$name: says why");
    if ($bad_value) {
        is(scalar(() = $err =~ /\n/g), 1, "$name: in one line");
    } else {
        like($err, qr/^usage: snapcache/m, "$name: and the usage, on stderr");
    }
}

usage_error('no command', qr/usage/);
usage_error('an unknown command', qr/unknown command "frob"/, 'frob');
usage_error('an unknown option before the command', qr/unknown option --frob/,
    '--frob');
usage_error('an unknown option', qr/^snapcache purge: unknown option --frob$/m,
    'purge', '--frob', '--account', 'a');
usage_error('an unknown short option', qr/unknown option -x/, 'stats', '-x');
usage_error('a value for a flag', qr/unknown option --json=1/, 'stats',
    '--json=1');
usage_error('another command\'s option',
    qr/--ttl is not an option of purge/, 'purge', '--ttl', '5m');
usage_error('an option without its value', qr/--node needs a value/,
    'health', '--node');
usage_error('a stray argument', qr/unexpected argument "extra"/, 'stats',
    '--node', 'http://127.0.0.1:1', 'extra');
usage_error('inspect without a store', qr/missing argument/, 'inspect');
usage_error('a bad --timeout', qr/bad --timeout "0"/, { value => 1 },
    'health', '--node',
    'http://127.0.0.1:1', '--timeout', '0');
usage_error('a bad --retries', qr/bad --retries "11"/, { value => 1 },
    'purge', '--retries',
    '11');
usage_error('a bad --max-lifetime', qr/bad --max-lifetime/, { value => 1 },
    'verify', 'x',
    '--max-lifetime', '1y');
usage_error('sign with two keys', qr/give the key once/, { value => 1 },
    'sign', '--key',
    "k1=$d/keys/k1.key", '--kid', 'k1', '--account', 'a', '--device', 'd',
    '--snapshot', 's', '--ttl', '1m');
usage_error('purge with no scope', qr/give a scope/, { value => 1 },
    'purge', '--node',
    'http://127.0.0.1:1', '--token-file', '/nonexistent');

# ------------------------------------------------------------ man page

my $man = slurp("$root/debian/snapcache.1");
(my $plain = $man) =~ s/\\-/-/g;
$plain =~ s/\\f[BIRP]//g;
for my $c (@commands) {
    like($plain, qr/^\.SS $c\b/m, "the man page has a section for $c");
    for my $opt ($usage{$c} =~ /(?:^|[\s(\[|,])(--[a-z-]+)/g) {
        like($plain, qr/\Q$opt\E\b/, "it documents $c $opt");
    }
}
like($plain, qr/\Q$_\E/, "it documents $_") for qw(SNAPCACHE_NODES
    SNAPCACHE_TOKEN_FILE --help --version);
my ($exit) = $plain =~ /^\.SH EXIT STATUS\n(.*?)^\.SH/ms;
like($exit // '', qr/^\.B $_$/m, "its exit status section lists $_")
    for 0 .. 3;

# ------------------------------------------------------------ sign

my $exp = time + 600;
my @ids = ('--account', 'acct-1', '--device', 'cam-1', '--snapshot', 's1',
    '--exp', $exp, '--base', '/snap/');
my ($rc1, $u1) = cli('sign', '--key-file', $t->key_file('k1'), '--kid', 'k1',
    @ids);
my ($rc2, $u2) = cli('sign', '--key', 'k1=' . $t->key_file('k1'), @ids);
is($rc1, 0, 'sign --key-file --kid: exit 0');
is($rc2, 0, 'sign --key KID=FILE: exit 0');
is($u2, $u1, 'the same URL either way');
is($u1, "/snap/acct-1/cam-1/s1?" . mint_query(key => $t->key('k1'),
    kid => 'k1', exp => $exp, account => 'acct-1', device => 'cam-1',
    snapshot => 's1') . "\n", 'the one the harness\'s signer makes');
($rc, $out, $err) = cli('sign', '--key', "k1=$d/nowhere.key", @ids);
is($rc, 2, 'sign with a key file that is not there: exit 2');
like($err, qr/cannot open key file/, 'saying so');

# ------------------------------------------------------------ verify

my $now = time;
my %ids = (account => 'acct-1', device => 'cam-1', snapshot => 's1');
my @keys = ('--key', 'k1=' . $t->key_file('k1'), '--key',
    'k2=' . $t->key_file('k2'));
my @secrets = map { unpack 'H*', $t->key($_) } qw(k1 k2);

sub url {
    my (%a) = @_;
    return $t->sign_url(%ids, %a);
}

# (check, reason pattern, status, body, url, extra args)
my @cases = (
    ['ok',
        qr/^the snapshot acct-1\/cam-1\/s1, kid "k1", expires in (29\d|300) s$/,
        0, undef, url()],
    ['ok', qr/^the snapshot .* kid "k2"/, 0, undef, url(kid => 'k2')],
    ['ok', qr/^a device grant for acct-1\/cam-1, kid "k1"/, 0, undef,
        url(scope => 'device')],
    ['form', qr/^percent-escape$/, 400, 'malformed',
        '/snap/acct-1/cam-%31/s1?' . (split /\?/, url())[1]],
    ['form', qr/^trailing slash$/, 400, 'malformed',
        '/snap/acct-1/cam-1/s1/?' . (split /\?/, url())[1]],
    ['form', qr/^missing query parameter$/, 400, 'malformed',
        '/snap/acct-1/cam-1/s1?exp=' . ($now + 60) . '&kid=k1'],
    ['form', qr/^the path is not under \/snap\//, 400, 'malformed',
        '/cams/acct-1/cam-1/s1?' . (split /\?/, url())[1]],
    ['kid', qr/^no key "k9" among the keys given$/, 403, 'key',
        url(kid => 'k9', key => $t->key('k1'))],
    ['signature', qr/^it does not match key "k1"/, 403, 'signature',
        url(key => $t->key('k2'))],
    ['signature', qr/^sig is not 43 characters/, 403, 'signature',
        '/snap/acct-1/cam-1/s1?exp=' . ($now + 60) . '&kid=k1&sig=abc'],
    ['signature', qr/^it does not match/, 403, 'signature',
        do { (my $u = url()) =~ s{/s1\?}{/s2?}; $u }],
    ['expired', qr/^exp \d+ was (1[0-2]\d) s ago$/, 403, 'expired',
        url(exp => $now - 100)],
    ['lifetime',
        qr/^exp \d+ is \d+ s ahead, beyond the lifetime cap of 3600 s$/,
        403, 'expired', url(exp => $now + 7200)],
    ['ok', qr/expires in 7\d{3} s/, 0, undef, url(exp => $now + 7200),
        '--max-lifetime', '0'],
    ['ok', qr/expires in/, 0, undef, url(exp => $now + 7200),
        '--max-lifetime', '2h30m'],
    ['lifetime', qr/cap of 120 s$/, 403, 'expired', url(), '--max-lifetime',
        '2m'],
    ['ok', qr/acct-1\/cam-1\/s1/, 0, undef,
        'http://snap.example.com:8443' . url(prefix => '/cams/'),
        '--prefix', '/cams/'],
    ['ok', qr/acct-1\/cam-1\/s1/, 0, undef, url(prefix => '')],
);

for my $c (@cases) {
    my ($check, $reason, $status, $body, $u, @extra) = @$c;
    my $name = "verify $check ($u)";
    ($rc, $out, $err) = cli('verify', $u, @keys, @extra);
    is($rc, $check eq 'ok' ? 0 : 1, "$name: exit " . ($check eq 'ok' ? 0 : 1));
    my $line = $check eq 'ok' ? 'ok' : $check;
    like($out, qr/^\Q$line\E: /, "$name: the check named first");
    is(scalar(() = $out =~ /\n/g), 1, "$name: one line");
    if ($status) {
        like($out, qr/ \(nginx answers $status $body\)$/,
            "$name: what nginx answers");
    }
    my ($sig) = $u =~ /sig=([^&]+)/;
    my $leak = grep { index(lc $out . $err, $_) >= 0 } @secrets,
        defined $sig && length $sig > 8 ? lc $sig : ();
    ok(!$leak, "$name: neither the signature nor a key is printed");

    my ($jrc, $json) = cli('verify', $u, @keys, @extra, '--json');
    is($jrc, $rc, "$name --json: the same exit status");
    my $j = eval { decode_json($json) };
    ok($j, "$name --json: parses") or diag $json;
    next unless $j;
    is($j->{check}, $check, "$name --json: check");
    like($j->{reason}, $reason, "$name --json: reason");
    is(!!$j->{ok}, $check eq 'ok', "$name --json: ok");
    if ($status) {
        is($j->{status}, $status, "$name --json: status");
        is($j->{body}, $body, "$name --json: body");
    }
    ok(!grep({ /sig/ } keys %$j), "$name --json: no signature field");
}

($rc, $out, $err) = cli('verify', url());
is($rc, 2, 'verify without --key: exit 2');
like($err, qr/--key KID=FILE/, 'asking for the keys');
($rc, $out, $err) = cli('verify', url(), '--key', 'k1');
is($rc, 2, 'a --key without its file: exit 2');
open my $bad, '>', "$d/bad.key" or die;
print $bad "not hex\n";
close $bad;
($rc, $out, $err) = cli('verify', url(), '--key', "k1=$d/bad.key");
is($rc, 2, 'a key file that is not hex: exit 2');
like($err, qr/key is not hex on one line/, 'saying so');
usage_error('verify --prefix without slashes', qr/--prefix wants/,
    { value => 1 }, 'verify',
    url(), @keys, '--prefix', 'snap');

done_testing;
