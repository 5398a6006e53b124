#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Serving-path benchmark: snapcache against its anchors, measured in the
# same run on the same machine.  Every figure is the median of ROUNDS
# runs (3), each side's runs alternated with the other's, and what
# counts is a ratio of two medians measured side by side, so that a
# machine shared with other work moves both.
#
#   hits   one signed variant of every rung, thumb (320) to full (1920),
#          served from the memory tier (/snap/) and from the store alone
#          (/lmdb/: snapcache_memory_cache off), against nginx serving
#          the exact bytes snapcache returned as a static file, tuned as
#          an operator tuning for speed would (sendfile, tcp_nopush,
#          open_file_cache); over plain HTTP and TLS (HTTP/1.1) with
#          wrk -t2 -c64, and HTTP/2 over TLS with h2load -t2 -c64 -m4
#   hits under misses: the thumb hit's p99 (wrk -t2 -c64) while 8
#          clients (wrk -c8 over a list of cold keys) keep the thread
#          pool busy with misses, against its p99 just before, for each
#          way of keeping transcodes off the event loops' CPU:
#          snapcache_transcode_nice 10 (the default), 19 and idle
#          (SCHED_IDLE), and a pool of one thread; and the machine's
#          floor: the paced p99 while a libvips process outside nginx
#          keeps the cores busy at SCHED_IDLE
#   misses 400 cold thumbnails (20 distinct 1920x1080 originals under
#          MISS_DEVICES devices, 20), 4 clients, against image_filter
#          resizing 100 of the same originals
#          and libvips in-process (build/bin/bench_transcode -t 2), the
#          limit; and the same fills with snapcache_keep_original off
#          (/nokeep/), which tells the put of the kept original (a
#          store write of the whole original, into page-cache pages the
#          store had not used before) from the rest of the serving path;
#          MISS_ROUNDS rounds (default 7, at least ROUNDS), since the
#          ratio of two runs moves by a fifth from one round to the
#          next here; runs of 400 keys, not 100, so that a run's start
#          and end (the clients starting, the first origin fetches, the
#          last fills with a thread idle), which the limit does not
#          time, weigh a quarter as much
#   rungs  all four rungs of a snapshot: one fill against four
#   memory worker RSS after 1k and after MISSES misses
#
# Beside each rate it prints the workers' CPU time per request or per
# image, which other work on a shared machine moves less than it moves
# the rates.  Prints figures, ratios and which goals the ratios meet;
# asserts nothing.  BENCH_SECTIONS picks sections ("hits busy misses
# rungs memory"), DUR the seconds of a load run (default 5), ROUNDS the
# runs of each side (default 3), BUSY the policies of the busy section,
# PACED_RPS its paced rate per connection (250), MAIN_NICE and
# MAIN_THREADS the transcode nice value and pool threads of the other
# sections (10, the default, and 2).

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$ROOT/build}
W=$B/bench-serve
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
MISS_ROUNDS=${MISS_ROUNDS:-$((ROUNDS < 7 ? 7 : ROUNDS))}
MISS_DEVICES=${MISS_DEVICES:-20}
MISS_KEYS=$((MISS_DEVICES * 20))
MISSES=${MISSES:-10000}
SECTIONS=${BENCH_SECTIONS:-hits busy misses rungs memory}
BUSY=${BUSY:-nice10 nice19 idle pool1}

for tool in wrk h2load curl openssl vipsthumbnail; do
    command -v "$tool" >/dev/null || {
        echo "bench-serve: $tool is missing: run make deps-bench" >&2
        exit 1
    }
done

rm -rf "$W"
mkdir -p "$W"/{keys,photos,static,logs,tmp,store,cache,urls}
chmod 755 "$W" "$W"/photos "$W"/static

P_SNAP=$(port); P_SNAP_TLS=$(port); P_ORIG=$(port); P_STATIC=$(port)
P_STATIC_TLS=$(port); P_CLASSIC=$(port); P_FILTER=$(port)

