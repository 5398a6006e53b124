#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# A purge answers only once its deletes are on disk.  The store runs
# with MDB_NOSYNC, so a killed process loses nothing but a crash of the
# machine could take back writes nobody synced; t/purge_durable.t cannot
# crash the machine, so this test watches the system calls instead.  A
# small preloaded library logs, with monotonic times, every write to
# data.mdb and every fdatasync or fsync of it, in every nginx process.
# For each purge that removed records, some sync of data.mdb must have
# begun after the last write the purge made and ended before the answer
# came back.  Purges sent together share syncs (a group commit), and
# each still waits for a whole sync.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);
use POSIX qw(_exit);
use Snapcache::Test qw(build_dir raw_request);
use Snapcache::Admin qw(write_token admin_location admin_call admin_json
    inspect_records);

plan skip_all => 'snapmark or cc missing'
    unless -x build_dir() . '/bin/snapmark' && -x '/usr/bin/cc';

my $t = Snapcache::Test->new(workers => 2);
my $d = $t->dir;
my ($tok, $file) = write_token($t, 'admin');

# ------------------------------------------------------------- the shim

mkdir "$d/sys";
chmod 0777, "$d/sys";
my $log = "$d/sys/calls.log";

open my $c, '>', "$d/shim.c" or die;
print $c <<"EOF";
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
is_data(int fd)
{
    char     p[64], l[PATH_MAX];
    ssize_t  n;

    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    n = readlink(p, l, sizeof(l) - 1);
    if (n < 9) {
        return 0;
    }
    l[n] = '\\0';
    return strcmp(l + n - 9, "/data.mdb") == 0;
}

static void
note(const char *what, double a, double b)
{
    static ssize_t (*w)(int, const void *, size_t);
    char  line[96];
    int   fd, n;

    if (w == NULL) {
        w = dlsym(RTLD_NEXT, "write");
    }
    fd = open("$log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        return;
    }
    n = snprintf(line, sizeof(line), "%s %.6f %.6f\\n", what, a, b);
    w(fd, line, n);
    close(fd);
}

#define WRAP(name, ret, args, call, kind)                                   \\
ret name args                                                               \\
{                                                                           \\
    static ret (*real) args;                                                \\
    double  a;                                                              \\
    ret     r;                                                              \\
                                                                            \\
    if (real == NULL) {                                                     \\
        real = dlsym(RTLD_NEXT, #name);                                     \\
    }                                                                       \\
    a = now();                                                              \\
    r = real call;                                                          \\
    if (is_data(fd)) {                                                      \\
        note(kind, a, now());                                               \\
    }                                                                       \\
    return r;                                                               \\
}

WRAP(write, ssize_t, (int fd, const void *b, size_t n), (fd, b, n), "W")
WRAP(writev, ssize_t, (int fd, const struct iovec *v, int n), (fd, v, n), "W")
WRAP(pwrite, ssize_t, (int fd, const void *b, size_t n, off_t o),
     (fd, b, n, o), "W")
WRAP(pwrite64, ssize_t, (int fd, const void *b, size_t n, off_t o),
     (fd, b, n, o), "W")
WRAP(pwritev, ssize_t, (int fd, const struct iovec *v, int n, off_t o),
     (fd, v, n, o), "W")
WRAP(fdatasync, int, (int fd), (fd), "S")
WRAP(fsync, int, (int fd), (fd), "S")
EOF
close $c;
system("cc -shared -fPIC -O2 -o '$d/shim.so' '$d/shim.c' -ldl") == 0
    or BAIL_OUT('the shim does not build');

$ENV{SNAPCACHE_PRELOAD} = join ':', grep { length }
    $ENV{SNAPCACHE_PRELOAD} // '', "$d/shim.so";

$t->start_origin(image_size => '640x360');
$t->start(
    main => 'thread_pool snapcache threads=2 max_queue=256;',
    http => "    snapcache_store $d/store size=64m;\n",
    server_extra => "        snapcache_thread_pool snapcache;\n"
        . admin_location($file),
);

sub calls {
    open my $f, '<', $log or return ();
    return map { [ split ' ' ] } <$f>;
}

# Is there a sync of data.mdb that began after the last write to it
# before $sent..$got ended, and ended by $got?  Writes by others after
# the purge's own deletes can only make this stricter.
sub covered {
    my ($sent, $got, @calls) = @_;
    my @w = grep { $_->[0] eq 'W' && $_->[2] >= $sent && $_->[2] <= $got }
        @calls;
    return 0 unless @w;
    my ($lastw) = sort { $b <=> $a } map { $_->[2] } @w;
    my @s = grep { $_->[0] eq 'S' && $_->[1] >= $lastw && $_->[2] <= $got }
        @calls;
    return scalar @s;
}

# Fills the snapshots; returns when the last one has answered.  A fill
# writes its records, and syncs them if no writer of its worker did in
# that second, before it answers: once they have all answered, nothing
# of theirs can land in a purge's window, and nothing else writes to
# data.mdb or syncs it until the purge (quiet() checks that).
sub fill {
    my ($dev, @snaps) = @_;
    for my $s (@snaps) {
        my $r = $t->request($t->sign_url(account => 'acct-y', device => $dev,
            snapshot => $s, v => 'thumb'));
        die "fill $dev/$s: $r->{status}\n" unless $r->{status} == 200;
    }
    return clock_gettime(CLOCK_MONOTONIC);
}

# No write or sync of data.mdb began between $from and $to.
sub quiet {
    my ($from, $to, @calls) = @_;
    return !grep { $_->[1] >= $from && $_->[1] <= $to } @calls;
}

# ------------------------------------------------------------ one purge

my $filled = fill('cam-1', map { "s$_" } 1 .. 5);

my $sent = clock_gettime(CLOCK_MONOTONIC);
my $r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-y","device":"cam-1"}');
my $got = clock_gettime(CLOCK_MONOTONIC);
is(admin_json($r)->{records}, 10, 'a device purge removed 10 records');
my @calls = calls();
ok(quiet($filled, $sent, @calls),
    'nothing wrote or synced data.mdb between the fills and the purge');
ok((grep { $_->[0] eq 'W' && $_->[2] >= $sent && $_->[2] <= $got } @calls),
    'the shim saw its deletes written to data.mdb');
ok(covered($sent, $got, @calls),
    'a sync that began after its last write ended before its answer');

# a purge that found nothing writes nothing and needs no sync
$r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"account":"acct-y","device":"cam-1"}');
is(admin_json($r)->{records}, 0, 'purged again: 0 records');

