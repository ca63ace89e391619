// A small query cache with the semantics of TanStack Query, for a page that
// is kept current by a stream instead of by polling:
//
// - entries are keyed by arrays, hashed with object keys sorted, and matched
//   by prefix (['orders', 'list'] matches ['orders', 'list', {status: 'paid'}]);
// - watch() mounts an observer: it fetches when there is no data yet or the
//   data was invalidated, and calls back on every change of the entry;
// - the data never goes stale by age (staleTime: Infinity): the stream says
//   when it changed, either by setQueryData (patch in place, no request) or by
//   invalidateQueries (refetch the observed entries, the others when next
//   watched);
// - invalidations of one entry within `delayMs` (default 250 ms) coalesce into
//   one refetch; one that arrives while the entry is being fetched refetches
//   once more after it (the response may predate the change);
// - one request per entry at a time: a fetch of an entry being fetched gets
//   the running one;
// - infinite entries ({pages, pageParams}, "load more" by cursor) refetch all
//   their loaded pages in sequence from the first, as TanStack does;
// - `reconcile(fresh, current)` lets the owner fold what it learnt while the
//   request was in flight into the response;
// - entries nobody watches are dropped after gcTimeMs.

export function hashKey(queryKey) {
  return JSON.stringify(queryKey, (_, value) => (
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.keys(value).sort().map((k) => [k, value[k]]))
      : value));
}

function partialDeepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || !a || !b || typeof a !== 'object') return false;
  return Object.keys(b).every((k) => partialDeepEqual(a[k], b[k]));
}

/** Whether queryKey starts with the elements of prefix (objects compared partially). */
export function matchesKey(queryKey, prefix) {
  if (!prefix) return true;
  return prefix.every((part, i) => partialDeepEqual(queryKey[i], part));
}

const INITIAL_STATE = Object.freeze({
  data: undefined,
  error: null,
  status: 'pending', // pending | success | error
  fetchStatus: 'idle', // idle | fetching
  fetchKind: null, // refetch | next
  isInvalidated: false,
  dataUpdatedAt: 0,
});

class Query {
  constructor(queryKey, hash) {
    this.queryKey = queryKey;
    this.hash = hash;
    this.state = INITIAL_STATE;
    this.options = {};
    this.observers = new Set();
    this.promise = null;
    this.controller = null;
    this.refetchTimer = null;
    this.refetchAgain = false;
    this.replaceNext = false;
    this.gcTimer = null;
  }
}

export class QueryClient {
  #queries = new Map();
  #gcTimeMs;
  #delayMs;
  #fetchCount = 0;

  constructor({ gcTimeMs = 5 * 60_000, invalidateDelayMs = 250 } = {}) {
    this.#gcTimeMs = gcTimeMs;
    this.#delayMs = invalidateDelayMs;
  }

  /** Requests made by the cache so far (for diagnostics). */
  get fetchCount() { return this.#fetchCount; }

  #build(queryKey, options) {
    const hash = hashKey(queryKey);
    let query = this.#queries.get(hash);
    if (!query) {
      query = new Query(queryKey, hash);
      this.#queries.set(hash, query);
    }
    if (options) query.options = { ...query.options, ...options };
    return query;
  }

  #find(prefix) {
    return [...this.#queries.values()].filter((q) => matchesKey(q.queryKey, prefix));
  }

