// The live orders page (www/) in headless Chromium against the real lighttpd
// + orders responder. Run: node --test --test-reporter=tap (see README.md).
// Each top-level test is one TAP line; they share one server and one browser
// and run in order.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  Server, Browser, HERE, REPO, sleep, isStream, isList, isDetail,
} from './harness.mjs';

const LIVE_MS = Number(process.env.ORDERS_LIVE_MS || 1000); // "within a second"
const OUT = path.join(HERE, 'out');

const server = new Server();
const browser = new Browser();
let page; // the first window
let page2; // the second window

// ------------------------------------------------------------------ helpers

const row = (id) => `#orders-body tr[data-id="${id}"]`;

async function open(p, hash = '') {
  await p.goto(`${server.origin}/${hash}`);
  await p.waitForSelector('#connection[data-state="live"]', { timeout: 5000 });
  await p.waitForSelector('#orders-body tr', { timeout: 5000 });
}

/** Waits until fn(arg) is true in the page; fails after ms. Returns the time it took. */
async function within(p, ms, fn, arg, what) {
  const t0 = Date.now();
  try {
    await p.waitForFunction(fn, arg, { timeout: ms, polling: 20 });
  } catch (err) {
    throw new Error(`not within ${ms} ms: ${what}`, { cause: err });
  }
  return Date.now() - t0;
}

const rowHas = ([id, attr, value]) => document.querySelector(`#orders-body tr[data-id="${id}"]`)?.dataset[attr] === value;
const detailHas = ([id, attr, value]) => {
  const body = document.getElementById('detail-body');
  return body.dataset.id === id && body.dataset[attr] === value;
};
const rowVersion = ([id, v]) => Number(document.querySelector(`#orders-body tr[data-id="${id}"]`)?.dataset.version) >= v;
const dbVersion = async (id) => Number(await server.sql(`SELECT version FROM orders WHERE id = '${id}'`));

async function select(p, id) {
  await p.evaluate((x) => { location.hash = x; }, id);
  await p.waitForFunction((x) => document.getElementById('detail-body').dataset.id === x, id, { timeout: 3000 });
}

async function visibleRowIds(p) {
  return p.$$eval('#orders-body tr', (trs) => trs.map((tr) => ({ id: tr.dataset.id, status: tr.dataset.status, version: Number(tr.dataset.version) })));
}

async function order(id) {
  const r = await server.curl('GET', `orders/${id}`);
  assert.equal(r.status, 200, `GET ${id}`);
  return r.body;
}

const head = async () => Number(await server.sql('SELECT max(id) FROM events'));

/** The page that holds the EventSource, of those given. */
async function leaderOf(pages) {
  const roles = await Promise.all(pages.map((p) => p.getAttribute('#connection', 'data-role')));
  const leaders = pages.filter((_, i) => roles[i] === 'leader');
  assert.equal(leaders.length, 1, `exactly one tab holds the stream (roles: ${roles.join(', ')})`);
  return leaders[0];
}

// ------------------------------------------------------------------ setup

process.on('exit', () => server.proc?.kill('SIGTERM')); // lighttpd stops its responders

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  await server.setup();
  await server.start();
  await browser.launch();
  page = browser.context.pages()[0] ?? await browser.context.newPage();
});

after(async () => {
  await browser.close();
  await server.stop();
  server.cleanup();
});

// ------------------------------------------------------------------ checks

test('the dashboard loads: orders newest first over one stream, Live, last event id', async () => {
  const t0 = Date.now();
  await open(page);
  const rows = await visibleRowIds(page);
  assert.equal(rows.length, 20, 'a first page of 20 orders');
  const seqs = rows.map((r) => Number(r.id.slice(4)));
  assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first');
  assert.equal(rows[0].id, 'ord_00320');
  assert.equal(await page.textContent('#connection-text'), 'Live');
  assert.equal(await page.textContent('#last-event-id'), `#${await head()}`);
  await sleep(400);
  assert.equal(browser.requestsSince(t0, isStream).length, 1, 'one stream');
  assert.equal(browser.requestsSince(t0, isList).length, 1, 'one list request');
  assert.deepEqual(browser.pageErrors, []);
});

