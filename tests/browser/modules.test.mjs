// The page's modules on their own, in Node (no browser, no server): the
// cache's coalescing and paging, the stream client's backoff and parsing.
// Run: node --test --test-reporter=tap modules.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QueryClient, hashKey, matchesKey } from '../../www/query-cache.js';
import { backoffDelay, parseOrderEvent } from '../../www/stream-client.js';

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

test('cache keys: object keys sorted, prefix match', () => {
  assert.equal(hashKey(['orders', { b: 1, a: 2 }]), hashKey(['orders', { a: 2, b: 1 }]));
  assert.ok(matchesKey(['orders', 'list', { status: 'paid' }], ['orders', 'list']));
  assert.ok(matchesKey(['orders', 'list', { status: 'paid' }], ['orders', 'list', { status: 'paid' }]));
  assert.ok(!matchesKey(['orders', 'list', { status: 'paid' }], ['orders', 'list', { status: '' }]));
  assert.ok(!matchesKey(['orders', 'detail', 'ord_00001'], ['orders', 'list']));
});

test('cache: a burst of invalidations is one refetch; one during a fetch refetches once more', async () => {
  const client = new QueryClient({ invalidateDelayMs: 40, gcTimeMs: 50 });
  let calls = 0;
  let release = null;
  const queryFn = async () => {
    calls += 1;
    if (calls === 3) await new Promise((resolve) => { release = resolve; });
    return calls;
  };
  const states = [];
  const stop = client.watch({ queryKey: ['k'], queryFn }, (s) => states.push(s));
  await sleep(10);
  assert.equal(client.getQueryData(['k']), 1);
  for (let i = 0; i < 10; i += 1) client.invalidateQueries({ queryKey: ['k'] });
  await sleep(80);
  assert.equal(calls, 2, 'ten invalidations, one refetch');
  client.invalidateQueries({ queryKey: ['k'] });
  await sleep(60); // fetch 3 is now in flight, held
  assert.equal(calls, 3);
  client.invalidateQueries({ queryKey: ['k'] });
  client.invalidateQueries({ queryKey: ['k'] });
  release();
  await sleep(100);
  assert.equal(calls, 4, 'one more after the fetch that was running');
  assert.equal(client.getQueryData(['k']), 4);
  stop();
});

test('cache: setQueryData patches without a request; unobserved entries refetch when next watched', async () => {
  const client = new QueryClient({ invalidateDelayMs: 10, gcTimeMs: 50 });
  let calls = 0;
  const opts = { queryKey: ['orders', 'detail', 'ord_00001'], queryFn: async () => { calls += 1; return { id: 'ord_00001', version: calls }; } };
  const stop = client.watch(opts, () => {});
  await sleep(5);
  client.setQueryData(opts.queryKey, (o) => ({ ...o, note: 'x', version: 2 }));
  assert.deepEqual(client.getQueryData(opts.queryKey), { id: 'ord_00001', version: 2, note: 'x' });
  assert.equal(calls, 1);
  stop();
  client.invalidateQueries({ queryKey: ['orders'] });
  await sleep(30);
  assert.equal(calls, 1, 'nobody watches it: no request');
  const stop2 = client.watch(opts, () => {});
  await sleep(5);
  assert.equal(calls, 2, 'watched again while invalidated: refetched');
  stop2();
});

test('cache: an infinite list loads more by cursor and refetches every loaded page from the first', async () => {
  const client = new QueryClient({ invalidateDelayMs: 5, gcTimeMs: 50 });
  const asked = [];
  const opts = {
    queryKey: ['orders', 'list', { status: '' }],
    infinite: true,
    initialPageParam: null,
    getNextPageParam: (p) => p.nextCursor,
    queryFn: async ({ pageParam }) => {
      asked.push(pageParam);
      const n = pageParam ? Number(pageParam) : 0;
      return { data: [`row${n}`], nextCursor: n < 2 ? String(n + 1) : null };
    },
  };
  const stop = client.watch(opts, () => {});
  await sleep(5);
  await client.fetchNextPage(opts.queryKey);
  await client.fetchNextPage(opts.queryKey);
  assert.ok(!client.hasNextPage(opts.queryKey));
  assert.deepEqual(client.getQueryData(opts.queryKey).pages.map((p) => p.data[0]), ['row0', 'row1', 'row2']);
  asked.length = 0;
  client.invalidateQueries({ queryKey: ['orders', 'list'] });
  await sleep(30);
  assert.deepEqual(asked, [null, '1', '2']);
  stop();
});

test('backoff: 1 s, 2 s, 4 s … capped at 30 s, minus up to 20 % jitter', () => {
  const opts = { baseDelayMs: 1000, maxDelayMs: 30000, jitter: 0.2 };
  const top = [0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n, opts, () => 0));
  assert.deepEqual(top, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  const low = [0, 1, 2, 5].map((n) => backoffDelay(n, opts, () => 0.999999));
  assert.deepEqual(low, [800, 1600, 3200, 24000]);
  for (let i = 0; i < 200; i += 1) {
    const d = backoffDelay(3, opts);
    assert.ok(d >= 6400 && d <= 8000); // Math.round may reach the 20 % bound
  }
});

test('events: parsed once and checked; malformed ones are refused with a reason', () => {
  const good = parseOrderEvent('order.updated', '43',
    '{"type":"order.updated","id":"ord_00042","patch":{"status":"shipped","updatedAt":"2026-01-16T10:00:00.000Z","version":4},"ts":1768557600000}');
  assert.deepEqual(good.event, {
    eventId: 43, type: 'order.updated', id: 'ord_00042', ts: 1768557600000,
    patch: { status: 'shipped', updatedAt: '2026-01-16T10:00:00.000Z', version: 4 },
  });
  const bad = [
    ['order.updated', '44', '{"type":"order.updated","id":'],
    ['order.updated', '44', '[1]'],
    ['order.updated', '44', '{"type":"order.created","id":"ord_00042","patch":{"version":2}}'],
    ['order.updated', '44', '{"type":"order.updated","id":"ord_00042","patch":[1,2],"ts":0}'],
    ['order.updated', '44', '{"type":"order.updated","id":"ord_00042","patch":{"note":"x"},"ts":0}'],
    ['order.updated', '44', '{"type":"order.updated","id":"x","patch":{"version":2},"ts":0}'],
    ['order.created', '44', '{"type":"order.created","id":"ord_00042","patch":{"version":1},"ts":0}'],
    ['order.updated', '', '{"type":"order.updated","id":"ord_00042","patch":{"version":2},"ts":0}'],
  ];
  for (const [type, id, data] of bad) {
    const r = parseOrderEvent(type, id, data);
    assert.ok(r.error && !r.event, `refused: ${data}`);
    if (id) assert.equal(r.eventId, 44, 'the position still moves past it');
  }
  assert.ok(parseOrderEvent('order.deleted', '45', '{"type":"order.deleted","id":"ord_00042","patch":{},"ts":1}').event);
});
