// The live orders page: a table, a detail panel, a form to create an order and
// buttons to move one on, all kept current by the one stream of events
// (stream-client.js) through a small query cache (query-cache.js).
//
// How an event changes what the page shows:
// - order.updated: the detail entry of that order is patched in place (no
//   request); a list row is patched in place when the change does not move
//   the order into or out of that list, else the list is refetched;
// - order.created: the lists it belongs to are refetched;
// - order.deleted: the row goes at once, the detail shows it is gone;
// - refetches are coalesced: a burst of events within 250 ms is one request;
// - events no newer than what the page has (by the order's version) do nothing;
// - reset: everything is refetched.

import { QueryClient } from './query-cache.js';
import { getStreamClient } from './stream-client.js';

const API = new URL('api/v1/', document.baseURI);
const PAGE_SIZE = 20;
const NEXT_STATUS = { pending: 'paid', paid: 'shipped', shipped: 'delivered' };
const CANCELLABLE = new Set(['pending', 'paid']);
const STATUS_VERB = { paid: 'Mark as paid', shipped: 'Mark as shipped', delivered: 'Mark as delivered' };
const STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'cancelled'];

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(new URL(path, API), {
      method,
      signal,
      cache: 'no-cache',
      headers: { Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', 'the server cannot be reached');
  }
  const text = response.status === 204 ? '' : await response.text();
  let payload = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, payload?.error?.code ?? `http_${response.status}`,
      payload?.error?.message ?? (response.statusText || 'request failed'));
  }
  return payload;
}

const listKey = (status) => ['orders', 'list', { status }];
const detailKey = (id) => ['orders', 'detail', id];

// ------------------------------------------------------------------ what the stream told us
// Recent changes by order, so that a response that left the server before a
// change but arrived after its event is brought up to date (reconcile).

const recent = { patches: new Map(), deleted: new Map() };
const RECENT_MS = 120_000;

function remember(id, version, patch, full) {
  const list = recent.patches.get(id) ?? [];
  if (!list.some((p) => p.version === version && p.full === full)) {
    list.push({ version, patch, full, at: Date.now() });
    list.sort((a, b) => a.version - b.version || Number(a.full) - Number(b.full));
  }
  recent.patches.set(id, list);
}

setInterval(() => {
  const old = Date.now() - RECENT_MS;
  for (const [id, list] of recent.patches) {
    const kept = list.filter((p) => p.at > old);
    if (kept.length) recent.patches.set(id, kept);
    else recent.patches.delete(id);
  }
  for (const [id, at] of recent.deleted) if (at <= old) recent.deleted.delete(id);
}, 30_000);

/** The order with every remembered newer change applied; gap: one is missing. */
function catchUp(order) {
  const list = recent.patches.get(order.id);
  let current = order;
  if (!list) return { order: current, gap: false };
  for (const p of list) {
    if (p.version <= current.version) continue;
    if (p.full) current = { ...p.patch };
    else if (p.version === current.version + 1) current = { ...current, ...p.patch };
    else return { order: current, gap: true };
  }
  return { order: current, gap: false };
}

function reconcileList(fresh) {
  return {
    ...fresh,
    pages: fresh.pages.map((page) => ({
      ...page,
      data: page.data.filter((o) => !recent.deleted.has(o.id)).map((o) => catchUp(o).order),
    })),
  };
}

function reconcileDetail(fresh, current) {
  if (recent.deleted.has(fresh.id)) return { id: fresh.id, deleted: true };
  const { order } = catchUp(fresh);
  if (current && !current.deleted && current.version > order.version) return current;
  return order;
}

// ------------------------------------------------------------------ cache

const client = new QueryClient({ invalidateDelayMs: 250 });

function listQuery(status) {
  return {
    queryKey: listKey(status),
    infinite: true,
    initialPageParam: null,
    getNextPageParam: (page) => page.nextCursor ?? null,
    queryFn: ({ pageParam, signal }) => {
      const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (status) q.set('status', status);
      if (pageParam) q.set('cursor', pageParam);
      return api(`orders?${q}`, { signal });
    },
    reconcile: reconcileList,
  };
}

