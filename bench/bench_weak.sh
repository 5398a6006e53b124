#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Weak-link benchmark: a display refreshing a camera through a tbf-shaped
# veth link between two network namespaces (root), a new snapshot each
# refresh, a new connection each time, no client hints.
#
#   time to image (median, worst) and bytes per refresh at 256 kbit/s,
#   1, 2 and 8 Mbit/s, for
#     adaptive    snapcache_adapt on, ceiling hd (the default)
#     fixed hd    snapcache_adapt off
#     fixed full  snapcache_adapt off, v=full
#     hint-only   the CDNs' rule: the rung from ECT/Downlink when sent,
#                 else the default; a display sends none, so it is hd
#   and the adaptation's cost on the hit path: hit req/s with
#   snapcache_adapt on against off, same run, wrk on loopback.
#
# Prints figures and ratios; asserts nothing.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$ROOT/build}
W=$B/bench-weak
N=${REFRESHES:-6}
DUR=${DUR:-8}           # HIT_ONLY=1: the hit path only

if [ "$(id -u)" != 0 ]; then
    echo "bench-weak: needs root for ip netns, veth and tc" >&2
    exit 1
fi

TAG=$(printf '%x' $(($$ & 0xffffff)))
SRV=snapb-s-$TAG CLI=snapb-c-$TAG SV=sb$TAG-s CV=sb$TAG-c
SRV_IP=198.18.0.1 CLI_IP=198.18.0.2     # benchmarking range, ours only

cleanup() {
    ip netns exec "$SRV" /usr/sbin/nginx -p "$W/" -c "$W/nginx.conf" \
        -s stop 2>/dev/null || true
    [ -n "${ORIG_PID:-}" ] && kill "$ORIG_PID" 2>/dev/null || true
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$CLI" 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$W"
mkdir -p "$W"/{keys,photos,logs,tmp,store} "$W/origin/acct/cam"
chmod 755 "$W" "$W/origin" "$W/origin/acct" "$W/origin/acct/cam"

ip netns add "$SRV"
ip netns add "$CLI"
ip link add "$SV" type veth peer name "$CV"
ip link set "$SV" netns "$SRV"
ip link set "$CV" netns "$CLI"
ip -n "$SRV" addr add $SRV_IP/30 dev "$SV"
ip -n "$CLI" addr add $CLI_IP/30 dev "$CV"
ip -n "$SRV" link set "$SV" up
ip -n "$CLI" link set "$CV" up
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up

shape() {
    ip netns exec "$SRV" tc qdisc replace dev "$SV" root tbf rate "$1" \
        burst 32kbit latency 400ms
}

prepare_photos "$W/photos"

# every refresh is a new snapshot: the photographs, over and over
TOTAL=$((4 * 4 * N + 8))
for i in $(seq 1 $TOTAL); do
    cp "$W/photos/p$(( (i - 1) % 20 )).jpg" "$W/origin/acct/cam/s$i"
done
chmod -R a+rX "$W/origin"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/k.key"
chmod 600 "$W/keys/k.key"

P_ON=18080 P_OFF=18081 P_ORIG=18082

cat > "$W/nginx.conf" <<EOF
load_module $B/nginx/ngx_http_snapcache_module.so;
worker_processes 2;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
thread_pool snapcache threads=2;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $W/tmp/body;
    proxy_temp_path $W/tmp/proxy;
    fastcgi_temp_path $W/tmp/fastcgi;
    uwsgi_temp_path $W/tmp/uwsgi;
    scgi_temp_path $W/tmp/scgi;

    snapcache_store $W/store size=1g;
    snapcache_sign_key k $W/keys/k.key;
    snapcache_url_max_lifetime 2h;
    snapcache_ttl 1h;
    snapcache_origin /_origin;
    snapcache_thread_pool snapcache;

    server {
        listen 127.0.0.1:$P_ON;
        listen $SRV_IP:$P_ON;
        location /snap/ { snapcache; }
        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$P_ORIG/;
        }
    }

    server {
        listen 127.0.0.1:$P_OFF;
        listen $SRV_IP:$P_OFF;
        snapcache_adapt off;
        location /snap/ { snapcache; }
        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$P_ORIG/;
        }
    }

    server {
        listen 127.0.0.1:$P_ORIG;
        root $W/origin;
        default_type image/jpeg;
    }
}
EOF

ip netns exec "$SRV" /usr/sbin/nginx -p "$W/" -c "$W/nginx.conf"
sleep 0.5

sign() {  # port snapshot [variant]
    local u
    u=$("$B/snapcache" sign --key-file "$W/keys/k.key" --kid k \
        --account acct --device cam --snapshot "$2" --ttl 1h \
        ${3:+--max $3} --base "http://$SRV_IP:$1/snap/")
    echo "$u${3:+&v=$3}"
}

