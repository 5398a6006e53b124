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
#   a wall of 1, 4 and 8 tiles (distinct cameras of one account) over
#   HTTPS, all tiles of a refresh asked for at once, over HTTP/2 (one
#   kept connection) and HTTP/1.1 (a pool of kept connections), at
#   512 kbit/s, 2 and 8 Mbit/s, adaptive against fixed hd: time to the
#   last tile of a refresh (median, worst) and bytes per refresh, the
#   display being t/weak_wall.py;
#   and the adaptation's cost on the hit path: hit req/s with
#   snapcache_adapt on against off, same run, wrk on loopback over plain
#   HTTP/1.1 and h2load over HTTPS and HTTP/2.
#
#   HIT_ONLY=1   the hit path only (wrk and h2load), DUR seconds a run
#   WALL_ONLY=1  the wall only; WALL_PROTOS ("h2 h1"), WALL_RATES
#                ("512kbit 2mbit 8mbit"), WALL_TILES ("1 4 8"),
#                WALL_REFRESHES (6 a row, the first 2 learn the link)
#                and WALL_EVERY (2.5 s between refresh starts) change it
#
# Prints figures and ratios; asserts nothing.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck disable=SC1091  # bench/lib.sh: shellcheck -x follows it
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$ROOT/build}
W=$B/bench-weak
N=${REFRESHES:-6}
DUR=${DUR:-8}           # HIT_ONLY=1: the hit path only
WALL_PROTOS=${WALL_PROTOS:-h2 h1}       # WALL_ONLY=1: the wall only
WALL_RATES=${WALL_RATES:-512kbit 2mbit 8mbit}
WALL_TILES=${WALL_TILES:-1 4 8}
WALL_N=${WALL_REFRESHES:-6}
WALL_EVERY=${WALL_EVERY:-2.5}
WALL_LEARN=2            # the wall's first refreshes of a row, not counted
PY=/usr/bin/python3     # Debian's, with python3-httpx and python3-h2

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
    if [ -n "${ORIG_PID:-}" ]; then kill "$ORIG_PID" 2>/dev/null || true; fi
    if [ -n "${WALL_PID:-}" ]; then kill "$WALL_PID" 2>/dev/null || true; fi
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$CLI" 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$W"
mkdir -p "$W"/{keys,photos,logs,tmp,store,tls} "$W/origin/acct/cam"
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

# the wall: an account per row and rule, a camera per tile, a new
# snapshot per tile and refresh (links to the photographs, the same
# sequence for adaptive and fixed)
if [ -z "${HIT_ONLY:-}" ]; then
    for proto in $WALL_PROTOS; do
        for rate in $WALL_RATES; do
            for tiles in $WALL_TILES; do
                for rule in a f; do
                    for c in $(seq 1 "$tiles"); do
                        d=$W/origin/w-$proto-$rate-$tiles-$rule/cam$c
                        mkdir -p "$d"
                        for i in $(seq 1 "$WALL_N"); do
                            ln -f "$W/photos/p$(( ((i - 1) * tiles + c - 1) \
                                % 20 )).jpg" "$d/s$i"
                        done
                    done
                done
            done
        done
    done
fi
chmod -R a+rX "$W/origin"

# one self-signed certificate for the HTTPS listeners, on both addresses
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 2 -subj /CN=snapcache-bench -keyout "$W/tls/key.pem" \
    -out "$W/tls/cert.pem" \
    -addext "subjectAltName=IP:$SRV_IP,IP:127.0.0.1" 2>/dev/null

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/k.key"
chmod 600 "$W/keys/k.key"

