#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Serving-path benchmark: snapcache against the anchors, measured in the
# same run on the same machine.
#
#   hits   wrk -t2 -c64 on one signed variant of every rung, thumb (320)
#          through full (1920), against
#          (a) nginx serving the same bytes as a static file, tuned as an
#              operator tuning for speed would: sendfile, tcp_nopush and
#              open_file_cache (the strongest static anchor), and
#          (b) secure_link + proxy_cache in front of image_filter
#   hits under misses: the sd hit's p99 while 8 clients keep the thread
#          pool busy with cold keys, against its idle p99; the clients
#          at nice 0, then at nice 19
#   misses a cold cache over 20 distinct 1920x1080 originals, against
#          image_filter resizing the same originals, and libvips
#          in-process (build/bin/bench_transcode -t 2) as the limit
#   memory worker RSS after 1k and after 10k misses
#
# Prints figures and ratios; asserts nothing.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$ROOT/build}
W=$B/bench-serve
DUR=${DUR:-10}
MISSES=${MISSES:-10000}

rm -rf "$W"
mkdir -p "$W"/{keys,photos,static,logs,tmp,store,cache}
chmod 755 "$W" "$W"/photos "$W"/static

P_SNAP=$(port); P_ORIG=$(port); P_STATIC=$(port); P_CLASSIC=$(port); P_FILTER=$(port)

# ---------------------------------------------------------------- photos

prepare_photos "$W/photos"
mkdir -p "$W/photos/acct/cam"
for i in $(seq 0 19); do cp "$W/photos/p$i.jpg" "$W/photos/acct/cam/p$i"; done
chmod -R a+rX "$W/photos"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/k.key"
chmod 600 "$W/keys/k.key"

cat > "$W/nginx.conf" <<EOF
load_module $B/nginx/ngx_http_snapcache_module.so;
load_module /usr/lib/nginx/modules/ngx_http_image_filter_module.so;
worker_processes 2;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
thread_pool snapcache threads=2;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_errors on;
    client_body_temp_path $W/tmp/body;
    proxy_temp_path $W/tmp/proxy;
    fastcgi_temp_path $W/tmp/fastcgi;
    uwsgi_temp_path $W/tmp/uwsgi;
    scgi_temp_path $W/tmp/scgi;

    snapcache_store $W/store size=2g;
    snapcache_sign_key k $W/keys/k.key;
    snapcache_url_max_lifetime 2h;
    snapcache_ttl 1h;

    proxy_cache_path $W/cache keys_zone=classic:10m max_size=1g;

    # snapcache
    server {
        listen 127.0.0.1:$P_SNAP;
        snapcache_origin /_origin;
        snapcache_thread_pool snapcache;
        location /snap/ { snapcache; }
        location /alone/ { snapcache; snapcache_fill_below off; }
        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$P_ORIG/;
        }
    }

    # the origin: the photographs as files
    server {
        listen 127.0.0.1:$P_ORIG;
        root $W/photos;
        default_type image/jpeg;
    }

    # anchor (a): nginx serving the same bytes as a static file
    server {
        listen 127.0.0.1:$P_STATIC;
        root $W/static;
        default_type image/jpeg;
    }

    # anchor (b): secure_link + proxy_cache in front of image_filter
    server {
        listen 127.0.0.1:$P_CLASSIC;
        location ~ ^/img(640|1280|1920)?/ {
            secure_link \$arg_md5,\$arg_expires;
            secure_link_md5 "\$secure_link_expires\$uri secret";
            if (\$secure_link = "") { return 403; }
            if (\$secure_link = "0") { return 410; }
            proxy_cache classic;
            proxy_cache_valid 200 1h;
            proxy_cache_key \$uri;
            proxy_pass http://127.0.0.1:$P_FILTER;
        }
    }
    server {
        listen 127.0.0.1:$P_FILTER;
        image_filter_buffer 16m;
        image_filter_jpeg_quality 50;
        location /img/ {
            alias $W/photos/;
            image_filter resize 320 -;
        }
        location /img640/ {
            alias $W/photos/;
            image_filter_jpeg_quality 65;
            image_filter resize 640 -;
        }
        location /img1280/ {
            alias $W/photos/;
            image_filter_jpeg_quality 75;
            image_filter resize 1280 -;
        }
        location /img1920/ {
            alias $W/photos/;
            image_filter_jpeg_quality 85;
            image_filter resize 1920 -;
        }
    }
}
EOF

/usr/sbin/nginx -p "$W/" -c "$W/nginx.conf"
trap '/usr/sbin/nginx -p "$W/" -c "$W/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 0.5

sign() {  # account device snapshot variant
    "$B/snapcache" sign --key-file "$W/keys/k.key" --kid k --account "$1" \
        --device "$2" --snapshot "$3" --ttl 1h --max "$4" \
        --base "http://127.0.0.1:$P_SNAP/snap/" | sed "s/\$/\&v=$4/"
}