# one refresh: prints "ms bytes variant"
cat > "$W/display.pl" <<'EOF'
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time);
my ($url) = @ARGV;
my ($host, $port, $path) = $url =~ m{^http://([^:/]+):(\d+)(/.*)$};
my $t0 = time;
my $s = IO::Socket::INET->new(PeerAddr => "$host:$port", Timeout => 60)
    or die "connect: $!";
syswrite $s, "GET $path HTTP/1.1\r\nHost: display\r\nConnection: close\r\n\r\n";
my $buf = '';
while (sysread $s, $buf, 65536, length $buf) { }
my ($head, $body) = split /\r\n\r\n/, $buf, 2;
my ($variant) = $head =~ m{^X-Snapcache-Variant: (\S+)}mi;
printf "%d %d %s\n", (time - $t0) * 1000, length($body // ''),
    $variant // '-';
EOF

SNAP=0
run_cell() {  # rate label port [variant]
    local i url out ms=() bytes=0 variants="" within=0
    for i in $(seq 1 "$N"); do
        SNAP=$((SNAP + 1))
        url=$(sign "$3" "s$SNAP" "${4:-}")
        out=$(ip netns exec "$CLI" perl "$W/display.pl" "$url")
        set -- "$1" "$2" "$3" "${4:-}" $out
        ms+=("$5")
        bytes=$((bytes + $6))
        variants="$variants $7"
        [ "$5" -le 1000 ] && within=$((within + 1))
        sleep 1
    done
    local sorted median worst
    sorted=$(printf '%s\n' "${ms[@]}" | sort -n)
    median=$(echo "$sorted" | awk -v n="$N" 'NR == int((n + 1) / 2)')
    worst=$(echo "$sorted" | tail -1)
    printf '   %-9s %-11s %7d ms %7d ms %9d B   %d/%d   %s\n' "$1" "$2" \
        "$median" "$worst" $((bytes / N)) "$within" "$N" \
        "$(echo $variants | tr ' ' '\n' | sort | uniq -c \
           | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}')"
}

if [ -z "${HIT_ONLY:-}" ]; then
echo "== time to image per refresh, new connection each, budget 1 s"
echo "   ($N refreshes a cell, 1 s apart, a new snapshot each)"
printf '   %-9s %-11s %10s %10s %11s   %s   %s\n' rate rule median worst \
    "bytes/img" "<=1s" rungs
for rate in 256kbit 1mbit 2mbit 8mbit; do
    shape "$rate"
    # the adaptive display first refreshes a few times to learn the link
    for i in 1 2; do
        SNAP=$((SNAP + 1))
        ip netns exec "$CLI" perl "$W/display.pl" \
            "$(sign $P_ON "s$SNAP")" > /dev/null
    done
    run_cell "$rate" adaptive $P_ON
    run_cell "$rate" "fixed hd" $P_OFF
    run_cell "$rate" "fixed full" $P_OFF full
    run_cell "$rate" hint-only $P_OFF
done
shape 8mbit
echo
fi

echo "== hit path at saturation: wrk -t2 -c64 -d${DUR}s on loopback, one"
echo "   cached sd variant, snapcache_adapt on against off, alternated"
U_ON=$(sign $P_ON hit sd | sed "s/$SRV_IP/127.0.0.1/")
U_OFF=$(sign $P_OFF hit sd | sed "s/$SRV_IP/127.0.0.1/")
cp "$W/photos/p0.jpg" "$W/origin/acct/cam/hit"
chmod a+r "$W/origin/acct/cam/hit"
ip netns exec "$SRV" curl -s -o /dev/null "$U_ON"
ip netns exec "$SRV" curl -s -o /dev/null "$U_OFF"

rps() {
    ip netns exec "$SRV" wrk -t2 -c64 -d"${DUR}s" "$1" \
        | awk '/Requests\/sec/ {print $2}'
}

on_total=0 off_total=0
for round in 1 2; do
    off=$(rps "$U_OFF")
    on=$(rps "$U_ON")
    printf '   round %d: off %10s req/s   on %10s req/s\n' "$round" "$off" "$on"
    on_total=$(awk -v a="$on_total" -v b="$on" 'BEGIN { print a + b }')
    off_total=$(awk -v a="$off_total" -v b="$off" 'BEGIN { print a + b }')
done
awk -v on="$on_total" -v off="$off_total" 'BEGIN {
    printf "   adapt on / off: %.3f (%+.1f%%)\n", on / off, (on / off - 1) * 100
}'