has() { [[ " $SECTIONS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- setup

prepare_photos "$W/photos"
chmod -R a+rX "$W/photos"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/k.key"
chmod 600 "$W/keys/k.key"
self_signed "$W/keys"
chmod 644 "$W/keys/cert.pem" "$W/keys/key.pem"

# write_conf NICE THREADS: snapcache with its transcodes at that nice
# value (or idle) on a pool of that many threads, and the anchors
write_conf() {
    cat > "$W/nginx.conf" <<EOF
load_module $B/nginx/ngx_http_snapcache_module.so;
load_module /usr/lib/nginx/modules/ngx_http_image_filter_module.so;
worker_processes 2;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
thread_pool snapcache threads=$2;
events { worker_connections 4096; }
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

    snapcache_store $W/store size=4g;
    snapcache_memory_cache size=64m;
    snapcache_sign_key k $W/keys/k.key;
    snapcache_url_max_lifetime 2h;
    snapcache_ttl 1h;
    snapcache_ttl_min 1h;
    snapcache_transcode_nice $1;

    proxy_cache_path $W/cache keys_zone=classic:10m max_size=1g;

    # snapcache
    server {
        listen 127.0.0.1:$P_SNAP;
        listen 127.0.0.1:$P_SNAP_TLS ssl http2;
        snapcache_origin /_origin;
        snapcache_thread_pool snapcache;
        location /snap/ { snapcache; }
        location /lmdb/ { snapcache; snapcache_memory_cache off; }
        location /alone/ { snapcache; snapcache_fill_below off; }
        location /nokeep/ { snapcache; snapcache_keep_original off; }
        location /_origin/ {
            internal;
            proxy_pass http://127.0.0.1:$P_ORIG/;
        }
    }

    # the origin: snapshot "pN" or "<anything>-pN" is photograph N
    server {
        listen 127.0.0.1:$P_ORIG;
        default_type image/jpeg;
        location ~ "^/[^/]+/[^/]+/(?:[A-Za-z0-9_.]+-)?(p[0-9]+)$" {
            root $W/photos;
            try_files /\$1.jpg =404;
        }
    }

    # the anchor: nginx serving the same bytes as a static file
    server {
        listen 127.0.0.1:$P_STATIC;
        listen 127.0.0.1:$P_STATIC_TLS ssl http2;
        root $W/static;
        default_type image/jpeg;
    }

    # secure_link + proxy_cache in front of image_filter
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
}

start_nginx() {  # nice threads
    write_conf "$1" "$2"
    /usr/sbin/nginx -p "$W/" -c "$W/nginx.conf"
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$P_STATIC/" && return 0
        sleep 0.05
    done
}

stop_nginx() {
    local pid
    pid=$(cat "$W/nginx.pid" 2>/dev/null) || return 0
    /usr/sbin/nginx -p "$W/" -c "$W/nginx.conf" -s stop 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
trap stop_nginx EXIT

start_nginx "${MAIN_NICE:-10}" "${MAIN_THREADS:-2}"

# sign account device snapshot variant [location]
sign() {
    echo "$1 $2 $3 $4" | sign_many "$W/keys/k.key" k \
        "http://127.0.0.1:$P_SNAP/${5:-snap}/" 7200
}

classic_url() {  # path
    local exp=$(( $(date +%s) + 3600 ))
    local md5
    md5=$(printf '%s' "$exp$1 secret" | openssl md5 -binary | openssl base64 \
          | tr '+/' '-_' | tr -d '=')
    echo "http://127.0.0.1:$P_CLASSIC$1?md5=$md5&expires=$exp"
}

# wrk_run url: "rps p99_ms errors requests"
wrk_run() {
    local out
    out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$1" 2>&1)
    echo "$out" | awk '
        /Requests\/sec/ { rps = $2 }
        / requests in / { n = $1 }
        $1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u);
            sub(/[a-z]+$/, "", v);
            if (u == "us") v /= 1000; else if (u == "s") v *= 1000;
            p99 = v }
        /Non-2xx|Socket errors/ { err += $NF }
        END { printf "%s %.2f %d %d\n", rps, p99, err, n }'
}

# h2_run url: "rps - errors requests", HTTP/2 over TLS, 4 streams a
# connection
h2_run() {
    local out
    out=$(h2load -t2 -c64 -m4 -D "$DUR" "$1" 2>&1)
    echo "$out" | awk '
        /^finished in/ { rps = $4 }
        /^requests:/ { err += $10 + $12 + $14; n = $8 }
        /^status codes:/ { err += $7 + $9 }
        END { printf "%s - %d %d\n", rps, err, n }'
}

# the CPU time, in clock ticks, the workers have used
worker_ticks() {
    for p in $(pgrep -P "$(cat "$W/nginx.pid")"); do
        awk '{ print $14 + $15 }' "/proc/$p/stat"
    done | awk '{ s += $1 } END { print s }'
}

# rate proto url: "rps p99 errors requests cpu_us_per_request"; the CPU
# is the workers' own, which other work on the machine moves less than
# it moves the rate
rate() {
    local t0 t1 r
    t0=$(worker_ticks)
    case $1 in
    http|tls) r=$(wrk_run "$2") ;;
    h2) r=$(h2_run "$2") ;;
    esac
    t1=$(worker_ticks)
    echo "$r" | awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" '{
        printf "%s %s %s %s %.1f\n", $1, $2, $3, $4,
            $4 ? (b - a) * 1000000 / hz / $4 : 0 }'
}

