// The one stream of order events for this browser.
//
// Browsers open at most 6 HTTP/1.1 connections per origin, and an EventSource
// holds one for as long as the page lives, so one EventSource per tab makes the
// seventh tab hang. Instead the tabs of one browser elect a leader with the
// Web Locks API; the leader alone holds the EventSource and passes every event,
// already parsed, to the other tabs over a BroadcastChannel. When the leader's
// tab closes its lock is released, the next waiting tab takes it and resumes
// the stream from the last event id it has seen, so the server replays
// whatever arrived during the handover.
//
// On an error the EventSource is closed (its own retry would ignore our
// backoff) and reopened after 1 s, 2 s, 4 s … at most 30 s, each minus up to
// 20 % jitter; the count starts over once a connection has stayed up for a
// few seconds. A new EventSource cannot set Last-Event-ID, so the position
// goes in the URL as ?lastEventId=N, which the service accepts as well.
//
// Usage (one client per page; getStreamClient returns the same one):
//   const stream = getStreamClient({ url: '/api/v1/stream/events' });
//   stream.on('event', (e) => …);   // {eventId, type, id, patch, ts}
//   stream.on('reset', (r) => …);   // {reason, lastEventId}: refetch everything
//   stream.on('resync', () => …);   // started without a position: refetch
//   stream.on('status', (s) => …);  // {state, role, lastEventId, retryAt, delayMs, attempt}
//   stream.start();

export const ORDER_EVENT_TYPES = Object.freeze(['order.created', 'order.updated', 'order.deleted']);

const DEFAULTS = {
  url: '/api/v1/stream/events',
  lockName: 'orders-stream-leader',
  channelName: 'orders-stream',
  baseDelayMs: 1000,
  maxDelayMs: 30000,
  jitter: 0.2,
  healthyAfterMs: 3000,
  // No byte for this long (the service pings every 15 s of silence): the
  // connection is dead without the browser noticing; reconnect.
  silenceTimeoutMs: 45000,
  readyTimeoutMs: 2000,
  logger: console,
};

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isVersion = (v) => Number.isSafeInteger(v) && v >= 1;

/** Checks the data of one log event; returns the event or a reason it is malformed. */
export function parseOrderEvent(type, idText, dataText) {
  const eventId = Number(idText);
  if (!idText || !Number.isSafeInteger(eventId) || eventId < 0) {
    return { error: `no valid id (${JSON.stringify(idText)})` };
  }
  let data;
  try {
    data = JSON.parse(dataText);
  } catch (err) {
    return { eventId, error: `data is not JSON: ${err.message}` };
  }
  if (!isPlainObject(data)) return { eventId, error: 'data is not an object' };
  if (data.type !== type) return { eventId, error: `type ${JSON.stringify(data.type)} under event: ${type}` };
  if (typeof data.id !== 'string' || !/^ord_\d{5,}$/.test(data.id)) return { eventId, error: 'no valid order id' };
  if (!isPlainObject(data.patch)) return { eventId, error: 'patch is not an object' };
  if (type === 'order.created' && (data.patch.id !== data.id || !isVersion(data.patch.version))) {
    return { eventId, error: 'order.created without the whole order' };
  }
  if (type === 'order.updated' && !isVersion(data.patch.version)) {
    return { eventId, error: 'order.updated without a version' };
  }
  return { event: { eventId, type, id: data.id, patch: data.patch, ts: Number(data.ts) || 0 } };
}

/** Backoff before attempt n (0-based): base·2^n capped, minus up to `jitter` of it. */
export function backoffDelay(attempt, { baseDelayMs, maxDelayMs, jitter }, random = Math.random) {
  const full = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(full * (1 - jitter * random()));
}

class StreamClient {
  #opts;
  #listeners = new Map();
  #channel = null;
  #started = false;
  #role = 'follower';
  #es = null;
  #lastEventId = null; // the newest event id this tab has applied
  #attempt = 0;
  #retryTimer = null;
  #healthyTimer = null;
  #silenceTimer = null;
  #status = { state: 'connecting', role: 'follower', lastEventId: null, retryAt: null, delayMs: null, attempt: 0 };
  #resolveReady;
  ready;

