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