# over proto url: the URL for that transport
over() {
    case $1 in
    http) echo "$2" ;;
    *) echo "$2" | sed "s#^http://127.0.0.1:$P_SNAP/#https://127.0.0.1:$P_SNAP_TLS/#;
                       s#^http://127.0.0.1:$P_STATIC/#https://127.0.0.1:$P_STATIC_TLS/#" ;;
    esac
}

fetch() {  # proto url file: the body as that transport delivers it
    case $1 in
    http) curl -s -o "$3" "$2" ;;
    tls) curl -sk --http1.1 -o "$3" "$2" ;;
    h2) curl -sk --http2 -o "$3" "$2" ;;
    esac
}

declare -A RATIO_T RATIO_S CPU_T

# ---------------------------------------------------------------- hits

# hits VARIANT: the photograph whose variant is largest, as one signed
# URL, against the same bytes as a static file, over each transport
hits() {
    local v=$1 best=0 bsize=0 n i url lurl surl proto r k
    for i in $(seq 0 19); do
        n=$(curl -s "$(sign acct cam "p$i" "$v")" | wc -c)
        if [ "$n" -gt "$bsize" ]; then best=$i; bsize=$n; fi
    done
    url=$(sign acct cam "p$best" "$v")
    lurl=$(sign acct cam "p$best" "$v" lmdb)
    surl="http://127.0.0.1:$P_STATIC/$v.jpg"
    curl -s -o "$W/static/$v.jpg" "$url"
    echo "== hits: '$v', $(stat -c %s "$W/static/$v.jpg") bytes," \
         "$(vipsheader "$W/static/$v.jpg" | cut -d' ' -f2)"

    for proto in http tls h2; do
        # the same bytes from all three, over this transport
        for k in tier lmdb static; do
            case $k in
            tier) fetch "$proto" "$(over "$proto" "$url")" "$W/got" ;;
            lmdb) fetch "$proto" "$(over "$proto" "$lurl")" "$W/got" ;;
            static) fetch "$proto" "$(over "$proto" "$surl")" "$W/got" ;;
            esac
            cmp -s "$W/got" "$W/static/$v.jpg" || {
                echo "   $proto: $k did not serve the same bytes" >&2
                exit 1
            }
        done
        : > "$W/r.tier"; : > "$W/r.lmdb"; : > "$W/r.static"
        for r in $(seq "$ROUNDS"); do
            if [ $((r % 2)) -eq 1 ]; then set -- tier lmdb static
            else set -- static lmdb tier; fi
            for k in "$@"; do
                case $k in
                tier) rate "$proto" "$(over "$proto" "$url")" ;;
                lmdb) rate "$proto" "$(over "$proto" "$lurl")" ;;
                static) rate "$proto" "$(over "$proto" "$surl")" ;;
                esac >> "$W/r.$k"
            done
        done
        report_hits "$v" "$proto"
    done
}

