#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# What the origin receives: the verified ids in the URI, an Accept of the
# formats we decode, and nothing of the client's request unless the
# operator names it in snapcache_origin_pass_header.  An origin that
# honours X-Original-URL cannot be steered into another account's image,
# a GET with an unfinished body sends no Content-Length on, and an
# original that the proxy buffers to a temp file still works.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Snapcache::Test qw(build_dir);

my $snapmark = build_dir() . '/bin/snapmark';
plan skip_all => 'snapmark not built' unless -x $snapmark;

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
my $origin_port = $t->origin_port;
$t->start(
    http => "    snapcache_store $d/store size=128m;\n"
        . "    proxy_cache_path $d/pcache keys_zone=originals:1m;\n",
    server_extra => "        snapcache_max_original_size 16m;\n"
        . "        location /pass/ {\n"
        . "            snapcache;\n"
        . "            snapcache_origin_pass_header User-Agent X-Trace;\n"
        . "        }\n"
        # proxy_cache makes nginx write every large body to a temp file
        . "        location /cached/ {\n"
        . "            snapcache;\n"
        . "            snapcache_origin /_corigin;\n"
        . "        }\n"
        . "        location /_corigin/ {\n"
        . "            internal;\n"
        . "            proxy_pass http://127.0.0.1:$origin_port/;\n"
        . "            proxy_cache originals;\n"
        . "            proxy_cache_valid 200 1m;\n"
        . "        }\n",
);

sub owner_ok {
    my ($body, $a, $dev, $s, $name) = @_;
    my $f = "$d/body-" . int(rand(1e9));
    open my $fh, '>:raw', $f or die;
    print $fh $body;
    close $fh;
    my $out = `'$snapmark' check '$f' '$a' '$dev' '$s' 2>&1`;
    is($? >> 8, 0, "$name: the owner marker is $a/$dev/$s") or diag $out;
}

# the header names the origin saw for the request of this path
sub origin_headers_for {
    my ($path) = @_;
    my ($line) = grep { m{^GET \Q$path\E } } $t->origin_requests;
    return undef unless $line;
    my (undef, undef, $h) = split / /, $line, 3;
    return { map { $_ => 1 } split /\|/, $h // '' };
}

my %hostile = (
    'X-Original-URL' => '/acct-2/cam-9/s1',
    'X-Forwarded-Host' => 'evil.example',
    'X-Account-Id' => 'acct-2',
    'X-Trace' => 'abc',
    'Accept' => 'image/jpeg',
    'User-Agent' => 'display/1.0',
    'Cookie' => 'session=1',
    'Authorization' => 'Bearer x',
);

# ------------------------------------------------------------ allow-list

my $r = $t->request($t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's1', v => 'thumb'), headers => \%hostile);
is($r->{status}, 200, 'a request full of client headers is answered');
owner_ok($r->{body}, 'acct-1', 'cam-1', 's1',
    'X-Original-URL did not steer the origin');

my $seen = origin_headers_for('/acct-1/cam-1/s1');
ok($seen, 'the origin was asked for the signed ids');
is_deeply([sort keys %$seen], [qw(accept connection host)],
    'the origin saw only Host, Connection and the module\'s Accept')
    or diag join ' ', sort keys %$seen;

# the kept original is acct-1's own: later rungs show acct-1 too
my $sd = $t->request($t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's1', v => 'sd'));
owner_ok($sd->{body}, 'acct-1', 'cam-1', 's1', 'the kept original');

# named headers pass, and only those
$r = $t->request($t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's2', prefix => '/pass/', v => 'thumb'),
    headers => \%hostile);
is($r->{status}, 200, 'snapcache_origin_pass_header location answers');
$seen = origin_headers_for('/acct-1/cam-1/s2');
is_deeply([sort keys %$seen],
    [qw(accept connection host user-agent x-trace)],
    'the origin saw exactly the headers passed by name')
    or diag join ' ', sort keys %$seen;

# ------------------------------------------------------------ no body

# a GET whose Content-Length promises a body that never fully arrives
my $target = $t->sign_url(account => 'acct-1', device => 'cam-1',
    snapshot => 's3', v => 'thumb');
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port,
    Timeout => 30) or die $!;
print $s "GET $target HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Length: 97\r\n\r\n0123456789";
my $resp = '';
while (my $n = sysread $s, $resp, 65536, length $resp) {
    last if $resp =~ /\r\n\r\n/ && length($resp) > 1000;
}
close $s;
like($resp, qr{^HTTP/1\.1 200}, 'a GET with an unfinished body is answered');
$seen = origin_headers_for('/acct-1/cam-1/s3');
ok($seen && !$seen->{'content-length'} && !$seen->{'transfer-encoding'},
    'and the origin request carries no body length')
    or diag join ' ', sort keys %{ $seen // {} };

# ------------------------------------------------------------ big original

# 8 MB from a fast origin, with default proxy buffering, and through an
# origin location with proxy_cache, which spills large bodies to a temp
# file: the fill still reads them whole
$r = $t->request($t->sign_url(account => 'acct-3', device => 'cam-2',
    snapshot => 'big-1', v => 'sd'));
is($r->{status}, 200, 'an 8 MB original works');
is($r->{headers}{'x-snapcache'}, 'MISS', 'as a fill');
owner_ok($r->{body}, 'acct-3', 'cam-2', 'big-1', 'the big original');

$r = $t->request($t->sign_url(account => 'acct-3', device => 'cam-2',
    snapshot => 'big-2', v => 'sd', prefix => '/cached/'));
is($r->{status}, 200, 'an 8 MB original buffered to a temp file works');
owner_ok($r->{body}, 'acct-3', 'cam-2', 'big-2', 'the buffered original');
unlike($t->error_log, qr/buffered to disk|could not be read into memory/,
    'nothing was refused for being on disk');

# ------------------------------------------------------------ config

$t->write_config(server_extra => "        location /bad/ {\n"
    . "            snapcache;\n"
    . "            snapcache_origin_pass_header Range;\n"
    . "        }\n");
my ($rc, $out) = $t->test_config;
isnt($rc, 0, 'passing Range to the origin is refused');
like($out, qr/"Range" cannot be passed to the origin/, 'and says why');

done_testing;