classic_url() {  # path
    local exp=$(( $(date +%s) + 3600 ))
    local md5
    md5=$(printf '%s' "$exp$1 secret" | openssl md5 -binary | openssl base64 \
          | tr '+/' '-_' | tr -d '=')
    echo "http://127.0.0.1:$P_CLASSIC$1?md5=$md5&expires=$exp"
}

# wrk_run name url: prints the figures on stderr, "rps p99_ms" on stdout
wrk_run() {
    local out rps p99 errs
    out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$2")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000;
        printf "%.2f", v }')
    errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    printf '   %-38s %10s req/s   p99 %7s ms   non-2xx %s\n' "$1" "$rps" \
        "$p99" "${errs:-0}" >&2
    echo "$rps $p99"
}

# ---------------------------------------------------------------- hits

# hits VARIANT FILTER_PREFIX: the photograph whose variant is largest, as
# one signed URL, against the same bytes as a static file and against the
# classic setup resizing the same photograph
hits() {
    local v=$1 prefix=$2 best=0 bsize=0 n i url curl_url
    echo "== hits: wrk -t2 -c64 -d${DUR}s, one '$v' variant"
    for i in $(seq 0 19); do
        n=$(curl -s "$(sign acct cam "p$i" "$v")" | wc -c)
        if [ "$n" -gt "$bsize" ]; then best=$i; bsize=$n; fi
    done
    url=$(sign acct cam "p$best" "$v")
    curl -s -o "$W/static/$v.jpg" "$url"
    curl -s -o /dev/null "$url"
    echo "   variant: $(stat -c %s "$W/static/$v.jpg") bytes," \
         "$(vipsheader "$W/static/$v.jpg" | cut -d' ' -f2)"
    curl_url=$(classic_url "/$prefix/p$best.jpg")
    curl -s -o /dev/null "$curl_url"

    R_SNAP=$(wrk_run "snapcache HIT" "$url")
    R_STATIC=$(wrk_run "static file (sendfile, nopush, ofc)" \
        "http://127.0.0.1:$P_STATIC/$v.jpg")
    R_CLASSIC=$(wrk_run "secure_link+proxy_cache+image_filter" "$curl_url")
    echo "$R_SNAP $R_STATIC $R_CLASSIC" | awk '{
        printf "   ratio snapcache/static  %.2fx  (p99 %.2f vs %.2f ms)\n",
            $1 / $3, $2, $4;
        printf "   ratio snapcache/classic %.2fx\n", $1 / $5 }'
    HIT_URL[$v]=$url
    HIT_P99[$v]=$(echo "$R_SNAP" | cut -d' ' -f2)
}

declare -A HIT_URL HIT_P99
hits thumb img
hits sd img640
hits hd img1280
hits full img1920

# ---------------------------------------------------- hits under misses

# 8 clients on cold keys keep the thread pool busy while wrk measures the
# sd hit: the event loop must win against the transcodes.  The clients
# are shell loops that start the signer and curl for every request, and
# on this one machine they take more CPU than the transcodes do; so the
# run is made twice, with the clients at nice 0 (everything competing)
# and at nice 19 (as if they ran elsewhere, leaving the transcodes as
# the load).
echo "== hits while misses saturate the pool: sd hit p99, idle and busy"
for c in $(seq 0 7); do ln -sfn "$W/photos/acct/cam" "$W/photos/acct/busy$c"; done
# every cold key is a distinct device: bC-N under a new device id
busy_loop() {  # client nice round
    local c=$1 i=0 u
    renice -n "$2" -p "$BASHPID" >/dev/null
    while [ ! -e "$W/stop-busy" ]; do
        ln -sfn "$W/photos/acct/cam" "$W/photos/acct/b$3-$c-$i"
        u=$(sign acct "b$3-$c-$i" "p$((i % 20))" sd)
        curl -s -o /dev/null "$u" || true
        i=$((i + 1))
    done
    echo "$i" > "$W/busy.$c"
}
for nice in 0 19; do
    rm -f "$W/stop-busy" "$W"/busy.*
    for c in $(seq 0 7); do busy_loop "$c" "$nice" "n$nice" & done
    sleep 2
    R_BUSY=$(wrk_run "sd HIT, pool busy, clients nice $nice" \
        "${HIT_URL[sd]}")
    touch "$W/stop-busy"
    wait
    FILLS=$(cat "$W"/busy.* | awk '{ s += $1 } END { print s }')
    echo "$R_BUSY ${HIT_P99[sd]} $FILLS $DUR" | awk '{
        printf "   %d fills during the run (%.0f/s)\n", $4, $4 / ($5 + 2);
        printf "   hit p99 busy/idle %.2fx  (%.2f vs %.2f ms)\n", $2 / $3, $2, $3 }'
done

# ---------------------------------------------------------------- misses

echo "== misses: 20 distinct 1920x1080 originals under 5 devices = 100 cold"
echo "   keys -> thumb, 4 client processes; image_filter resizes the same 100"
split_cfg() {  # name: URLs on stdin -> 4 curl config files
    awk -v w="$W" -v n="$1" '{
        f = w "/" n (NR % 4) ".cfg";
        print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
}
run4() {  # name
    curl -s -K "$W/${1}0.cfg" & curl -s -K "$W/${1}1.cfg" &
    curl -s -K "$W/${1}2.cfg" & curl -s -K "$W/${1}3.cfg"; wait
}
for d in 0 1 2 3 4; do
    ln -sfn "$W/photos/acct/cam" "$W/photos/acct/cold$d"
    for i in $(seq 0 19); do sign acct "cold$d" "p$i" thumb; done