P_ON=18080 P_OFF=18081 P_ORIG=18082
PS_ON=18443 PS_OFF=18444        # HTTPS and HTTP/2: adapt on, off

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
        listen 127.0.0.1:$PS_ON ssl http2;
        listen $SRV_IP:$PS_ON ssl http2;
        ssl_certificate $W/tls/cert.pem;
        ssl_certificate_key $W/tls/key.pem;
        keepalive_timeout 120s;
        keepalive_requests 1000000;
        location /snap/ { snapcache; }
        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$P_ORIG/;
        }
    }

    server {
        listen 127.0.0.1:$PS_OFF ssl http2;
        listen $SRV_IP:$PS_OFF ssl http2;
        ssl_certificate $W/tls/cert.pem;
        ssl_certificate_key $W/tls/key.pem;
        keepalive_timeout 120s;
        keepalive_requests 1000000;
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

sign_at() {  # base account device snapshot [variant]
    local u
    u=$("$B/snapcache" sign --key-file "$W/keys/k.key" --kid k \
        --account "$2" --device "$3" --snapshot "$4" --ttl 1h \
        ${5:+--max $5} --base "$1")
    echo "$u${5:+&v=$5}"
}

sign() {  # port snapshot [variant]
    sign_at "http://$SRV_IP:$1/snap/" acct cam "$2" "${3:-}"
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
        # shellcheck disable=SC2086  # "ms bytes variant", split
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
        "$(echo "$variants" | tr ' ' '\n' | grep . | sort | uniq -c \
           | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}')"
}

if [ -z "${HIT_ONLY:-}" ] && [ -z "${WALL_ONLY:-}" ]; then
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

# "count x rung, ..." of the rung names on stdin, one a line
rungs() {
    sort | uniq -c | sort -rn \
        | awk '{ printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1 }'
}

# one row of the wall: proto rate tiles rule(a|f) port; sets W_MED,
# W_WORST (ms to a refresh's last tile), W_IN (refreshes whose last tile
# came within 1 s, "k/n"), W_BYTES (median bytes a refresh), W_RUNGS
# and W_ERR (tiles not answered 200) over the refreshes after the first
# WALL_LEARN
wall_row() {
    local proto=$1 rate=$2 tiles=$3 acct=w-$1-$2-$3-$4 port=$5
    local i c line out next now fd
    local -a lines=() ms=() bytes=() variants=() got=()
    for i in $(seq 1 "$WALL_N"); do
        line=""
        for c in $(seq 1 "$tiles"); do
            line+="$(sign_at "https://$SRV_IP:$port/snap/" "$acct" \
                "cam$c" "s$i") /dev/null "
        done
        lines+=("$line")
    done
    W_ERR=0
    coproc WALLC { exec ip netns exec "$CLI" "$PY" "$ROOT/t/weak_wall.py" \
        "$proto" "$W/tls/cert.pem" "$tiles" 2>>"$W/logs/wall.err"; }
    # shellcheck disable=SC2153  # coproc WALLC sets WALLC_PID
    WALL_PID=$WALLC_PID
    next=$EPOCHREALTIME
    for i in $(seq 1 "$WALL_N"); do
        now=$EPOCHREALTIME
        sleep "$(awk -v n="$next" -v t="$now" \
            'BEGIN { d = n - t; printf "%.3f", (d > 0 ? d : 0) }')"
        next=$(awk -v t="$EPOCHREALTIME" -v e="$WALL_EVERY" \
            'BEGIN { printf "%.6f", t + e }')
        out=""
        if kill -0 "$WALL_PID" 2>/dev/null; then
            echo "${lines[i - 1]}" >&"${WALLC[1]}"
            read -r -t 120 out <&"${WALLC[0]}" || out=""
        fi
        [ "$i" -le "$WALL_LEARN" ] && continue
        # "status variant reason ms bytes | ..." -> "last-ms bytes errors"
        read -r -a got <<< "$(echo "$out" | awk -F' [|] ' -v n="$tiles" '{
            for (i = 1; i <= NF; i++) {
                split($i, f, " ")
                if (f[4] > mx) mx = f[4]
                b += f[5]
                if (f[1] != 200) e++
            }
            e += n - NF
        } END { print mx + 0, b + 0, e + 0 }')"
        ms+=("${got[0]}")
        bytes+=("${got[1]}")
        W_ERR=$((W_ERR + got[2]))
        # shellcheck disable=SC2207  # rung names are single words
        variants+=($(echo "$out" | awk -F' [|] ' '{
            for (i = 1; i <= NF; i++) { split($i, f, " "); print f[2] } }'))
    done
    fd=${WALLC[1]}
    exec {fd}>&-
    wait "$WALL_PID" 2>/dev/null || true
    WALL_PID=
    W_MED=$(printf '%s\n' "${ms[@]}" | median | awk '{ printf "%.0f", $1 }')
    W_WORST=$(printf '%s\n' "${ms[@]}" | sort -n | tail -1)
    W_BYTES=$(printf '%s\n' "${bytes[@]}" | median \
        | awk '{ printf "%.0f", $1 }')
    W_IN=$(printf '%s\n' "${ms[@]}" \
        | awk '$1 <= 1000 { k++ } END { printf "%d/%d", k, NR }')
    W_RUNGS=$(printf '%s\n' "${variants[@]}" | rungs)
}

if [ -z "${HIT_ONLY:-}" ]; then
if ! "$PY" -c 'import httpx, h2' 2>/dev/null; then
    echo "== the wall: skipped, $PY has no httpx and h2 (python3-httpx,"
    echo "   python3-h2)"
    echo