function detailQuery(id) {
  return {
    queryKey: detailKey(id),
    queryFn: ({ signal }) => api(`orders/${encodeURIComponent(id)}`, { signal }),
    reconcile: reconcileDetail,
  };
}

const rowsOf = (data) => data?.pages.flatMap((p) => p.data) ?? [];

function mapRows(data, fn) {
  let changed = false;
  const pages = data.pages.map((page) => {
    const rows = [];
    let pageChanged = false;
    for (const row of page.data) {
      const next = fn(row);
      if (next !== row) pageChanged = true;
      if (next) rows.push(next);
    }
    if (!pageChanged) return page;
    changed = true;
    return { ...page, data: rows };
  });
  return changed ? { ...data, pages } : data;
}

/** Brings the cached detail and list rows of one order up to date. */
function orderChanged(id, newStatus) {
  const detail = client.getQueryData(detailKey(id));
  if (detail && !detail.deleted) {
    const { order, gap } = catchUp(detail);
    if (order !== detail) client.setQueryData(detailKey(id), order);
    if (gap) client.invalidateQueries({ queryKey: detailKey(id), delayMs: 0 });
  }
  for (const [key, data] of client.getQueriesData(['orders', 'list'])) {
    const filter = key[2].status;
    const row = rowsOf(data).find((o) => o.id === id);
    if (!row) {
      // not shown: it matters only if it now belongs to this list
      if (filter && newStatus === filter) client.invalidateQueries({ queryKey: key });
      continue;
    }
    const { order, gap } = catchUp(row);
    if (gap) {
      client.invalidateQueries({ queryKey: key });
    } else if (order === row) {
      // an event we already had: nothing to do
    } else if (filter && order.status !== filter) {
      client.setQueryData(key, mapRows(data, (o) => (o.id === id ? null : o)));
      client.invalidateQueries({ queryKey: key });
    } else {
      client.setQueryData(key, mapRows(data, (o) => (o.id === id ? order : o)));
    }
  }
}

function orderCreated(order) {
  client.invalidateQueries({
    queryKey: ['orders', 'list'],
    predicate: ({ queryKey }) => !queryKey[2].status || queryKey[2].status === order.status,
  });
  if (client.getQueryData(detailKey(order.id))) orderChanged(order.id, order.status);
}

function orderDeleted(id) {
  recent.deleted.set(id, Date.now());
  if (client.getQueryData(detailKey(id))) client.setQueryData(detailKey(id), { id, deleted: true });
  for (const [key, data] of client.getQueriesData(['orders', 'list'])) {
    if (!rowsOf(data).some((o) => o.id === id)) continue;
    client.setQueryData(key, mapRows(data, (o) => (o.id === id ? null : o)));
    client.invalidateQueries({ queryKey: key });
  }
}

/** An order as the server answered a write of ours: newer than the events so far. */
function orderWritten(order) {
  remember(order.id, order.version, order, true);
  orderChanged(order.id, order.status);
}

function applyEvent(event) {
  const { type, id, patch } = event;
  if (type === 'order.created') {
    remember(id, patch.version, patch, true);
    orderCreated(patch);
  } else if (type === 'order.updated') {
    remember(id, patch.version, patch, false);
    orderChanged(id, patch.status);
  } else if (type === 'order.deleted') {
    orderDeleted(id);
  }
}

// ------------------------------------------------------------------ DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c);
  }
  return el;
}

const moneyFormats = new Map();
function money(cents, currency) {
  if (!moneyFormats.has(currency)) {
    try {
      moneyFormats.set(currency, new Intl.NumberFormat(undefined, { style: 'currency', currency }));
    } catch {
      moneyFormats.set(currency, { format: (n) => `${n.toFixed(2)} ${currency}` });
    }
  }
  return moneyFormats.get(currency).format(cents / 100);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const fmt = (iso, f) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso ?? '') : f.format(d);
};

const badge = (status) => h('span', { class: `badge status-${STATUSES.includes(status) ? status : 'unknown'}`, text: status });

function flash(el) {
  el.classList.remove('flash');
  void el.offsetWidth; // restart the animation
  el.classList.add('flash');
}

// ------------------------------------------------------------------ state

const state = {
  status: new URLSearchParams(location.search).get('status') ?? '',
  selectedId: null,
  stopList: null,
  stopDetail: null,
  pendingAction: false,
};
if (!STATUSES.includes(state.status)) state.status = '';

