#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# Configuration is checked at startup: nginx refuses to start on a short,
# malformed, unreadable or missing key, on a missing origin, and on a
# location that the handler cannot parse ids from.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test;

my $t = Snapcache::Test->new;

sub conf_error {
    my ($name, $like, %o) = @_;
    $t->write_config(%o);
    my ($rc, $out) = $t->test_config;
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $like, "$name: says why");
    return $out;
}

$t->write_config;
my ($rc, $out) = $t->test_config;
is($rc, 0, 'the default test config is valid') or diag $out;

my $d = $t->dir;

# a 31-byte key
open my $f, '>', "$d/keys/short.key" or die;
print $f ('ab' x 31), "\n";
close $f;
chmod 0600, "$d/keys/short.key";
my $o = conf_error('short key', qr/key is 31 bytes, at least 32/,
    server_extra => "        snapcache_sign_key short $d/keys/short.key;");
unlike($o, qr/abab/, 'the error shows no key material');

open $f, '>', "$d/keys/nothex.key" or die;
print $f ('zz' x 32), "\n";
close $f;
conf_error('non-hex key', qr/not hex/,
    server_extra => "        snapcache_sign_key nothex $d/keys/nothex.key;");

conf_error('missing key file', qr/cannot open key file.*No such file/,
    server_extra => "        snapcache_sign_key gone $d/keys/gone.key;");

conf_error('duplicate kid', qr/duplicate key id "k1"/,
    server_extra => "        snapcache_sign_key k1 $d/keys/k1.key;");

conf_error('invalid kid', qr/invalid key id/,
    server_extra => "        snapcache_sign_key 'a b' $d/keys/k1.key;");

SKIP: {
    skip 'root reads any file', 2 if $> == 0;
    chmod 0000, "$d/keys/k1.key";
    conf_error('unreadable key', qr/Permission denied/);
    chmod 0600, "$d/keys/k1.key";
}

# world-readable keys start, with a warning
chmod 0644, "$d/keys/k1.key";
$t->write_config;
($rc, $out) = $t->test_config;
is($rc, 0, 'a world-readable key still starts');
like($out, qr/readable by everyone/, 'with a warning');
chmod 0600, "$d/keys/k1.key";

my $port = $t->port;
my $nokeys = "    server {\n        listen 127.0.0.1:$port;\n"
    . "        snapcache_origin /_origin;\n"
    . "        location /snap/ { snapcache; }\n    }\n";
conf_error('no key', qr/requires at least one "snapcache_sign_key"/,
    servers => $nokeys);

my $noorigin = "    server {\n        listen 127.0.0.1:$port;\n"
    . "        snapcache_sign_key k1 $d/keys/k1.key;\n"
    . "        location /snap/ { snapcache; }\n    }\n";
conf_error('no origin', qr/requires "snapcache_origin"/, servers => $noorigin);

for my $loc ('~ ^/snap/', '= /snap/', '/snap') {
    my $s = "    server {\n        listen 127.0.0.1:$port;\n"
        . "        snapcache_sign_key k1 $d/keys/k1.key;\n"
        . "        snapcache_origin /_origin;\n"
        . "        location $loc { snapcache; }\n    }\n";
    conf_error("location $loc", qr/must be used in a prefix location/,
        servers => $s);
}

# a FIFO in place of a key file must not hang nginx -t
use POSIX qw(mkfifo);
mkfifo("$d/keys/fifo.key", 0600) or die $!;
{
    local $SIG{ALRM} = sub { die "nginx -t hung on a FIFO key file\n" };
    alarm 20;
    conf_error('a FIFO as key file', qr/key file ".*fifo\.key" is not a regular file/,
        server_extra => "        snapcache_sign_key fifo $d/keys/fifo.key;");
    alarm 0;
}

# the origin location must exist, in the same server, and be internal
my $keyline = "        snapcache_sign_key k1 $d/keys/k1.key;\n";
my $gone = "    server {\n        listen 127.0.0.1:$port;\n$keyline"
    . "        snapcache_origin /_origin;\n"
    . "        location /snap/ { snapcache; }\n    }\n";
conf_error('no origin location', qr/"snapcache_origin \/_origin" of location "\/snap\/" matches no location/,
    servers => $gone);

my $public = "    server {\n        listen 127.0.0.1:$port;\n$keyline"
    . "        snapcache_origin /_origin;\n"
    . "        location /snap/ { snapcache; }\n"
    . "        location /_origin/ { proxy_pass http://127.0.0.1:9/; }\n"
    . "    }\n";
conf_error('origin location not internal', qr/is served by location "\/_origin\/", which is not "internal"/,
    servers => $public);

my $catchall = "    server {\n        listen 127.0.0.1:$port;\n$keyline"
    . "        snapcache_origin /_origin;\n"
    . "        location /snap/ { snapcache; }\n"
    . "        location / { root $d; }\n    }\n";
conf_error('origin caught by a public location', qr/is served by location "\/", which is not "internal"/,
    servers => $catchall);

my $regex = "    server {\n        listen 127.0.0.1:$port;\n$keyline"
    . "        snapcache_origin /_origin;\n"
    . "        location /snap/ { snapcache; }\n"
    . "        location /_origin/ { internal; proxy_pass http://127.0.0.1:9/; }\n"
    . "        location ~ ^/_origin/a/ { proxy_pass http://127.0.0.1:9; }\n"
    . "    }\n";
conf_error('origin taken over by a public regex location', qr/which is not "internal"/,
    servers => $regex);

my $nested = "    server {\n        listen 127.0.0.1:$port;\n$keyline"
    . "        location /app/ {\n"
    . "            snapcache_origin /app/_origin;\n"
    . "            location /app/snap/ { snapcache; }\n"
    . "            location /app/_origin/ { internal; proxy_pass http://127.0.0.1:9/; }\n"
    . "        }\n    }\n";
$t->write_config(servers => $nested);
($rc, $out) = $t->test_config;
is($rc, 0, 'a nested internal origin location is found') or diag $out;

# numbers that would make every request fail
for my $bad ('snapcache_max_pixels 0', 'snapcache_max_original_size 0',
    'snapcache_fill_timeout 0', 'snapcache_lock_timeout 0',
    'snapcache_ttl 0', 'snapcache_ttl_max 0')
{
    conf_error($bad, qr/value must be (?:between|equal)/,
        server_extra => "        $bad;");
}

done_testing;
