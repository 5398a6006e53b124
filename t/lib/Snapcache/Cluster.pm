# SPDX-License-Identifier: BSD-2-Clause
package Snapcache::Cluster;

# Several snapcache nodes on loopback, each its own nginx (prefix, store,
# ports), and one camera cloud they all fetch from.  Every node is the
# same: /snap/ for clients, whose origin /_owner/ hashes
# $snapcache_account over the nodes' /_peer/ endpoints; /_peer/ answers
# originals from the node's store or from the cloud, through /_cloud/.
# Nodes reach their peers from 127.0.0.2 (proxy_bind) and /_peer/
# allows only that address, so a client on 127.0.0.1 is outside it.
#
# The cloud logs one line per request, "<node> <account>/<device>/<snapshot>
# <header names>", the node naming itself in X-Node.  It answers the owner-marked image of
# (account, device, snapshot) or, once the device was given a new
# generation (new_generation(), as a camera company's backend would
# after a purge), of (account, device, "<snapshot>.g<N>").  Snapshot ids
# starting with "missing" are 404s; those starting with "latest" live
# for 5 seconds (max-age), the others for max_age (300 by default).

use strict;
use warnings;

use Digest::SHA ();
use File::Copy qw(copy);
use File::Path qw(make_path);
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use Snapcache::Test qw(raw_request build_dir);
use Snapcache::Admin qw(write_token);