// ------------------------------------------------------------------ the table

const rowEls = new Map();

function renderRow(tr, order) {
  const link = h('a', { href: `#${order.id}`, class: 'order-link mono', text: order.id });
  tr.replaceChildren(
    h('th', { scope: 'row' }, link, h('span', { class: 'customer-inline', text: order.customer })),
    h('td', { class: 'customer col-customer', text: order.customer }),
    h('td', {}, badge(order.status)),
    h('td', { class: 'num', text: money(order.totalCents, order.currency) }),
    h('td', { class: 'col-updated' }, h('time', { datetime: order.updatedAt, text: fmt(order.updatedAt, shortTime) })),
  );
  tr.dataset.version = String(order.version);
  tr.dataset.status = order.status;
}

function markSelected() {
  for (const [id, tr] of rowEls) {
    const selected = id === state.selectedId;
    tr.classList.toggle('selected', selected);
    const link = tr.querySelector('a.order-link');
    if (link) {
      if (selected) link.setAttribute('aria-current', 'true');
      else link.removeAttribute('aria-current');
    }
  }
}

function renderList(qs) {
  const body = $('orders-body');
  const rows = rowsOf(qs.data);
  const focusedId = document.activeElement?.closest?.('#orders-body tr')?.dataset.id;
  const seen = new Set();
  const firstRender = body.childElementCount === 0;
  let previous = null;
  for (const order of rows) {
    if (seen.has(order.id)) continue; // a row that moved between pages during a refetch
    seen.add(order.id);
    let tr = rowEls.get(order.id);
    if (!tr) {
      tr = h('tr', { dataset: { id: order.id } });
      renderRow(tr, order);
      rowEls.set(order.id, tr);
      if (!firstRender) flash(tr); // a new order
    } else if (tr.dataset.version !== String(order.version)) {
      renderRow(tr, order);
      flash(tr);
    }
    const want = previous ? previous.nextElementSibling : body.firstElementChild;
    if (want !== tr) body.insertBefore(tr, want);
    previous = tr;
  }
  for (const [id, tr] of rowEls) {
    if (!seen.has(id)) {
      tr.remove();
      rowEls.delete(id);
    }
  }
  if (focusedId && rowEls.has(focusedId) && !rowEls.get(focusedId).contains(document.activeElement)) {
    rowEls.get(focusedId).querySelector('a')?.focus();
  }
  markSelected();

  const message = $('list-message');
  message.classList.toggle('error', qs.status === 'error');
  if (qs.status === 'error') {
    message.replaceChildren(`Could not load the orders: ${qs.error.message}. `,
      h('button', { type: 'button', class: 'link-button', id: 'list-retry', text: 'Try again' }));
  } else if (qs.data === undefined) {
    message.textContent = 'Loading orders…';
  } else if (!rows.length) {
    message.textContent = state.status ? `No ${state.status} orders.` : 'No orders yet.';
  } else {
    message.textContent = '';
  }
  $('orders-table').setAttribute('aria-busy', String(qs.fetchStatus === 'fetching'));
  $('list-count').textContent = qs.data ? `${seen.size} order${seen.size === 1 ? '' : 's'} shown` : '';
  const more = $('load-more');
  more.hidden = !client.hasNextPage(listKey(state.status));
  more.disabled = qs.fetchStatus === 'fetching';
  more.textContent = qs.fetchKind === 'next' ? 'Loading…' : 'Load more';
}

function watchList() {
  state.stopList?.();
  for (const tr of rowEls.values()) tr.remove();
  rowEls.clear();
  $('orders-heading').textContent = state.status ? `${state.status[0].toUpperCase()}${state.status.slice(1)} orders` : 'All orders';
  state.stopList = client.watch(listQuery(state.status), renderList);
}

// ------------------------------------------------------------------ the detail panel

