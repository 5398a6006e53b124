#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Drives the camera wall on a shaped link, for t/browser_weak.t.

Run inside the client's network namespace.  It only observes and records;
t/browser_weak.t judges.  Before the page's own script runs, a logger is
put in the page that notes every refresh of every tile (each time the
page rewrites a tile's line of figures): the rung, the reason, the bytes,
the time to image, HIT or MISS, and which image is on screen.  Then:

  1. load the page; wait until every tile named by --good has shown
     --images new images after its first, or --deadline passes;
  2. sample every tile with the pixels it shows (as t/browser_wall.py
     does), take a screenshot.

The result is JSON on --out/result.json: the log, the sample, and the
browser's console errors.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_wall import open_browser, sample  # noqa: E402

# Notes each tile's figures whenever the page rewrites them: one entry per
# refresh, since the page sets them all at once after each response.
LOGGER_JS = """
window.__wallLog = [];
document.addEventListener('DOMContentLoaded', () => {
    const note = (tile) => {
        const img = tile.querySelector('img.snap');
        const text = (sel) => tile.querySelector(sel).textContent;
        window.__wallLog.push({
            id: tile.dataset.id,
            at: performance.now(),
            state: tile.dataset.state,
            src: img.hidden ? '' : img.getAttribute('src') || '',
            cache: text('.meta .cache'),
            variant: text('.meta .variant'),
            bytes: text('.meta .bytes'),
            time: text('.meta .time'),
            adapt: text('.meta .adapt'),
            status: text('.status'),
        });
    };
    new MutationObserver((records) => {
        const seen = new Set();
        for (const r of records) {
            const el = r.target.nodeType === Node.ELEMENT_NODE
                       ? r.target : r.target.parentElement;
            const tile = el && el.closest('.meta') && el.closest('.tile');
            if (tile && !seen.has(tile)) {
                seen.add(tile);
                note(tile);
            }
        }
    }).observe(document.getElementById('wall'),
               { childList: true, characterData: true, subtree: true });
});
"""


def new_images(log, tile_id):
    """How many images the tile has shown after its first one."""
    srcs = []
    for e in log:
        if e["id"] == tile_id and e["src"] and e["src"] not in srcs:
            srcs.append(e["src"])
    return max(0, len(srcs) - 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--good", required=True, help="comma-separated tile ids")
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--deadline", type=float, default=75)
    a = ap.parse_args()

    good = a.good.split(",")
    result = {"steps": {}}
    profile = tempfile.mkdtemp(prefix="snapcache-chromium-")

    driver = None
    try:
        driver = open_browser(profile, window="1400,600")
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": LOGGER_JS})
        start = time.time()
        driver.get(a.url)
        result["title"] = driver.title

        log = []
        while time.time() < start + a.deadline:
            log = driver.execute_script("return window.__wallLog || [];")
            if all(new_images(log, g) >= a.images for g in good):
                result["steps"]["watched_s"] = time.time() - start
                break
            time.sleep(0.5)

        result["sample"] = sample(driver, a.out, "last")
        result["log"] = driver.execute_script("return window.__wallLog;")

        driver.save_screenshot(a.screenshot)
        result["screenshot"] = a.screenshot
        result["console"] = [
            e for e in driver.get_log("browser") if e.get("level") == "SEVERE"
        ]

    except Exception as e:  # reported to the test, which fails on it
        result["error"] = "%s: %s" % (type(e).__name__, e)

    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    with open(os.path.join(a.out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)

    return 0


if __name__ == "__main__":
    sys.exit(main())
