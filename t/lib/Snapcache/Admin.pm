package Snapcache::Admin;

# Helpers for the admin API's tests: token files, the admin location's
# config, requests with a bearer token, and the store's records as
# `snapcache inspect` lists them.

use strict;
use warnings;

use JSON::PP;
use Snapcache::Test qw(raw_request build_dir);

use Exporter 'import';
our @EXPORT_OK = qw(write_token admin_location admin_call admin_json
    inspect_records);

# A fresh token of 32 random bytes, hex on one line in a 0600 file.
sub write_token {
    my ($t, $name, $bytes) = @_;
    $bytes //= 32;
    open my $r, '<:raw', '/dev/urandom' or die $!;
    my $raw;
    read $r, $raw, $bytes;
    close $r;
    my $hex = unpack 'H*', $raw;
    my $path = $t->dir . "/keys/$name.token";
    open my $f, '>', $path or die $!;
    chmod 0600, $path;
    print $f "$hex\n";
    close $f;
    return ($hex, $path);
}

# The admin location, for server_extra: loopback only, and the tokens.
sub admin_location {
    my (@files) = @_;
    my $tokens = join '', map { "            snapcache_admin_token $_;\n" }
        @files;
    return "        location /_admin/ {\n"
        . "            allow 127.0.0.1;\n"
        . "            deny all;\n"
        . "            snapcache_admin;\n"
        . $tokens
        . "        }\n";
}

# One admin request: method, endpoint, and optionally token, body and
# content type (application/json by default for a body).
sub admin_call {
    my ($port, $method, $endpoint, %o) = @_;
    my %h;
    $h{Authorization} = $o{auth} if defined $o{auth};
    $h{Authorization} = "Bearer $o{token}" if defined $o{token};
    if (defined $o{body}) {
        $h{'Content-Type'} = $o{type} // 'application/json';
    }
    $h{'Content-Type'} = $o{type} if defined $o{type} && !defined $o{body};
    return raw_request($port, "/_admin/$endpoint", method => $method,
        headers => \%h, defined $o{body} ? (body => $o{body}) : ());
}

# The decoded JSON body of a response, or undef.
sub admin_json {
    my ($r) = @_;
    return eval { JSON::PP->new->decode($r->{body}) };
}

# Lines of `snapcache inspect` for records of the store (read-only).
sub inspect_records {
    my ($store, @args) = @_;
    my $cli = build_dir() . '/snapcache';
    my @out = `'$cli' inspect '$store' @args 2>&1`;
    return grep { /^[0-9a-f]{32}\s/ } @out;
}

1;