# report_hits variant proto: the runs, medians and ratios of one cell;
# the ratio that counts is the median of each round's ratio, the two
# sides measured back to back
report_hits() {
    local t l s errs
    t=$(cut -d' ' -f1 "$W/r.tier" | median)
    l=$(cut -d' ' -f1 "$W/r.lmdb" | median)
    s=$(cut -d' ' -f1 "$W/r.static" | median)
    errs=$(cat "$W/r.tier" "$W/r.lmdb" "$W/r.static" \
           | awk '{ e += $3 } END { print e + 0 }')
    printf '   %-5s req/s: tier %s | store %s | static %s   (errors %s)\n' \
        "$2" "$(cut -d' ' -f1 "$W/r.tier" | paste -sd' ')" \
        "$(cut -d' ' -f1 "$W/r.lmdb" | paste -sd' ')" \
        "$(cut -d' ' -f1 "$W/r.static" | paste -sd' ')" "$errs"
    RATIO_T[$1.$2]=$(paste -d' ' "$W/r.tier" "$W/r.static" \
        | awk '{ print $1 / $6 }' | median \
        | awk '{ printf "%.2f", $1 }')
    RATIO_S[$1.$2]=$(paste -d' ' "$W/r.lmdb" "$W/r.static" \
        | awk '{ print $1 / $6 }' | median \
        | awk '{ printf "%.2f", $1 }')
    printf '         tier/static %sx, store/static %sx (medians of the' \
        "${RATIO_T[$1.$2]}" "${RATIO_S[$1.$2]}"
    printf ' rounds; of the medians %s, %s)\n' \
        "$(awk -v a="$t" -v b="$s" 'BEGIN { printf "%.2fx", a / b }')" \
        "$(awk -v a="$l" -v b="$s" 'BEGIN { printf "%.2fx", a / b }')"
    printf '         workers CPU per request: tier %s us, store %s us,' \
        "$(cut -d' ' -f5 "$W/r.tier" | median)" \
        "$(cut -d' ' -f5 "$W/r.lmdb" | median)"
    printf ' static %s us\n' "$(cut -d' ' -f5 "$W/r.static" | median)"
    CPU_T[$1.$2]=$(paste -d' ' "$W/r.static" "$W/r.tier" \
        | awk '{ print $5 / $10 }' | median | awk '{ printf "%.2f", $1 }')
}

if has hits; then
    for v in thumb sd hd full; do hits "$v"; done

    echo "== hits: the memory tier against static, medians of $ROUNDS" \
         "(store alone in brackets)"
    printf '   %-6s %-16s %-16s %-16s\n' body "plain HTTP" "TLS (HTTP/1.1)" \
        "HTTP/2 over TLS"
    met=1
    for v in thumb sd hd full; do
        printf '   %-6s' "$v"
        for proto in http tls h2; do
            printf ' %-16s' "${RATIO_T[$v.$proto]}x (${RATIO_S[$v.$proto]}x)"
            awk -v r="${RATIO_T[$v.$proto]}" 'BEGIN { exit !(r < 1.0) }' \
                && met=0
        done
        echo
    done
    echo "   static's CPU per request / the tier's (higher: the tier costs less):"
    for v in thumb sd hd full; do
        printf '   %-6s' "$v"
        for proto in http tls h2; do
            printf ' %-16s' "${CPU_T[$v.$proto]}x"
        done
        echo
    done
    if [ $met -eq 1 ]; then
        echo "   goal >= 1.0x on every cell: met"
    else
        echo "   goal >= 1.0x on every cell: NOT met"
    fi
    stretch=1
    for v in thumb sd; do for proto in http tls h2; do
        awk -v r="${RATIO_T[$v.$proto]}" 'BEGIN { exit !(r < 1.2) }' \
            && stretch=0
    done; done
    echo "   stretch 1.2x on thumb and sd: $([ $stretch -eq 1 ] && echo met \
        || echo not met)"

    # once, plain HTTP: the classic setup, for reference
    for v in thumb hd; do
        case $v in thumb) pre=img ;; hd) pre=img1280 ;; esac
        curl_url=$(classic_url "/$pre/p0.jpg")
        curl -s -o /dev/null "$curl_url"
        echo "   secure_link+proxy_cache+image_filter, $v:" \
             "$(wrk_run "$curl_url" | cut -d' ' -f1) req/s (one run)"
    done
