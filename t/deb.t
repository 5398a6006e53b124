#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The Debian packages, as an operator gets them: `make deb` builds
# libnginx-mod-http-snapcache_<version>_<arch>.deb (the module) and
# snapcache-tools_<version>_<arch>.deb (the CLI) from a copy of the
# sources (the tree is left as it was), lintian finds no error in them
# and no warning that docs/packaging.md does not accept, and `dpkg -i`
# installs the module, its load_module snippet enabled the way Debian's
# nginx modules are, the docs and examples, and in the other package the
# snapcache CLI and its man page.  A config that uses the snippet and the
# directives passes `nginx -t` and serves a URL signed by the installed
# CLI, which also verifies it and purges it through the admin API.
# `dpkg --purge` of both then leaves /etc/nginx and the rest of the
# system as they were.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Cwd qw(abs_path);
use Fcntl qw(O_RDWR O_CREAT F_SETLKW F_WRLCK SEEK_SET);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Snapcache::Test qw(build_dir reserve_port release_port raw_request
    wait_until);

my $pkg = 'libnginx-mod-http-snapcache';
my $tools = 'snapcache-tools';
my @pkgs = ($pkg, $tools);
my $root = abs_path("$FindBin::Bin/..");
my $build = build_dir();
my $snapmark = "$build/bin/snapmark";

plan skip_all => 'needs root: it installs and purges a Debian package'
    if $> != 0;
plan skip_all => 'the package is built with Debian\'s flags, not under a '
    . 'sanitizer: `make test` runs this' if $ENV{SNAPCACHE_SAN};
for my $tool (qw(dpkg-buildpackage dh_nginx lintian)) {
    plan skip_all => "$tool is missing (make deps installs it)"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
plan skip_all => 'snapmark not built' unless -x $snapmark;
for my $p (@pkgs) {
    plan skip_all => "$p is installed on this machine: this test installs "
        . 'and purges its own, and leaves an operator\'s installation alone'
        if installed($p);
}

# ------------------------------------------------------------- the build

my $git = system("git -C '$root' rev-parse --git-dir >/dev/null 2>&1") == 0;
my $status_before = $git ? `git -C '$root' status --porcelain 2>&1` : '';

# a make of its own, not a job of the make that runs the tests
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};
my $out = `make --no-print-directory -C '$root' deb B='$build' 2>&1`;
is($?, 0, 'make deb builds the package') or diag $out;

my $version = `dpkg-parsechangelog -l '$root/debian/changelog' -S Version`;
chomp $version;
my $arch = `dpkg --print-architecture`;
chomp $arch;
my $deb = "$build/deb/${pkg}_${version}_$arch.deb";
my $tools_deb = "$build/deb/${tools}_${version}_$arch.deb";
for my $f ([$pkg, $deb], [$tools, $tools_deb]) {
    next if ok(-s $f->[1],
        "named $f->[0]_<version>_<arch>.deb ($version, $arch)");
    diag "no package to test:\n$out";
    done_testing;
    exit;
}

SKIP: {
    skip 'no git checkout', 1 unless $git;
    is(`git -C '$root' status --porcelain 2>&1`, $status_before,
        'building it writes nothing into the tree but what git ignores');
}

# ------------------------------------------------------------ what it is

my %field = map { $_ => scalar `dpkg-deb -f '$deb' $_` }
    qw(Depends Package Recommends Suggests);
chomp %field;
is($field{Package}, $pkg, 'the package name');
like($field{Recommends}, qr/(?:^|, )nginx(?:,|$)/, 'it recommends nginx');
like($field{Suggests}, qr/(?:^|, )\Q$tools\E(?:,|$)/, "and suggests $tools");
my %tfield = map { $_ => scalar `dpkg-deb -f '$tools_deb' $_` }
    qw(Package Depends Description);
chomp %tfield;
is($tfield{Package}, $tools, 'the CLI\'s package name');
unlike($tfield{Depends}, qr/nginx/, 'the CLI needs no nginx');
for my $c (qw(sign verify inspect purge stats health)) {
    like($tfield{Description}, qr/^ +\Q$c\E +\S/m,
        "its description lists the $c command");
}

my ($abi) = `cat /usr/share/nginx/src/debian/libnginx-mod.abisubstvars`
    =~ /^nginx:abi=(\S+)/m;
