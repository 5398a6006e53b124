#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The short soak: the full one's load and faults (t/soak/soak, `make
# soak`), a few thousand requests long.  Every 200 body shows its owner
# and no generation older than an answered purge, tampered and expired
# URLs get 403, and nothing fails outside the fault windows.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Snapcache::Test qw(build_dir);
use Snapcache::Soak;

plan skip_all => 'snapmark or the CLI not built'
    unless -x build_dir() . '/bin/snapmark' && -x build_dir() . '/snapcache';

my $soak = Snapcache::Soak->new(requests => 3000, clients => 4,
    accounts => 8, devices => 2, snapshots => 3, kill_every => 4,
    reload_every => 8, restart_every => 12, restart_down => 2,
    purge_every => 1);
my $breaches = $soak->run;
diag $soak->{report};
is($breaches, 0, 'the short soak: no breach');
cmp_ok($soak->{count}{$_} // 0, '>', 0, "with $_") for qw(kill reload restart
    purge);

done_testing;