else
T_WALL=$SECONDS
echo "== the wall: tiles of one account refreshed together over HTTPS,"
echo "   every ${WALL_EVERY} s, a new snapshot per tile each time, no hints, no v=;"
echo "   h2 = one kept HTTP/2 connection, h1 = a pool of kept HTTP/1.1 ones"
echo "   ($WALL_N refreshes a row, the first $WALL_LEARN learn the link and are"
echo "   not counted; time from a refresh's start to its last tile's last byte)"
printf '   %-5s %-8s %5s  %-9s %9s %9s %13s  %5s   %s\n' proto rate tiles \
    rule median worst "bytes/refresh" "<=1s" rungs
for rate in $WALL_RATES; do
    shape "$rate"
    for proto in $WALL_PROTOS; do
        for tiles in $WALL_TILES; do
            wall_row "$proto" "$rate" "$tiles" a $PS_ON
            a_med=$W_MED a_bytes=$W_BYTES
            printf '   %-5s %-8s %5d  %-9s %6s ms %6s ms %11s B  %5s   %s%s\n' \
                "$proto" "$rate" "$tiles" adaptive "$W_MED" "$W_WORST" \
                "$W_BYTES" "$W_IN" "$W_RUNGS" \
                "$([ "$W_ERR" -gt 0 ] && echo ", $W_ERR tiles not 200")"
            wall_row "$proto" "$rate" "$tiles" f $PS_OFF
            printf '   %-5s %-8s %5s  %-9s %6s ms %6s ms %11s B  %5s   %s%s\n' \
                "" "" "" "fixed hd" "$W_MED" "$W_WORST" "$W_BYTES" \
                "$W_IN" "$W_RUNGS" \
                "$([ "$W_ERR" -gt 0 ] && echo ", $W_ERR tiles not 200")"
            awk -v am="$a_med" -v fm="$W_MED" -v ab="$a_bytes" \
                -v fb="$W_BYTES" 'BEGIN {
                printf "   %-21s adaptive/fixed: median time %.2f, bytes %.2f\n",
                    "", (fm > 0 ? am / fm : 0), (fb > 0 ? ab / fb : 0) }'
        done
    done
done
shape 8mbit
echo "   (the wall took $((SECONDS - T_WALL)) s)"
echo
fi
fi

if [ -z "${WALL_ONLY:-}" ]; then
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
echo

if ! command -v h2load > /dev/null; then
    echo "== hit path over HTTP/2: skipped, no h2load (nghttp2-client)"
else
T_H2=$SECONDS
echo "== hit path over HTTPS and HTTP/2 at saturation: h2load -t2 -c64 -m4"
echo "   -D $DUR on loopback, the same cached sd variant, snapcache_adapt on"
echo "   against off, alternated on, off three times; medians"
H_ON=$(sign_at "https://127.0.0.1:$PS_ON/snap/" acct cam hit sd)
H_OFF=$(sign_at "https://127.0.0.1:$PS_OFF/snap/" acct cam hit sd)
ip netns exec "$SRV" curl -sk --http2 -o /dev/null "$H_ON"
ip netns exec "$SRV" curl -sk --http2 -o /dev/null "$H_OFF"

# h2rps url: prints "req/s B/response", and the responses not 2xx if any
# (the bytes show the rungs served: adaptation may serve below v=sd)
h2rps() {
    ip netns exec "$SRV" h2load -t2 -c64 -m4 -D "$DUR" "$1" 2>&1 \
        | tee -a "$W/logs/h2load.log" | awk '
        /^finished in/ { r = $4 }
        /^requests:/ { n = $2 }
        /^status codes:/ { ok = $3 }
        /^traffic:/ { d = $(NF - 1); gsub(/[()]/, "", d) }
        END { printf "%s %.0f", r, (n > 0 ? d / n : 0)
              if (n - ok > 0) printf " (%d not 2xx)", n - ok
              print "" }'
}

h2_on=() h2_off=()
for round in 1 2 3; do
    on=$(h2rps "$H_ON")
    off=$(h2rps "$H_OFF")
    read -r -a a <<< "$on"
    read -r -a b <<< "$off"
    printf '   round %d: on %10s req/s %6s B/resp   off %10s req/s %6s B/resp%s\n' \
        "$round" "${a[0]}" "${a[1]}" "${b[0]}" "${b[1]}" \
        "${a[2]:+  on: ${a[*]:2}}${b[2]:+  off: ${b[*]:2}}"
    h2_on+=("${a[0]}")
    h2_off+=("${b[0]}")
done
on=$(printf '%s\n' "${h2_on[@]}" | median)
off=$(printf '%s\n' "${h2_off[@]}" | median)
awk -v on="$on" -v off="$off" 'BEGIN {
    printf "   median: on %.0f req/s, off %.0f req/s\n", on, off
    printf "   adapt on / off: %.3f (%+.1f%%; goal: within 3%%)\n", on / off,
        (on / off - 1) * 100
}'
echo "   (took $((SECONDS - T_H2)) s)"
fi
fi