function renderDetail(qs) {
  const body = $('detail-body');
  const id = state.selectedId;
  const focusKey = document.activeElement?.closest?.('#detail-body') ? document.activeElement.dataset.focusKey : null;
  const heading = $('detail-heading');
  const order = qs.data;
  if (!order && qs.status === 'error') {
    heading.textContent = `Order ${id}`;
    body.replaceChildren(h('p', { class: 'message error' },
      qs.error.status === 404 ? 'There is no such order (it may have been deleted).' : `Could not load it: ${qs.error.message}.`));
    body.dataset.version = '';
    return;
  }
  if (!order) {
    heading.textContent = `Order ${id}`;
    body.replaceChildren(h('p', { class: 'muted', text: 'Loading…' }));
    return;
  }
  if (order.deleted) {
    heading.textContent = `Order ${id}`;
    body.replaceChildren(h('p', { class: 'message warning', text: 'This order has been deleted.' }));
    body.dataset.version = '';
    return;
  }
  heading.textContent = `Order ${order.id}`;
  const changed = body.dataset.id === order.id && body.dataset.version && body.dataset.version !== String(order.version);
  const next = NEXT_STATUS[order.status];
  const busy = state.pendingAction;
  const actions = h('div', { class: 'actions' },
    next && h('button', { type: 'button', class: 'primary', dataset: { action: 'advance', to: next, focusKey: 'advance' }, disabled: busy, text: STATUS_VERB[next] }),
    CANCELLABLE.has(order.status) && h('button', { type: 'button', class: 'danger', dataset: { action: 'cancel', to: 'cancelled', focusKey: 'cancel' }, disabled: busy, text: 'Cancel order' }),
    !next && !CANCELLABLE.has(order.status) && h('p', { class: 'muted', text: `A ${order.status} order does not move any further.` }),
  );
  const fact = (label, value, cls) => h('div', { class: cls }, h('dt', { text: label }), h('dd', {}, value));
  body.replaceChildren(
    h('dl', { class: 'facts' },
      fact('Customer', order.customer, 'wide'),
      fact('Status', badge(order.status)),
      fact('Total', money(order.totalCents, order.currency)),
      fact('Version', h('span', { class: 'mono', id: 'detail-version', text: String(order.version) })),
      fact('Created', h('time', { datetime: order.createdAt, text: fmt(order.createdAt, dateTime) })),
      fact('Updated', h('time', { datetime: order.updatedAt, text: fmt(order.updatedAt, dateTime) })),
      fact('Note', order.note ? order.note : h('span', { class: 'muted', text: 'none' }), 'wide'),
    ),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'items-table' },
        h('caption', { text: `${order.items.length} item${order.items.length === 1 ? '' : 's'}` }),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', text: 'SKU' }), h('th', { scope: 'col', text: 'Product' }),
          h('th', { scope: 'col', class: 'num', text: 'Qty' }), h('th', { scope: 'col', class: 'num', text: 'Unit' }),
          h('th', { scope: 'col', class: 'num', text: 'Line' }))),
        h('tbody', {}, order.items.map((it) => h('tr', {},
          h('td', { class: 'mono', text: it.sku }), h('td', { text: it.name }),
          h('td', { class: 'num', text: String(it.qty) }),
          h('td', { class: 'num', text: money(it.unitPriceCents, order.currency) }),
          h('td', { class: 'num', text: money(it.qty * it.unitPriceCents, order.currency) })))))),
    actions,
  );
  body.dataset.id = order.id;
  body.dataset.version = String(order.version);
  body.dataset.status = order.status;
  if (changed) flash(body);
  if (focusKey) body.querySelector(`[data-focus-key="${focusKey}"]`)?.focus();
}

