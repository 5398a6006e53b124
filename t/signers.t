#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause

# The Python and JavaScript signers published in docs/signing.md, and the
# `snapcache sign` CLI, reproduce every test vector, and the published
# signers are short enough to copy.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Snapcache::Test qw(build_dir);

my $doc = do {
    local $/;
    open my $f, '<', "$FindBin::Bin/../docs/signing.md" or die $!;
    <$f>;
};
my ($block) = $doc =~ m{<!-- vectors -->\s*```\n(.*?)```}s;
my @vectors = map { [split ' '] } grep { /\S/ } split /\n/, $block // '';
ok(@vectors >= 6, 'vectors found');

sub snippet {
    my ($lang) = @_;
    my ($code) = $doc =~ m{<!-- signer:$lang -->\s*```\w*\n(.*?)```}s;
    return $code;
}

my $dir = tempdir(CLEANUP => 1);

for my $lang (qw(python js)) {
    my $code = snippet($lang);
    ok($code, "$lang signer found");
    my $lines = () = ($code // '') =~ /\n/g;
    cmp_ok($lines, '<=', 15, "$lang signer is $lines lines");
}

sub args_of {
    my ($v) = @_;
    my ($key, $kid, $exp, $a, $d, $s, $max, $scope, $sig) = @$v;
    $max = '' if $max eq '-';
    return ($key, $kid, $exp, $a, $d, $s, $max, $scope eq 'device', $sig);
}

SKIP: {
    skip 'python3 not installed', scalar @vectors
        unless `sh -c 'command -v python3'` =~ /\S/;
    open my $f, '>', "$dir/s.py" or die;
    print $f snippet('python');
    for my $v (@vectors) {
        my ($key, $kid, $exp, $a, $d, $s, $max, $grant) = args_of($v);
        my $g = $grant ? 'True' : 'False';
        print $f "print(snapcache_url('$key', '$kid', '$a', '$d', '$s', "
            . "max_variant='$max', device_grant=$g, exp=$exp, "
            . "base='/snap/'))\n";
    }
    close $f;
    my @out = `python3 $dir/s.py`;
    for my $i (0 .. $#vectors) {
        my $sig = $vectors[$i][8];
        like($out[$i] // '', qr/&sig=\Q$sig\E$/, "python signer, vector $i");
    }
}

SKIP: {
    skip 'node not installed', scalar @vectors
        unless `sh -c 'command -v node'` =~ /\S/;
    open my $f, '>', "$dir/s.js" or die;
    print $f snippet('js');
    for my $v (@vectors) {
        my ($key, $kid, $exp, $a, $d, $s, $max, $grant) = args_of($v);
        my $g = $grant ? 'true' : 'false';
        print $f "console.log(snapcacheUrl('$key', '$kid', '$a', '$d', "
            . "'$s', { max: '$max', deviceGrant: $g, exp: $exp, "
            . "base: '/snap/' }));\n";
    }
    close $f;
    my @out = `node $dir/s.js`;
    for my $i (0 .. $#vectors) {
        my $sig = $vectors[$i][8];
        like($out[$i] // '', qr/&sig=\Q$sig\E$/, "js signer, vector $i");
    }
}

my $cli = build_dir() . '/snapcache';
SKIP: {
    skip "$cli not built", scalar @vectors unless -x $cli;
    for my $i (0 .. $#vectors) {
        my ($key, $kid, $exp, $a, $d, $s, $max, $grant, $sig) =
            args_of($vectors[$i]);
        open my $f, '>', "$dir/$i.key" or die;
        print $f "$key\n";
        close $f;
        my @args = ('--key-file', "$dir/$i.key", '--kid', $kid,
            '--account', $a, '--device', $d, '--snapshot',
            $grant ? '*' : $s, '--exp', $exp, '--base', '/snap/');
        push @args, '--max', $max if $max ne '';
        my $out = `'$cli' sign @{[ map { "'$_'" } @args ]}`;
        like($out, qr/&sig=\Q$sig\E$/, "snapcache sign, vector $i");
        like($out, qr{^/snap/\Q$a/$d/\E}, "snapcache sign, vector $i path");
    }
}

done_testing;
