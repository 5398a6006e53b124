#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Hit cost in instructions: nginx (one process: master_process off,
# daemon off) under valgrind --tool=callgrind, counting the instructions
# it executes in user space (all its threads) for a hit served
#
#   static  by nginx itself as a static file with the same bytes as the
#           hit, tuned as bench-serve's anchor is (sendfile, tcp_nopush,
#           open_file_cache), in the same process and the same run
#   store   by snapcache from the store (snapcache_memory_cache off)
#   tier    by snapcache from the memory tier
#
# for the thumb and hd variants of one 1920x1080 photograph, over plain
# HTTP/1.1 and over TLS (HTTP/1.1, TLSv1.3), each on one keep-alive
# connection, and prints each as instructions per request and as a ratio
# against static over the same transport.  A case's figure is the
# difference between two runs of nginx that differ only in the number of
# requests (SHORT and SHORT + N), divided by N, so that start, warm-up
# (the first hit that puts the variant in the tier) and exit cancel out.
# Instruction counts do not depend on the machine's load, which is the
# point: the figures are the same on a busy machine as on an idle one.
# What they leave out is the kernel's share (the socket writes and
# sendfile), which valgrind does not see: the figures are the user-space
# cost of a hit, not its whole cost (over TLS, the encryption of the
# body is user space and counts).  Asserts nothing.
#
# N (default 200) and SHORT (default 20) are the request counts,
# BENCH_INSTR_CASES the cases ("static store tier"; a module without the
# memory tier is measured with "static store"), BENCH_INSTR_VARIANTS the
# variants ("thumb hd"), BENCH_INSTR_PROTOS the transports ("http
# tls").  SNAPCACHE_BUILD names the build whose module is loaded.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$ROOT/build}
W=$B/bench-instr
N=${N:-200}
SHORT=${SHORT:-20}
CASES=${BENCH_INSTR_CASES:-static store tier}
VARIANTS=${BENCH_INSTR_VARIANTS:-thumb hd}
PROTOS=${BENCH_INSTR_PROTOS:-http tls}

for tool in valgrind curl openssl vipsthumbnail; do
    command -v "$tool" >/dev/null || {
        echo "bench-instr: $tool is missing: run make deps-bench" >&2
        exit 1
    }
done

has() { [[ " $CASES " == *" $1 "* ]]; }

rm -rf "$W"
mkdir -p "$W"/{keys,photos,static,logs,tmp,store,runs}
chmod 755 "$W" "$W"/photos "$W"/static

P_SNAP=$(port); P_ORIG=$(port); P_STATIC=$(port)
P_SNAP_TLS=$(port); P_STATIC_TLS=$(port)

# ---------------------------------------------------------------- setup

# one real photograph (the first of those bench-serve uses), as a camera
# snapshot: 1920x1080 JPEG q90
photo=
for f in /usr/share/backgrounds/mate/nature/*.jpg \
         /usr/share/backgrounds/*.jpg /usr/share/backgrounds/*/*.jpg; do
    [ -f "$f" ] || continue
    vipsthumbnail "$f" --size 1920x1080 --smartcrop centre \
        -o "$W/photos/p0.jpg[Q=90,strip]" 2>/dev/null && { photo=$f; break; }
done
if [ -z "$photo" ]; then
    echo "bench-instr: no photograph: run make deps-bench" >&2
    exit 1
fi
chmod -R a+rX "$W/photos"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/k.key"
chmod 600 "$W/keys/k.key"
self_signed "$W/keys"

if has tier; then
    TIER_HTTP="snapcache_memory_cache size=64m;"
    TIER_OFF="snapcache_memory_cache off;"
else
    TIER_HTTP='' TIER_OFF=''
fi

# one process (no master), so that callgrind sees every request; the
# origin is in the same config but only the fills before the runs use it
cat > "$W/nginx.conf" <<EOF
load_module $B/nginx/ngx_http_snapcache_module.so;
daemon off;
master_process off;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
thread_pool snapcache threads=2;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_errors on;
    ssl_certificate $W/keys/cert.pem;
    ssl_certificate_key $W/keys/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_body_temp_path $W/tmp/body;
    proxy_temp_path $W/tmp/proxy;
    fastcgi_temp_path $W/tmp/fastcgi;
    uwsgi_temp_path $W/tmp/uwsgi;
    scgi_temp_path $W/tmp/scgi;

    snapcache_store $W/store size=256m;
    $TIER_HTTP
    snapcache_sign_key k $W/keys/k.key;
    snapcache_url_max_lifetime 2h;
    snapcache_ttl 1h;

    server {
        listen 127.0.0.1:$P_SNAP;
        listen 127.0.0.1:$P_SNAP_TLS ssl;
        snapcache_origin /_origin;
        snapcache_thread_pool snapcache;
        location /snap/ { snapcache; }
        location /lmdb/ { snapcache; $TIER_OFF }
        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$P_ORIG/;
        }
    }

    # the origin: snapshot "pN" is photograph N
    server {
        listen 127.0.0.1:$P_ORIG;
        default_type image/jpeg;
        location ~ "^/[^/]+/[^/]+/(p[0-9]+)\$" {
            root $W/photos;
            try_files /\$1.jpg =404;
        }
    }

    # the anchor: nginx serving the same bytes as a static file
    server {
        listen 127.0.0.1:$P_STATIC;
        listen 127.0.0.1:$P_STATIC_TLS ssl;
        root $W/static;
        default_type image/jpeg;
    }
}
EOF

