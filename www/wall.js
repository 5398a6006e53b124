/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The camera wall: one tile per camera, each refreshing its camera's
 * newest snapshot on its own, the way a smart display or a dashboard
 * does.
 *
 * The page holds no key.  It reads a list of device grants
 * (grants/<name>.json) that the camera company's backend hands its app
 * (in the demo, tools/run-demo writes it) and asks snapcache for each
 * camera with its own grant.  Every tile fetches on its own, keeps its
 * own last good image as its own object URL, and never shows a byte of
 * another tile's response.
 *
 * The list:
 *   { "refresh_s": 2, "grants_refresh_s": 60,
 *     "cameras": [ { "id": "acct-1/cam-front", "label": "Front door",
 *                    "url": "/snap/acct-1/cam-front/latest?exp=..." } ] }
 * Each url is a path on this origin; anything else is refused.
 */

'use strict';

(() => {
    /* the response header that says why the server chose the rung,
       shown when the server sends it */
    const ADAPT_HEADER = 'X-Snapcache-Adapt';

    const FETCH_TIMEOUT_MS = 15000;
    const MAX_BACKOFF_MS = 30000;
    const GRANTS_RETRY_MS = 5000;

    /* what each reason in ADAPT_HEADER means, for the tile's tooltip;
       "link" and "hold" mean a rung below the one asked for, chosen so
       that the image arrives in time on this link */
    const ADAPT_REASONS = {
        ceiling: 'the link carries the rung asked for',
        link: 'stepped down: the rung asked for would not arrive in time '
              + 'on this link',
        hold: 'stepped down: the link may carry more now, and the server '
              + 'waits to be sure before it steps up',
        hint: 'chosen from the browser\'s network hints, before any '
              + 'measurement',
        'save-data': 'the browser asked to save data',
        unknown: 'nothing is known of this link yet: the rung asked for',
        pinned: 'the lowest rung was asked for',
        off: 'the server does not adapt',
    };
    const STEPPED_DOWN = ['link', 'hold'];

    const REASONS = {
        expired: 'grant expired',
        signature: 'signature refused',
        key: 'unknown key',
        malformed: 'malformed URL',
        variant: 'unknown variant',
        method: 'method refused',
    };

    const wall = document.getElementById('wall');
    const summary = document.getElementById('summary');
    const template = document.getElementById('tile-template');

    const tiles = new Map();
    let refreshMs = 2000;
    let grantsRefreshMs = 60000;
    let grantsTimer = 0;
    let grantsLoadedAt = null;
    let grantsError = '';

    function listName() {
        const name = new URLSearchParams(location.search).get('cameras');
        return name && /^[A-Za-z0-9_-]{1,64}$/.test(name) ? name : 'cameras';
    }

    const listUrl = `grants/${listName()}.json`;

    function clock(date) {
        return date.toLocaleTimeString([], { hour12: false });
    }

    function formatBytes(n) {
        if (n < 1000) {
            return `${n} B`;
        }
        return n < 1e6 ? `${(n / 1e3).toFixed(1)} kB`
                       : `${(n / 1e6).toFixed(2)} MB`;
    }

    /* A grant's URL, only when it is a /snap/ path on this origin. */
    function grantUrl(raw) {
        let url;

        try {
            url = new URL(raw, location.href);
        } catch (e) {
            return null;
        }

        if (url.origin !== location.origin
            || !/^\/snap\/[^/]+\/[^/]+\/[^/]+$/.test(url.pathname))
        {
            return null;
        }

        return url.href;
    }

    /* The one-word reason snapcache puts in a refusal's body, if any. */
    async function refusalReason(res) {
        let text = '';

        try {
            text = (await res.text()).slice(0, 64).trim();
        } catch (e) {
            return '';
        }

        return Object.prototype.hasOwnProperty.call(REASONS, text)
               ? REASONS[text] : '';
    }

    class Tile {
        constructor(id) {
            this.id = id;
            this.url = null;
            this.etag = null;
            this.objectUrl = null;
            this.shownAt = null;
            this.failures = 0;
            this.timer = 0;
            this.generation = 0;
            this.gone = false;

            this.el = template.content.firstElementChild.cloneNode(true);
            this.el.dataset.id = id;
            this.img = this.el.querySelector('.snap');
            this.notice = this.el.querySelector('.notice');
            this.status = this.el.querySelector('.status');
            this.name = this.el.querySelector('.name');
            this.meta = {
                cache: this.el.querySelector('.cache'),
                variant: this.el.querySelector('.variant'),
                bytes: this.el.querySelector('.bytes'),
                time: this.el.querySelector('.time'),
                adapt: this.el.querySelector('.adapt'),
            };
        }

        /* A new grant for this camera: the next refresh uses it. */
        setGrant(url, label) {
            this.name.textContent = label;
            this.img.alt = `${label}, newest snapshot`;

            if (url === this.url) {
                return;
            }

            this.url = url;
            this.etag = null;
            this.failures = 0;
            this.generation++;
            this.schedule(0);
        }

        schedule(delay) {
            clearTimeout(this.timer);
            this.timer = setTimeout(() => this.refresh(), delay);
        }

        nextDelay() {
            const base = this.failures === 0
                ? refreshMs
                : Math.min(refreshMs * 2 ** this.failures, MAX_BACKOFF_MS);

            /* spread the tiles out, so they do not all ask at once */
            return base * (0.9 + Math.random() * 0.2);
        }

        async refresh() {
            const generation = this.generation;
            const url = this.url;
            const started = performance.now();
            const abort = new AbortController();
            const timeout = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
            const headers = {};
            let outcome;

            if (this.etag) {
                headers['If-None-Match'] = this.etag;
            }

            try {
                const res = await fetch(url, {
                    cache: 'no-store',
                    credentials: 'omit',
                    referrerPolicy: 'no-referrer',
                    headers,
                    signal: abort.signal,
                });
                outcome = await this.receive(res, started);

            } catch (e) {
                outcome = {
                    error: e.name === 'AbortError' ? 'timed out'
                                                   : 'network error',
                };

            } finally {
                clearTimeout(timeout);
            }

            /* a response for an older grant, or for a removed tile, is
               dropped, never shown */
            if (this.gone || generation !== this.generation) {
                if (outcome.objectUrl) {
                    URL.revokeObjectURL(outcome.objectUrl);
                }
                return;
            }

            if (outcome.error) {
                this.showError(outcome);
            } else {
                this.showImage(outcome);
            }

            if (outcome.expired) {
                reloadGrantsSoon();
            }

            this.schedule(this.nextDelay());
        }

        /* Reads one response into an outcome, decoding any image fully
           before it can replace the one on screen. */
        async receive(res, started) {
            const h = res.headers;
            const outcome = {
                status: res.status,
                cache: h.get('X-Snapcache') || '',
                variant: h.get('X-Snapcache-Variant') || '',
                adapt: h.get(ADAPT_HEADER) || '',
            };

            if (res.status === 304) {
                outcome.unchanged = true;
                outcome.ms = performance.now() - started;
                return outcome;
            }

            if (!res.ok) {
                const reason = await refusalReason(res);
                outcome.error = reason ? `${res.status} ${reason}`
                                       : `HTTP ${res.status}`;
                outcome.expired = res.status === 403;
                return outcome;
            }

            const type = h.get('Content-Type') || '';
            if (!/^image\/(jpeg|webp|png|avif)$/.test(type)) {
                outcome.error = 'not an image';
                return outcome;
            }

            const blob = await res.blob();
            const objectUrl = URL.createObjectURL(blob);
            const probe = new Image();

            probe.src = objectUrl;

            try {
                await probe.decode();
            } catch (e) {
                URL.revokeObjectURL(objectUrl);
                outcome.error = 'undecodable image';
                return outcome;
            }

            outcome.objectUrl = objectUrl;
            outcome.bytes = blob.size;
            outcome.etag = h.get('ETag');
            outcome.ms = performance.now() - started;
            return outcome;
        }

        showImage(o) {
            this.failures = 0;
            this.el.dataset.state = 'ok';

            if (!o.unchanged) {
                const old = this.objectUrl;

                this.objectUrl = o.objectUrl;
                this.etag = o.etag;
                this.img.src = o.objectUrl;
                this.img.hidden = false;
                this.el.dataset.shown = '1';
                this.shownAt = new Date();

                if (old) {
                    URL.revokeObjectURL(old);
                }
            }

            this.setMeta(o);
            this.status.textContent = o.unchanged
                ? `unchanged since ${clock(this.shownAt)}`
                : `image from ${clock(this.shownAt)}`;
            this.notice.textContent = '';
        }

        /* The tile says what failed and keeps its last good image. */
        showError(o) {
            this.failures++;
            this.el.dataset.state = 'error';
            this.setMeta(o);

            if (this.shownAt) {
                this.status.textContent = `refresh failed: ${o.error}; `
                    + `showing the image from ${clock(this.shownAt)}`;
                this.notice.textContent = `⚠ ${o.error}`;
            } else {
                this.status.textContent = `no image: ${o.error}`;
                this.notice.textContent = `⚠ ${o.error}`;
            }
        }

        setMeta(o) {
            const m = this.meta;

            m.cache.textContent = o.cache || '';
            m.cache.dataset.value = o.cache || '';
            m.variant.textContent = o.variant || '';
            m.bytes.textContent = o.unchanged ? '304 not modified'
                : o.bytes !== undefined ? formatBytes(o.bytes) : '';
            m.time.textContent = o.ms !== undefined
                ? `${Math.round(o.ms)} ms` : '';
            m.adapt.textContent = o.adapt ? `adapt: ${o.adapt}` : '';
            m.adapt.hidden = !o.adapt;
            m.adapt.title = Object.prototype.hasOwnProperty.call(
                ADAPT_REASONS, o.adapt) ? ADAPT_REASONS[o.adapt]
                                        : 'why the server chose this rung';

            /* the rung and its reason stand out while the link holds
               the tile below the rung it asked for */
            this.el.dataset.adapt = STEPPED_DOWN.includes(o.adapt)
                                    ? 'down' : '';
        }

        remove() {
            this.gone = true;
            clearTimeout(this.timer);
            this.el.remove();

            if (this.objectUrl) {
                URL.revokeObjectURL(this.objectUrl);
            }
        }
    }

    function updateSummary() {
        const all = [...tiles.values()];
        const failing = all.filter((t) => t.el.dataset.state === 'error');
        let text = `${all.length} camera${all.length === 1 ? '' : 's'}, `
            + `each refreshed every ${refreshMs / 1000} s`;

        if (failing.length) {
            text += ` · ${failing.length} failing`;
        }
        if (grantsLoadedAt) {
            text += ` · grants from ${clock(grantsLoadedAt)}`;
        }
        if (grantsError) {
            text += ` · ${grantsError}`;
        }

        summary.textContent = text;
    }

    /* Applies a grants list: new tiles, new grants, removed cameras. */
    function applyGrants(list) {
        const seen = new Set();

        if (Number.isFinite(list.refresh_s) && list.refresh_s >= 0.5) {
            refreshMs = list.refresh_s * 1000;
        }
        if (Number.isFinite(list.grants_refresh_s)
            && list.grants_refresh_s >= 1)
        {
            grantsRefreshMs = list.grants_refresh_s * 1000;
        }

        for (const cam of Array.isArray(list.cameras) ? list.cameras : []) {
            const id = typeof cam.id === 'string' ? cam.id : '';
            const url = typeof cam.url === 'string' ? grantUrl(cam.url) : null;

            if (!id || !url || seen.has(id)) {
                continue;
            }

            seen.add(id);

            let tile = tiles.get(id);
            if (!tile) {
                tile = new Tile(id);
                tiles.set(id, tile);
                wall.append(tile.el);
            }

            tile.setGrant(url, typeof cam.label === 'string' && cam.label
                               ? cam.label : id);
        }

        for (const [id, tile] of tiles) {
            if (!seen.has(id)) {
                tile.remove();
                tiles.delete(id);
            }
        }
    }

    async function loadGrants() {
        clearTimeout(grantsTimer);

        try {
            const res = await fetch(listUrl, {
                cache: 'no-store',
                credentials: 'same-origin',
            });

            if (!res.ok) {
                throw new Error(`HTTP ${res.status}`);
            }

            applyGrants(await res.json());
            grantsLoadedAt = new Date();
            grantsError = '';

        } catch (e) {
            grantsError = `cannot read ${listUrl}: ${e.message}`;
        }

        updateSummary();
        grantsTimer = setTimeout(loadGrants,
                                 grantsError ? GRANTS_RETRY_MS
                                             : grantsRefreshMs);
    }

    /* A refused grant may have been replaced: ask for the list again,
       at most once every few seconds. */
    let grantsSoon = 0;
    function reloadGrantsSoon() {
        if (!grantsSoon) {
            grantsSoon = setTimeout(() => {
                grantsSoon = 0;
                loadGrants();
            }, GRANTS_RETRY_MS);
        }
    }

    setInterval(updateSummary, 1000);
    loadGrants();
})();