fi

# ---------------------------------------------------- hits under misses

# The busy clients: wrk over a list of cold keys (sd, which also makes
# the thumb below from the same decode), 8 connections, each request a
# new key, so that the pool never runs dry.
cat > "$W/busy.lua" <<'EOF'
local urls, i = {}, 0
for line in io.lines(os.getenv("BUSY_URLS")) do urls[#urls + 1] = line end
request = function()
    i = i + 1
    if i > #urls then i = 1 end
    return wrk.format("GET", urls[i])
end
EOF

policy() {  # name: "nice threads"
    case $1 in
    nice10) echo "10 2" ;;
    nice19) echo "19 2" ;;
    idle) echo "idle 2" ;;
    pool1) echo "10 1" ;;
    idle1) echo "idle 1" ;;
    esac
}

# paced url: the p99 in ms of HTTP/1.1 requests at a fixed rate (8
# connections, PACED_RPS each a second), from h2load's per-request log:
# how soon an event loop gets the CPU when a request comes, rather than
# how long a saturated one's queue is
PACED_RPS=${PACED_RPS:-250}
paced() {
    rm -f "$W/lat"
    h2load --h1 -t1 -c8 --rps="$PACED_RPS" -D "$DUR" --log-file="$W/lat" \
        "$1" > /dev/null 2>&1
    awk -F'\t' '$2 == 200 { print $3 / 1000 }' "$W/lat" | sort -g \
        | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "nan"; exit }
            i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f\n", v[i] }'
}

busy_run() {  # policy round
    local hit idle busy pidle pbusy n
    stop_nginx
    # shellcheck disable=SC2046
    start_nginx $(policy "$1")
    hit=$(sign acct cam p0 thumb)
    for _ in $(seq 20); do curl -s -o /dev/null "$hit"; done
    idle=$(wrk_run "$hit" | cut -d' ' -f2)
    pidle=$(paced "$hit")
    for n in $(seq 0 5999); do
        echo "acct busy-$1-$2 c$n-p$((n % 20)) sd"
    done | sign_many "$W/keys/k.key" k /snap/ 7200 > "$W/urls/busy"
    BUSY_URLS=$W/urls/busy wrk -t1 -c8 -d"$((2 * DUR + 4))s" \
        -s "$W/busy.lua" "http://127.0.0.1:$P_SNAP" > "$W/busy.out" 2>&1 &
    sleep 2
    busy=$(wrk_run "$hit" | cut -d' ' -f2)
    pbusy=$(paced "$hit")
    wait
    n=$(awk '/requests in/ { print $1 }' "$W/busy.out")
    echo "$idle $busy $pidle $pbusy $(awk -v n="$n" -v d="$DUR" \
        'BEGIN { printf "%.1f", n / (2 * d + 4) }')" >> "$W/b.$1"
    printf '   %-7s round %s: saturated p99 %6s -> %6s ms,' "$1" "$2" \
        "$idle" "$busy"
    printf ' paced p99 %6s -> %6s ms, %s fills/s\n' "$pidle" "$pbusy" \
        "$(tail -1 "$W/b.$1" | cut -d' ' -f5)"
}

