# SPDX-License-Identifier: BSD-2-Clause
package Snapcache::Netns;

# A shaped link for tests of weak networks: two network namespaces, a
# server's and a client's, joined by a veth pair, with tbf on the
# server's end of it (this kernel has no netem).  The server's side is
# SRV_IP, the client's CLI_IP, both in RFC 2544's benchmarking range and
# only ever inside these namespaces.  Needs root.
#
#   my ($net, $why) = Snapcache::Netns->new(kbit => 256);
#   skip ... unless $net;
#   system('ip', 'netns', 'exec', $net->srv, ...);   # nginx in one
#   system('ip', 'netns', 'exec', $net->cli, ...);   # the client in the other
#   $net->shape(2000);
#   $net->remove;          # also when the object goes away, or on a signal
#
# Removing ends whatever still runs in the two namespaces (only this
# test's processes can be there), then deletes them, and the veth pair
# with them.

use strict;
use warnings;

use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

use constant SRV_IP => '198.18.0.1';
use constant CLI_IP => '198.18.0.2';

my %live;

# The namespaces and the link, shaped to kbit; (undef, reason) when they
# cannot be made.  INT, TERM and HUP remove them and exit.
sub new {
    my ($class, %opt) = @_;
    my $kbit = $opt{kbit} || 256;

    return (undef, 'needs root for ip netns, veth and tc') if $> != 0;

    my $tag = sprintf '%x', $$ & 0xffffff;
    my $self = bless {
        srv => "snapc-s-$tag",
        cli => "snapc-c-$tag",
        sveth => "sc$tag-s",
        cveth => "sc$tag-c",
        owner => $$,
    }, $class;

    my ($srv, $cli, $sv, $cv) = @$self{qw(srv cli sveth cveth)};
    my @setup = (
        "ip netns add $srv",
        "ip netns add $cli",
        "ip link add $sv type veth peer name $cv",
        "ip link set $sv netns $srv",
        "ip link set $cv netns $cli",
        "ip -n $srv addr add @{[ SRV_IP ]}/30 dev $sv",
        "ip -n $cli addr add @{[ CLI_IP ]}/30 dev $cv",
        "ip -n $srv link set $sv up",
        "ip -n $cli link set $cv up",
        "ip -n $srv link set lo up",
        "ip -n $cli link set lo up",
        "ip netns exec $srv " . join(' ', tbf_command($sv, $kbit)),
    );

    $live{"$self"} = $self;
    weaken $live{"$self"};
    $SIG{$_} = \&_on_signal for qw(INT TERM HUP);

    for my $cmd (@setup) {
        my $out = `$cmd 2>&1`;
        if ($?) {
            $self->remove;
            return (undef, "cannot set up the shaped link ($cmd): "
                . ((split /\n/, $out)[0] // "exit $?"));
        }
    }

    return $self;
}

sub srv { $_[0]{srv} }
sub cli { $_[0]{cli} }
sub sveth { $_[0]{sveth} }
sub cveth { $_[0]{cveth} }

# For a test that runs itself inside the server's namespace, so that its
# harness, origin and nginx all live there.  The outer run (no --inner
# in @ARGV) skips the test with the reason of the first need that is
# false, makes the link at kbit, runs `$0 --inner CLI_NS VETH` in the
# server's namespace, removes the link and exits as that run did.  The
# inner run gets (client namespace, server's veth) back.
#
#   my ($cli, $veth) = Snapcache::Netns->inner(kbit => 512,
#       needs => [[-r $photo, "no photograph at $photo"]]);
sub inner {
    my ($class, %opt) = @_;

    return @ARGV[1, 2] if @ARGV && $ARGV[0] eq '--inner';

    for my $need (@{ $opt{needs} || [] }) {
        _skip_all($need->[1]) unless $need->[0];
    }

    my ($net, $why) = $class->new(kbit => $opt{kbit});
    _skip_all($why) unless $net;

    system('ip', 'netns', 'exec', $net->srv, $^X, $0, '--inner', $net->cli,
        $net->sveth);
    my $rc = $? >> 8 || ($? ? 1 : 0);

    $net->remove;
    exit $rc;
}

sub _skip_all {
    print "1..0 # SKIP $_[0]\n";
    exit 0;
}

# Sets the rate of dev, from inside its namespace (an inner run's veth).
sub set_rate {
    my ($dev, $kbit) = @_;
    system(tbf_command($dev, $kbit)) == 0 or die "tc failed\n";
}

# The tc command that shapes dev to kbit, run in dev's namespace.
sub tbf_command {
    my ($dev, $kbit) = @_;
    return ('tc', 'qdisc', 'replace', 'dev', $dev, 'root', 'tbf', 'rate',
        "${kbit}kbit", 'burst', '32kbit', 'latency', '400ms');
}

# Sets the server side's rate, from this process's namespace or another.
sub shape {
    my ($self, $kbit) = @_;
    system('ip', 'netns', 'exec', $self->{srv},
        tbf_command($self->{sveth}, $kbit)) == 0 or die "tc failed\n";
}

sub remove {
    my ($self) = @_;
    return if $self->{removed} || $self->{owner} != $$;
    $self->{removed} = 1;
    delete $live{"$self"};

    my @ns = grep { -e "/run/netns/$_" } @$self{qw(srv cli)};
    my @pids = map { split ' ', `ip netns pids $_ 2>/dev/null` } @ns;

    if (@pids) {
        kill 'TERM', @pids;
        unless (_gone(5, @pids)) {
            kill 'KILL', grep { kill 0, $_ } @pids;
            # a namespace goes, and its veth with it, with its last process
            _gone(10, @pids);
        }
    }

    system("ip netns del $_ 2>/dev/null") for @ns;
}

# Waits up to $secs for the processes to end (reaping those that are
# ours); true when they did.
sub _gone {
    my ($secs, @pids) = @_;
    my $end = time + $secs;
    while (1) {
        waitpid $_, WNOHANG for @pids;
        return 1 unless grep { kill 0, $_ } @pids;
        return 0 if time > $end;
        sleep 0.05;
    }
}

sub DESTROY { $_[0]->remove }

END { $_->remove for grep { defined } values %live }

sub _on_signal {
    $_->remove for grep { defined } values %live;
    exit 1;
}

1;