# $c = Snapcache::Cluster->new(nodes => 3, %options): made, not started.
# Options: workers (per node), image_size, max_age (what the cloud's
# images carry), cold_start (default on), node_http / node_server (more
# config for every node), peer_allow (default 127.0.0.2), peer_extra
# (in /_peer/), more_tokens (token files after the cluster's), expect_log.
sub new {
    my ($class, %o) = @_;
    my $n = $o{nodes} // 3;
    my @nodes = map {
        Snapcache::Test->new(workers => $o{workers} // 2,
            expect_log => $o{expect_log})
    } 1 .. $n;
    my $self = bless {
        nodes => \@nodes,
        opt => \%o,
        dir => $nodes[0]->dir,
        image_size => $o{image_size} // '640x360',
        max_age => $o{max_age} // 300,
        active => [0 .. $n - 1],
    }, $class;

    # one signing key for every node, as the backend signs for any node
    my $key = $nodes[0]->key('k1');
    for my $t (@nodes[1 .. $#nodes]) {
        copy($nodes[0]->key_file('k1'), $t->key_file('k1')) or die $!;
        chmod 0600, $t->key_file('k1');
        $t->{keys}{k1} = $key;
    }

    ($self->{cluster_token}, $self->{cluster_token_file})
        = write_token($nodes[0], 'cluster');
    ($self->{admin_token}, $self->{admin_token_file})
        = write_token($nodes[0], 'admin');

    make_path("$self->{dir}/cloud/gen", "$self->{dir}/cloud/img");
    return $self;
}

sub nodes { @{ $_[0]{nodes} } }
sub node { $_[0]{nodes}[$_[1]] }
sub dir { $_[0]{dir} }
sub cluster_token { $_[0]{cluster_token} }
sub cluster_token_file { $_[0]{cluster_token_file} }
sub admin_token { $_[0]{admin_token} }
sub admin_token_file { $_[0]{admin_token_file} }
sub cloud_port { $_[0]{nodes}[0]->origin_port }

# Which nodes the upstream lists (indexes), for the node-added test.
sub set_members {
    my ($self, @idx) = @_;
    $self->{active} = [@idx];
}

sub node_name { 'n' . ($_[1] + 1) }

# The server block of node $i.
sub server_conf {
    my ($self, $i) = @_;
    my $o = $self->{opt};
    my $t = $self->{nodes}[$i];
    my $d = $t->dir;
    my $name = $self->node_name($i);
    my $servers = join '', map {
        "        server 127.0.0.1:" . $self->{nodes}[$_]->port
            . " max_fails=1 fail_timeout=2s;\n"
    } @{ $self->{active} };
    my $extra = $o->{node_server} // '';
    my $peer_extra = $o->{peer_extra} // '';
    my $allow = $o->{peer_allow} // '127.0.0.2';
    my $cloud = $self->cloud_port;
    my $tokens = join '', map { "        snapcache_cluster_token $_;\n" }
        $self->{cluster_token_file}, @{ $o->{more_tokens} || [] };
    return <<"EOF";
    upstream snapcache_peers {
        hash \$snapcache_account consistent;
$servers        keepalive 8;
    }

    log_format cluster '\$msec \$remote_addr "\$snapcache_request" \$status '
                       '\$snapcache_status \$snapcache_variant '
                       '\$http_x_snapcache_fresh \$request_time';

    server {
        listen 127.0.0.1:@{[ $t->port ]};
        access_log $d/logs/access.log snap;
        access_log $d/logs/cluster.log cluster;

        snapcache_sign_key k1 $d/keys/k1.key;
$tokens        snapcache_thread_pool snapcache;
$extra
        location /snap/ {
            snapcache;
            snapcache_origin /_owner peers;
        }

        location /_owner/ {
            internal;
            proxy_pass http://snapcache_peers/_peer/;
            proxy_bind 127.0.0.2;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_read_timeout 20s;
        }

        location /_peer/ {
            allow $allow;
            deny all;
            snapcache_peer;
            snapcache_origin /_cloud;
$peer_extra
        }

        location /_cloud/ {
            internal;
            proxy_pass http://127.0.0.1:$cloud/;
            proxy_set_header X-Node $name;
            proxy_connect_timeout 2s;
            proxy_read_timeout 20s;
        }

        location /_admin/ {
            allow 127.0.0.1;
            deny all;
            snapcache_admin;
            snapcache_admin_token $self->{admin_token_file};
        }
    }
EOF
}

sub node_config {
    my ($self, $i) = @_;
    my $o = $self->{opt};
    my $d = $self->{nodes}[$i]->dir;
    my $size = $o->{store_size}[$i] // $o->{store_size_all} // '64m';
    my $cold = ($o->{cold_start} // 1) ? 'on' : 'off';
    return (
        main => "thread_pool snapcache threads=2 max_queue=256;\n"
            . ($o->{node_main} // ''),
        http => "    snapcache_store $d/store size=$size;\n"
            . "    snapcache_cold_start $cold;\n"
            . "    snapcache_zone snapcache:2m;\n"
            . ($o->{node_http} // ''),
        servers => $self->server_conf($i),
    );
}

# Starts the cloud (once) and the nodes given (all by default).  A node
# started cold serves nothing stored in its first second: wait it out.
sub start {
    my ($self, @idx) = @_;
    @idx = @{ $self->{active} } unless @idx;
    $self->start_cloud unless $self->{cloud_pid};
    for my $i (@idx) {
        $self->{nodes}[$i]->start($self->node_config($i));
    }
    $self->settle;
    return $self;
}

# Writes every active node's config again and reloads it; returns once
# each node serves with its new config (its new workers up, the old
# ones no longer accepting).
sub reload {
    my ($self, @idx) = @_;
    @idx = @{ $self->{active} } unless @idx;
    for my $i (@idx) {
        my $t = $self->{nodes}[$i];
        $t->write_config($self->node_config($i));
        $t->reload_and_wait;
    }
}

# Stops node $i; nothing listens on its port until it starts again (the
# harness would hold it, accepting and never answering).
sub stop_node {
    my ($self, $i) = @_;
    my $t = $self->{nodes}[$i];
    $t->stop;
    Snapcache::Test::release_port($t->port);
}

sub start_node {
    my ($self, $i) = @_;
    $self->{nodes}[$i]->start(keep_config => 1);
    $self->settle;
}

# Under snapcache_cold_start a node does not read records made in the
# second its zone was made (at its start, before start returned), nor
# does an owner use a kept original made in the second of a purge: waits
# until the clock is past the current second, so that whatever is stored
# from now on is readable.
sub settle { my $s = int(time) + 1; sleep 0.01 while time < $s; }

# ------------------------------------------------------------- the cloud

sub start_cloud {
    my ($self) = @_;
    my $d = $self->{dir};
    my ($w, $h) = split /x/, $self->{image_size};
    my $max_age = $self->{max_age};
    my $listen = Snapcache::Test::take_port_socket($self->cloud_port)
        or die "no cloud port\n";
    my $pid = fork // die;
    if ($pid) {
        close $listen;
        push @{ $self->{nodes}[0]{pids} }, $pid;
        $self->{cloud_pid} = $pid;
        return;
    }
    setpgrp(0, 0);
    for my $fd (map { m{/(\d+)$} ? $1 : () } glob '/proc/self/fd/*') {
        next if $fd <= 2 || $fd == fileno $listen;
        POSIX::close($fd) if (readlink("/proc/self/fd/$fd") // '')
            =~ /^socket:/;
    }
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        my $c = $listen->accept or next;
        my $kid = fork;
        if (!defined $kid || $kid) { close $c; next }
        close $listen;
        $SIG{CHLD} = 'DEFAULT';
        _cloud_serve($d, $c, $w, $h, $max_age);
        _exit(0);
    }
}

sub generation {
    my ($dir, $acct, $dev) = @_;
    open my $f, '<', "$dir/cloud/gen/$acct/$dev" or return 0;
    my $g = <$f> // 0;
    chomp $g;
    return $g + 0;
}

# The device's images change: the next fetch gets generation N + 1.
sub new_generation {
    my ($self, $acct, $dev) = @_;
    my $d = $self->{dir};
    my $g = generation($d, $acct, $dev) + 1;
    make_path("$d/cloud/gen/$acct");
    open my $f, '>', "$d/cloud/gen/$acct/$dev.tmp" or die $!;
    print $f "$g\n";
    close $f;
    rename "$d/cloud/gen/$acct/$dev.tmp", "$d/cloud/gen/$acct/$dev" or die;
    return $g;
}

# The snapshot id the marker of generation $g names.
sub marked { my ($snap, $g) = @_; $g ? "$snap.g$g" : $snap }

sub cloud_image {
    my ($d, $acct, $dev, $snap, $w, $h) = @_;
    my $f = "$d/cloud/img/$acct/$dev/$snap";
    return $f if -s $f;
    make_path("$d/cloud/img/$acct/$dev");
    my $tmp = "$f.$$.jpg";
    system(build_dir() . '/bin/snapmark', 'gen', '--account', $acct,
        '--device', $dev, '--snapshot', $snap, '--width', $w,
        '--height', $h, '-o', $tmp) == 0 or die "snapmark gen failed\n";
    rename $tmp, $f;
    return $f;
}

sub _cloud_serve {
    my ($d, $c, $w, $h, $max_age) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = sysread $c, $req, 4096, length $req;
        return unless $n;
    }
    my ($path) = $req =~ m{^\S+ (\S+)};
    my ($node) = $req =~ m{^X-Node:\s*(\S+)}mi;
    my ($acct, $dev, $snap) = $path =~ m{^/([^/]+)/([^/]+)/([^/?]+)$};
    return unless defined $snap;
    my $hdrs = join '|', map { lc } $req =~ m{^([\w-]+):}mg;
    open my $l, '>>', "$d/cloud/cloud.log" or die;
    flock $l, 2;
    print $l ($node // '-') . " $acct/$dev/$snap $hdrs\n";
    close $l;

    if ($snap =~ /^missing/) {
        syswrite $c, "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n"
            . "Connection: close\r\n\r\nnope\n";
        return;
    }
    my $g = generation($d, $acct, $dev);
    my $img = cloud_image($d, $acct, $dev, marked($snap, $g), $w, $h);
    open my $f, '<:raw', $img or die;
    local $/;
    my $body = <$f>;
    syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "Cache-Control: max-age=" . ($snap =~ /^latest/ ? 5 : $max_age)
        . "\r\nConnection: close\r\n\r\n"
        . $body;
}

# The cloud's log: [node, "a/d/s", "header|names"] per request, in order.
sub cloud_requests {
    my ($self) = @_;
    open my $f, '<', "$self->{dir}/cloud/cloud.log" or return ();
    return map { chomp; [split / /, $_, 3] } <$f>;
}

# Which node fetched each original from the cloud: { "a/d/s" => [nodes] }.
sub fetchers {
    my ($self) = @_;
    my %by;
    push @{ $by{ $_->[1] } }, $_->[0] for $self->cloud_requests;
    return \%by;
}

# ------------------------------------------------------------ requests

# A signed URL for node $i.
sub url {
    my ($self, $i, %a) = @_;
    return $self->{nodes}[$i]->sign_url(%a);
}

sub get {
    my ($self, $i, %a) = @_;
    my $headers = delete $a{headers};
    return raw_request($self->{nodes}[$i]->port, $self->url($i, %a),
        headers => $headers // {}, timeout => 30);
}

# Does an image carry this owner's marker?
sub owner_is {
    my ($self, $body, $acct, $dev, $snap) = @_;
    my $f = "$self->{dir}/check.$$.img";
    open my $o, '>:raw', $f or die;
    print $o $body;
    close $o;
    system(build_dir() . "/bin/snapmark check '$f' '$acct' '$dev' '$snap'"
        . " >/dev/null 2>&1");
    my $rc = $? >> 8;
    unlink $f;
    return $rc == 0;
}

# Runs the jobs, each { node => i, account, device, snapshot, v, accept },
# over $procs client processes at once; returns a result per job, in
# order: { status, x (X-Snapcache), variant, file (the body, on a 200) }.
sub run_clients {
    my ($self, $procs, @jobs) = @_;
    my $d = "$self->{dir}/res." . $self->{runs}++;
    make_path($d);
    my @kids;
    for my $k (0 .. $procs - 1) {
        my $pid = fork // die;
        if (!$pid) {
            for (my $i = $k; $i < @jobs; $i += $procs) {
                my %j = %{ $jobs[$i] };
                my $node = delete $j{node};
                my $accept = delete $j{accept};
                my $r = eval {
                    $self->get($node, %j, headers => $accept
                        ? { Accept => $accept } : {})
                } // { status => 0, headers => {}, body => '' };
                open my $f, '>:raw', "$d/$i" or _exit(1);
                print $f join("\n", $r->{status},
                    $r->{headers}{'x-snapcache'} // '',
                    $r->{headers}{'x-snapcache-variant'} // '', ''),
                    $r->{body};
                close $f;
            }
            _exit(0);
        }
        push @kids, $pid;
    }
    waitpid $_, 0 for @kids;
    my @out;
    for my $i (0 .. $#jobs) {
        open my $f, '<:raw', "$d/$i" or do { push @out, { status => 0 }; next };
        local $/;
        my ($status, $x, $v, $body) = split /\n/, <$f>, 4;
        close $f;
        my %r = (status => $status, x => $x, variant => $v);
        if ($status == 200) {
            open my $b, '>:raw', "$d/$i.body" or die;
            print $b $body;
            close $b;
            $r{file} = "$d/$i.body";
        }
        unlink "$d/$i";
        push @out, \%r;
    }
    return @out;
}

# Checks bodies against owners: each item [file, account, device,
# snapshot]; identical bodies of one owner are decoded once.  Returns
# the items that do not show their owner, with snapmark's reason.
sub wrong_owners {
    my ($self, @items) = @_;
    my (%seen, @list);
    for my $it (@items) {
        my $sum = Digest::SHA::sha1_hex(_slurp($it->[0]));
        my $k = join ' ', $sum, @$it[1 .. 3];
        next if $seen{$k}++;
        push @list, $it;
    }
    return () unless @list;
    my $lf = "$self->{dir}/owners." . $self->{runs}++;
    open my $l, '>', $lf or die;
    print $l "@$_\n" for @list;
    close $l;
    my @out = `'@{[ build_dir() ]}/bin/snapmark' check-list '$lf' 2>&1`;
    my %why = map { /^(.+) (\S+ \S+ \S+ \S+)$/ ? ($2 => $1) : () } @out;
    return map { [@$_, $why{"@$_"} // 'unchecked'] }
        grep { ($why{"@$_"} // '') ne 'ok' } @list;
}

sub _slurp {
    my ($f) = @_;
    open my $h, '<:raw', $f or return '';
    local $/;
    return <$h> // '';
}

# The admin URLs of the nodes given (all by default), for snapcache purge.
sub admin_urls {
    my ($self, @idx) = @_;
    @idx = 0 .. $#{ $self->{nodes} } unless @idx;
    return map { 'http://127.0.0.1:' . $self->{nodes}[$_]->port . '/_admin' }
        @idx;
}

1;
