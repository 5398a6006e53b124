#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# Run by tools/nginx-tests from inside a copy of nginx-tests, in its
# control and active configurations, before the suite: shows that the
# extra server those add is up, and in active that the module is in use
# there.  PROBE_EXPECT is the status that a signed request (PROBE_URL)
# with its account changed, and the signed request, must get.

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;

my $t = Test::Nginx->new()->has(qw/http/)->plan(2);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%
}

EOF

$t->run();

my ($forged, $signed) = split ' ', $ENV{PROBE_EXPECT};
(my $url = $ENV{PROBE_URL}) =~ s!^http://[^/]*!!;
(my $forged_url = $url) =~ s!^/snap/a/!/snap/b/!
    or die "PROBE_URL is not /snap/a/...\n";

# the extra server's port, as Test::Nginx expanded %%PORT_8979%%
sub get {
    my ($uri) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . port(8979))
        or die "connect: $!\n";
    return http_get($uri, socket => $s);
}

like(get($forged_url), qr!^HTTP/1\.1 $forged !, 'forged request');
like(get($url), qr!^HTTP/1\.1 $signed !, 'signed request');
