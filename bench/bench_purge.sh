#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Purge benchmark, against the targets, measured in one run:
#
#   device    purging one device's 10k records (25 KB each) answers
#             within 50 ms: three devices one after the other, on a store
#             nothing else writes to, the answer time as the client sees
#             it and the server's own figure (generation bump to sync),
#             and their median
#   snapshot  at least 1,000 snapshot purges per second per node: one
#             scope per request over 8 connections (wrk, 3 s), and 256
#             per request through `snapcache purge --stdin`; every purge
#             removes a record (a purge that finds nothing needs no sync)
#   hits      hit p99 while purges run stays within 2x of the idle p99:
#             wrk on 1000 cached thumbnails, idle, then while two device
#             purges of 10k records and a stream of about 500 snapshot
#             purges/s run; three such pairs, alternating, and the median
#             of the three ratios, because the machine is shared
#
# The store is filled through cache/ before nginx opens it (the bodies
# are bytes, not images: a hit serves them without decoding); it takes
# about 4 GB of disk.  Prints figures and ratios; asserts nothing.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
B=${SNAPCACHE_BUILD:-$ROOT/build}
W=$B/bench-purge
DUR=${DUR:-8}
PAIRS=${PAIRS:-3}
SNAPS=${SNAPS:-100000}
FILL=$B/bin/bench_purge
QUIET=3
DEVICES=$((QUIET + 2 * PAIRS))

rm -rf "$W"
mkdir -p "$W"/{keys,logs,tmp,store}
chmod 700 "$W/store"
P=$(port)

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/k.key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/admin.token"
chmod 600 "$W/keys/k.key" "$W/keys/admin.token"
TOKEN=$(cat "$W/keys/admin.token")

# ------------------------------------------------------------ the store

echo "== filling the store through cache/ (thumb rung, 320/q50, JPEG)"
t=$("$FILL" "$W/store" 4096 acct-h cam-h 1000 25000 320 50)
echo "   1000 hot records of 25 KB (the hits): ${t}s"
for r in $(seq 1 "$DEVICES"); do
    t=$("$FILL" "$W/store" 4096 acct-p "dev-$r" 10000 25000 320 50)
    echo "   device dev-$r, 10000 records of 25 KB: ${t}s"
done
t=$("$FILL" "$W/store" 4096 acct-s cam-s "$SNAPS" 4000 320 50)
echo "   $SNAPS snapshots of 4 KB (snapshot purges): ${t}s"
sync
echo "   data.mdb: $(du -sh "$W/store/data.mdb" | cut -f1), synced"

cat > "$W/nginx.conf" <<EOF
load_module $B/nginx/ngx_http_snapcache_module.so;
worker_processes 2;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
thread_pool snapcache threads=2 max_queue=4096;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $W/tmp/body;
    proxy_temp_path $W/tmp/proxy;
    fastcgi_temp_path $W/tmp/fastcgi;
    uwsgi_temp_path $W/tmp/uwsgi;
    scgi_temp_path $W/tmp/scgi;

    snapcache_store $W/store size=4g;
    snapcache_sign_key k $W/keys/k.key;
    snapcache_url_max_lifetime 2h;

    server {
        listen 127.0.0.1:$P;
        snapcache_origin /_origin;
        snapcache_thread_pool snapcache;
        location /snap/ { snapcache; }
        location /_origin/ { internal; return 404; }
        location /_admin/ {
            allow 127.0.0.1;
            deny all;
            snapcache_admin;
            snapcache_admin_token $W/keys/admin.token;
        }
    }
}
EOF

/usr/sbin/nginx -p "$W/" -c "$W/nginx.conf"
trap '/usr/sbin/nginx -p "$W/" -c "$W/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 0.5

for i in $(seq 1 1000); do
    "$B/snapcache" sign --key-file "$W/keys/k.key" --kid k --account acct-h \
        --device cam-h --snapshot "s$i" --ttl 1h --max thumb --base /snap/ \
        | sed 's/$/\&v=thumb/'
done > "$W/hot.txt"
x=$(curl -s -o /dev/null -D - "http://127.0.0.1:$P$(head -1 "$W/hot.txt")" \
    | awk 'tolower($1) == "x-snapcache:" { print $2 }' | tr -d '\r')
