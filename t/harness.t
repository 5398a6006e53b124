#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The harness's own promises, which every other test relies on: an
# [alert], [crit] or [emerg] line in an instance's error log fails the
# test unless the test declared it; start returns once every worker has
# opened the store; reload_and_wait returns once the new config serves;
# $t->stats reads the zone's counters;
# a reserved port cannot be taken by anyone else until nginx binds it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Snapcache::Test qw(build_dir reserve_port release_port);

plan skip_all => 'module not built'
    unless -f build_dir() . '/nginx/ngx_http_snapcache_module.so';

my $dir = tempdir(CLEANUP => 1);

# A test script whose nginx logs a real [crit] line: a proxy_pass to a
# unix socket that does not exist.  Returns (exit code, TAP output).
sub run_child {
    my ($declare) = @_;
    my $script = "$dir/child.t";
    open my $f, '>', $script or die $!;
    print $f <<'EOF';
use strict;
use warnings;
use Test::More;
use Snapcache::Test;

my $t = Snapcache::Test->new;
$t->start(server_extra => "        location = /crit {\n"
    . "            proxy_pass http://unix:$ENV{CRIT_SOCK}:/;\n"
    . "        }\n");
$t->expect_log(qr/connect\(\) to unix:\S+ failed/) if $ENV{CRIT_DECLARE};
is($t->request('/crit')->{status}, 502, 'a request that logs a [crit]');
done_testing;
EOF
    close $f;
    local $ENV{CRIT_SOCK} = "$dir/no-such.sock";
    local $ENV{CRIT_DECLARE} = $declare ? 1 : 0;
    my $out = `'$^X' -I'$FindBin::Bin/lib' '$script' 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = run_child(0);
isnt($rc, 0, 'an undeclared [crit] line fails the test');
like($out, qr/^not ok 2 - no sanitizer report and no unexpected alert/m,
    'in a test result of its own');
like($out, qr/# .*\[crit\].*connect\(\) to unix:/, 'which shows the line')
    or diag $out;

($rc, $out) = run_child(1);
is($rc, 0, 'the same line, declared with expect_log, passes') or diag $out;
like($out, qr/^ok 2 - no sanitizer report/m, 'and the check still ran');

# ------------------------------------------------------------ stats

my $t = Snapcache::Test->new;
$t->start_origin;
my $d = $t->dir;
$t->start(main => 'thread_pool snapcache threads=1;',
    http => "    snapcache_store $d/store size=16m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n");
# start returns once every worker has the store open, not when the
# first one listens: a test that changes the store next races nobody
my @w = $t->worker_pids;
is(scalar @w, 2, 'start returns with both workers running');
is(scalar(grep { Snapcache::Test::_maps($_, "$d/store/data.mdb") } @w), 2,
    'each with the store mapped');

my $s0 = $t->stats;
ok(exists $s0->{hits} && exists $s0->{transcodes}, '$t->stats has counters')
    or diag explain $s0;
my $url = $t->sign_url(account => 'a', device => 'd', snapshot => 's',
    v => 'thumb');
$t->request($url) for 1 .. 2;
my $s1 = $t->stats;
is($s1->{hits} - $s0->{hits}, 1, 'and counts a hit');

# ------------------------------------------------------------ reload

# reload_and_wait returns once the new config serves: a new generation of
# workers, each with the store open, and no old one still accepting
my %conf = (main => 'thread_pool snapcache threads=1;',
    http => "    snapcache_store $d/store size=16m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n");
is($t->request('/gen')->{status}, 404, 'before the reload, no /gen');
$t->reload_and_wait(%conf, server_extra => $conf{server_extra}
    . "        location = /gen { return 200 \"2\\n\"; }\n");
my %old = map { $_ => 1 } @w;
my @new = $t->worker_pids;
is(scalar(grep { !$old{$_} } @new), 2, 'reload_and_wait: two new workers');
is(scalar(grep { Snapcache::Test::_maps($_, "$d/store/data.mdb") } @new), 2,
    'each with the store mapped');
ok(!(grep { $old{$_}
        && Snapcache::Test::_title($_) eq 'nginx: worker process' } @new),
    'and no old worker still accepting');
is(scalar(grep { $t->request('/gen')->{body} ne "2\n" } 1 .. 20), 0,
    'every request from then on gets the new config');

# a refused reload says why at once
$t->expect_log(qr/unknown directive "no_such_directive"/);
ok(!eval { $t->reload_and_wait(%conf,
    server_extra => "        no_such_directive;\n"); 1 },
    'reload_and_wait dies when nginx refuses the config');
like($@, qr/refused the reload: .*unknown directive "no_such_directive"/,
    'with the master\'s complaint');
is($t->request('/gen')->{body}, "2\n", 'which keeps the config it had');

# ------------------------------------------------------------ ports

my $port = reserve_port();
my $other = IO::Socket::INET->new(Listen => 1, Proto => 'tcp',
    LocalAddr => "127.0.0.1:$port", ReuseAddr => 1);
ok(!$other, 'a reserved port cannot be bound by another socket');
release_port($port);
$other = IO::Socket::INET->new(Listen => 1, Proto => 'tcp',
    LocalAddr => "127.0.0.1:$port", ReuseAddr => 1);
ok($other, 'until it is released for the server that uses it');

done_testing;