like($field{Depends}, qr/(?:^|, )\Q$abi\E(?:,|$)/,
    "it depends on the nginx ABI it was built against ($abi)");
like(`dpkg-query -W -f='\${Provides}' nginx`, qr/\b\Q$abi\E\b/,
    'which the installed nginx provides');

my $contents = `dpkg-deb -c '$deb'`;
for my $path ('./usr/lib/nginx/modules/ngx_http_snapcache_module.so',
    './usr/share/nginx/modules-available/mod-http-snapcache.conf',
    "./usr/share/doc/$pkg/README.md.gz",
    "./usr/share/doc/$pkg/directives.md.gz",
    "./usr/share/doc/$pkg/admin.md.gz", "./usr/share/doc/$pkg/cluster.md.gz",
    "./usr/share/doc/$pkg/copyright",
    "./usr/share/doc/$pkg/examples/demo.conf",
    "./usr/share/doc/$pkg/examples/cluster/node.conf",
    "./usr/share/doc/$pkg/examples/grafana/snapcache.json",
    "./usr/share/doc/$pkg/examples/prometheus/alerts.yml")
{
    like($contents, qr/ \Q$path\E$/m, "$pkg ships $path");
}
unlike($contents, qr{ \./usr/bin/|/man1/}, "$pkg ships no CLI");
my $tools_contents = `dpkg-deb -c '$tools_deb'`;
for my $path ('./usr/bin/snapcache', './usr/share/man/man1/snapcache.1.gz',
    "./usr/share/doc/$tools/copyright")
{
    like($tools_contents, qr/ \Q$path\E$/m, "$tools ships $path");
}
unlike($tools_contents, qr{/nginx/}, "$tools ships nothing of nginx's");

# lintian: no error; each warning accepted, with its reason, in
# docs/packaging.md
my $lintian = `lintian --pedantic '$deb' '$tools_deb' 2>&1`;
my @errors = $lintian =~ /^(E: .*)$/mg;
ok(!@errors, 'lintian finds no error') or diag join "\n", @errors;
my $accepted = do {
    open my $fh, '<', "$root/docs/packaging.md" or die $!;
    local $/;
    <$fh>;
};
my @unlisted = grep {
    my ($tag) = /^W: \S+ (\S+)/;
    $accepted !~ /`\Q$tag\E`/;
} $lintian =~ /^(W: .*)$/mg;
ok(!@unlisted, 'every lintian warning is accepted in docs/packaging.md')
    or diag join "\n", @unlisted;

# ----------------------------------------------------------- installed

my $before = system_state();
my ($installed_here, $d);
END {
    stop_nginx($d) if $d;
    purge() if $installed_here;
}

my $install = dpkg('-i', $deb, $tools_deb);
$installed_here = 1;
is($install->{rc}, 0, 'dpkg -i installs both') or diag $install->{out};
ok(installed($_), "dpkg says $_ is installed") for @pkgs;

my $snippet = '/usr/share/nginx/modules-available/mod-http-snapcache.conf';
my $enabled = '/etc/nginx/modules-enabled/50-mod-http-snapcache.conf';
like(slurp($snippet),
    qr{^load_module modules/ngx_http_snapcache_module\.so;$}m,
    'the snippet loads the module from nginx\'s modules directory');
is(readlink($enabled), $snippet,
    'and is enabled by a link in /etc/nginx/modules-enabled');
ok(-f '/usr/lib/nginx/modules/ngx_http_snapcache_module.so',
    'the module is in /usr/lib/nginx/modules');
ok(-x '/usr/bin/snapcache', 'the CLI is /usr/bin/snapcache');
is(`/usr/bin/snapcache --version`, "snapcache $version\n",
    "snapcache --version says $version");
SKIP: {
    skip 'man-db is not installed', 1
        unless grep { -x "$_/man" } split /:/, $ENV{PATH};
    like(`man -w snapcache 2>&1`, qr{^/usr/share/man/man1/snapcache\.1\.gz$},
        'man snapcache finds its page');
}

