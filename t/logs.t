#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# No live signature reaches a log that the module controls.  Every request
# line is redacted before the phases run, so $request and the error log
# lines of requests nginx accepts show "sig=x"; $snapcache_request is
# redacted for every request, including those nginx refuses while still
# reading them; an error log at "notice" holds no signature at all, and
# at "info" only nginx's own "client sent ..." lines can hold one.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Snapcache::Test qw(build_dir wait_until);

plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
$t->start(
    main => "error_log $d/logs/notice.log notice;",
    http => "    snapcache_store $d/store size=32m;\n"
        . "    large_client_header_buffers 2 1k;\n"
        . "    log_format redacted '\$status \$snapcache_request';\n"
        . "    log_format raw '\$status \$request';\n"
        . "    access_log $d/logs/redacted.log redacted;\n"
        . "    access_log $d/logs/raw.log raw;\n",
);

my $url = $t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's1', v => 'thumb');
my ($sig) = $url =~ /sig=([^&]+)/;
ok(length $sig >= 40, 'a live signature to look for');

# sends raw bytes, returns the status
sub raw {
    my ($bytes) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port,
        Timeout => 10) or die $!;
    print $s $bytes;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    return $status // 0;
}

my $tail = "Connection: close\r\n\r\n";
my $empty_sigs = '/snap/acct-1/cam-1/s1?' . join('&', ('sig=') x 190);
my %cases = (
    'a valid URL' => ["GET $url HTTP/1.1\r\nHost: x\r\n$tail", 200],
    'an invalid header line' =>
        ["GET $url HTTP/1.1\r\nHost: x\r\nX.Bad: 1\r\n$tail", 200],
    'a bad Host' => ["GET $url HTTP/1.1\r\nHost: a/b\r\n$tail", 400],
    'an empty Host' => ["GET $url HTTP/1.1\r\nHost:\r\n$tail", 400],
    'a duplicate Host' =>
        ["GET $url HTTP/1.1\r\nHost: x\r\nHost: y\r\n$tail", 400],
    'a URI too long' => ["GET $url&pad=" . ('a' x 2000)
        . " HTTP/1.1\r\nHost: x\r\n$tail", 414],
    'an oversized header' =>
        ["GET $url HTTP/1.1\r\nHost: x\r\nX-Big: " . ('b' x 2000)
        . "\r\n$tail", 400],
    'a wrong-case path' =>
        ["GET " . ($url =~ s{^/snap/}{/SNAP/}r) . " HTTP/1.1\r\nHost: x\r\n"
        . $tail, 404],
    'a lowercase method' => ["get $url HTTP/1.1\r\nHost: x\r\n$tail", 400],
    # each empty value grows the line by one byte ("sig=" -> "sig=x")
    'empty sig values' => ["GET $empty_sigs HTTP/1.1\r\nHost: x\r\n$tail",
        400],
    'a percent-encoded sig name' =>
        ["GET " . ($url =~ s/&sig=/&%73Ig=/r) . " HTTP/1.1\r\nHost: x\r\n"
        . $tail, 400],
);

for my $name (sort keys %cases) {
    my ($bytes, $want) = @{ $cases{$name} };
    is(raw($bytes), $want, "$name gets $want");
}

sub slurp {
    open my $f, '<', $_[0] or return '';
    local $/;
    return <$f>;
}

# a request's access log lines are written when nginx closes it, which
# can be after the client saw the end of the response (a lingering
# close): wait until both logs have a line for each request
my $n = keys %cases;
ok(wait_until(sub {
        (() = slurp("$d/logs/redacted.log") =~ /^\d+ /mg) >= $n
            && (() = slurp("$d/logs/raw.log") =~ /^\d+ /mg) >= $n;
    }), "both access logs have $n lines");

my $redacted = slurp("$d/logs/redacted.log");
my $raw = slurp("$d/logs/raw.log");
my $notice = slurp("$d/logs/notice.log");
my $info = $t->error_log;

is(scalar(() = $redacted =~ /^\d+ /mg), scalar keys %cases,
    'every request has a line in the redacted access log');
unlike($redacted, qr/\Q$sig\E/, '$snapcache_request never holds the signature');
like($redacted, qr/sig=x/, 'it keeps the parameter, without its value');

for my $line (split /\n/, $raw) {
    next unless $line =~ /^(200|404) /;
    unlike($line, qr/\Q$sig\E/, "\$request of an accepted request ($1) is "
        . 'redacted');
}

my $want = "GET /snap/acct-1/cam-1/s1?" . join('&', ('sig=x') x 190)
    . " HTTP/1.1";
ok((grep { $_ eq "400 $want" } split /\n/, $raw),
    '190 empty sig values: each redacted to "sig=x", the rest intact')
    or diag grep { /sig=x&sig=/ } split /\n/, $raw;

unlike($notice, qr/\Q$sig\E/, 'an error log at notice holds no signature');
like($info, qr/open\(\) ".*SNAP.*failed.*request: "GET \/SNAP\/[^"]*sig=x/,
    'error lines of accepted requests show the redacted line');

my @leaks = grep { /\Q$sig\E/ } split /\n/, $info;
ok(@leaks > 0, 'at info, nginx itself logs some refused requests raw');
is(scalar(grep { !/client sent/ } @leaks), 0,
    'and those are only its own "client sent ..." lines')
    or diag join "\n", grep { !/client sent/ } @leaks;

done_testing;
