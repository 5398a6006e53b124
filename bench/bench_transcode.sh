#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Transcode benchmark: 20 real 1920x1080 JPEG photographs to widths 320,
# 640 and 1280 (JPEG q80) and 320 (WebP q80), single-threaded, in one run:
#
#   ours          snapcache_transcode() in process (build/bin/bench_transcode)
#   limit         the bare libvips thumbnail + save it is built on, same
#                 process, same settings: the in-process limit
#   vipsthumbnail the command-line tool, one process per image
#   image_filter  nginx's image_filter (libgd) through nginx, one worker,
#                 one request at a time over a kept-alive connection
#
# Prints images/s and our ratio to each; asserts nothing.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$PWD/build}
W=$B/bench-transcode
Q=80
ROUNDS=${ROUNDS:-3}

rm -rf "$W"
mkdir -p "$W"/{photos,logs,tmp,out}
chmod 755 "$W" "$W/photos"
prepare_photos "$W/photos"
chmod -R a+rX "$W/photos"

# ------------------------------------------------------ ours and the limit

echo "== in process, single-threaded, best of 5 (ours, then the limit)"
"$B/bin/bench_transcode" "$W"/photos/p*.jpg > "$W/inproc.txt"

# ------------------------------------------------------------ vipsthumbnail

vipsthumb() {  # width ext
    local r f
    for r in $(seq "$ROUNDS"); do
        for f in "$W"/photos/p*.jpg; do
            vipsthumbnail "$f" --size "${1}x" \
                -o "$W/out/t.$2[Q=$Q,strip]"
        done
    done
}

# ------------------------------------------------------------ image_filter

P=$(port)
cat > "$W/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_image_filter_module.so;
worker_processes 1;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $W/tmp/body;
    proxy_temp_path $W/tmp/proxy;
    fastcgi_temp_path $W/tmp/fastcgi;
    uwsgi_temp_path $W/tmp/uwsgi;
    scgi_temp_path $W/tmp/scgi;
    server {
        listen 127.0.0.1:$P;
        image_filter_buffer 16m;
        image_filter_jpeg_quality $Q;
        location /w320/  { alias $W/photos/; image_filter resize 320 -; }
        location /w640/  { alias $W/photos/; image_filter resize 640 -; }
        location /w1280/ { alias $W/photos/; image_filter resize 1280 -; }
    }
}
EOF
/usr/sbin/nginx -p "$W/" -c "$W/nginx.conf"
trap '/usr/sbin/nginx -p "$W/" -c "$W/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 0.5

filter() {  # width: one curl, one connection, every photo ROUNDS times
    local r i
    for r in $(seq "$ROUNDS"); do
        for i in $(seq 0 19); do
            printf 'url = "http://127.0.0.1:%s/w%s/p%s.jpg"\n' "$P" "$1" "$i"
            printf 'output = "/dev/null"\n'
        done
    done > "$W/filter$1.cfg"
    curl -s -K "$W/filter$1.cfg"
}

check_filter() {  # width: the filter really resizes
    local w
    curl -s -o "$W/out/f.jpg" "http://127.0.0.1:$P/w$1/p0.jpg"
    w=$(vipsheader -f width "$W/out/f.jpg")
    [ "$w" = "$1" ] || { echo "image_filter gave width $w, not $1" >&2; exit 1; }
}

# ------------------------------------------------------------------ table

N=$((20 * ROUNDS))
printf '\n%-10s %10s %10s %10s %10s   %8s %8s %8s\n' variant ours limit \
    vipsthumb img_filter /limit /vipsth /img_flt
while read -r width fmt ours limit; do
    ext=jpg; [ "$fmt" = webp ] && ext=webp
    t=$(time_it vipsthumb "$width" "$ext")
    vt=$(awk -v n="$N" -v t="$t" 'BEGIN { printf "%.1f", n / t }')
    if [ "$fmt" = jpeg ]; then
        check_filter "$width"
        t=$(time_it filter "$width")
        ft=$(awk -v n="$N" -v t="$t" 'BEGIN { printf "%.1f", n / t }')
    else
        ft=-
    fi
    awk -v v="$width $fmt" -v o="$ours" -v l="$limit" -v vt="$vt" -v ft="$ft" \
        'BEGIN {
            printf "%-10s %10.1f %10.1f %10.1f %10s   %7.2fx %7.2fx %8s\n",
                v, o, l, vt, ft, o / l, o / vt,
                ft == "-" ? "-" : sprintf("%.2fx", o / ft) }'
done < "$W/inproc.txt"
echo "(images/s, single-threaded; ratios are ours / each)"
