# SPDX-License-Identifier: BSD-2-Clause
"""A display showing a wall of camera tiles, for t/weak_wall.t.

Reads one refresh per line on stdin, "URL FILE URL FILE ...", asks for
all of its tiles at once over HTTPS ("+MS" before a tile asks for it and
those after it MS milliseconds after the refresh began), and writes one
line back per refresh: for each tile "status variant reason ms bytes",
where ms runs from the start of the refresh to the tile's last byte.
With "h2" every tile shares one kept HTTP/2 connection; with "h1" they
come over a pool of kept HTTP/1.1 connections, one per tile at most.

usage: python3 weak_wall.py h2|h1 CA_FILE TILES
"""

import asyncio
import sys
import time

import httpx


async def tile(client, url, path, t0, delay_ms):
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    try:
        r = await client.get(url)
        body = r.content
    except httpx.HTTPError as e:
        sys.stderr.write("weak_wall: %s: %s\n" % (url.split("?")[0], e))
        return "0 - - 0 0"
    ms = int((time.monotonic() - t0) * 1000)
    with open(path, "wb") as f:
        f.write(body)
    return "%d %s %s %d %d" % (
        r.status_code, r.headers.get("x-snapcache-variant", "-"),
        r.headers.get("x-snapcache-adapt", "-"), ms, len(body))


async def main():
    mode, ca, tiles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limits = httpx.Limits(max_connections=tiles,
                          max_keepalive_connections=tiles,
                          keepalive_expiry=60)
    async with httpx.AsyncClient(http1=(mode == "h1"), http2=(mode == "h2"),
                                 verify=ca, limits=limits,
                                 timeout=30) as client:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            tiles, delay = [], 0
            words = line.split()
            while words:
                if words[0].startswith("+"):
                    delay = int(words.pop(0)[1:])
                    continue
                tiles.append((words[0], words[1], delay))
                words = words[2:]
            t0 = time.monotonic()
            got = await asyncio.gather(*[
                tile(client, url, path, t0, d) for url, path, d in tiles])
            sys.stdout.write(" | ".join(got) + "\n")
            sys.stdout.flush()


asyncio.run(main())