NGINX_PID=
# start_nginx [valgrind and its options]: nginx, not a daemon, in the
# background, ready when the static server answers
start_nginx() {
    "$@" /usr/sbin/nginx -p "$W/" -c "$W/nginx.conf" \
        > "$W/logs/stdout" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 600); do
        curl -s -o /dev/null "http://127.0.0.1:$P_STATIC/" && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench-instr: nginx did not start" >&2
    cat "$W/logs/stdout" "$W/logs/error.log" >&2
    exit 1
}

stop_nginx() {
    [ -n "$NGINX_PID" ] || return 0
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}
trap stop_nginx EXIT

# sign variant location: one signed URL of snapshot p0 of acct/cam
sign() {
    echo "acct cam p0 $1" | sign_many "$W/keys/k.key" k \
        "http://127.0.0.1:$P_SNAP/$2/" 7200
}

url_of() {  # case variant [proto]
    case $1 in
    static) echo "http://127.0.0.1:$P_STATIC/$2.jpg" ;;
    store) sign "$2" lmdb ;;
    tier) sign "$2" snap ;;
    esac | if [ "${3:-http}" = tls ]; then
        sed "s#^http://127.0.0.1:$P_SNAP/#https://127.0.0.1:$P_SNAP_TLS/#;
             s#^http://127.0.0.1:$P_STATIC/#https://127.0.0.1:$P_STATIC_TLS/#"
    else cat; fi
}

# the fills, without valgrind: each variant in the store, and its bytes
# as the static file
start_nginx
for v in $VARIANTS; do
    curl -s -o "$W/static/$v.jpg" "$(url_of store "$v")"
    curl -s -o "$W/got" "$(url_of store "$v")"
    cmp -s "$W/got" "$W/static/$v.jpg" || {
        echo "bench-instr: the store's $v hit differs from its miss" >&2
        exit 1
    }
done
stop_nginx

# ----------------------------------------------------------------- runs

# run proto case variant count: the instructions of a whole run of nginx
# that serves count+1 requests of that case on one connection (the first
# puts a tier variant in the tier), in $W/runs/proto.case.variant.count.ir,
# after checking that every answer is a 200 of the static file's size
run() {
    local p=$1 c=$2 v=$3 n=$4 url out size
    out=$W/runs/$p.$c.$v.$n
    url=$(url_of "$c" "$v" "$p")
    for _ in $(seq 0 "$n"); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$url"
    done > "$out.cfg"
    start_nginx valgrind --tool=callgrind --callgrind-out-file="$out.cg" \
        --toggle-collect=ngx_process_events_and_timers \
        --dump-instr=no --dump-line=no --compress-strings=no
    curl -sk --http1.1 -K "$out.cfg" \
        -w '%{http_code} %{size_download}\n' > "$out.got"
    stop_nginx
    size=$(stat -c %s "$W/static/$v.jpg")
    if [ "$(sort -u "$out.got")" != "200 $size" ] \
        || [ "$(wc -l < "$out.got")" -ne $((n + 1)) ]; then
        echo "bench-instr: $p $c $v: not $((n + 1)) answers of 200 and" \
             "$size bytes: $(sort "$out.got" | uniq -c | paste -sd' ')" >&2
        exit 1
    fi
    awk '/^(summary|totals):/ { print $2; exit }' "$out.cg" > "$out.ir"
}

declare -A IR
echo "== hit cost in instructions (callgrind, user space, one nginx" \
     "process), per request: ((SHORT+N) requests - SHORT requests) / N," \
     "N=$N, SHORT=$SHORT"
for p in $PROTOS; do
    for v in $VARIANTS; do
        echo "   $p, $v: $(stat -c %s "$W/static/$v.jpg") bytes," \
             "$(vipsheader "$W/static/$v.jpg" 2>/dev/null | cut -d' ' -f2)"
        for c in $CASES; do
            run "$p" "$c" "$v" "$SHORT"
            run "$p" "$c" "$v" $((SHORT + N))
            a=$(cat "$W/runs/$p.$c.$v.$SHORT.ir")
            b=$(cat "$W/runs/$p.$c.$v.$((SHORT + N)).ir")
            IR[$p.$c.$v]=$(awk -v a="$a" -v b="$b" -v n="$N" \
                'BEGIN { printf "%.0f", (b - a) / n }')
            printf '      %-6s %9s instructions a request (runs: %s, %s)\n' \
                "$c" "${IR[$p.$c.$v]}" "$a" "$b"
        done
    done
done

echo "== against static (the same bytes, the same transport, the same run)"
printf '   %-12s' body
for c in $CASES; do printf ' %-10s' "$c"; done
echo
for p in $PROTOS; do
    for v in $VARIANTS; do
        printf '   %-12s' "$v, $p"
        for c in $CASES; do
            printf ' %-10s' "$(awk -v a="${IR[$p.$c.$v]}" \
                -v s="${IR[$p.static.$v]:-0}" \
                'BEGIN { if (s > 0) printf "%.2fx", a / s; else print "-" }')"
        done
        echo
    done
done