# a config that loads the module as nginx.conf does, and uses it
$d = tempdir(CLEANUP => 1);
chmod 0755, $d;
mkdir "$d/$_" for qw(keys origin tmp);
chmod 0700, "$d/keys";
system('sh', '-c', "umask 077; head -c 32 /dev/urandom | od -An -tx1 "
    . "| tr -d ' \\n' > '$d/keys/admin.token'; echo >> '$d/keys/admin.token'")
    == 0 or die;
my $token = "$d/keys/admin.token";
my $tok = slurp($token) =~ s/\s+$//r;
chmod 0755, "$d/origin";
system('sh', '-c', "umask 077; head -c 32 /dev/urandom | od -An -tx1 "
    . "| tr -d ' \\n' > '$d/keys/k1.key'; echo >> '$d/keys/k1.key'") == 0
    or die;
mkdir "$d/origin/acct-d";
mkdir "$d/origin/acct-d/cam-d";
chmod 0755, "$d/origin/acct-d", "$d/origin/acct-d/cam-d";
system($snapmark, 'gen', '--account', 'acct-d', '--device', 'cam-d',
    '--snapshot', 'snap-1', '-o', "$d/origin/acct-d/cam-d/snap-1.jpg") == 0
    or die 'snapmark gen';
rename "$d/origin/acct-d/cam-d/snap-1.jpg", "$d/origin/acct-d/cam-d/snap-1";
chmod 0644, "$d/origin/acct-d/cam-d/snap-1";