  constructor(options = {}) {
    this.#opts = { ...DEFAULTS, ...options };
    this.ready = new Promise((resolve) => { this.#resolveReady = resolve; });
  }

  get status() { return { ...this.#status }; }
  get lastEventId() { return this.#lastEventId; }
  get role() { return this.#role; }

  /** Adds a listener for 'event', 'reset', 'resync' or 'status'; returns its remover. */
  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.#listeners.get(type)?.delete(fn);
  }

  start() {
    if (this.#started) return this;
    this.#started = true;
    setTimeout(() => this.#resolveReady('timeout'), this.#opts.readyTimeoutMs);
    if (typeof BroadcastChannel === 'function') {
      this.#channel = new BroadcastChannel(this.#opts.channelName);
      this.#channel.onmessage = (m) => this.#onChannel(m.data);
      this.#channel.postMessage({ kind: 'hello' });
    }
    addEventListener('online', () => this.#onOnline());
    addEventListener('offline', () => this.#onOffline());
    addEventListener('pagehide', () => this.#closeSource());
    addEventListener('pageshow', (e) => {
      if (e.persisted && this.#role === 'leader' && !this.#es) this.#connect(); // back from the bfcache
    });
    if (navigator.locks?.request && this.#channel) {
      // Held until this document goes away: the promise never settles.
      navigator.locks.request(this.#opts.lockName, () => {
        this.#becomeLeader();
        return new Promise(() => {});
      }).catch((err) => {
        this.#opts.logger.warn('orders stream: no leader lock, this tab streams alone', err);
        this.#becomeLeader();
      });
    } else {
      // No Web Locks (e.g. plain http on a non-local host): every tab streams.
      this.#opts.logger.warn('orders stream: Web Locks or BroadcastChannel unavailable; one stream per tab');
      this.#channel?.close();
      this.#channel = null;
      this.#becomeLeader();
    }
    return this;
  }

  /** Reconnects at once instead of waiting out the backoff ("Retry now"). */
  reconnectNow() {
    if (this.#role !== 'leader') {
      this.#channel?.postMessage({ kind: 'retry-now' });
      return;
    }
    if (this.#status.state === 'live') return;
    this.#connect(); // the backoff count stays: failing again waits longer
  }

  // ---------------------------------------------------------------- leader

  #becomeLeader() {
    this.#role = 'leader';
    this.#attempt = 0;
    this.#connect();
  }

  #connect() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#closeSource();
    if (navigator.onLine === false) {
      this.#setStatus({ state: 'offline', retryAt: null, delayMs: null });
      return;
    }
    const url = new URL(this.#opts.url, location.href);
    if (this.#lastEventId !== null) url.searchParams.set('lastEventId', String(this.#lastEventId));
    const es = new EventSource(url.href);
    this.#es = es;
    this.#touch();
    this.#setStatus({ state: 'connecting', retryAt: null, delayMs: null });
    const mine = (fn) => (e) => { if (this.#es === es) { this.#touch(); fn(e); } };
    es.addEventListener('connected', mine((e) => this.#onConnected(e)));
    for (const type of ORDER_EVENT_TYPES) es.addEventListener(type, mine((e) => this.#onLogEvent(e)));
    es.addEventListener('reset', mine((e) => this.#onReset(e)));
    es.addEventListener('ping', mine(() => {}));
    es.addEventListener('error', () => { if (this.#es === es) this.#onError(); });
  }

  #closeSource() {
    clearTimeout(this.#healthyTimer);
    clearTimeout(this.#silenceTimer);
    if (this.#es) {
      this.#es.close();
      this.#es = null;
    }
  }

  #touch() {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      this.#opts.logger.warn('orders stream: silent for too long, reconnecting');
      this.#onError();
    }, this.#opts.silenceTimeoutMs);
  }

  #onConnected(e) {
    let head = null;
    try {
      head = JSON.parse(e.data).lastEventId;
    } catch (err) {
      this.#opts.logger.warn('orders stream: malformed connected event skipped', err);
    }
    clearTimeout(this.#healthyTimer);
    this.#healthyTimer = setTimeout(() => {
      this.#attempt = 0;
      this.#setStatus({ attempt: 0 });
    }, this.#opts.healthyAfterMs);
    const positionless = this.#lastEventId === null;
    if (positionless && Number.isSafeInteger(head)) this.#lastEventId = head;
    this.#setStatus({ state: 'live', retryAt: null, delayMs: null });
    // Without a position the stream starts at the head: whatever the page
    // fetched before may be older than that, so it refetches.
    if (positionless) this.#emitAndShare({ kind: 'resync' });
    this.#resolveReady('live');
  }

  #onLogEvent(e) {
    const parsed = parseOrderEvent(e.type, e.lastEventId, e.data);
    if (parsed.eventId !== undefined && this.#lastEventId !== null && parsed.eventId <= this.#lastEventId) {
      return; // already seen (the replay overlaps what a previous leader passed on)
    }
    if (parsed.error) {
      this.#opts.logger.warn(`orders stream: malformed ${e.type} event ${e.lastEventId || '(no id)'} skipped: ${parsed.error}`, e.data);
      if (parsed.eventId !== undefined) {
        this.#lastEventId = parsed.eventId;
        this.#setStatus({});
      }
      return;
    }
    this.#lastEventId = parsed.event.eventId;
    this.#emitAndShare({ kind: 'event', event: parsed.event });
    this.#setStatus({});
  }

  #onReset(e) {
    let data = {};
    try {
      data = JSON.parse(e.data);
    } catch (err) {
      this.#opts.logger.warn('orders stream: malformed reset event, resetting anyway', err);
    }
    const head = Number.isSafeInteger(data.lastEventId) ? data.lastEventId : Number(e.lastEventId);
    if (Number.isSafeInteger(head)) this.#lastEventId = head;
    this.#opts.logger.info(`orders stream: reset (${data.reason}), refetching everything from event ${this.#lastEventId}`);
    this.#emitAndShare({ kind: 'reset', reset: { reason: String(data.reason ?? 'unknown'), lastEventId: this.#lastEventId } });
    this.#setStatus({});
  }

  #onError() {
    this.#closeSource();
    if (navigator.onLine === false) {
      this.#setStatus({ state: 'offline', retryAt: null, delayMs: null });
      return;
    }
    const delayMs = backoffDelay(this.#attempt, this.#opts);
    this.#attempt += 1;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#connect(), delayMs);
    this.#setStatus({ state: 'reconnecting', retryAt: Date.now() + delayMs, delayMs, attempt: this.#attempt });
  }

  #onOffline() {
    if (this.#role !== 'leader') return;
    clearTimeout(this.#retryTimer);
    this.#closeSource();
    this.#setStatus({ state: 'offline', retryAt: null, delayMs: null });
  }

  #onOnline() {
    if (this.#role !== 'leader' || this.#es) return;
    this.#attempt = 0;
    this.#connect();
  }

  // ---------------------------------------------------------------- sharing

  #emitAndShare(message) {
    this.#deliver(message);
    this.#channel?.postMessage(message);
  }

  #onChannel(message) {
    if (!message || typeof message !== 'object') return;
    switch (message.kind) {
      case 'hello':
        if (this.#role === 'leader') this.#channel.postMessage({ kind: 'status', status: this.#status });
        break;
      case 'retry-now':
        if (this.#role === 'leader') this.reconnectNow();
        break;
      case 'status':
        if (this.#role === 'leader') break; // a leader's stale message during a handover
        if (Number.isSafeInteger(message.status.lastEventId)
            && (this.#lastEventId === null || message.status.lastEventId > this.#lastEventId)) {
          // Sent after every event up to that id, which arrived first.
          this.#lastEventId = message.status.lastEventId;
        }
        this.#setStatus({ ...message.status, role: 'follower' }, false);
        this.#resolveReady('follower');
        break;
      case 'event':
        if (this.#role === 'leader') break;
        if (this.#lastEventId !== null && message.event.eventId <= this.#lastEventId) break;
        this.#lastEventId = message.event.eventId;
        this.#deliver(message);
        break;
      case 'reset':
        if (this.#role === 'leader') break;
        this.#lastEventId = message.reset.lastEventId;
        this.#deliver(message);
        break;
      case 'resync':
        if (this.#role !== 'leader') this.#deliver(message);
        break;
      default:
        break;
    }
  }

  #deliver(message) {
    const payload = message.kind === 'event' ? message.event : message.kind === 'reset' ? message.reset : undefined;
    for (const fn of this.#listeners.get(message.kind) ?? []) {
      try {
        fn(payload);
      } catch (err) {
        this.#opts.logger.error(`orders stream: a ${message.kind} listener failed`, err);
      }
    }
  }

  #setStatus(change, share = true) {
    this.#status = { ...this.#status, ...change, role: this.#role, lastEventId: this.#lastEventId };
    if (share && this.#role === 'leader') this.#channel?.postMessage({ kind: 'status', status: this.#status });
    for (const fn of this.#listeners.get('status') ?? []) {
      try {
        fn({ ...this.#status });
      } catch (err) {
        this.#opts.logger.error('orders stream: a status listener failed', err);
      }
    }
  }
}

let instance = null;

/** The page's one stream client; options apply to the first call only. */
export function getStreamClient(options) {
  instance ??= new StreamClient(options);
  return instance;
}
