#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Purge scopes: a snapshot, a device, an account, and a list of them.
# Each takes the kept original and every rung and format with it, says
# how many records it removed (0, truthfully, when nothing matched),
# and leaves every other account's and device's records in place, and
# hits.  What was purged is filled again from the origin.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    inspect_records);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new;
$t->start_origin(image_size => '640x360');
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');
$t->start(
    main => 'thread_pool snapcache threads=2 max_queue=256;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . admin_location($file),
);
my $port = $t->port;

# acct-bb shares a string prefix with acct-b, cam-10 with cam-1
my @accounts = qw(acct-a acct-b acct-bb);
my @devices = qw(cam-1 cam-10);
my @snaps = qw(s1 s2);
my @owners;
for my $a (@accounts) {
    for my $dv (@devices) {
        push @owners, [ $a, $dv, $_ ] for @snaps;
    }
}

# each snapshot: the kept original, thumb as JPEG and WebP, and sd
my @forms = ([ 'thumb', 'image/jpeg' ], [ 'thumb', 'image/webp' ],
    [ 'sd', 'image/jpeg' ]);

sub get {
    my ($o, $f) = @_;
    my ($a, $dv, $s) = @$o;
    my $r = $t->request($t->sign_url(account => $a, device => $dv,
        snapshot => $s, v => $f->[0]), headers => { Accept => $f->[1] });
    return $r;
}

sub fill_all {
    for my $o (@owners) {
        for my $f (@forms) {
            my $r = get($o, $f);
            die "fill @$o $f->[0]: $r->{status}\n" unless $r->{status} == 200;
        }
    }
}

# owners whose every form is a HIT, of those not gone (a request for a
# purged one would fill it again)
my %gone;
sub hits {
    my @h;
    for my $o (grep { !$gone{ join '/', @$_ } } @owners) {
        my $all = grep {
            (get($o, $_)->{headers}{'x-snapcache'} // '') eq 'HIT'
        } @forms;
        push @h, join('/', @$o) if $all == @forms;
    }
    return @h;
}

sub records_of {
    my ($a, $dv) = @_;
    return scalar inspect_records("$d/store", '--account', $a,
        defined $dv ? ('--device', $dv) : ());
}

# the answer's text as sent: a JSON decoder drops a number's trailing zeros
my $last_raw;

sub purge {
    my ($body) = @_;
    my $r = admin_call($port, 'POST', 'purge', token => $tok, body => $body);
    is($r->{status}, 200, "purge $body: 200") or diag $r->{body};
    $last_raw = $r->{body};
    return admin_json($r);
}

fill_all();
is(scalar(inspect_records("$d/store")), 4 * @owners,
    'four records per snapshot: original, thumb JPEG and WebP, sd');
is(scalar(hits()), scalar @owners, 'all are hits');
my $fetches = $t->origin_count;

# -------------------------------------------------------------- snapshot

my $j = purge('{"account":"acct-a","device":"cam-1","snapshot":"s1"}');
is($j->{records}, 4, 'a snapshot: 4 records removed');
is_deeply($j->{purged}, [ { account => 'acct-a', device => 'cam-1',
    snapshot => 's1', records => 4 } ], 'listed per scope');
like($last_raw, qr/"seconds":\d+\.\d{6}[,}]/,
    'the time taken, in seconds, to the microsecond');
my $gen = $j->{generation};
ok($gen >= 1, "the generation ($gen)");

%gone = ('acct-a/cam-1/s1' => 1);
is_deeply([ sort(hits()) ],
    [ sort grep { !$gone{$_} } map { join '/', @$_ } @owners ],
    'every other snapshot stays a hit');
is(records_of('acct-a', 'cam-1'), 4, 'its sibling s2 keeps its 4 records');

$j = purge('{"account":"acct-a","device":"cam-1","snapshot":"s1"}');
is($j->{records}, 0, 'purged again: "records": 0, truthfully');
ok($j->{generation} > $gen, 'the generation moved on');
$gen = $j->{generation};

$j = purge('{"account":"nobody","device":"cam-1"}');
is($j->{records}, 0, 'an unknown device: "records": 0');

# the purged snapshot is filled again from the origin
for my $f (@forms) {
    my $r = get([ 'acct-a', 'cam-1', 's1' ], $f);
    is($r->{headers}{'x-snapcache'}, 'MISS', "s1 $f->[0] $f->[1]: a miss");
}
is($t->origin_count, $fetches + 1, 'one origin fetch made them all again');
$fetches = $t->origin_count;
%gone = ();

# ---------------------------------------------------------------- device

$j = purge('{"account":"acct-a","device":"cam-1"}');
is($j->{records}, 8, 'a device: both snapshots, 8 records');
is(records_of('acct-a', 'cam-1'), 0, 'none of its records is left');
is(records_of('acct-a', 'cam-10'), 8, 'cam-10 keeps its 8');
%gone = map { ("acct-a/cam-1/$_" => 1) } @snaps;
is_deeply([ sort(hits()) ],
    [ sort grep { !$gone{$_} } map { join '/', @$_ } @owners ],
    'every other device stays a hit');

# --------------------------------------------------------------- account

$j = purge('{"account":"acct-b"}');
is($j->{records}, 16, 'an account: both devices, 16 records');
is_deeply($j->{purged}, [ { account => 'acct-b', records => 16 } ],
    'listed with the account alone');
is(records_of('acct-b'), 0, 'none of its records is left');
is(records_of('acct-bb'), 16, 'acct-bb keeps its 16');
$gone{"acct-b/$_->[0]/$_->[1]"} = 1
    for map { my $dv = $_; map { [ $dv, $_ ] } @snaps } @devices;
is_deeply([ sort(hits()) ],
    [ sort grep { !$gone{$_} } map { join '/', @$_ } @owners ],
    'every other account stays a hit');

# ------------------------------------------------------------------ list

fill_all();
%gone = ();
$j = purge('{"purge":['
    . '{"account":"acct-bb","device":"cam-10","snapshot":"s2"},'
    . '{"account":"acct-a","device":"cam-10"},'
    . '{"account":"nobody"},'
    . '{"account":"acct-b"}]}');
is_deeply([ map { $_->{records} } @{ $j->{purged} } ], [ 4, 8, 0, 16 ],
    'a list: records per scope, in order');
is($j->{records}, 28, 'and their sum');
is_deeply([ map { join '/', grep { defined } @$_{qw(account device snapshot)} }
        @{ $j->{purged} } ],
    [ 'acct-bb/cam-10/s2', 'acct-a/cam-10', 'nobody', 'acct-b' ],
    'each scope named as asked');
is(scalar(inspect_records("$d/store")), 4 * @owners - 28,
    'exactly those records are gone');

# the counters say the same
my $s = admin_json(admin_call($port, 'GET', 'stats', token => $tok));
is($s->{purge}{records}, 4 + 8 + 16 + 28, 'stats: records purged');
is($s->{purge}{ok}, 9, 'stats: nine scopes purged');
is($s->{purge}{generation}, $j->{generation}, 'stats: the same generation');

done_testing;
