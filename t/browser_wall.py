#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Drives the camera wall in headless Chromium for t/browser.t.

It only observes and records; t/browser.t judges.  Steps:

  1. load the page; wait until every tile named by --good shows an image
     (or --deadline passes); sample every tile;
  2. wait until each of those tiles has shown a newer image; sample;
  3. replace the grants list with --next-list (one rename), wait until the
     tile --fail-id reports an error; sample; take a screenshot.

A sample records, per tile, its state, whether an image is on screen, the
texts it shows, and the pixels of that image as the page rendered it: the
<img> drawn into a canvas, saved as PNG for the owner-marker decoder.

The result is JSON on --out/result.json.  Run with Debian's python3,
chromium, chromium-driver and python3-selenium.
"""

import argparse
import base64
import json
import os
import re
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Every tile as the page shows it.  With pixels, each image on screen is
# drawn into a canvas at its own size (at most 640 wide) and read back.
SAMPLE_JS = """
const pixels = arguments[0];
return [...document.querySelectorAll('.tile')].map((t) => {
    const img = t.querySelector('img.snap');
    const box = img.getBoundingClientRect();
    const r = {
        id: t.dataset.id,
        state: t.dataset.state,
        shown: !img.hidden && img.complete && img.naturalWidth > 0
               && box.width > 0 && box.height > 0
               && getComputedStyle(img).display !== 'none',
        src: img.hidden ? '' : img.currentSrc,
        name: t.querySelector('.name').textContent,
        meta: t.querySelector('.meta').innerText,
        cache: t.querySelector('.meta .cache').textContent,
        variant: t.querySelector('.meta .variant').textContent,
        bytes: t.querySelector('.meta .bytes').textContent,
        time: t.querySelector('.meta .time').textContent,
        adapt: t.querySelector('.meta .adapt').textContent,
        stepped_down: t.dataset.adapt === 'down',
        status: t.querySelector('.status').textContent,
        notice: t.querySelector('.notice').textContent,
        width: img.naturalWidth,
        height: img.naturalHeight,
        png: null,
    };
    if (pixels && r.shown) {
        const scale = Math.min(1, 640 / img.naturalWidth);
        const c = document.createElement('canvas');
        c.width = Math.round(img.naturalWidth * scale);
        c.height = Math.round(img.naturalHeight * scale);
        c.getContext('2d').drawImage(img, 0, 0, c.width, c.height);
        r.png = c.toDataURL('image/png');
    }
    return r;
});
"""


def sample(driver, out, name, pixels=True):
    tiles = driver.execute_script(SAMPLE_JS, pixels)
    for t in tiles:
        png = t.pop("png")
        t["png"] = None
        if png:
            path = os.path.join(
                out, "%s-%s.png" % (name, re.sub(r"[^A-Za-z0-9_-]", "_", t["id"])))
            with open(path, "wb") as f:
                f.write(base64.b64decode(png.split(",", 1)[1]))
            t["png"] = path
    return {"at": time.time(), "tiles": tiles}


def open_browser(profile, window="1400,1400"):
    """Headless Chromium with a fresh profile in the directory profile."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS + ["--window-size=" + window,
                                  "--user-data-dir=" + profile]:
        opts.add_argument(flag)

    driver = webdriver.Chrome(
        service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_script_timeout(30)
    return driver


# What each tile said of the bytes of an image it showed, whenever a
# poll saw it: a refresh answered 304 shows "304 not modified" instead.
BYTES_SEEN = {}


def wait_for(driver, deadline, done):
    """Polls quick samples (no pixels) until done(tiles) or the deadline;
    returns the seconds waited, or None."""
    start = time.time()
    while time.time() < start + deadline:
        tiles = {t["id"]: t for t in driver.execute_script(SAMPLE_JS, False)}
        for i, t in tiles.items():
            if t["shown"] and re.search(r"\d kB", t["bytes"] or ""):
                BYTES_SEEN.setdefault(i, t["bytes"])
        if done(tiles):
            return time.time() - start
        time.sleep(0.25)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--good", required=True, help="comma-separated tile ids")
    ap.add_argument("--list", required=True, help="the grants list served")
    ap.add_argument("--next-list", required=True)
    ap.add_argument("--fail-id", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--deadline", type=float, default=30)
    a = ap.parse_args()

    good = a.good.split(",")
    result = {"steps": {}}
    profile = tempfile.mkdtemp(prefix="snapcache-chromium-")

    driver = None
    try:
        driver = open_browser(profile)
        driver.get(a.url)
        result["title"] = driver.title

        # 1. every good tile shows an image
        result["steps"]["first_image_s"] = wait_for(
            driver, a.deadline,
            lambda ts: all(g in ts and ts[g]["shown"] for g in good))
        result["first"] = sample(driver, a.out, "first")
        first_src = {t["id"]: t["src"] for t in result["first"]["tiles"]}

        # 2. every good tile shows a newer image
        result["steps"]["refresh_s"] = wait_for(
            driver, a.deadline,
            lambda ts: all(g in ts and ts[g]["shown"]
                           and ts[g]["src"] != first_src.get(g) for g in good))
        result["second"] = sample(driver, a.out, "second")

        # 3. the backend replaces one camera's grant with a dead one
        tmp = a.list + ".next"
        shutil.copyfile(a.next_list, tmp)
        os.rename(tmp, a.list)
        result["steps"]["fail_s"] = wait_for(
            driver, a.deadline,
            lambda ts: a.fail_id in ts and ts[a.fail_id]["state"] == "error")
        result["third"] = sample(driver, a.out, "third")

        result["bytes_seen"] = BYTES_SEEN
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
