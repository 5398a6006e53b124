#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# snapcache health, purge and stats against fake nodes: small HTTP
# servers that answer a script of responses and log every request.
# health says ok or the node's one-word reason and exits 1 if any node is
# not ok; purge tries a node again after a failure to answer or a 5xx, up
# to --retries, and says per node what it did; a 4xx is not retried.
# Nodes and the token come from --node and --token-file, or from
# SNAPCACHE_NODES and SNAPCACHE_TOKEN_FILE, and flags win.  The token is
# sent as its file holds it, only in the Authorization header, and a
# token file that is not one is refused before anything is sent.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(mkfifo _exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(build_dir reserve_port release_port);

my $cli = build_dir() . '/snapcache';
plan skip_all => 'the CLI is not built' unless -x $cli;

# Under AddressSanitizer every run of the CLI (not nginx's) checks for
# leaks too: a leak makes its exit status 23, which no test here expects.
my $env = ($ENV{SNAPCACHE_SAN} // '') eq 'address'
    ? 'ASAN_OPTIONS=detect_leaks=1:exitcode=23 ' : '';
delete local $ENV{SNAPCACHE_NODES};
delete local $ENV{SNAPCACHE_TOKEN_FILE};

my $t = Snapcache::Test->new;
my $d = $t->dir;
my @fakes;

END {
    local $?;
    for my $f (@fakes) {
        kill 'KILL', $f->{pid};
        waitpid $f->{pid}, 0;
    }
}

# A fake node.  Each answer is [status, body] or 'close' (the connection
# is closed without an answer); the last one is repeated.  Every request
# is logged, before it is answered, as one JSON line: method, path,
# authorization and body.
sub fake {
    my (@answers) = @_;
    my $n = @fakes;
    my $log = "$d/fake$n.log";
    my $srv = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
        LocalPort => 0, Proto => 'tcp', ReuseAddr => 1) or die $!;
    my $pid = fork // die;
    if (!$pid) {
        my $i = 0;
        while (my $c = $srv->accept) {
            my $req = '';
            $req .= $_ while defined($_ = <$c>) && $_ ne "\r\n";
            my ($method, $path) = $req =~ /^(\S+) (\S+)/;
            my ($len) = $req =~ /^content-length:\s*(\d+)/mi;
            my ($auth) = $req =~ /^authorization:\s*([^\r\n]*)/mi;
            my $body = '';
            read $c, $body, $len if $len;
            open my $l, '>>', $log or die;
            print $l encode_json({ method => $method, path => $path,
                auth => $auth, body => $body }), "\n";
            close $l;
            my $a = $answers[$i < @answers ? $i : -1];
            $i++;
            if (!ref $a) {
                close $c;
                next;
            }
            my ($status, $b) = @$a;
            print $c "HTTP/1.1 $status X\r\nContent-Type: application/json"
                . "\r\nContent-Length: " . length($b)
                . "\r\nConnection: close\r\n\r\n$b";
            close $c;
        }
        _exit(0);
    }
    my $f = { pid => $pid, log => $log,
        url => 'http://127.0.0.1:' . $srv->sockport };
    close $srv;
    push @fakes, $f;
    return $f;
}

sub requests {
    my ($f) = @_;
    open my $l, '<', $f->{log} or return ();
    return map { decode_json($_) } <$l>;
}