# The machine's own floor for the paced figure: the same paced hits
# while a libvips process outside nginx (bench_transcode, two threads)
# keeps both cores busy at SCHED_IDLE, the lowest priority there is.  No
# policy of snapcache's can give a hit less delay than this: what is
# left is the kernel's (one built with preempt=none, as some VMs' are,
# lets a thread in kernel work keep the CPU whatever its priority).
hog_run() {  # round
    local hit pidle pbusy hog
    hit=$(sign acct cam p0 thumb)
    for _ in $(seq 20); do curl -s -o /dev/null "$hit"; done
    pidle=$(paced "$hit")
    ( while :; do
        chrt -i 0 "$B/bin/bench_transcode" -t 2 320 50 "$W"/photos/p*.jpg \
            > /dev/null 2>&1 || exit 0
    done ) &
    hog=$!
    sleep 1
    pbusy=$(paced "$hit")
    kill "$hog" 2>/dev/null || true
    pkill -f "$B/bin/bench_transcode" 2>/dev/null || true
    wait "$hog" 2>/dev/null || true
    echo "$pidle $pbusy" >> "$W/b.hog"
    printf '   %-7s round %s: paced p99 %6s -> %6s ms (libvips outside' \
        "floor" "$1" "$pidle" "$pbusy"
    printf ' nginx, SCHED_IDLE)\n'
}

if has busy; then
    echo "== hits while misses saturate the pool: the thumb hit's p99, idle" \
         "and while 8 clients keep the pool busy with cold keys;"
    echo "   saturated: wrk -t2 -c64; paced: 8 connections at" \
         "$((8 * PACED_RPS)) requests/s"
    for p in $BUSY; do : > "$W/b.$p"; done
    : > "$W/b.hog"
    for r in $(seq "$ROUNDS"); do
        order=$BUSY
        [ $((r % 2)) -eq 0 ] && order=$(echo "$BUSY" | tr ' ' '\n' | tac \
            | paste -sd' ')
        for p in $order; do busy_run "$p" "$r"; done
        if [ -x "$B/bin/bench_transcode" ] && command -v chrt >/dev/null; then
            hog_run "$r"
        fi
    done
    best= bestr=
    for p in $BUSY; do
        r=$(awk '{ print $2 / $1 }' "$W/b.$p" | median)
        q=$(awk '{ print $4 / $3 }' "$W/b.$p" | median)
        f=$(cut -d' ' -f5 "$W/b.$p" | median)
        printf '   %-7s busy/idle p99: saturated %.2fx, paced %.2fx;' \
            "$p" "$r" "$q"
        printf ' fills %s/s (medians of rounds)\n' "$f"
        if [ -z "$bestr" ] || awk -v a="$r" -v b="$bestr" \
            'BEGIN { exit !(a < b) }'; then best=$p; bestr=$r; fi
    done
    if [ -s "$W/b.hog" ]; then
        printf '   floor   busy/idle p99: paced %.2fx with libvips outside' \
            "$(awk '{ print $2 / $1 }' "$W/b.hog" | median)"
        printf ' nginx at SCHED_IDLE (no policy can do better)\n'
    fi
    printf '   best saturated: %s, %.2fx: goal <= 2x %s\n' "$best" "$bestr" \
        "$(awk -v r="$bestr" 'BEGIN { print (r <= 2 ? "met" : "NOT met") }')"
    stop_nginx
    start_nginx "${MAIN_NICE:-10}" "${MAIN_THREADS:-2}"
fi

# ---------------------------------------------------------------- misses

split_cfg() {  # name: URLs on stdin -> 4 curl config files
    awk -v w="$W" -v n="$1" '{
        f = w "/" n (NR % 4) ".cfg";
        print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
}
run4() {  # name
    curl -s -K "$W/${1}0.cfg" & curl -s -K "$W/${1}1.cfg" &
    curl -s -K "$W/${1}2.cfg" & curl -s -K "$W/${1}3.cfg"; wait
}

# cpu_of command...: runs it, prints its output, and its children's CPU
# seconds on the last line
cpu_of() {
    python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=False)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f" % (r.ru_utime + r.ru_stime))' "$@"
}

# fill_run name file: images/s, and the workers' CPU ms per image (the
# origin's serving of the originals included), appended to $W/file
fill_run() {  # name file: the fills of MISS_KEYS cold keys
    local t c0 c1
    c0=$(worker_ticks)
    t=$(time_it run4 "$1")
    c1=$(worker_ticks)
    echo "$t $c0 $c1" | awk -v hz="$(getconf CLK_TCK)" -v n="$MISS_KEYS" '{
        printf "%.1f %.2f\n", n / $1, ($3 - $2) * 1000 / hz / n }' \
        >> "$W/$2"
}