done | split_cfg cold
for d in 0 1 2 3 4; do
    for i in $(seq 0 19); do echo "http://127.0.0.1:$P_FILTER/img/p$i.jpg"; done
done | split_cfg filter
T_SNAP=$(time_it run4 cold)
T_FILTER=$(time_it run4 filter)
echo "   snapcache     $(awk -v t="$T_SNAP" 'BEGIN { printf "%.1f", 100 / t }') images/s"
echo "   image_filter  $(awk -v t="$T_FILTER" 'BEGIN { printf "%.1f", 100 / t }') images/s"
if [ -x "$B/bin/bench_transcode" ]; then
    L=$("$B/bin/bench_transcode" -t 2 320 50 "$W"/photos/p*.jpg)
    echo "   libvips in-process, 2 threads: $L images/s (the limit)"
    awk -v t="$T_SNAP" -v l="$L" 'BEGIN { printf "   ratio snapcache/limit %.2fx\n", (100 / t) / l }'
fi
awk -v s="$T_SNAP" -v f="$T_FILTER" 'BEGIN {
    printf "   ratio snapcache/image_filter %.2fx\n", f / s }'
echo "   cold responses: $(grep -c 'fill failed' "$W/logs/error.log" || true) failed fills"

# ---------------------------------------------------- four rungs at once

# every rung of a snapshot, largest first as a display stepping down asks
# for them: one fill that makes the rungs below from the same decode,
# against four separate fills (snapcache_fill_below off), 4 clients
echo "== all four rungs of one snapshot: one fill against four"
for d in 0 1 2 3 4; do
    ln -sfn "$W/photos/acct/cam" "$W/photos/acct/rb$d"
    ln -sfn "$W/photos/acct/cam" "$W/photos/acct/ra$d"
done
for d in 0 1 2 3 4; do for i in 0 1 2 3; do for v in full hd sd thumb; do
    sign acct "rb$d" "p$i" "$v"
done; done; done | awk -v w="$W" '{
    f = w "/below" (int((NR - 1) / 4) % 4) ".cfg";
    print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
for d in 0 1 2 3 4; do for i in 0 1 2 3; do for v in full hd sd thumb; do
    sign acct "ra$d" "p$i" "$v" | sed 's#/snap/#/alone/#'
done; done; done | awk -v w="$W" '{
    f = w "/alone" (int((NR - 1) / 4) % 4) ".cfg";
    print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
T_BELOW=$(time_it run4 below)
T_ALONE=$(time_it run4 alone)
echo "$T_BELOW $T_ALONE" | awk '{
    printf "   one fill, rungs below from its decode  %.1f images/s\n", 80 / $1;
    printf "   four separate fills                      %.1f images/s\n", 80 / $2;
    printf "   ratio %.2fx\n", $2 / $1 }'

# ---------------------------------------------------------------- memory

# anonymous memory only: pages of the LMDB map that a worker has read are
# file-backed and shared, and count in RSS without being the worker's own
rss() {
    for p in $(pgrep -P "$(cat "$W/nginx.pid")"); do
        awk '/^RssAnon/ { print $2 }' "/proc/$p/status"
    done | awk '{ s += $1 } END { print s }'
}
echo "== worker RSS over $MISSES misses (distinct snapshot ids, 2 clients)"
gen_urls() {  # from to
    for i in $(seq "$1" "$2"); do
        sign acct "cam$((i % 50))" "m$i" thumb | \
            sed "s#/snap/acct/cam[0-9]*/m$i?#&#"
    done
}
# the origin serves p$((i%20)) under every id
for c in $(seq 0 49); do ln -sfn "$W/photos/acct/cam" "$W/photos/acct/cam$c"; done
for i in $(seq 0 $((MISSES - 1))); do
    ln -sf "p$((i % 20))" "$W/photos/acct/cam/m$i" 2>/dev/null || true
done
misses() {  # from to: two curl processes, each fetching half the URLs
    gen_urls "$1" "$2" | awk -v w="$W" '{
        f = w "/m" (NR % 2) ".cfg";
        print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
    curl -s -K "$W/m0.cfg" & curl -s -K "$W/m1.cfg"; wait
}
misses 0 999
RSS1=$(rss)
echo "   after 1k misses:  ${RSS1} KB anonymous RSS (2 workers)"
misses 1000 $((MISSES - 1))
RSS10=$(rss)
echo "   after ${MISSES} misses: ${RSS10} KB anonymous RSS (2 workers)"
awk -v a="$RSS1" -v b="$RSS10" 'BEGIN { printf "   growth %.1f%%\n", (b - a) * 100 / a }'
echo "   failed fills: $(grep -c 'fill failed' "$W/logs/error.log" || true)"