function select(id, { focus = false } = {}) {
  if (id === state.selectedId) return;
  state.selectedId = id;
  state.stopDetail?.();
  state.stopDetail = null;
  $('action-error').textContent = '';
  $('action-status').textContent = '';
  const body = $('detail-body');
  body.dataset.id = '';
  body.dataset.version = '';
  markSelected();
  if (!id) {
    $('detail-heading').textContent = 'Order details';
    body.replaceChildren(h('p', { class: 'muted', text: 'Choose an order in the table to see it here.' }));
    return;
  }
  state.stopDetail = client.watch(detailQuery(id), renderDetail);
  if (focus) {
    const heading = $('detail-heading');
    heading.focus({ preventScroll: true });
    heading.scrollIntoView({ block: 'nearest', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
  }
}

const idFromHash = () => {
  const id = decodeURIComponent(location.hash.slice(1));
  return /^ord_\d{5,}$/.test(id) ? id : null;
};

// ------------------------------------------------------------------ status changes

async function moveOrder(to) {
  const id = state.selectedId;
  const order = client.getQueryData(detailKey(id));
  if (!order || order.deleted || state.pendingAction) return;
  const errorEl = $('action-error');
  const statusEl = $('action-status');
  errorEl.textContent = '';
  statusEl.textContent = '';
  state.pendingAction = true;
  renderDetail(client.getQueryState(detailKey(id)));
  try {
    const updated = await api(`orders/${encodeURIComponent(id)}`, {
      method: 'PATCH',
      headers: { 'If-Match': `"${order.version}"` },
      body: { status: to },
    });
    orderWritten(updated);
    statusEl.textContent = `${id} is now ${updated.status}.`;
  } catch (err) {
    if (err.status === 412) {
      errorEl.textContent = `Not saved: ${id} was changed by someone else since you saw version ${order.version} `
        + `(412 ${err.code}). The panel now shows the latest version; check it and try again.`;
      client.invalidateQueries({ queryKey: detailKey(id), delayMs: 0 });
    } else if (err.status === 409) {
      errorEl.textContent = `Not saved: ${err.message} (409 ${err.code}).`;
      client.invalidateQueries({ queryKey: detailKey(id), delayMs: 0 });
    } else {
      errorEl.textContent = `Not saved: ${err.message}${err.status ? ` (${err.status} ${err.code})` : ''}.`;
    }
  } finally {
    state.pendingAction = false;
    if (state.selectedId === id) renderDetail(client.getQueryState(detailKey(id)));
  }
}

// ------------------------------------------------------------------ the create form

let itemCounter = 0;

function addItemRow() {
  itemCounter += 1;
  const n = itemCounter;
  const li = $('item-row-template').content.firstElementChild.cloneNode(true);
  for (const input of li.querySelectorAll('input')) {
    input.id = `new-item-${n}-${input.name}`;
    input.previousElementSibling.htmlFor = input.id;
  }
  li.querySelector('.remove-item').setAttribute('aria-label', `Remove item ${n}`);
  $('new-items').append(li);
  updateItemRows();
  return li;
}

function updateItemRows() {
  const rows = [...$('new-items').children];
  rows.forEach((li) => { li.querySelector('.remove-item').hidden = rows.length === 1; });
}

const newKey = () => (crypto.randomUUID ? crypto.randomUUID()
  : [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join(''));
let idempotencyKey = newKey();

function readForm(form) {
  const items = [...$('new-items').children].map((li) => {
    const v = (name) => li.querySelector(`[name="${name}"]`).value.trim();
    const price = v('price').replace(',', '.');
    return {
      sku: v('sku'),
      name: v('name'),
      qty: Number.parseInt(v('qty'), 10),
      unitPriceCents: Math.round(Number.parseFloat(price) * 100),
    };
  });
  return {
    customer: form.elements.customer.value.trim(),
    items,
    currency: form.elements.currency.value,
    note: form.elements.note.value,
  };
}

async function createOrder(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const errorEl = $('create-error');
  const statusEl = $('create-status');
  errorEl.textContent = '';
  statusEl.textContent = '';
  if (!form.reportValidity()) return;
  const submit = $('create-submit');
  submit.disabled = true;
  try {
    const order = await api('orders', {
      method: 'POST',
      headers: { 'Idempotency-Key': idempotencyKey },
      body: readForm(form),
    });
    idempotencyKey = newKey();
    remember(order.id, order.version, order, true);
    client.setQueryData(detailKey(order.id), order);
    orderCreated(order);
    statusEl.textContent = `Created ${order.id}.`;
    form.reset();
    $('new-items').replaceChildren();
    addItemRow();
    location.hash = order.id;
  } catch (err) {
    errorEl.textContent = `Not created: ${err.message}${err.status ? ` (${err.status} ${err.code})` : ''}.`;
  } finally {
    submit.disabled = false;
  }
}

// ------------------------------------------------------------------ connection indicator

const stream = getStreamClient({ url: new URL('stream/events', API).href });
let lastState = null;

function renderConnection(status = stream.status) {
  const box = $('connection');
  const text = $('connection-text');
  box.dataset.state = status.state;
  box.dataset.role = status.role;
  box.dataset.attempt = String(status.attempt ?? 0);
  box.dataset.retryMs = status.delayMs == null ? '' : String(status.delayMs);
  box.dataset.lastEventId = status.lastEventId == null ? '' : String(status.lastEventId);
  let label;
  if (status.state === 'live') label = 'Live';
  else if (status.state === 'reconnecting') {
    const s = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
    label = `Reconnecting in ${s} s`;
  } else if (status.state === 'offline') label = 'Offline';
  else label = 'Connecting…';
  text.textContent = label;
  $('retry-now').hidden = status.state !== 'reconnecting';
  $('last-event-id').textContent = status.lastEventId == null ? '–' : `#${status.lastEventId}`;
  $('stream-role').textContent = status.role === 'leader' ? '· this tab holds the stream' : '· stream shared by another tab';
  if (status.state !== lastState) {
    const said = { live: 'Live: changes appear as they happen.', reconnecting: 'Connection lost. Reconnecting.', offline: 'Offline.', connecting: '' };
    $('connection-announcer').textContent = said[status.state] ?? '';
    // back after an outage: what failed to load meanwhile loads now
    if (status.state === 'live') client.refetchErrored({ queryKey: ['orders'] });
    lastState = status.state;
  }
}

setInterval(() => {
  if (stream.status.state === 'reconnecting') renderConnection();
}, 250);

// ------------------------------------------------------------------ start

function wire() {
  $('status-filter').value = state.status;
  $('status-filter').addEventListener('change', (e) => {
    state.status = e.target.value;
    const url = new URL(location.href);
    if (state.status) url.searchParams.set('status', state.status);
    else url.searchParams.delete('status');
    history.replaceState(null, '', url);
    watchList();
  });
  $('load-more').addEventListener('click', () => {
    const count = $('orders-body').childElementCount;
    client.fetchNextPage(listKey(state.status)).then(() => {
      // keep the keyboard where the new rows start
      const first = $('orders-body').children[count]?.querySelector('a');
      if (document.activeElement === $('load-more') && $('load-more').hidden) first?.focus();
    }).catch(() => {});
  });
  $('list-message').addEventListener('click', (e) => {
    if (e.target.id === 'list-retry') client.invalidateQueries({ queryKey: listKey(state.status), delayMs: 0 });
  });
  // the whole row selects, for the mouse; the link in it is the keyboard's way
  $('orders-body').addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr || e.target.closest('a')) return;
    location.hash = tr.dataset.id;
  });
  $('orders-body').addEventListener('click', (e) => {
    const link = e.target.closest('a.order-link');
    if (link && link.getAttribute('href') === `#${state.selectedId}`) {
      e.preventDefault();
      select(state.selectedId); // already selected: just move there
      $('detail-heading').focus();
    }
  });
  addEventListener('hashchange', () => select(idFromHash(), { focus: true }));
  $('detail-body').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    if (button) moveOrder(button.dataset.to);
  });
  $('create-form').addEventListener('submit', createOrder);
  $('create-form').addEventListener('input', () => { $('create-status').textContent = ''; });
  $('add-item').addEventListener('click', () => addItemRow().querySelector('input').focus());
  $('new-items').addEventListener('click', (e) => {
    const button = e.target.closest('.remove-item');
    if (!button) return;
    const li = button.closest('li');
    const next = li.nextElementSibling ?? li.previousElementSibling;
    li.remove();
    updateItemRows();
    next?.querySelector('input')?.focus();
  });
  $('retry-now').addEventListener('click', () => stream.reconnectNow());
  addItemRow();
}

async function main() {
  wire();
  stream.on('status', renderConnection);
  stream.on('event', applyEvent);
  stream.on('reset', () => {
    recent.patches.clear();
    recent.deleted.clear();
    client.resetQueries({ queryKey: ['orders'] });
  });
  stream.on('resync', () => client.invalidateQueries({ queryKey: ['orders'], delayMs: 0 }));
  stream.start();
  renderConnection();
  // Fetch once the stream is in place, so that nothing committed after the
  // snapshot can slip past the page (or after 2 s, when it is not).
  await stream.ready;
  watchList();
  select(idFromHash());
}

main();