limit_run() {
    [ -x "$B/bin/bench_transcode" ] || return 0
    # 20 originals, 5 times over: 100 images
    cpu_of "$B/bin/bench_transcode" -t 2 320 50 "$W"/photos/p*.jpg \
        | paste -sd' ' | awk '{ printf "%s %.2f\n", $1, $2 * 10 }' \
        >> "$W/m.limit"
}

if has misses; then
    echo "== misses: 20 distinct 1920x1080 originals under $MISS_DEVICES" \
         "devices = $MISS_KEYS cold keys -> thumb, 4 clients," \
         "$MISS_ROUNDS rounds (image_filter: 100 of them)"
    : > "$W/m.snap"; : > "$W/m.filter"; : > "$W/m.limit"; : > "$W/m.nokeep"
    for r in $(seq "$MISS_ROUNDS"); do
        for d in $(seq "$MISS_DEVICES"); do
            for i in $(seq 0 19); do echo "acct cold$r-$d p$i thumb"; done
        done | sign_many "$W/keys/k.key" k "http://127.0.0.1:$P_SNAP/snap/" \
            7200 | split_cfg cold
        for d in 0 1 2 3 4; do
            for i in $(seq 0 19); do
                echo "http://127.0.0.1:$P_FILTER/img/p$i.jpg"
            done
        done | split_cfg filter
        for d in $(seq "$MISS_DEVICES"); do
            for i in $(seq 0 19); do echo "acct nokeep$r-$d p$i thumb"; done
        done | sign_many "$W/keys/k.key" k \
            "http://127.0.0.1:$P_SNAP/nokeep/" 7200 | split_cfg nokeep
        # the limit runs between the two snapcache sides, which take
        # turns at going first: each side's ratio is of runs a second
        # apart, whichever way the machine's speed drifts
        if [ $((r % 2)) -eq 1 ]; then
            fill_run cold m.snap; limit_run; fill_run nokeep m.nokeep
        else
            fill_run nokeep m.nokeep; limit_run; fill_run cold m.snap
        fi
        t=$(time_it run4 filter)
        echo "$t" | awk '{ printf "%.1f\n", 100 / $1 }' >> "$W/m.filter"
        echo "   round $r: snapcache $(tail -1 "$W/m.snap" | cut -d' ' -f1)" \
             "(keep_original off $(tail -1 "$W/m.nokeep" | cut -d' ' -f1))," \
             "image_filter $(tail -1 "$W/m.filter")," \
             "libvips in-process $(tail -1 "$W/m.limit" 2>/dev/null \
                 | cut -d' ' -f1) images/s;" \
             "CPU per image: snapcache $(tail -1 "$W/m.snap" | cut -d' ' -f2)" \
             "ms (keep_original off $(tail -1 "$W/m.nokeep" | cut -d' ' -f2)" \
             "ms), libvips $(tail -1 "$W/m.limit" 2>/dev/null \
                 | cut -d' ' -f2) ms"
    done
    S=$(cut -d' ' -f1 "$W/m.snap" | median); F=$(median < "$W/m.filter")
    L=$(cut -d' ' -f1 "$W/m.limit" | median)
    echo "   medians: snapcache $S, image_filter $F, libvips in-process" \
         "(2 threads, the limit) $L images/s"
    if [ -s "$W/m.limit" ]; then
        R=$(paste -d' ' "$W/m.snap" "$W/m.limit" | awk '{ print $1 / $3 }' \
            | median)
        C=$(paste -d' ' "$W/m.snap" "$W/m.limit" | awk '{ print $4 / $2 }' \
            | median)
        awk -v r="$R" -v c="$C" -v s="$S" -v l="$L" 'BEGIN {
            printf "   ratio snapcache/limit %.2fx (median of the rounds;" \
                " of the medians %.2fx): goal >= 0.95x %s\n", r, s / l,
                (r >= 0.95 ? "met" : "NOT met");
            printf "   CPU per image, limit/snapcache %.2fx (1.0: the" \
                " serving path costs no CPU beyond libvips)\n", c }'
        R=$(paste -d' ' "$W/m.nokeep" "$W/m.limit" \
            | awk '{ print $1 / $3 }' | median)
        C=$(paste -d' ' "$W/m.nokeep" "$W/m.limit" \
            | awk '{ print $4 / $2 }' | median)
        awk -v r="$R" -v c="$C" 'BEGIN {
            printf "   with snapcache_keep_original off: snapcache/limit" \
                " %.2fx, CPU per image limit/snapcache %.2fx\n", r, c }'
    else
        echo "   ratio snapcache/limit: not measured (no bench_transcode)"
    fi
    awk -v s="$S" -v f="$F" 'BEGIN {
        printf "   ratio snapcache/image_filter %.2fx\n", s / f }'
    echo "   failed fills: $(grep -c 'fill failed' "$W/logs/error.log" || true)"
