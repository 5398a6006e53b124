#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The master runs as root and prepares the store for the worker user.
# The store directory belongs to that user, so nothing in it is trusted:
# links, hard links, FIFOs, foreign owners and unsafe parents are refused
# by `nginx -t`, at start and at reload, and no file outside the store
# directory ever changes owner.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path remove_tree);
use POSIX qw(mkfifo);
use Snapcache::Test qw(build_dir);

plan skip_all => 'needs root: the master must run as root to hand the '
    . 'store to the worker user' if $> != 0;
plan skip_all => 'snapmark not built' unless -x build_dir() . '/bin/snapmark';

my $nobody = getpwnam('nobody') // die 'no user nobody';

my $t = Snapcache::Test->new;
# each refusal below is an [emerg] line, on purpose
$t->expect_log(qr/snapcache: .*(?:is a symbolic link|has other hard links|is not a regular file|belongs to uid 4321|is not a directory|writable by group or others|above the store, can be changed|cannot search)/);
$t->start_origin;
my $d = $t->dir;

sub config_with_store {
    my ($store) = @_;
    $t->write_config(http => "    snapcache_store $store size=16m;\n");
}

# A root-only file that must never change hands.
sub victim {
    my ($name) = @_;
    my $f = "$d/$name";
    open my $fh, '>', $f or die $!;
    print $fh "secret\n";
    close $fh;
    chown 0, 0, $f;
    chmod 0600, $f;
    return $f;
}

sub owner { (lstat $_[0])[4] }

sub refused {
    my ($name, $store, $like, @untouched) = @_;
    config_with_store($store);
    my ($rc, $out) = $t->test_config;
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $like, "$name: and says why") or diag $out;
    for my $f (@untouched) {
        is(owner($f), 0, "$name: $f still belongs to root");
    }
}

# ------------------------------------------------------------ happy path

my $store = "$d/store";
config_with_store($store);
my ($rc, $out) = $t->test_config;
is($rc, 0, 'a new store directory passes nginx -t') or diag $out;
is(owner($store), $nobody, 'it is made and given to the worker user');
is((stat $store)[2] & 07777, 0700, 'with mode 0700');

$t->start(keep_config => 1);
my $r = $t->request($t->sign_url(account => 'a1', device => 'd1',
    snapshot => 's1', v => 'thumb'));
is($r->{status}, 200, 'the store works for the workers');
is(owner("$store/data.mdb"), $nobody, 'data.mdb belongs to the worker user');
$t->stop;

# ------------------------------------------------------------ links

my $v1 = victim('victim1');
rename "$store/data.mdb", "$d/data.mdb.real" or die $!;
symlink $v1, "$store/data.mdb" or die $!;
refused('data.mdb is a symlink', $store, qr/data\.mdb" is a symbolic link/,
    $v1);
unlink "$store/data.mdb";

my $v2 = victim('victim2');
link $v2, "$store/data.mdb" or die $!;
refused('data.mdb is a hard link', $store, qr/has other hard links/, $v2);
unlink "$store/data.mdb";

mkfifo("$store/lock.mdb.fifo", 0600) or die $!;
rename "$store/lock.mdb", "$d/lock.mdb.real" or die $!;
rename "$store/lock.mdb.fifo", "$store/lock.mdb" or die $!;
{
    local $SIG{ALRM} = sub { die "nginx -t hung on a FIFO\n" };
    alarm 20;
    refused('lock.mdb is a FIFO', $store, qr/is not a regular file/);
    alarm 0;
}
unlink "$store/lock.mdb";
rename "$d/lock.mdb.real", "$store/lock.mdb" or die $!;
rename "$d/data.mdb.real", "$store/data.mdb" or die $!;

# a file of someone else's in the store
my $foreign = "$store/data.mdb";
chown 4321, 4321, $foreign;
refused('data.mdb of another user', $store, qr/belongs to uid 4321/);
is(owner($foreign), 4321, 'the foreign file keeps its owner');
chown $nobody, -1, $foreign;

# the store itself a link to somewhere else
my $elsewhere = "$d/elsewhere";
make_path($elsewhere);
symlink $elsewhere, "$d/store-link" or die $!;
refused('the store path is a symlink', "$d/store-link",
    qr/is a symbolic link; give the real directory/, $elsewhere);

# the store path names a key file
my $keyfile = $t->key_file('k1');
my $mode = (stat $keyfile)[2] & 07777;
refused('the store path is a key file', $keyfile, qr/is not a directory/,
    $keyfile);
is((stat $keyfile)[2] & 07777, $mode, 'the key file keeps its mode');

# a store directory of another user
my $other = "$d/other-store";
make_path($other);
chown 4321, 4321, $other;
chmod 0700, $other;
refused('a store directory of another user', $other,
    qr/belongs to uid 4321/);
is(owner($other), 4321, 'it keeps its owner');

# a store directory anyone can write to
my $open = "$d/open-store";
make_path($open);
chmod 0777, $open;
refused('a world-writable store directory', $open,
    qr/writable by group or others/, $open);

# a parent the worker user could change
my $parent = "$d/nobody-parent";
make_path($parent);
chown $nobody, -1, $parent;
refused('a parent owned by the worker user', "$parent/store",
    qr/above the store, can be changed by uid $nobody/);
ok(!-e "$parent/store", 'and no store is made under it');

# a store the worker user cannot reach
my $private = "$d/private";
make_path($private);
chmod 0700, $private;
refused('a store the worker user cannot reach', "$private/store",
    qr/cannot search "\Q$private\E", so every request would fail/);

# ------------------------------------------------------------ reload

config_with_store($store);
$t->start(keep_config => 1);
is($t->request($t->sign_url(account => 'a1', device => 'd1',
    snapshot => 's1', v => 'thumb'))->{status}, 200, 'running again');

my $v3 = victim('victim3');
rename "$store/lock.mdb", "$d/lock.mdb.real" or die $!;
symlink $v3, "$store/lock.mdb" or die $!;
my $pid = $t->master_pid;
$t->reload;
ok($t->wait_log(qr/lock\.mdb" is a symbolic link/),
    'a live reload refuses the linked lock.mdb');
is(owner($v3), 0, 'and the file behind the link still belongs to root');
ok(kill(0, $pid), 'the master keeps running');
is($t->request($t->sign_url(account => 'a1', device => 'd1',
    snapshot => 's1', v => 'thumb'))->{status}, 200,
    'with its old configuration, still serving');
unlink "$store/lock.mdb";
rename "$d/lock.mdb.real", "$store/lock.mdb" or die $!;

done_testing;
