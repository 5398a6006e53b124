# SPDX-License-Identifier: BSD-2-Clause
# Shared by the bench scripts: free ports, timing, and the originals.

port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

time_it() {  # command...: prints seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# prepare_photos DIR: 20 real photographs from Debian's wallpaper packages,
# re-encoded to 1920x1080 JPEG q90 (a camera snapshot) as DIR/p0..p19.jpg;
# mirrored copies fill up if the packages ship fewer than 20
prepare_photos() {
    local dir=$1 n=0 i=0 f
    echo "== preparing 20 real photographs as 1920x1080 JPEG (q90)"
    mkdir -p "$dir"
    for f in /usr/share/backgrounds/mate/nature/*.jpg \
             /usr/share/backgrounds/*.jpg /usr/share/backgrounds/*/*.jpg; do
        [ -f "$f" ] || continue
        [ $n -ge 20 ] && break
        vipsthumbnail "$f" --size 1920x1080 --smartcrop centre \
            -o "$dir/p$n.jpg[Q=90,strip]" 2>/dev/null || continue
        n=$((n + 1))
    done
    if [ $n -eq 0 ]; then
        echo "no photographs: run make deps-bench" >&2
        return 1
    fi
    while [ $n -lt 20 ]; do
        vips flip "$dir/p$i.jpg" "$dir/p$n.jpg[Q=90]" horizontal
        n=$((n + 1)); i=$((i + 1))
    done
    echo "   $(ls "$dir"/p*.jpg | wc -l) originals, $(du -sh "$dir" | cut -f1)"
}

# sign_many KEYFILE KID BASE TTL: one signed URL per line of stdin,
# "account device snapshot variant" (max= and v= both that variant), as
# BASE/account/device/snapshot?exp=..&kid=..&max=..&sig=..&v=..; the
# scheme of docs/signing.md, in one process for thousands of URLs
sign_many() {
    python3 -c '
import base64, hashlib, hmac, sys, time
keyfile, kid, base, ttl = sys.argv[1:5]
key = bytes.fromhex(open(keyfile).read().strip())
exp = str(int(time.time()) + int(ttl))
for line in sys.stdin:
    a, d, s, v = line.split()
    msg = "\n".join(["snapcache1", kid, exp, a, d, s, v]).encode()
    sig = base64.urlsafe_b64encode(
        hmac.new(key, msg, hashlib.sha256).digest()).rstrip(b"=").decode()
    print(f"{base}{a}/{d}/{s}?exp={exp}&kid={kid}&max={v}&sig={sig}&v={v}")
' "$@"
}

# median of the numbers on stdin, one a line
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2];
        else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# self_signed DIR: DIR/cert.pem and DIR/key.pem, ECDSA P-256, for
# 127.0.0.1; the same certificate for every server of a bench
self_signed() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 2 -subj /CN=127.0.0.1 -keyout "$1/key.pem" \
        -out "$1/cert.pem" 2>/dev/null
}