  #setState(query, change) {
    query.state = { ...query.state, ...change };
    for (const listener of [...query.observers]) {
      try {
        listener(query.state);
      } catch (err) {
        console.error('query cache: an observer failed', err);
      }
    }
  }

  /**
   * Observes an entry; listener(state) on every change. Fetches now when the
   * entry has no data or is invalidated. Returns the function that stops it.
   * options: {queryKey, queryFn, infinite?, initialPageParam?, getNextPageParam?, reconcile?}
   */
  watch(options, listener) {
    const query = this.#build(options.queryKey, options);
    clearTimeout(query.gcTimer);
    query.observers.add(listener);
    if ((query.state.data === undefined || query.state.isInvalidated) && !query.promise) {
      this.#fetch(query);
    }
    listener(query.state);
    return () => {
      query.observers.delete(listener);
      if (query.observers.size === 0) {
        query.gcTimer = setTimeout(() => {
          if (query.observers.size === 0 && !query.promise) this.#queries.delete(query.hash);
        }, this.#gcTimeMs);
      }
    };
  }

  getQueryState(queryKey) {
    return this.#queries.get(hashKey(queryKey))?.state;
  }

  getQueryData(queryKey) {
    return this.#queries.get(hashKey(queryKey))?.state.data;
  }

  /** Entries under prefix, as [queryKey, data] pairs, with data only. */
  getQueriesData(prefix) {
    return this.#find(prefix).filter((q) => q.state.data !== undefined).map((q) => [q.queryKey, q.state.data]);
  }

  /** Replaces an entry's data (updater gets the old data); no request. */
  setQueryData(queryKey, updater) {
    const existing = this.#queries.get(hashKey(queryKey));
    const old = existing?.state.data;
    const data = typeof updater === 'function' ? updater(old) : updater;
    if (data === undefined || data === old) return old;
    const query = existing ?? this.#build(queryKey);
    this.#setState(query, { data, status: 'success', error: null, dataUpdatedAt: Date.now() });
    if (!existing && query.observers.size === 0) {
      query.gcTimer = setTimeout(() => {
        if (query.observers.size === 0) this.#queries.delete(query.hash);
      }, this.#gcTimeMs);
    }
    return data;
  }

  /** setQueryData on every entry under prefix that has data; updater(data, queryKey). */
  setQueriesData(prefix, updater) {
    for (const query of this.#find(prefix)) {
      if (query.state.data === undefined) continue;
      const data = updater(query.state.data, query.queryKey);
      if (data !== undefined && data !== query.state.data) {
        this.#setState(query, { data, dataUpdatedAt: Date.now() });
      }
    }
  }

  /**
   * Marks entries stale; the observed ones refetch after delayMs, coalescing
   * with any refetch already scheduled. predicate(query) narrows the prefix.
   */
  invalidateQueries({ queryKey, predicate, delayMs = this.#delayMs } = {}) {
    for (const query of this.#find(queryKey)) {
      if (predicate && !predicate({ queryKey: query.queryKey, state: query.state })) continue;
      if (!query.state.isInvalidated) this.#setState(query, { isInvalidated: true });
      if (query.observers.size > 0) this.#scheduleRefetch(query, delayMs);
    }
  }

  /**
   * Refetches the observed entries under prefix now; drops the others.
   * The responses replace the data as they are (no reconcile): for a reset.
   */
  resetQueries({ queryKey } = {}) {
    for (const query of this.#find(queryKey)) {
      clearTimeout(query.refetchTimer);
      query.refetchTimer = null;
      if (query.observers.size === 0) {
        query.controller?.abort();
        this.#queries.delete(query.hash);
        continue;
      }
      this.#setState(query, { isInvalidated: true });
      if (query.promise) {
        query.refetchAgain = true;
        query.replaceNext = true;
      } else {
        this.#fetch(query, { replace: true });
      }
    }
  }

  /** Refetches observed entries under prefix whose last fetch failed. */
  refetchErrored({ queryKey } = {}) {
    for (const query of this.#find(queryKey)) {
      if (query.state.status === 'error' && query.observers.size > 0 && !query.promise) this.#fetch(query);
    }
  }

  /** Fetches the next page of an infinite entry, after any fetch in flight. */
  async fetchNextPage(queryKey) {
    const query = this.#queries.get(hashKey(queryKey));
    if (!query?.options.infinite) return undefined;
    while (query.promise) {
      try {
        await query.promise;
      } catch {
        // the fetch's error is in the state
      }
    }
    return this.#fetch(query, { next: true });
  }

  hasNextPage(queryKey) {
    const query = this.#queries.get(hashKey(queryKey));
    const pages = query?.state.data?.pages;
    if (!pages?.length) return false;
    return query.options.getNextPageParam(pages[pages.length - 1]) != null;
  }

  #scheduleRefetch(query, delayMs) {
    if (query.promise) {
      query.refetchAgain = true;
      return;
    }
    if (query.refetchTimer) return;
    query.refetchTimer = setTimeout(() => {
      query.refetchTimer = null;
      if (query.promise) {
        query.refetchAgain = true;
      } else if (query.observers.size > 0) {
        this.#fetch(query);
      }
    }, delayMs);
  }

  #fetch(query, { next = false, replace = false } = {}) {
    if (query.promise) return query.promise;
    const { queryFn, infinite, initialPageParam = null, getNextPageParam, reconcile } = query.options;
    if (typeof queryFn !== 'function') return Promise.resolve(query.state.data);
    if (infinite && next) {
      const pages = query.state.data?.pages ?? [];
      if (pages.length && getNextPageParam(pages[pages.length - 1]) == null) {
        return Promise.resolve(query.state.data);
      }
    }
    const controller = new AbortController();
    const { signal } = controller;
    const call = (pageParam) => {
      this.#fetchCount += 1;
      return queryFn({ queryKey: query.queryKey, signal, pageParam });
    };
    query.controller = controller;
    clearTimeout(query.refetchTimer);
    query.refetchTimer = null;
    this.#setState(query, { fetchStatus: 'fetching', fetchKind: next ? 'next' : 'refetch' });
    query.promise = (async () => {
      await null; // query.promise is set before anything below can finish
      try {
        let data;
        if (infinite && next) {
          const pages = query.state.data?.pages ?? [];
          const param = pages.length ? getNextPageParam(pages[pages.length - 1]) : initialPageParam;
          const page = await call(param);
          const current = query.state.data ?? { pages: [], pageParams: [] };
          data = { pages: [...current.pages, page], pageParams: [...current.pageParams, param] };
          if (reconcile) data = reconcile(data, current);
        } else if (infinite) {
          const count = Math.max(1, query.state.data?.pages.length ?? 0);
          const pages = [];
          const pageParams = [];
          let param = initialPageParam;
          for (let i = 0; i < count; i += 1) {
            const page = await call(param);
            pages.push(page);
            pageParams.push(param);
            param = getNextPageParam(page);
            if (param == null) break;
          }
          data = { pages, pageParams };
          if (reconcile && !replace) data = reconcile(data, query.state.data);
        } else {
          data = await call(undefined);
          if (reconcile && !replace) data = reconcile(data, query.state.data);
        }
        this.#setState(query, {
          data, error: null, status: 'success', fetchStatus: 'idle', fetchKind: null,
          isInvalidated: query.refetchAgain, dataUpdatedAt: Date.now(),
        });
        return data;
      } catch (error) {
        if (signal.aborted) {
          this.#setState(query, { fetchStatus: 'idle', fetchKind: null });
          return query.state.data;
        }
        this.#setState(query, { error, status: 'error', fetchStatus: 'idle', fetchKind: null });
        throw error;
      } finally {
        query.promise = null;
        query.controller = null;
        if (query.refetchAgain) {
          query.refetchAgain = false;
          if (query.replaceNext) {
            query.replaceNext = false;
            queueMicrotask(() => this.#fetch(query, { replace: true }));
          } else {
            this.#scheduleRefetch(query, this.#delayMs);
          }
        }
      }
    })();
    query.promise.catch(() => {}); // the error is in the state; callers may await it too
    return query.promise;
  }
}