fi

# ---------------------------------------------------- four rungs at once

# every rung of a snapshot, largest first as a display stepping down asks
# for them: one fill that makes the rungs below from the same decode,
# against four separate fills (snapcache_fill_below off), 4 clients
if has rungs; then
    echo "== all four rungs of one snapshot: one fill against four"
    for d in 0 1 2 3 4; do for i in 0 1 2 3; do for v in full hd sd thumb; do
        echo "acct rb$d p$i $v"
    done; done; done | sign_many "$W/keys/k.key" k \
        "http://127.0.0.1:$P_SNAP/snap/" 7200 | awk -v w="$W" '{
        f = w "/below" (int((NR - 1) / 4) % 4) ".cfg";
        print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
    for d in 0 1 2 3 4; do for i in 0 1 2 3; do for v in full hd sd thumb; do
        echo "acct ra$d p$i $v"
    done; done; done | sign_many "$W/keys/k.key" k \
        "http://127.0.0.1:$P_SNAP/alone/" 7200 | awk -v w="$W" '{
        f = w "/alone" (int((NR - 1) / 4) % 4) ".cfg";
        print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
    T_BELOW=$(time_it run4 below)
    T_ALONE=$(time_it run4 alone)
    echo "$T_BELOW $T_ALONE" | awk '{
        printf "   one fill, rungs below from its decode  %.1f images/s\n", 80 / $1;
        printf "   four separate fills                      %.1f images/s\n", 80 / $2;
        printf "   ratio %.2fx\n", $2 / $1 }'
fi

# ---------------------------------------------------------------- memory

# anonymous memory only: pages of the LMDB map that a worker has read are
# file-backed and shared, and count in RSS without being the worker's own
rss() {
    for p in $(pgrep -P "$(cat "$W/nginx.pid")"); do
        awk '/^RssAnon/ { print $2 }' "/proc/$p/status"
    done | awk '{ s += $1 } END { print s }'
}
misses() {  # from to: two curl processes, each fetching half the URLs
    for i in $(seq "$1" "$2"); do echo "acct cam$((i % 50)) m$i-p$((i % 20)) thumb"; done \
        | sign_many "$W/keys/k.key" k "http://127.0.0.1:$P_SNAP/snap/" 7200 \
        | awk -v w="$W" '{
            f = w "/m" (NR % 2) ".cfg";
            print "url = \"" $0 "\"\noutput = \"/dev/null\"" > f }'
    curl -s -K "$W/m0.cfg" & curl -s -K "$W/m1.cfg"; wait
}
if has memory; then
    echo "== worker RSS over $MISSES misses (distinct snapshot ids, 2 clients)"
    misses 0 999
    RSS1=$(rss)
    echo "   after 1k misses:  ${RSS1} KB anonymous RSS (2 workers)"
    misses 1000 $((MISSES - 1))
    RSS10=$(rss)
    echo "   after ${MISSES} misses: ${RSS10} KB anonymous RSS (2 workers)"
    awk -v a="$RSS1" -v b="$RSS10" 'BEGIN { printf "   growth %.1f%%\n", (b - a) * 100 / a }'
    echo "   failed fills: $(grep -c 'fill failed' "$W/logs/error.log" || true)"
fi
