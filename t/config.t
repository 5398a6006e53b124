#!/usr/bin/perl

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

done_testing;