# (exit status, stdout, stderr)
sub cli {
    my ($stdin, @args) = @_;
    my $cmd = join ' ', map { my $a = $_; $a =~ s/'/'\\''/g; "'$a'" }
        $cli, @args;
    open my $in, '>', "$d/stdin" or die;
    print $in $stdin // '';
    close $in;
    my $out = `$env$cmd <'$d/stdin' 2>'$d/stderr'`;
    my $rc = $? >> 8;
    open my $e, '<', "$d/stderr" or die;
    local $/;
    return ($rc, $out, <$e> // '');
}

sub json_of {
    my ($out) = @_;
    my $j = eval { decode_json($out) };
    return $j;
}

sub token_file {
    my ($name, $content) = @_;
    my $path = "$d/keys/$name.token";
    open my $f, '>', $path or die;
    chmod 0600, $path;
    print $f $content;
    close $f;
    return $path;
}

my $tok = join '', map { sprintf '%02x', int rand 256 } 1 .. 32;
my $token = token_file('admin', "$tok\n");

# a port nothing listens on (its UDP lock keeps other tests off it)
my $dead_port = reserve_port();
release_port($dead_port);
my $dead = "http://127.0.0.1:$dead_port";

# ------------------------------------------------------------ health

my $n;
my $h_ok = fake([200, "ok\n"]);
my $h_store = fake([503, "store\n"]);

my ($rc, $out, $err) = cli(undef, 'health', '--node', $h_ok->{url},
    '--node', $h_store->{url}, '--node', $dead, '--timeout', '5');
is($rc, 1, 'health, a node not ok: exit 1');
my @lines = split /\n/, $out;
is(scalar @lines, 3, 'one line per node') or diag $out;
is($lines[0], "$h_ok->{url} ok", 'a node that answers 200 ok: ok');
is($lines[1], "$h_store->{url} failed: store (HTTP 503)",
    'a node that answers 503 store: its reason');
like($lines[2], qr/^\Q$dead\E failed: .*[Cc]onnect/,
    'a node that is down: the connection error');
is_deeply([map { "$_->{method} $_->{path}" } requests($h_ok)],
    ['GET /health'], 'it asked GET /health, once');
ok(!defined((requests($h_ok))[0]{auth}), 'with no token');

($rc, $out) = cli(undef, 'health', '--node', $h_ok->{url});
is($rc, 0, 'health, every node ok: exit 0');
is($out, "$h_ok->{url} ok\n", 'ok');

($rc, $out) = cli(undef, 'health', '--node', "$h_ok->{url}/snapcache-admin/",
    '--path', '/hc');
is($rc, 0, '--path, and a node URL with a path of its own');
is((requests($h_ok))[-1]{path}, '/hc', 'it asks --path on the node\'s '
    . 'address, whatever the URL\'s path');

($rc, $out) = cli(undef, 'health', '--node', $h_ok->{url}, '--node',
    $h_store->{url}, '--json');
is($rc, 1, 'health --json: exit 1 still');
my $j = json_of($out);
ok($j, 'health --json parses') or diag $out;
ok(!$j->{ok}, 'not ok, as a whole');
is($j->{nodes}[0]{health}, 'ok', 'node 1: ok');
ok($j->{nodes}[0]{ok}, 'node 1: ok is true');
is($j->{nodes}[1]{health}, 'store', 'node 2: store');
is($j->{nodes}[1]{status}, 503, 'node 2: HTTP 503');
is($j->{nodes}[1]{url}, "$h_store->{url}/health", 'the URL asked');

$n = () = requests($h_store);
my $h_silent = fake('close', [200, "ok\n"]);
($rc, $out) = cli(undef, 'health', '--node', $h_store->{url}, '--node',
    $h_silent->{url}, '--retries', '2');
is($out, "$h_store->{url} failed: store (HTTP 503)\n$h_silent->{url} ok\n",
    'health --retries: a node that closed without answering is asked again');
is(scalar(() = requests($h_silent)), 2, 'twice');
is(scalar(() = requests($h_store)) - $n, 1, 'but a 503 is its answer, once');

my $h_odd = fake([200, "fine\n"], [404, "nope\n"]);
($rc, $out) = cli(undef, 'health', '--node', $h_odd->{url}, '--node',
    $h_odd->{url});
is($rc, 1, 'a 200 without "ok", and a 404: not ok');
like($out, qr/failed: HTTP 200 without "ok"\n.*failed: HTTP 404\n/,
    'saying what came back');

# ------------------------------------------------------------ environment

{
    local $ENV{SNAPCACHE_NODES} = "$h_ok->{url}, $h_store->{url}";
    ($rc, $out) = cli(undef, 'health');
    is($rc, 1, 'SNAPCACHE_NODES, comma-separated: both asked');
    like($out, qr/^\Q$h_ok->{url}\E ok\n\Q$h_store->{url}\E failed: store/,
        'in its order');

    $ENV{SNAPCACHE_NODES} = " $h_store->{url}\t$h_ok->{url} ";
    ($rc, $out) = cli(undef, 'health');
    like($out, qr/^\Q$h_store->{url}\E failed: store .*\n\Q$h_ok->{url}\E ok\n/,
        'space-separated too');

    $n = () = requests($h_store);
    ($rc, $out) = cli(undef, 'health', '--node', $h_ok->{url});
    is($rc, 0, '--node wins over SNAPCACHE_NODES');
    is($out, "$h_ok->{url} ok\n", 'only the node given is asked');
    is(scalar(() = requests($h_store)), $n, 'the other is not');

    $ENV{SNAPCACHE_NODES} = ' , ';
    ($rc, $out, $err) = cli(undef, 'health');
    is($rc, 2, 'SNAPCACHE_NODES with no URL: exit 2');
    like($err, qr/no node: give --node URL, or set SNAPCACHE_NODES/,
        'saying so');
}
($rc, $out, $err) = cli(undef, 'stats', '--token-file', $token);
is($rc, 2, 'no --node and no SNAPCACHE_NODES: exit 2');
like($err, qr/no node/, 'saying so');

# ------------------------------------------------------------ purge

my $answer = encode_json({ purged => [{ account => 'acct-1',
    device => 'cam-1', records => 3 }], records => 3, generation => 7,
    seconds => 0.001 });
my $p_flaky = fake([503, '{"error":"thread pool full"}'], [200, $answer]);
my $p_closing = fake('close', [200, $answer]);
my $p_down = fake([500, '{"error":"store failed"}']);

($rc, $out, $err) = cli(undef, 'purge', '--node', $p_flaky->{url},
    '--node', $p_closing->{url}, '--node', $p_down->{url}, '--token-file',
    $token, '--account', 'acct-1', '--device', 'cam-1');
is($rc, 1, 'purge, a node that always fails: exit 1');
@lines = split /\n/, $out;
is(scalar @lines, 3, 'one line per node') or diag $out . $err;
like($lines[0],
    qr/^\Q$p_flaky->{url}\E ok records=3 generation=7 retries=1 time=[\d.]+ms$/,
    'a node that answered 503, then 200: ok after one retry');
like($lines[1],
    qr/^\Q$p_closing->{url}\E ok records=3 generation=7 retries=1 time=/,
    'a node that closed the connection, then answered: ok after one retry');
like($lines[2],
    qr/^\Q$p_down->{url}\E failed: HTTP 500: store failed retries=2 time=/,
    'a node that always answers 500: failed, after 2 retries');
for my $f ([$p_flaky, 2], [$p_closing, 2], [$p_down, 3]) {
    my @r = requests($f->[0]);
    is(scalar @r, $f->[1], "$f->[0]{url}: $f->[1] requests");
    is_deeply([map { "$_->{method} $_->{path}" } @r],
        [("POST /snapcache-admin/purge") x $f->[1]],
        'each a POST to /snapcache-admin/purge of the node\'s base URL');
    is_deeply([map { decode_json($_->{body}) } @r],
        [({ account => 'acct-1', device => 'cam-1' }) x $f->[1]],
        'each with the scope');
    is_deeply([map { $_->{auth} } @r], [("Bearer $tok") x $f->[1]],
        'each with the token from the file');
}
unlike($out . $err, qr/\Q$tok\E/i, 'the token is not printed');

$n = () = requests($p_down);
($rc, $out) = cli(undef, 'purge', '--node', $p_down->{url}, '--token-file',
    $token, '--account', 'acct-1', '--retries', '0');
is($rc, 1, '--retries 0: exit 1');
like($out, qr/failed: HTTP 500: store failed retries=0 /, 'no retry');
is(scalar(() = requests($p_down)) - $n, 1, 'one request');

my $p_refused = fake([401, '{"error":"unauthorized"}']);
($rc, $out) = cli(undef, 'purge', '--node', $p_refused->{url},
    '--token-file', $token, '--account', 'acct-1');
is($rc, 1, 'a 401: exit 1');
like($out, qr/failed: HTTP 401: unauthorized retries=0 /,
    'a 4xx is not retried');
is(scalar(() = requests($p_refused)), 1, 'one request');

($rc, $out) = cli(undef, 'purge', '--node', $dead, '--token-file', $token,
    '--account', 'acct-1', '--retries', '1');
is($rc, 1, 'a node that is down: exit 1');
like($out, qr/^\Q$dead\E failed: .*[Cc]onnect.* retries=1 time=/,
    'failed after its retry');

# --json, and a list from stdin over two requests, one of them retried
my $p_json = fake([200, $answer], [503, '{}'], [200, encode_json({
    purged => [{ account => 'acct-2', records => 1 }], records => 1,
    generation => 8 })]);
my $scopes = join '', map { "acct-1 cam-1 s$_\n" } 1 .. 256;
$scopes .= "# a comment\nacct-2\n";
($rc, $out, $err) = cli($scopes, 'purge', '--node', $p_json->{url},
    '--node', $p_down->{url}, '--token-file', $token, '--stdin',
    '--retries', '1', '--json');
is($rc, 1, 'purge --json: exit 1, a node failed');
$j = json_of($out);
ok($j, 'purge --json parses') or diag $out . $err;
ok(!$j->{ok}, 'not ok, as a whole');
my ($a, $b) = @{ $j->{nodes} };
is($a->{node}, $p_json->{url}, 'node 1, as given');
ok($a->{ok}, 'node 1 ok');
is($a->{records}, 4, 'node 1: the records of both requests');
is($a->{generation}, 8, 'node 1: the last generation');
is($a->{retries}, 1, 'node 1: one retry');
is_deeply($a->{requests}, { done => 2, of => 2 }, 'node 1: two requests');
is_deeply([map { $_->{records} } @{ $a->{purged} }], [3, 1],
    'node 1: what each scope removed');
ok(!$b->{ok}, 'node 2 failed');
is($b->{status}, 500, 'node 2: HTTP 500');
is($b->{error}, 'HTTP 500: store failed', 'node 2: the error');
is($b->{retries}, 1, 'node 2: one retry');
my @r = requests($p_json);
is(scalar @r, 3, 'node 1: three POSTs');
is(scalar @{ decode_json($r[0]{body})->{purge} }, 256, 'the first of 256');
is_deeply(decode_json($r[2]{body}), { purge => [{ account => 'acct-2' }] },
    'the last of the one left, sent again after the 503');

# ------------------------------------------------------------ the token

my $p_ok = fake([200, $answer]);
my $upper = token_file('upper', uc($tok) . "\r\n");
{
    local $ENV{SNAPCACHE_TOKEN_FILE} = $upper;
    local $ENV{SNAPCACHE_NODES} = $p_ok->{url};
    ($rc, $out) = cli(undef, 'purge', '--account', 'acct-1');
    is($rc, 0, 'SNAPCACHE_NODES and SNAPCACHE_TOKEN_FILE: exit 0');
    # the bytes the hex names, whatever its case and line end
    is((requests($p_ok))[-1]{auth}, 'Bearer ' . lc $tok,
        'the token from a file in upper case with a CRLF');

    ($rc, $out) = cli(undef, 'purge', '--account', 'acct-1', '--token-file',
        $token);
    is((requests($p_ok))[-1]{auth}, "Bearer $tok",
        '--token-file wins over SNAPCACHE_TOKEN_FILE');
}

$n = () = requests($p_ok);
my @bad = (
    ['not hex', token_file('nothex', ('zz' x 32) . "\n"),
        qr/token is not hex on one line/],
    ['short', token_file('short', ('ab' x 31) . "\n"),
        qr/token is 31 bytes, at least 32 are required/],
    ['long', token_file('long', ('ab' x 65) . "\n"),
        qr/token is longer than 64 bytes/],
    ['odd', token_file('odd', ('ab' x 32) . "a\n"),
        qr/token is not hex on one line/],
    ['two lines', token_file('lines', "$tok\n$tok\n"),
        qr/token is longer than 64 bytes|token is not hex on one line/],
    ['empty', token_file('empty', ''),
        qr/token is 0 bytes, at least 32 are required/],
    ['missing', "$d/keys/none.token", qr/No such file/],
    ['a directory', "$d/keys", qr/is not a regular file/],
);
mkfifo("$d/keys/fifo.token", 0600) or die $!;
push @bad, ['a FIFO', "$d/keys/fifo.token", qr/is not a regular file/];
for my $c (@bad) {
    ($rc, $out, $err) = cli(undef, 'purge', '--node', $p_ok->{url},
        '--token-file', $c->[1], '--account', 'acct-1');
    is($rc, 2, "a token file, $c->[0]: exit 2");
    like($err, $c->[2], "$c->[0]: saying why");
}
is(scalar(() = requests($p_ok)), $n, 'and nothing was sent');
($rc, $out, $err) = cli(undef, 'purge', '--node', $p_ok->{url}, '--account',
    'acct-1');
is($rc, 2, 'no token at all: exit 2');
like($err, qr/no token: give --token-file FILE, or set SNAPCACHE_TOKEN_FILE/,
    'saying so');

# ------------------------------------------------------------ node URLs

($rc, $out) = cli(undef, 'purge', '--node', "$p_ok->{url}/", '--token-file',
    $token, '--account', 'acct-1', '--admin-path', '/_admin/');
is((requests($p_ok))[-1]{path}, '/_admin/purge',
    '--admin-path on a node\'s base URL');
($rc, $out) = cli(undef, 'purge', '--node', "$p_ok->{url}/ops/admin/",
    '--token-file', $token, '--account', 'acct-1', '--admin-path', '/x');
is((requests($p_ok))[-1]{path}, '/ops/admin/purge',
    'a node URL with a path is the admin location itself');
($rc, $out, $err) = cli(undef, 'health', '--node', '127.0.0.1:80');
is($rc, 2, 'a node that is not an http URL: exit 2');
like($err, qr/--node wants an http:\/\/ or https:\/\/ URL/, 'saying so');

# ------------------------------------------------------------ stats

my $s_ok = fake([200, encode_json({ counters => { hits => 5, misses => 2,
    stale => 1, errors => 0, fills => 2 }, purge => { ok => 4 },
    store => { records => 9, used_bytes => 81920 } })]);
my $s_flaky = fake('close', [200, '{"counters":{"hits":1}}']);
($rc, $out) = cli(undef, 'stats', '--node', $s_ok->{url}, '--node',
    $s_flaky->{url}, '--node', $dead, '--token-file', $token);
is($rc, 1, 'stats with a node down: exit 1');
@lines = split /\n/, $out;
like($lines[0], qr/^node\s+hits\s+misses\s+stale\s+errors\s+fills\s+purges
    \s+records\s+used_bytes$/x,
    'a table header');
like($lines[1], qr/^\Q$s_ok->{url}\E\s+5\s+2\s+1\s+0\s+2\s+4\s+9\s+81920$/,
    'node 1: its counters');
like($lines[2], qr/^\Q$s_flaky->{url}\E\s+1\s+0/, 'node 2: after a retry');
like($lines[3], qr/^\Q$dead\E failed: .*retries=2/, 'node 3: failed');
is((requests($s_ok))[0]{path}, '/snapcache-admin/stats',
    'GET <admin>/stats');
($rc, $out) = cli(undef, 'stats', '--node', $s_ok->{url}, '--token-file',
    $token, '--json');
is($rc, 0, 'stats --json: exit 0');
$j = json_of($out);
ok($j && $j->{ok}, 'parses, ok') or diag $out;
is($j->{nodes}[0]{stats}{store}{used_bytes}, 81920,
    'with the node\'s whole answer');

done_testing;