my $port = reserve_port();
my $oport = reserve_port();
my $conf = "$d/nginx.conf";
write_file($conf, <<"EOF");
include /etc/nginx/modules-enabled/*.conf;

worker_processes 1;
error_log $d/error.log info;
pid $d/nginx.pid;
thread_pool snapcache threads=2;

events {
    worker_connections 64;
}

http {
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    access_log off;

    snapcache_sign_key k1 $d/keys/k1.key;
    snapcache_store $d/store size=16m;
    snapcache_zone snapcache:1m;
    snapcache_thread_pool snapcache;

    server {
        listen 127.0.0.1:$port;
        snapcache_origin /_origin;

        location /snap/ {
            snapcache;
        }

        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$oport/;
        }

        location /snapcache-admin/ {
            allow 127.0.0.1;
            deny all;
            snapcache_admin;
            snapcache_admin_token $token;
        }
    }

    server {
        listen 127.0.0.1:$oport;
        root $d/origin;
        default_type image/jpeg;
    }
}
EOF

my $log_watch = Snapcache::Test->watch_log("$d/error.log");
my $t_out = `/usr/sbin/nginx -e '$d/error.log' -c '$conf' -t 2>&1`;
is($?, 0, 'nginx -t passes with the snippet and the directives')
    or diag $t_out;
like($t_out, qr/test is successful/, 'and says so');

release_port($_) for $port, $oport;
my $start = `/usr/sbin/nginx -e '$d/error.log' -c '$conf' 2>&1`;
is($?, 0, 'nginx starts with it') or diag $start . slurp("$d/error.log");
wait_port($port);

my $url = `/usr/bin/snapcache sign --key-file '$d/keys/k1.key' --kid k1 --account acct-d --device cam-d --snapshot snap-1 --ttl 5m --base /snap/`;
chomp $url;
like($url, qr{^/snap/acct-d/cam-d/snap-1\?exp=\d+&kid=k1&sig=},
    'the installed CLI signs a URL');
my $r = raw_request($port, $url);
is($r->{status}, 200, 'which the installed module serves');
is($r->{headers}{'x-snapcache'}, 'MISS', 'filled from the origin');
write_file("$d/served", $r->{body});
my $check = `'$snapmark' check '$d/served' acct-d cam-d snap-1 2>&1`;
is($?, 0, 'with the right owner') or diag $check;
(my $other = $url) =~ s{/acct-d/}{/acct-e/};
is(raw_request($port, $other)->{status}, 403,
    'and refuses it for another account');
my $verify = `/usr/bin/snapcache verify '$url' --key k1='$d/keys/k1.key' 2>&1`;
like($verify, qr/^ok: the snapshot acct-d\/cam-d\/snap-1, kid "k1"/,
    'the installed CLI verifies the URL');
$verify = `/usr/bin/snapcache verify '$other' --key k1='$d/keys/k1.key' 2>&1`;
like($verify, qr/^signature: .*\(nginx answers 403 signature\)$/,
    'and says why the other is refused');
my $purge_cmd = "/usr/bin/snapcache purge --node http://127.0.0.1:$port "
    . "--token-file '$token' --account acct-d --device cam-d";
my $purged = `$purge_cmd 2>&1`;
is($? >> 8, 0, 'the installed CLI purges through the admin API')
    or diag $purged;
like($purged, qr{^http://127\.0\.0\.1:$port ok records=[1-9]\d* generation=\d+ },
    'what the installed module removed');
unlike($purged, qr/\Q$tok\E/i, 'without printing the token');
is(raw_request($port, $url)->{headers}{'x-snapcache'}, 'MISS',
    'the snapshot is filled again after the purge');

stop_nginx($d);

# ----------------------------------------------------------- purged

my $purge = purge();
is($purge->{rc}, 0, 'dpkg --purge removes both') or diag $purge->{out};
ok(!installed($_), "dpkg knows $_ no more") for @pkgs;
is(system_state(), $before, 'and the system is as it was, '
    . '/etc/nginx/modules-enabled included');

done_testing;

# ----------------------------------------------------------------- helpers

sub installed {
    my ($p) = @_;
    my $s = `dpkg-query -W -f='\${db:Status-Abbrev}' $p 2>/dev/null`;
    return $s =~ /^.i/;
}

# dpkg, run once the frontend lock is ours.  Another apt or dpkg on
# this machine holds that lock while it works: this waits for it (up to
# five minutes), as apt's DPkg::Lock::Timeout does, and tells dpkg that
# its frontend has it.
sub dpkg {
    my @args = @_;
    my $lock = '/var/lib/dpkg/lock-frontend';
    sysopen my $fh, $lock, O_RDWR | O_CREAT, 0640
        or return { rc => 2, out => "$lock: $!" };
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (LP64)
    my $want = pack 's s x4 q q i x4', F_WRLCK, SEEK_SET, 0, 0, 0;
    my $held = eval {
        local $SIG{ALRM} = sub { die "timed out\n" };
        alarm 300;
        my $ok = fcntl $fh, F_SETLKW, $want;
        alarm 0;
        $ok;
    };
    alarm 0;
    return { rc => 2, out => "$lock stayed locked by another apt or dpkg "
        . "for 5 minutes\n" } unless $held;
    local $ENV{DPKG_FRONTEND_LOCKED} = 1;
    my $out = `dpkg @args 2>&1`;
    my $rc = $? >> 8;
    close $fh;
    return { rc => $rc, out => $out };
}

sub purge {
    my $r = dpkg('--purge', @pkgs);
    $installed_here = 0 if $r->{rc} == 0;
    return $r;
}

# Every file, link and directory the package or its scripts could touch,
# with type, link target, size and mode (not times: a directory that had
# an entry added and removed is as it was).
sub system_state {
    my @paths = grep { -e || -l } '/etc/nginx', '/usr/lib/nginx',
        '/usr/share/nginx/modules-available', '/usr/share/nginx/modules',
        "/usr/share/doc/$pkg", "/usr/share/doc/$tools", '/usr/bin/snapcache',
        '/usr/share/man/man1/snapcache.1.gz';
    my $s = `find @paths -printf '%p %y %l %s %m\\n' 2>&1 | sort`;
    $s .= `dpkg-query -W -f='\${db:Status-Abbrev}\\n' @pkgs 2>&1`;
    return $s;
}

sub stop_nginx {
    my ($dir) = @_;
    my $pid = slurp("$dir/nginx.pid") =~ /(\d+)/ ? $1 : return;
    my @all = ($pid, split ' ', `pgrep -P $pid 2>/dev/null`);
    kill 'QUIT', $pid;
    return if wait_until(sub { !grep { kill 0, $_ } @all }, 10);
    kill 'KILL', grep { kill 0, $_ } @all;
    wait_until(sub { !grep { kill 0, $_ } @all });
}

sub wait_port {
    my ($p) = @_;
    wait_until(sub { IO::Socket::INET->new("127.0.0.1:$p") })
        or die "nginx never listened on port $p:\n"
            . slurp("$d/error.log");
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return <$fh> // '';
}

sub write_file {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $data;
    close $fh;
}