echo "   a hot URL answers X-Snapcache: $x"

cat > "$W/hits.lua" <<'EOF'
local urls = {}
for line in io.lines(os.getenv("HOT")) do urls[#urls + 1] = line end
local i = 0
request = function()
    i = i % #urls + 1
    return wrk.format("GET", urls[i])
end
EOF

# snapshots from START on, one per request; PACE=ms between the requests
# of each connection
cat > "$W/purge.lua" <<'EOF'
local n = tonumber(os.getenv("START")) - 1
local headers = {
    ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
    ["Content-Type"] = "application/json"
}
request = function()
    n = n + 1
    return wrk.format("POST", "/_admin/purge", headers, string.format(
        '{"account":"acct-s","device":"cam-s","snapshot":"s%d"}', n))
end
local pace = tonumber(os.getenv("PACE") or "0")
if pace > 0 then
    delay = function() return pace end
end
EOF

# wrk's latency figures, in ms
to_ms() {
    awk '{ v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0;
           else if (v ~ /s$/) v = v * 1000; printf "%.3f", v }'
}
wrk_field() {  # output percentile
    echo "$1" | awk -v p="$2" '$1 == p { print $2 }' | to_ms
}
metric() {  # name
    curl -s -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$P/_admin/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

hits_run() {  # label: wrk on the hot set, prints p99 in ms
    local out
    out=$(HOT="$W/hot.txt" wrk -t1 -c16 -d"${DUR}s" --latency -s "$W/hits.lua" \
          "http://127.0.0.1:$P")
    printf '   %-16s %9s req/s   p50 %7s ms   p99 %7s ms   non-2xx %s\n' \
        "$1" "$(echo "$out" | awk '/Requests\/sec/ { print $2 }')" \
        "$(wrk_field "$out" 50%)" "$(wrk_field "$out" 99%)" \
        "$(echo "$out" | awk '/Non-2xx/ { print $NF }' | grep . || echo 0)" >&2
    wrk_field "$out" 99%
}

purge_device() {  # device: prints "client_ms server_ms records"
    curl -s -o "$W/purge.json" -w '%{time_total}' -X POST \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data "{\"account\":\"acct-p\",\"device\":\"$1\"}" \
        "http://127.0.0.1:$P/_admin/purge" | awk '{ printf "%.1f ", $1 * 1000 }'
    sed -e 's/.*"records":\([0-9]*\),"generation".*"seconds":\([0-9.]*\).*/\2 \1/' \
        "$W/purge.json" | awk '{ printf "%.1f %s\n", $1 * 1000, $2 }'
}

# ------------------------------------------------------------ device purge

echo "== purging one device: 10000 records of 25 KB, nothing else running;"
echo "   $QUIET devices one after the other (a worker's first purge also maps"
echo "   the pages it walks)"
D_ALL=()
for r in $(seq 1 "$QUIET"); do
    read -r ms srv rec <<< "$(purge_device "dev-$r")"
    echo "   dev-$r: $rec records, answered in $ms ms (server: $srv ms)"
    D_ALL+=("$ms")
done
D_MS=$(printf '%s\n' "${D_ALL[@]}" | sort -n | awk '{ a[NR] = $1 }
    END { print a[int((NR + 1) / 2)] }')

# --------------------------------------------------------- snapshot purges

echo "== snapshot purges: one scope per request, wrk -t1 -c8 -d3s"
R0=$(metric snapcache_purged_records_total)
out=$(START=1 TOKEN=$TOKEN wrk -t1 -c8 -d3s --latency -s "$W/purge.lua" \
      "http://127.0.0.1:$P")
S_N=$(echo "$out" | awk '/requests in/ { print $1 }')
S_RPS=$(echo "$out" | awk '/Requests\/sec/ { printf "%.0f", $2 }')
R1=$(metric snapcache_purged_records_total)
echo "   $S_N purges, $S_RPS purges/s, p50 $(wrk_field "$out" 50%) ms," \
     "p99 $(wrk_field "$out" 99%) ms; $((R1 - R0)) records removed" \
     "(non-2xx: $(echo "$out" | awk '/Non-2xx/ { print $NF }' | grep . || echo 0))"
if [ $((R1 - R0)) -lt "$S_N" ]; then
    echo "   (NOT VALID: purges ran out of snapshots; raise SNAPS)"
fi
# past the requests wrk had in flight when it stopped counting
NEXT=$(( (S_N > R1 - R0 ? S_N : R1 - R0) + 16 + 1 ))

echo "== snapshot purges: 256 per request, snapcache purge --stdin"
N_BATCH=5120
seq "$NEXT" $((NEXT + N_BATCH - 1)) | sed 's/^/acct-s cam-s s/' > "$W/scopes.txt"
batch() {
    "$B/snapcache" purge --node "http://127.0.0.1:$P/_admin" \
        --token-file "$W/keys/admin.token" --stdin < "$W/scopes.txt" \
        > "$W/batch.out"
}
T_BATCH=$(time_it batch)
B_RPS=$(awk -v n="$N_BATCH" -v t="$T_BATCH" 'BEGIN { printf "%.0f", n / t }')
echo "   $N_BATCH scopes in ${T_BATCH}s: $B_RPS purges/s;" \
     "$(cut -d' ' -f2,3 "$W/batch.out")"
if ! grep -q "records=$N_BATCH " "$W/batch.out"; then
    echo "   (NOT VALID: not every scope removed a record; raise SNAPS)"
fi
NEXT=$((NEXT + N_BATCH))

# ------------------------------------------------------- hits during purges

echo "== hits, idle and while purges run, $PAIRS pairs: wrk -t1 -c16 -d${DUR}s"
echo "   over 1000 cached thumbnails; the purges: two devices of 10k records"
echo "   and a stream of snapshot purges (wrk -c2, 4 ms apart)"
RATIOS=()
dev=$((QUIET + 1))
for pair in $(seq 1 "$PAIRS"); do
    idle=$(hits_run "idle")
    (
        sleep 1
        for k in 1 2; do
            read -r ms srv rec <<< "$(purge_device "dev-$dev")"
            echo "   dev-$dev: $rec records, answered in $ms ms (server: $srv ms)" >&2
            dev=$((dev + 1))
            sleep "$(awk -v d="$DUR" 'BEGIN { printf "%.2f", (d - 2) / 2 }')"
        done
    ) &
    DEV_PID=$!
    PACE=4 START=$NEXT TOKEN=$TOKEN wrk -t1 -c2 -d"${DUR}s" -s "$W/purge.lua" \
        "http://127.0.0.1:$P" > "$W/stream.out" &
    STREAM_PID=$!
    busy=$(hits_run "during purges")
    wait "$DEV_PID" "$STREAM_PID"
    n=$(awk '/requests in/ { print $1 }' "$W/stream.out")
    echo "   snapshot purge stream: $(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$W/stream.out") purges/s"
    NEXT=$((NEXT + n))
    dev=$((dev + 2))
    r=$(awk -v i="$idle" -v b="$busy" 'BEGIN { printf "%.2f", b / i }')
    echo "   pair $pair: hit p99 idle $idle ms, during purges $busy ms: ${r}x"
    RATIOS+=("$r")
done
H_RATIO=$(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ a[NR] = $1 }
    END { print a[int((NR + 1) / 2)] }')

# ------------------------------------------------------------------ summary

echo "== summary (targets: device purge <= 50 ms, >= 1000 snapshot purges/s,"
echo "   hit p99 during purges <= 2x idle)"
awk -v d="$D_MS" -v s="$S_RPS" -v b="$B_RPS" -v h="$H_RATIO" 'BEGIN {
    printf "   purge one device, 10k records (median): %5.1f ms   ratio to 50 ms    %.2fx\n", d, d / 50;
    printf "   snapshot purges, 1 per request:  %8.0f /s   ratio to 1000/s   %.2fx\n", s, s / 1000;
    printf "   snapshot purges, 256 per request:%8.0f /s   ratio to 1000/s   %.2fx\n", b, b / 1000;
    printf "   hit p99 during purges / idle (median of the pairs):          %.2fx\n", h }'
echo "   purges in all: $(metric snapcache_purges_begun_total)," \
     "records removed: $(metric snapcache_purged_records_total)," \
     "errors in the log: $(grep -c '\[error\]\|\[crit\]\|\[alert\]' "$W/logs/error.log" || true)"
