#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The admin API's gate.  Every call needs a bearer token from one of the
# snapcache_admin_token files: no token, a wrong one, and one of the
# right length but wrong all get 401 with WWW-Authenticate, a log line
# without the token, and no other effect; the second, rotated token
# works like the first.  Bad purge requests (malformed JSON, unknown
# fields, ids outside the grammar, an empty scope, more than 256
# scopes, a body over the cap, the wrong content type) get 400 with a
# JSON error and purge nothing; other methods get 405.  An admin
# location without a token stops nginx -t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    inspect_records);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

# records are counted exactly: each fill makes only the rung asked for
my $t = Snapcache::Test->new;
$t->start_origin(image_size => '640x360');
my $d = $t->dir;
my ($tok1, $file1) = write_token($t, 'admin1');
my ($tok2, $file2) = write_token($t, 'admin2');

# ------------------------------------------------------------ nginx -t

$t->write_config(
    http => "    snapcache_store $d/store size=32m;\n"
        . "    snapcache_fill_below off;\n",
    server_extra => "        location /_admin/ { snapcache_admin; }\n",
);
my ($rc, $out) = $t->test_config;
isnt($rc, 0, 'nginx -t fails for an admin location without a token');
like($out, qr/"snapcache_admin" requires at least one "snapcache_admin_token"/,
    'and says why');

my ($short) = (write_token($t, 'short', 16))[1];
$t->write_config(
    http => "    snapcache_store $d/store size=32m;\n"
        . "    snapcache_fill_below off;\n",
    server_extra => admin_location($short),
);
($rc, $out) = $t->test_config;
isnt($rc, 0, 'nginx -t fails for a token shorter than 32 bytes');
unlike($out, qr/[0-9a-f]{32}/, 'and the message holds no token bytes');

$t->start(
    http => "    snapcache_store $d/store size=32m;\n"
        . "    snapcache_fill_below off;\n",
    server_extra => admin_location($file1, $file2),
);
my $port = $t->port;

# a few records to purge, or rather not to
my @ids = map { { account => 'acct-a', device => 'cam-1', snapshot => "s$_" } }
    1 .. 3;
is($t->request($t->sign_url(%$_))->{status}, 200, "fill $_->{snapshot}")
    for @ids;
my @before = inspect_records("$d/store");
is(scalar @before, 6, 'three snapshots stored: a variant and an original each');