# snapshots one after another, and a list of them in one request
$filled = fill('cam-3', map { "q$_" } 1 .. 8);
my $ok = 0;
for my $i (1 .. 4) {
    $sent = clock_gettime(CLOCK_MONOTONIC);
    ok(quiet($filled, $sent, calls()), 'quiet before the snapshot purges')
        if $i == 1;
    $r = admin_call($t->port, 'POST', 'purge', token => $tok,
        body => qq({"account":"acct-y","device":"cam-3","snapshot":"q$i"}));
    $got = clock_gettime(CLOCK_MONOTONIC);
    $ok++ if (admin_json($r)->{records} // 0) == 2
        && covered($sent, $got, calls());
}
is($ok, 4, 'four snapshot purges, each answered after a sync covering it');

$sent = clock_gettime(CLOCK_MONOTONIC);
$r = admin_call($t->port, 'POST', 'purge', token => $tok,
    body => '{"purge":[' . join(',', map {
        qq({"account":"acct-y","device":"cam-3","snapshot":"q$_"})
    } 5 .. 8) . ']}');
$got = clock_gettime(CLOCK_MONOTONIC);
is(admin_json($r)->{records}, 8, 'a list of four snapshots: 8 records');
ok(covered($sent, $got, calls()), 'answered after a sync covering them all');

# ---------------------------------------------- purges sent together

# Which worker's deletes are whose cannot be told from the calls; each
# purge must at least have seen a whole sync of data.mdb begin after it
# was sent and end before it was answered.
sub synced_within {
    my ($sent, $got, @calls) = @_;
    return scalar grep { $_->[0] eq 'S' && $_->[1] >= $sent
        && $_->[2] <= $got } @calls;
}

my @snaps = map { "p$_" } 1 .. 16;
$filled = fill('cam-2', @snaps);
ok(quiet($filled, clock_gettime(CLOCK_MONOTONIC), calls()),
    'quiet before the purges sent together');

my @kids;
for my $s (@snaps) {
    my $pid = fork // die;
    if (!$pid) {
        my $a = clock_gettime(CLOCK_MONOTONIC);
        my $x = admin_call($t->port, 'POST', 'purge', token => $tok,
            body => qq({"account":"acct-y","device":"cam-2","snapshot":"$s"}));
        my $b = clock_gettime(CLOCK_MONOTONIC);
        my $j = admin_json($x) // {};
        open my $o, '>', "$d/sync.$s" or _exit(1);
        print $o join(' ', $a, $b, $j->{records} // -1), "\n";
        close $o;
        _exit(0);
    }
    push @kids, $pid;
}
waitpid $_, 0 for @kids;

@calls = calls();
my ($bad, $records, @windows) = (0, 0);
for my $s (@snaps) {
    open my $f, '<', "$d/sync.$s" or die;
    my ($a, $b, $n) = split ' ', scalar <$f>;
    $records += $n;
    push @windows, [ $a, $b ];
    $bad++ unless synced_within($a, $b, @calls);
}
is($records, 32, '16 snapshot purges at once removed their 32 records');
is($bad, 0, 'each answered after a whole sync of data.mdb');

my ($first) = sort { $a <=> $b } map { $_->[0] } @windows;
my ($last) = sort { $b <=> $a } map { $_->[1] } @windows;
my $syncs = grep { $_->[0] eq 'S' && $_->[1] >= $first && $_->[2] <= $last }
    @calls;
note("16 purges, $syncs syncs of data.mdb while they ran");
is(scalar(inspect_records("$d/store", '--account', 'acct-y')), 0,
    'nothing of acct-y is left');

done_testing;