test('status filter and "load more" by cursor', async () => {
  await page.selectOption('#status-filter', 'paid');
  await page.waitForFunction(() => document.querySelectorAll('#orders-body tr').length > 0
    && [...document.querySelectorAll('#orders-body tr')].every((tr) => tr.dataset.status === 'paid'));
  const paid = Number(await server.sql("SELECT count(*) FROM orders WHERE status = 'paid'"));
  assert.ok(paid > 20, 'demo data has more than one page of paid orders');
  const t0 = Date.now();
  await page.click('#load-more');
  await page.waitForFunction((n) => document.querySelectorAll('#orders-body tr').length === n, Math.min(40, paid));
  const more = browser.requestsSince(t0, isList);
  assert.equal(more.length, 1);
  assert.ok(more[0].url.searchParams.get('cursor'), 'the second page is asked for by cursor');
  assert.equal(more[0].url.searchParams.get('status'), 'paid');
  await page.selectOption('#status-filter', '');
  await page.waitForFunction(() => document.querySelector('#orders-body tr')?.dataset.id === 'ord_00320');
});

test('accessible: labelled controls, keyboard selection, contrast of the badges', async () => {
  const unlabelled = await page.$$eval('input, select, textarea, button', (els) => els
    .filter((el) => el.offsetParent !== null)
    .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent.trim())))
    .map((el) => el.outerHTML));
  assert.deepEqual(unlabelled, [], 'every visible control has a label or a name');
  // keyboard: Tab from the filter reaches the first order; Enter opens it
  await page.focus('#status-filter');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'ord_00320');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('detail-body').dataset.id === 'ord_00320');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'detail-heading', 'focus moves to the details');
  assert.equal(await page.getAttribute(`${row('ord_00320')} a`, 'aria-current'), 'true');
  // WCAG AA: 4.5:1 for the status badges and muted text
  const ratios = await page.evaluate(() => {
    const lum = (rgb) => {
      const [r, g, b] = rgb.match(/\d+/g).slice(0, 3).map(Number).map((v) => {
        const c = v / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (el) => {
      const s = getComputedStyle(el);
      let bg = s.backgroundColor;
      for (let e = el; e && /rgba\(0, 0, 0, 0\)|transparent/.test(bg); e = e.parentElement) bg = getComputedStyle(e).backgroundColor;
      const [a, b] = [lum(s.color), lum(bg)].sort((x, y) => y - x);
      return (a + 0.05) / (b + 0.05);
    };
    return [...document.querySelectorAll('.badge, .muted, thead th, #connection-text, .connection-meta')]
      .map((el) => [el.className || el.id, ratio(el)]);
  });
  const low = ratios.filter(([, r]) => r < 4.5);
  assert.deepEqual(low, [], 'contrast of at least 4.5:1');
});

test('the dashboard screenshot, desktop and phone width (no sideways scrolling)', async () => {
  // the demo data as it is: before the checks below change it
  await select(page, 'ord_00311');
  await page.evaluate(() => { document.activeElement?.blur(); scrollTo(0, 0); });
  await page.mouse.move(1, 1);
  await sleep(300);
  await page.screenshot({ path: path.join(OUT, 'dashboard.png') });
  const phone = await browser.context.newPage();
  try {
    await phone.setViewportSize({ width: 375, height: 740 });
    await open(phone);
    const [scrollWidth, innerWidth] = await phone.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
    assert.ok(scrollWidth <= innerWidth, `no horizontal scroll at 375 px (${scrollWidth} > ${innerWidth})`);
    const tableFits = await phone.$eval('.table-wrap', (w) => w.scrollWidth <= w.clientWidth);
    assert.ok(tableFits, 'the orders table fits at 375 px');
    await phone.screenshot({ path: path.join(OUT, 'dashboard-phone.png') });
  } finally {
    await phone.close();
  }
  if (process.env.ORDERS_UPDATE_SCREENSHOT === '1') {
    fs.mkdirSync(path.join(REPO, 'docs'), { recursive: true });
    fs.copyFileSync(path.join(OUT, 'dashboard.png'), path.join(REPO, 'docs/dashboard.png'));
  }
  assert.ok(fs.statSync(path.join(OUT, 'dashboard.png')).size > 10_000);
});

test('a PATCH with curl updates the row and the open detail panel within a second, without fetching that order', async () => {
  const target = (await visibleRowIds(page)).find((r) => r.status === 'pending');
  assert.ok(target, 'a pending order on the first page');
  await select(page, target.id);
  await sleep(300);
  const t0 = Date.now();
  const r = await server.curl('PATCH', `orders/${target.id}`, {
    headers: { 'If-Match': `"${target.version}"` }, body: { status: 'paid', note: 'paid by curl' },
  });
  assert.equal(r.status, 200);
  const v = String(target.version + 1);
  await within(page, LIVE_MS, ([id, ver]) => {
    const tr = document.querySelector(`#orders-body tr[data-id="${id}"]`);
    const body = document.getElementById('detail-body');
    return tr?.dataset.status === 'paid' && tr.dataset.version === ver
      && body.dataset.status === 'paid' && body.dataset.version === ver && body.textContent.includes('paid by curl');
  }, [target.id, v], 'row and detail show the PATCH');
  await sleep(500); // a refetch, if any, would have been sent by now
  assert.deepEqual(browser.requestsSince(t0, isDetail(target.id)).map((x) => x.url.href), [], 'no request for that order');
  assert.deepEqual(browser.requestsSince(t0, isList).map((x) => x.url.href), [], 'no list refetch: the row is patched in place');
});

test('filtered list: an order that leaves the filter goes, one that joins it comes, one refetch each', async () => {
  await page.selectOption('#status-filter', 'pending');
  await page.waitForFunction(() => [...document.querySelectorAll('#orders-body tr')].every((tr) => tr.dataset.status === 'pending'));
  await sleep(300);
  const [leaving] = await visibleRowIds(page);
  let t0 = Date.now();
  let r = await server.curl('PATCH', `orders/${leaving.id}`, { body: { status: 'paid' } });
  assert.equal(r.status, 200);
  await within(page, LIVE_MS, ([x]) => !document.querySelector(`#orders-body tr[data-id="${x}"]`), [leaving.id], 'the paid order leaves the pending list');
  await sleep(500);
  assert.equal(browser.requestsSince(t0, isList, page).length, 1, 'one list refetch');
  // a new pending order joins
  t0 = Date.now();
  r = await server.curl('POST', 'orders', { body: { customer: 'Joins Pending', items: [{ sku: 'JP-1', name: 'J', qty: 1, unitPriceCents: 1 }] } });
  await within(page, LIVE_MS, ([x]) => document.querySelector('#orders-body tr')?.dataset.id === x, [r.body.id], 'the new pending order');
  // a paid one created elsewhere does not concern this list
  await server.curl('POST', 'orders', { body: { customer: 'Not Pending', status: 'paid', items: [{ sku: 'NP-1', name: 'N', qty: 1, unitPriceCents: 1 }] } });
  await sleep(600);
  assert.equal(browser.requestsSince(t0, isList, page).length, 1, 'one refetch for the pending order, none for the paid one');
  await page.selectOption('#status-filter', '');
  await page.waitForFunction(() => document.querySelectorAll('#orders-body tr').length === 20);
});

test('the buttons move an order on with PATCH and If-Match', async () => {
  const id = await page.getAttribute('#detail-body', 'data-id');
  const before = await order(id);
  assert.equal(before.status, 'paid');
  const t0 = Date.now();
  await page.click('#detail-body button[data-action="advance"]');
  await within(page, 2000, detailHas, [id, 'status', 'shipped'], 'detail shows shipped');
  const patches = browser.requestsSince(t0, (u, rq) => rq.method === 'PATCH' && isDetail(id)(u));
  assert.equal(patches.length, 1);
  assert.equal(patches[0].headers['if-match'], `"${before.version}"`);
  assert.equal((await order(id)).status, 'shipped');
  assert.equal(await page.textContent('#action-error'), '');
  assert.match(await page.textContent('#action-status'), /now shipped/);
  assert.equal(await page.$('#detail-body button[data-action="cancel"]'), null, 'a shipped order cannot be cancelled');
  await page.click('#detail-body button[data-action="advance"]');
  await within(page, 2000, detailHas, [id, 'status', 'delivered'], 'detail shows delivered');
});

test('a 412 (changed meanwhile by someone else) is shown to the user', async () => {
  const target = (await visibleRowIds(page)).find((r) => r.status === 'pending');
  await select(page, target.id);
  // Someone else changes the order between the page's render and its PATCH.
  await page.route(`**/api/v1/orders/${target.id}`, async (route) => {
    if (route.request().method() === 'PATCH') {
      const cur = await order(target.id);
      await server.curl('PATCH', `orders/${target.id}`, { body: { note: 'changed by someone else' }, headers: { 'If-Match': `"${cur.version}"` } });
    }
    await route.continue();
  });
  try {
    await page.click('#detail-body button[data-action="cancel"]');
    await page.waitForFunction(() => document.getElementById('action-error').textContent.includes('412'), null, { timeout: 3000 });
  } finally {
    await page.unroute(`**/api/v1/orders/${target.id}`);
  }
  const text = await page.textContent('#action-error');
  assert.match(text, /changed by someone else/);
  assert.equal(await page.getAttribute('#action-error', 'role'), 'alert');
  const now = await order(target.id);
  assert.equal(now.status, 'pending', 'the refused PATCH changed nothing');
  await within(page, 2000, detailHas, [target.id, 'version', String(now.version)], 'the panel shows the latest version');
});

test('a 409 (a transition the service refuses) is shown to the user', async () => {
  const id = await page.getAttribute('#detail-body', 'data-id');
  // The page offers only allowed moves; make the request a refused one.
  await page.route(`**/api/v1/orders/${id}`, (route) => route.continue(
    route.request().method() === 'PATCH' ? { postData: JSON.stringify({ status: 'delivered' }) } : undefined,
  ));
  try {
    await page.click('#detail-body button[data-action="advance"]');
    await page.waitForFunction(() => document.getElementById('action-error').textContent.includes('409'), null, { timeout: 3000 });
  } finally {
    await page.unroute(`**/api/v1/orders/${id}`);
  }
  assert.match(await page.textContent('#action-error'), /invalid_transition/);
  assert.equal((await order(id)).status, 'pending');
});

test('an order created with curl appears within a second', async () => {
  const r = await server.curl('POST', 'orders', {
    body: { customer: 'Curl Created', items: [{ sku: 'CU-001', name: 'Curl', qty: 1, unitPriceCents: 100 }] },
  });
  assert.equal(r.status, 201);
  await within(page, LIVE_MS, ([id]) => document.querySelector('#orders-body tr')?.dataset.id === id,
    [r.body.id], 'the new order tops the table');
  assert.ok(await page.$eval(row(r.body.id), (tr) => tr.textContent.includes('Curl Created')));
});

test('an order deleted with curl leaves the table, and its open panel says so, within a second', async () => {
  const target = (await visibleRowIds(page))[4];
  await select(page, target.id);
  const r = await server.curl('DELETE', `orders/${target.id}`, { headers: { 'If-Match': `"${target.version}"` } });
  assert.equal(r.status, 204);
  await within(page, LIVE_MS, ([x]) => !document.querySelector(`#orders-body tr[data-id="${x}"]`)
    && document.getElementById('detail-body').textContent.includes('deleted'), [target.id], 'row gone, panel says deleted');
  await sleep(400);
  assert.equal(await page.$$eval('#orders-body tr', (trs) => trs.length), 20, 'the page is filled up again');
});

test('an order created with the form appears and opens, without a fetch of it', async () => {
  const t0 = Date.now();
  await page.fill('#new-customer', 'Form Créateur');
  await page.fill('#new-items li:first-child input[name="sku"]', 'FM-001');
  await page.fill('#new-items li:first-child input[name="name"]', 'Form pad');
  await page.fill('#new-items li:first-child input[name="qty"]', '3');
  await page.fill('#new-items li:first-child input[name="price"]', '4.50');
  await page.click('#add-item');
  await page.fill('#new-items li:nth-child(2) input[name="sku"]', 'FM-002');
  await page.fill('#new-items li:nth-child(2) input[name="name"]', 'Form pen');
  await page.fill('#new-items li:nth-child(2) input[name="price"]', '1');
  await page.selectOption('#new-currency', 'USD');
  await page.click('#create-submit');
  await page.waitForFunction(() => /Created ord_\d+/.test(document.getElementById('create-status').textContent), null, { timeout: 3000 });
  const id = (await page.textContent('#create-status')).match(/ord_\d+/)[0];
  await within(page, LIVE_MS, ([x]) => document.querySelector('#orders-body tr')?.dataset.id === x, [id], 'the new order tops the table');
  await within(page, LIVE_MS, detailHas, [id, 'version', '1'], 'and is open in the panel');
  const created = await order(id);
  assert.equal(created.totalCents, 3 * 450 + 100);
  assert.equal(created.currency, 'USD');
  assert.equal(created.customer, 'Form Créateur');
  const posts = browser.requestsSince(t0, (u, rq) => rq.method === 'POST');
  assert.equal(posts.length, 1);
  assert.ok(posts[0].headers['idempotency-key'], 'sent with an Idempotency-Key');
  assert.deepEqual(browser.requestsSince(t0, isDetail(id)).filter((x) => x.method === 'GET'), []);
});

test('two windows: a sqlite3 UPDATE and a change in one window show in the other within a second', async () => {
  page2 = await browser.context.newPage();
  const id = 'ord_00318';
  await open(page2, `#${id}`);
  await select(page, id);
  assert.equal(await page2.getAttribute('#connection', 'data-role'), 'follower', 'the second window shares the stream');
  await server.sql(`UPDATE orders SET note = 'set with sqlite3' WHERE id = '${id}'`);
  await Promise.all([page, page2].map((p) => within(p, LIVE_MS, ([x, t]) => {
    const body = document.getElementById('detail-body');
    return body.dataset.id === x && body.textContent.includes(t);
  }, [id, 'set with sqlite3'], 'the sqlite3 UPDATE in the panel')));
  const status = (await order(id)).status;
  const next = { pending: 'paid', paid: 'shipped', shipped: 'delivered' }[status];
  assert.ok(next, `${id} can move on from ${status}`);
  await page.click('#detail-body button[data-action="advance"]');
  await within(page, 2000, detailHas, [id, 'status', next], 'window 1 shows its own change');
  await within(page2, LIVE_MS, ([x, s]) => document.getElementById('detail-body').dataset.status === s
    && document.querySelector(`#orders-body tr[data-id="${x}"]`)?.dataset.status === s, [id, next], 'window 2 shows it');
});

test('a burst of events within 250 ms refetches the list once', async () => {
  await sleep(400);
  const t0 = Date.now();
  const values = Array.from({ length: 8 }, (_, i) => `('Burst ${i}', '[{"sku":"BU-${i}","name":"Burst","qty":1,"unitPriceCents":100}]')`);
  await server.sql(`BEGIN; INSERT INTO orders (customer, items) VALUES ${values.join(', ')}; COMMIT;`);
  const newest = await server.sql("SELECT id FROM orders WHERE customer = 'Burst 7'");
  await Promise.all([page, page2].map((p) => within(p, LIVE_MS, ([x]) => document.querySelector('#orders-body tr')?.dataset.id === x,
    [newest], 'the burst is in the table')));
  await sleep(600);
  for (const p of [page, page2]) {
    assert.equal(browser.requestsSince(t0, isList, p).length, 1, 'one list refetch per window for 8 events');
  }
});

test('a malformed event is logged and skipped; the page stays live', async () => {
  const id = await page.getAttribute('#detail-body', 'data-id');
  const c0 = browser.console.length;
  // A log row whose patch is not an object (the responder passes it on as is).
  await server.sql("INSERT INTO events (type, order_id, patch, ts) VALUES ('order.updated', 'ord_00317', '[1,2]', 0)");
  const bad = await head();
  // And an event that is not even JSON, straight into the page's EventSource.
  const leader = await leaderOf([page, page2]);
  const dispatched = await leader.evaluate(() => {
    const es = window.__eventSources.filter((s) => s.readyState !== 2).at(-1);
    es?.dispatchEvent(new MessageEvent('order.updated', { data: '{"type":"order.updated","id":"ord_0', lastEventId: '' }));
    return Boolean(es);
  });
  assert.ok(dispatched);
  await server.sql(`UPDATE orders SET note = 'after the malformed ones' WHERE id = '${id}'`);
  await Promise.all([page, page2].map((p) => within(p, LIVE_MS, ([x, t]) => {
    const body = document.getElementById('detail-body');
    return body.dataset.id === x && body.textContent.includes(t);
  }, [id, 'after the malformed ones'], 'a good event after the malformed ones')));
  const warnings = browser.console.slice(c0).filter((m) => /malformed/.test(m.text));
  assert.ok(warnings.some((m) => m.text.includes(`event ${bad} skipped`)), 'the bad log event is logged');
  assert.ok(warnings.some((m) => /\(no id\) skipped/.test(m.text)), 'the broken JSON is logged');
  assert.equal(await page.getAttribute('#connection', 'data-state'), 'live');
  assert.equal(await page.textContent('#last-event-id'), `#${await head()}`, 'the position moved past them');
  assert.deepEqual(browser.pageErrors, []);
});

test('a reset from the stream refetches everything', async () => {
  const id = await page.getAttribute('#detail-body', 'data-id');
  // Break the connection; while the pages wait to reconnect, change an order
  // and pretend the log was pruned past their position: the responder
  // answers the reconnect with a reset (history_truncated).
  const t0 = Date.now();
  try {
    const pids = server.responderPids();
    assert.ok(pids.length > 0, 'lighttpd runs a responder');
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    await page.waitForFunction(() => document.getElementById('connection').dataset.state === 'reconnecting', null, { timeout: 3000 });
    await server.sql(`UPDATE orders SET note = 'missed, then reset' WHERE id = '${id}';
      UPDATE event_log_state SET pruned_through = (SELECT max(id) FROM events)`);
    await Promise.all([page, page2].map((p) => within(p, 6000, ([x, t]) => {
      const body = document.getElementById('detail-body');
      return document.getElementById('connection').dataset.state === 'live' && body.dataset.id === x && body.textContent.includes(t);
    }, [id, 'missed, then reset'], 'live again with the refetched order')));
    await sleep(500);
  } finally {
    await server.sql('UPDATE event_log_state SET pruned_through = 0');
  }
  const seen = browser.requestsSince(t0).map((r) => `${r.t - t0} ms ${r.page === page ? 1 : r.page === page2 ? 2 : '?'} ${r.url.pathname}${r.url.search}`)
    .concat(browser.console.filter((m) => m.t >= t0).map((m) => `${m.t - t0} ms ${m.page === page ? 1 : 2} console: ${m.text}`));
  const reconnect = browser.requestsSince(t0, isStream);
  assert.equal(reconnect.length, 1, `one reconnect for both windows: ${seen.join('; ')}`);
  assert.ok(reconnect[0].url.searchParams.get('lastEventId'), 'it asked to resume');
  const resets = browser.console.filter((m) => m.t >= t0 && /reset \(history_truncated\)/.test(m.text));
  assert.equal(resets.length, 1, `the stream sent a reset: ${seen.join('; ')}`);
  for (const p of [page, page2]) {
    assert.ok(browser.requestsSince(t0, isList, p).length >= 1, `the list is refetched: ${seen.join('; ')}`);
    assert.ok(browser.requestsSince(t0, isDetail(id), p).length >= 1, `the open order is refetched: ${seen.join('; ')}`);
  }
  assert.equal(await page.textContent('#last-event-id'), `#${await head()}`);
});

test('web server down: Reconnecting with growing delays; after the restart the page catches up through lastEventId', async () => {
  await Promise.all([page, page2].map((p) => p.waitForSelector('#connection[data-state="live"][data-attempt="0"]', { timeout: 8000 })));
  const id = (await visibleRowIds(page))[3].id;
  const position = await head();
  await page.evaluate(() => {
    window.__delays = [];
    const box = document.getElementById('connection');
    new MutationObserver(() => {
      const d = box.dataset.retryMs;
      if (box.dataset.state === 'reconnecting' && d && window.__delays.at(-1)?.ms !== Number(d)) {
        window.__delays.push({ ms: Number(d), text: document.getElementById('connection-text').textContent });
      }
    }).observe(box, { attributes: true });
  });
  const t0 = Date.now();
  await server.stop();
  await page.waitForFunction(() => window.__delays.length >= 3, null, { timeout: 10_000 });
  const delays = await page.evaluate(() => window.__delays);
  const ms = delays.map((d) => d.ms);
  assert.ok(ms[0] >= 800 && ms[0] <= 1000, `first delay about 1 s (${ms})`);
  assert.ok(ms[1] >= 1600 && ms[1] <= 2000, `then about 2 s (${ms})`);
  assert.ok(ms[2] >= 3200 && ms[2] <= 4000, `then about 4 s (${ms})`);
  assert.match(delays[2].text, /^Reconnecting in [1-4] s$/);
  assert.match(await page2.textContent('#connection-text'), /^Reconnecting in \d s$/, 'the other window shows it too');
  // a change while the server is down
  await server.sql(`UPDATE orders SET note = 'changed while down' WHERE id = '${id}'`);
  const v = await dbVersion(id);
  await server.start();
  await Promise.all([page, page2].map((p) => within(p, 6000, rowVersion, [id, v], 'the change made while down')));
  const streams = browser.requestsSince(t0, isStream).map((r) => r.url.searchParams.get('lastEventId'));
  assert.ok(streams.length >= 3, `it retried (${streams.length} attempts)`);
  assert.ok(streams.every((x) => x === String(position)), `every attempt resumes from ${position} (${streams})`);
  assert.equal(await page.textContent('#connection-text'), 'Live');
});

test('browser offline: Offline, then Live again when back', async () => {
  await browser.context.setOffline(true);
  try {
    await Promise.all([page, page2].map((p) => p.waitForFunction(
      () => document.getElementById('connection-text').textContent === 'Offline', null, { timeout: 3000 },
    )));
  } finally {
    await browser.context.setOffline(false);
  }
  await Promise.all([page, page2].map((p) => p.waitForSelector('#connection[data-state="live"]', { timeout: 5000 })));
  const id = (await visibleRowIds(page))[2].id;
  await server.sql(`UPDATE orders SET note = 'after offline' WHERE id = '${id}'`);
  const v = await dbVersion(id);
  await Promise.all([page, page2].map((p) => within(p, LIVE_MS, rowVersion, [id, v], 'live again')));
});

test('eight tabs stay live over one stream; closing its tab hands it over without losing an event', async () => {
  const t0 = Date.now();
  const tabs = [page, page2];
  for (let i = tabs.length; i < 8; i += 1) tabs.push(await browser.context.newPage());
  await Promise.all(tabs.slice(2).map((p) => open(p)));
  await Promise.all(tabs.map((p) => p.waitForSelector('#connection[data-state="live"]', { timeout: 5000 })));
  assert.equal(browser.requestsSince(t0, isStream).length, 0, 'the new tabs open no stream of their own');
  let leader = await leaderOf(tabs);
  const id = (await visibleRowIds(page))[1].id;
  await server.sql(`UPDATE orders SET note = 'seen by eight' WHERE id = '${id}'`);
  const v = await dbVersion(id);
  await Promise.all(tabs.map((p) => within(p, LIVE_MS, rowVersion, [id, v], 'all eight tabs')));

  // Close the tab that holds the stream while changes keep coming.
  const position = await head();
  const t1 = Date.now();
  await Promise.all([
    server.sql(`UPDATE orders SET note = 'during the handover' WHERE id = '${id}'`),
    leader.close(),
  ]);
  const rest = tabs.filter((p) => p !== leader);
  await server.sql(`UPDATE orders SET note = 'after the handover' WHERE id = 'ord_00316'`);
  const va = await dbVersion(id);
  const vb = await dbVersion('ord_00316');
  await Promise.all(rest.map((p) => within(p, 3000, ([a, x, b, y]) => {
    const v = (i) => Number(document.querySelector(`#orders-body tr[data-id="${i}"]`)?.dataset.version);
    return v(a) === x && v(b) === y;
  }, [id, va, 'ord_00316', vb], 'both changes in every remaining tab')));
  const handover = browser.requestsSince(t1, isStream);
  assert.equal(handover.length, 1, 'one tab took the stream over');
  assert.ok(Number(handover[0].url.searchParams.get('lastEventId')) >= position, 'resuming from the shared last event id');
  leader = await leaderOf(rest);
  assert.ok(rest.includes(leader));
  // every tab applied every event: same last event id everywhere
  const ids = await Promise.all(rest.map((p) => p.textContent('#last-event-id')));
  assert.deepEqual(new Set(ids), new Set([`#${await head()}`]));
  assert.deepEqual(browser.pageErrors, []);
  for (const p of rest.slice(2)) await p.close();
});

test('the responders wrote no sanitizer report and did not crash (read after they exited)', async () => {
  await browser.close();
  await server.stop();
  assert.deepEqual(server.sanitizerReports(), []);
});