sub all_hits {
    my $hits = grep {
        ($t->request($t->sign_url(%$_))->{headers}{'x-snapcache'} // '')
            eq 'HIT'
    } @ids;
    return $hits == @ids;
}

sub nothing_purged {
    my ($what) = @_;
    is(scalar(inspect_records("$d/store")), scalar @before,
        "$what: nothing was purged");
    ok(all_hits(), "$what: every record is still a hit");
}

my $device = '{"account":"acct-a","device":"cam-1"}';

# ---------------------------------------------------------------- auth

my %auth = (
    'no Authorization header' => {},
    'an empty bearer' => { auth => 'Bearer ' },
    'another scheme' => { auth => "Basic $tok1" },
    'a wrong token of the right length' => { token => 'a' x 64 },
    'a token one hex digit off' =>
        { token => substr($tok1, 0, 63) . (substr($tok1, 63) eq '0' ? '1' : '0') },
    'a prefix of the token' => { token => substr($tok1, 0, 62) },
    'the token and more' => { token => $tok1 . '00' },
    'a token that is not hex' => { token => 'z' x 64 },
);

my $log_before = length $t->error_log;
for my $name (sort keys %auth) {
    my $r = admin_call($port, 'POST', 'purge', %{ $auth{$name} },
        body => $device);
    is($r->{status}, 401, "$name: 401");
    is($r->{headers}{'www-authenticate'}, 'Bearer',
        "$name: WWW-Authenticate: Bearer");
    is(admin_json($r)->{error}, 'unauthorized', "$name: a JSON error");
}
for my $ep (qw(stats metrics nope)) {
    is(admin_call($port, 'GET', $ep)->{status}, 401, "GET $ep without a "
        . 'token: 401');
}
nothing_purged('after the refused tokens');

my $log = substr $t->error_log, $log_before;
my @refusals = $log =~ /snapcache: admin: refused/g;
cmp_ok(scalar @refusals, '>=', scalar(keys %auth) + 3,
    'each refusal is logged');
unlike($log, qr/\Q$tok1\E|\Q$tok2\E|\Q${\ substr($tok1, 0, 62)}\E/,
    'no token, or part of one, is logged');

# the rotated pair: either token works, in either case of hex
for my $tok ($tok1, $tok2, uc $tok2) {
    my $r = admin_call($port, 'GET', 'stats', token => $tok);
    is($r->{status}, 200, 'a configured token is accepted');
}

# ------------------------------------------------------------ routing

my $r = admin_call($port, 'GET', 'nope', token => $tok1);
is($r->{status}, 404, 'an unknown endpoint: 404');
$r = admin_call($port, 'GET', 'purge', token => $tok1);
is($r->{status}, 405, 'GET purge: 405');
is($r->{headers}{allow}, 'POST', 'Allow: POST');
$r = admin_call($port, 'DELETE', 'purge', token => $tok1);
is($r->{status}, 405, 'DELETE purge: 405');
$r = admin_call($port, 'POST', 'stats', token => $tok1, body => '{}');
is($r->{status}, 405, 'POST stats: 405');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow: GET, HEAD');
nothing_purged('after the wrong methods');

# ----------------------------------------------------------- bad input

my $many = '{"purge":[' . join(',', map { qq({"account":"a$_"}) } 1 .. 257)
    . ']}';
my $big = '{"purge":[' . join(',', map {
    qq({"account":"acct-a","device":"cam-1","snapshot":"${\ ('x' x 60)}$_"})
} 1 .. 256) . '],"pad":"' . ('p' x 70000) . '"}';

my @bad = (
    [ 'malformed JSON', '{"account":"acct-a"' ],
    [ 'not JSON at all', 'account=acct-a' ],
    [ 'a JSON list', '[{"account":"acct-a"}]' ],
    [ 'an empty body', '' ],
    [ 'an empty scope', '{}' ],
    [ 'an empty list', '{"purge":[]}' ],
    [ 'an empty scope in a list', '{"purge":[{"account":"x"},{}]}' ],
    [ 'an unknown field', '{"account":"acct-a","devices":"cam-1"}' ],
    [ 'an unknown field next to purge', '{"purge":[{"account":"x"}],"x":1}' ],
    [ 'an unknown field in a list', '{"purge":[{"account":"x","y":"z"}]}' ],
    [ 'a duplicate field', '{"account":"acct-a","account":"acct-b"}' ],
    [ 'no account', '{"device":"cam-1"}' ],
    [ 'a snapshot without a device', '{"account":"acct-a","snapshot":"s1"}' ],
    [ 'an id with a slash', '{"account":"acct-a/cam-1"}' ],
    [ 'an id starting with a dot', '{"account":"..","device":"cam-1"}' ],
    [ 'an empty id', '{"account":""}' ],
    [ 'an id of 65 bytes', '{"account":"' . ('a' x 65) . '"}' ],
    [ 'an id with a NUL', '{"account":"acct-a\u0000x"}' ],
    [ 'an id with a space', '{"account":"acct a"}' ],
    [ 'a non-ASCII id', qq({"account":"acct-\xc3\xa9"}) ],
    [ 'a number as id', '{"account":12}' ],
    [ 'a scope that is a string', '{"purge":["acct-a"]}' ],
    [ 'purge that is an object', '{"purge":{"account":"acct-a"}}' ],
    [ 'more than 256 scopes', $many ],
    [ 'a body over the cap', $big ],
);

for my $case (@bad) {
    my ($name, $body) = @$case;
    $r = admin_call($port, 'POST', 'purge', token => $tok1, body => $body);
    is($r->{status}, 400, "$name: 400");
    my $j = admin_json($r);
    ok($j && defined $j->{error} && length $j->{error},
        "$name: a JSON error ($r->{body})" =~ s/\n//r);
}

for my $type ('text/plain', 'application/x-www-form-urlencoded',
    'application/jsonx', undef)
{
    my %o = (token => $tok1, body => $device);
    $o{type} = $type // '';
    $r = admin_call($port, 'POST', 'purge', %o);
    is($r->{status}, 400, 'content type ' . ($type // '(none)') . ': 400');
    like($r->{body}, qr/application\/json/, 'the error names the type');
}
$r = admin_call($port, 'POST', 'purge', token => $tok1, body => $device,
    type => 'Application/JSON; charset=utf-8');
is($r->{status}, 200, 'application/json with a charset is fine')
    or diag $r->{body};
is(admin_json($r)->{records}, 6, 'and that purge removed the device');

@before = ();
is(scalar(inspect_records("$d/store")), 0, 'the store is empty now');

# the refusals are counted, the purge too
my $s = admin_json(admin_call($port, 'GET', 'stats', token => $tok2));
is($s->{purge}{ok}, 1, 'stats: one purge done');
is($s->{purge}{records}, 6, 'stats: six records purged');
cmp_ok($s->{purge}{refused}, '>=', @bad + 4 + keys %auth,
    'stats: every refused purge request counted');

done_testing;
