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
     does), note how the page and every resource it fetched came (the
     protocol of each, from the performance timeline), take a
     screenshot.

Over HTTPS, --trust-spki names the server's key (base64 of the SHA-256
of its SubjectPublicKeyInfo, as openssl computes it from the
certificate): Chromium accepts a certificate it cannot chain to a root
only when it carries that key (--ignore-certificate-errors-spki-list,
which Chromium honours with a --user-data-dir of its own); every other
certificate error still stops the page.

The result is JSON on --out/result.json: the log, the sample, the
protocols, and the browser's console errors.
"""

import argparse
import base64
import binascii
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_wall import CHROMIUM_FLAGS, sample  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

# Notes each tile's figures whenever the page rewrites them: one entry per
# refresh, since the page sets them all at once after each response.
LOGGER_JS = """
window.__wallLog = [];
performance.setResourceTimingBufferSize(5000);
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


# How the page came, and every resource it fetched since: the protocol
# of each (nextHopProtocol: "h2", "http/1.1"), as the browser used it.
PROTOCOLS_JS = """
const nav = performance.getEntriesByType('navigation')[0];
return {
    location: location.protocol,
    secure: window.isSecureContext,
    navigation: nav ? nav.nextHopProtocol : null,
    resources: performance.getEntriesByType('resource').map((e) => ({
        url: e.name.split('?')[0],
        initiator: e.initiatorType,
        protocol: e.nextHopProtocol,
    })),
};
"""


def spki_list(value):
    """The --trust-spki value: base64 SHA-256 hashes, comma-separated."""
    for h in value.split(","):
        try:
            ok = len(base64.b64decode(h, validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(
                "not a base64 SHA-256 hash: %r" % h)
    return value


def open_browser(profile, window, flags):
    """Headless Chromium as t/browser_wall.py opens it (its flags, a
    fresh profile in the directory profile), with more flags."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS + ["--window-size=" + window,
                                  "--user-data-dir=" + profile] + flags:
        opts.add_argument(flag)

    driver = webdriver.Chrome(
        service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_script_timeout(30)
    return driver


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
    ap.add_argument("--trust-spki", type=spki_list,
                    help="the server key's base64 SHA-256 SPKI hash(es)")
    a = ap.parse_args()

    flags = []
    if a.trust_spki:
        flags.append("--ignore-certificate-errors-spki-list=" + a.trust_spki)

    good = a.good.split(",")
    result = {"steps": {}}
    profile = tempfile.mkdtemp(prefix="snapcache-chromium-")

    driver = None
    try:
        driver = open_browser(profile, "1400,600", flags)
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
        result["protocols"] = driver.execute_script(PROTOCOLS_JS)

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
