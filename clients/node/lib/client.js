'use strict';
// The Kairos client: calls are written to a pipelined connection without waiting for earlier answers, and answers
// are matched by request id (catalogue scans on a second connection, see SCAN_LANE). Endpoints with failover and
// back-off, a deadline per call, and one retry on a fresh connection when a connection breaks (every operation is
// idempotent but ROLLBACK).

const net = require('net');
const P = require('./protocol');
const {
  KairosError,
  KairosConnectionError,
  KairosTimeoutError,
  Unavailable,
  ShuttingDown,
} = require('./errors');

const DEFAULT_PORT = 7878;

// The server answers each connection's requests in order, so a catalogue scan (milliseconds on a large catalogue)
// holds up every SCORE pipelined behind it on the same connection. Scans and admin operations therefore go on a
// connection of their own (lane 1); everything else on lane 0.
const SCAN_LANE = 1;
const LANE_OF = new Map([
  [P.Op.TOPK, SCAN_LANE],
  [P.Op.SIMILAR, SCAN_LANE],
  [P.Op.PUSH_DECIDE, SCAN_LANE],
  [P.Op.RELOAD, SCAN_LANE],
  [P.Op.PIN, SCAN_LANE],
  [P.Op.ROLLBACK, SCAN_LANE],
]);

/** Internal: the connection broke (closed, reset, or no answer at all within a timeout). */
class Lost extends Error {}
/** Internal: one request's deadline passed. */
class Expired extends Error {}

/** What a call rejects with when its `signal` aborts: the signal's reason (an AbortError DOMException by default). */
function abortReason(signal) {
  return signal.reason !== undefined ? signal.reason : new DOMException('This operation was aborted', 'AbortError');
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts. */
function untilAborted(promise, signal) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** `[{host, port}]` from "host", "host:port", [host, port], {host, port}, or an array of those. */
function parseEndpoints(spec, defaultPort = DEFAULT_PORT) {
  const single = typeof spec === 'string'
    || (Array.isArray(spec) && spec.length === 2 && typeof spec[0] === 'string' && typeof spec[1] === 'number')
    || (spec && !Array.isArray(spec) && typeof spec === 'object');
  const specs = single ? [spec] : Array.from(spec || []);
  const out = specs.map((s) => {
    let host;
    let port = defaultPort;
    if (typeof s === 'string') {
      const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) || (s.split(':').length === 2 ? /^([^:]+):(\d+)$/.exec(s) : null);
      if (m) {
        host = m[1];
        port = Number(m[2]);
      } else {
        host = s.replace(/^\[(.*)\]$/, '$1');
      }
    } else if (Array.isArray(s) && s.length === 2) {
      [host, port] = s;
    } else if (s && typeof s === 'object') {
      host = s.host;
      port = s.port === undefined ? defaultPort : s.port;
    } else {
      throw new TypeError(`an endpoint is "host", "host:port", [host, port] or {host, port}, not ${String(s)}`);
    }
    if (typeof host !== 'string' || host === '') throw new TypeError(`bad endpoint host ${String(host)}`);
    if (!Number.isInteger(port) || port <= 0 || port >= 65536) throw new RangeError(`bad port ${String(port)}`);
    return { host, port };
  });
  if (!out.length) throw new RangeError('no endpoints');
  return out;
}

/** One server address and whether it looks healthy: after a failure it is avoided for a back-off (doubling up to a
 * maximum) while another endpoint is healthy; when all are down they are tried anyway, soonest-healthy first. */
class Endpoint {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.downUntil = 0;
    this.failures = 0;
  }
  get label() { return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`; }
  isUp(now = Date.now()) { return this.downUntil <= now; }
  markDown(baseMs, maxMs) {
    this.failures += 1;
    this.downUntil = Date.now() + Math.min(maxMs, baseMs * 2 ** Math.min(this.failures - 1, 16));
  }
  markUp() {
    this.failures = 0;
    this.downUntil = 0;
  }
}

/** Index of the endpoint to use next: the first healthy untried one in list order, else the untried one that comes
 * back soonest, else -1 (all tried). */
function choose(endpoints, tried) {
  const now = Date.now();
  let best = -1;
  for (let i = 0; i < endpoints.length; i++) {
    if (tried.has(i)) continue;
    if (endpoints[i].downUntil <= now) return i;
    if (best < 0 || endpoints[i].downUntil < endpoints[best].downUntil) best = i;
  }
  return best;
}

/** One pipelined connection: frames queued in one turn of the event loop go out in one write; answers are split
 * out of the stream and each settles the request with its id (the server answers in order, but matching by id does
 * not depend on it). */
class Connection {
  constructor(index, lane, socket) {
    this.index = index;
    this.lane = lane;
    this.socket = socket;
    this.pending = new Map();
    this.nextId = 1;
    this.leftover = null;
    this.closed = false;
    this.error = null;
    this.received = 0; // frames received: a timeout with none since the request was sent means a dead peer
    this.fresh = true;
    this.out = [];
    this.flush = () => this._flush();
    socket.on('data', (chunk) => this._onData(chunk));
    socket.on('error', (e) => this.fail(new Lost(e.message)));
    socket.on('close', () => this.fail(new Lost('connection closed by the server')));
    socket.unref(); // an idle connection does not keep the process alive; a pending request does
  }

  _onData(chunk) {
    let buf = chunk;
    if (this.leftover) {
      buf = Buffer.concat([this.leftover, chunk]);
      this.leftover = null;
    }
    let pos = 0;
    try {
      while (buf.length - pos >= P.HEADER_SIZE) {
        const h = P.parseHeader(buf, pos);
        const stop = pos + P.HEADER_SIZE + h.length;
        if (stop > buf.length) break;
        const body = buf.subarray(pos + P.HEADER_SIZE, stop);
        pos = stop;
        this.received += 1;
        const waiter = this.pending.get(h.requestId);
        if (waiter) {
          this._settled(h.requestId, waiter);
          waiter.resolve({ opcode: h.opcode, requestId: h.requestId, body });
        } else if (h.requestId === 0 && h.opcode === P.ERROR_OPCODE) {
          // A connection-level error (a refusal at accept, a framing error): it answers nothing in particular, so
          // every request waiting on this connection fails with it.
          this.fail(P.decodeError(body, 0));
          return;
        } // else: the answer to a request that already timed out; dropped
      }
    } catch (e) {
      this.fail(e); // not a Kairos stream
      return;
    }
    if (pos < buf.length) this.leftover = Buffer.from(buf.subarray(pos)); // a copy: do not pin the whole chunk
  }

  _settled(id, waiter) {
    clearTimeout(waiter.timer);
    if (waiter.signal) waiter.signal.removeEventListener('abort', waiter.onAbort);
    this.pending.delete(id);
    if (this.pending.size === 0 && !this.closed) this.socket.unref();
  }

  fail(error) {
    if (!this.closed) {
      this.closed = true;
      this.error = error;
      this.socket.destroy();
    }
    const pending = this.pending;
    this.pending = new Map();
    for (const waiter of pending.values()) {
      clearTimeout(waiter.timer);
      if (waiter.signal) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(error);
    }
  }

  close() { this.fail(new Lost('closed by the client')); }

  _flush() {
    const out = this.out;
    this.out = [];
    if (out.length && !this.closed) this.socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
  }

  /** Sends one request; resolves to `{opcode, requestId, body}`, rejects with Lost, Expired, a KairosError or the
   * abort reason of `signal` (then the request is forgotten: a late answer is dropped, the connection goes on). */
  request(opcode, payload, deadline, signal) {
    if (this.closed) return Promise.reject(this.error || new Lost('closed'));
    const id = this.nextId;
    this.nextId = id < 0xffffffff ? id + 1 : 1; // 0 is never used: it addresses the connection
    const receivedBefore = this.received;
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        if (!this.pending.has(id)) return;
        this._settled(id, waiter);
        if (this.received === receivedBefore) {
          // Nothing at all came back since this request was sent: the peer looks dead or hung. Drop the connection
          // so the next call reconnects (and fails over if it has to).
          this.fail(new Lost('no answer within the timeout'));
        }
        reject(new Expired());
      }, Math.max(0, deadline - Date.now()));
      if (signal) {
        waiter.signal = signal;
        waiter.onAbort = () => {
          if (!this.pending.has(id)) return;
          this._settled(id, waiter);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      if (this.pending.size === 0) this.socket.ref();
      this.pending.set(id, waiter);
      if (this.out.length === 0) process.nextTick(this.flush);
      this.out.push(P.frame(opcode, id, payload));
    });
  }
}

/** Kairos client for app servers: one per process, shared by every handler. Every method returns a promise; bad
 * arguments reject it (TypeError, RangeError) before anything is sent. */
class Client {
  /**
   * @param endpoints "host", "host:port", [host, port], {host, port}, or an array of those (failover in order).
   * @param options `timeoutMs` bounds a whole call (connect, send, answer; default 1000), `connectTimeoutMs` one
   *   connection attempt (default: the timeout), `backoffMs`/`maxBackoffMs` how long a failed endpoint is avoided.
   */
  constructor(endpoints = '127.0.0.1', options = {}) {
    const timeoutMs = options.timeoutMs === undefined ? 1000 : options.timeoutMs;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      throw new RangeError(`timeoutMs must be a positive number of milliseconds, not ${String(timeoutMs)}`);
    }
    this.endpoints = parseEndpoints(endpoints, options.port || DEFAULT_PORT).map((e) => new Endpoint(e.host, e.port));
    this.timeoutMs = timeoutMs;
    this.connectTimeoutMs = options.connectTimeoutMs === undefined ? timeoutMs : options.connectTimeoutMs;
    this.backoffMs = options.backoffMs === undefined ? 500 : options.backoffMs;
    this.maxBackoffMs = options.maxBackoffMs === undefined ? 30000 : options.maxBackoffMs;
    this._conns = [null, null]; // per lane
    this._connecting = [null, null];
    this._closed = false;
  }

  // ----------------------------------------------------------------------------------------------------- the API

  /** PING: resolves when the server answers. */
  async ping() { return this._call(P.Op.PING, P.EMPTY); }

  /** HELLO: `{chosenVersion, versions, limits, server}`. */
  async hello(versions = [P.VERSION]) { return this._call(P.Op.HELLO, P.encodeHello(versions)); }

  /** INFO: `{limits, models}` (each model: name, version, dimensions, items, users, encoding, loadedAt, checksum). */
  async info() { return this._call(P.Op.INFO, P.EMPTY); }

  /** STATS: uptime, connections, per-op request and error counts and p50/p99/p99.9 in microseconds. */
  async stats() { return this._call(P.Op.STATS, P.EMPTY); }

  /** SCORE: one score per item, in order (NaN and an item flag for unknown items). Options: events, now, decay. */
  async score(model, user, items, options = {}) {
    // An iterable becomes an array once, so the answer's items are the ones sent; a string is refused by the codec.
    const iterable = items != null && typeof items !== 'string' && typeof items[Symbol.iterator] === 'function';
    const list = iterable && !Array.isArray(items) ? Array.from(items) : items;
    return this._call(P.Op.SCORE, P.encodeScore(model, user, list, options), list, options.signal);
  }

  /** TOPK: the user's best k items. Options: exclude, allowRepeats, category, events, now, decay, trendingWeight,
   * buyAgainWeight. */
  async topk(model, user, k, options = {}) {
    return this._call(P.Op.TOPK, P.encodeTopk(model, user, k, options), [], options.signal);
  }

  /** SIMILAR: the k items most like `item` (by cosine), optionally within `options.category`. */
  async similar(model, item, k, options = {}) {
    return this._call(P.Op.SIMILAR, P.encodeSimilar(model, item, k, options), [], options.signal);
  }

  /** PUSH_DECIDE: push now, later (and when) or never, and what. Options: recentPushes, maxPerDay, maxPerWeek,
   * minGapSeconds, quietHours, utcOffsetMinutes, threshold, k, events, decay. */
  async pushDecide(model, user, now, options = {}) {
    return this._call(P.Op.PUSH_DECIDE, P.encodePushDecide(model, user, now, options), [], options.signal);
  }

  /** Admin: rescan the models folder now. */
  async reload() { return this._call(P.Op.RELOAD, P.EMPTY); }

  /** Admin: serve exactly `version` of `model` until unpinned. */
  async pin(model, version) { return this._call(P.Op.PIN, P.encodePin(model, version)); }

  /** Admin: the highest valid version serves again. */
  async unpin(model) { return this._call(P.Op.PIN, P.encodePin(model, 0)); }

  /** Admin: pin the highest valid version below the one serving. Never retried (a second would go back further). */
  async rollback(model) { return this._call(P.Op.ROLLBACK, P.encodeRollback(model)); }

  /** Closes the connection; requests still waiting fail with KairosConnectionError. Later calls throw. */
  close() {
    this._closed = true;
    for (const conn of this._conns) if (conn) conn.close();
    this._conns = [null, null];
  }

  // -------------------------------------------------------------------------------------------------- internals

  async _call(opcode, payload, items = [], signal = undefined) {
    if (this._closed) throw new KairosError('the client is closed');
    if (signal && signal.aborted) throw abortReason(signal);
    const deadline = Date.now() + this.timeoutMs;
    const tried = new Set();
    const lane = LANE_OF.get(opcode) || 0;
    let retried = false;
    for (;;) {
      if (signal && signal.aborted) throw abortReason(signal); // before a retry or a failover too
      let conn = this._conns[lane];
      if (!conn || conn.closed) conn = await untilAborted(this._connect(lane, deadline, tried), signal);
      const endpoint = this.endpoints[conn.index];
      let answer;
      try {
        answer = await conn.request(opcode, payload, deadline, signal);
      } catch (e) {
        if (e instanceof Lost) {
          this._forget(conn);
          if (this._closed) throw new KairosConnectionError('the client was closed while the request was in flight');
          if (conn.fresh) endpoint.markDown(this.backoffMs, this.maxBackoffMs); // prefer another endpoint for the retry
          if (P.NOT_IDEMPOTENT.has(opcode)) {
            throw new KairosConnectionError(`connection to ${endpoint.label} lost (${e.message}) after sending `
              + `${P.OP_NAMES[opcode]}: it may or may not have been applied, and is not retried automatically`);
          }
          if (retried) {
            throw new KairosConnectionError(`connection to ${endpoint.label} lost (${e.message}), on a fresh connection too`);
          }
          retried = true;
          continue;
        }
        if (e instanceof Expired) {
          if (conn.closed) {
            this._forget(conn);
            endpoint.markDown(this.backoffMs, this.maxBackoffMs);
          }
          throw new KairosTimeoutError(`no answer from ${endpoint.label} within ${this.timeoutMs} ms`);
        }
        if (e instanceof Unavailable) { // a refusal addressed to the connection (OVERLOADED at accept, draining)
          this._forget(conn);
          endpoint.markDown(this.backoffMs, this.maxBackoffMs);
          tried.add(conn.index);
          if (choose(this.endpoints, tried) < 0) throw e;
          continue;
        }
        if (signal && signal.aborted) throw e; // the caller gave up; the connection is fine
        this._forget(conn); // a stream this client cannot read, or a framing error: the connection is gone
        throw e;
      }
      conn.fresh = false;
      let result;
      try {
        result = P.decodeResponse(opcode, answer.opcode, answer.body, answer.requestId, items);
      } catch (e) {
        if (e instanceof ShuttingDown) { // this server drains: the request was not processed, go elsewhere
          this._forget(conn);
          conn.close();
          endpoint.markDown(this.backoffMs, this.maxBackoffMs);
          tried.add(conn.index);
          if (choose(this.endpoints, tried) < 0) throw e;
          continue;
        }
        if (e instanceof KairosError && (e.code == null || P.closesConnection(e))) {
          this._forget(conn);
          conn.close();
        }
        endpoint.markUp();
        throw e;
      }
      endpoint.markUp();
      return result;
    }
  }

  _forget(conn) {
    if (this._conns[conn.lane] === conn) this._conns[conn.lane] = null;
  }

  /** The lane's live connection, or a new one; concurrent callers share one connection attempt. */
  _connect(lane, deadline, tried) {
    if (!this._connecting[lane]) {
      this._connecting[lane] = this._open(lane, deadline, tried).finally(() => { this._connecting[lane] = null; });
    }
    return this._connecting[lane];
  }

  async _open(lane, deadline, tried) {
    let lastError = null;
    for (;;) {
      const i = choose(this.endpoints, tried);
      if (i < 0) throw lastError || new KairosConnectionError('no Kairos endpoint could be reached');
      const endpoint = this.endpoints[i];
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new KairosTimeoutError(`no connection to ${endpoint.label} within ${this.timeoutMs} ms`);
      let socket = null;
      try {
        socket = await connectSocket(endpoint, Math.min(remaining, this.connectTimeoutMs));
      } catch (e) {
        lastError = e; // KairosConnectionError or KairosTimeoutError
      }
      if (this._closed) {
        if (socket) socket.destroy();
        throw new KairosConnectionError('the client was closed while the request was in flight');
      }
      if (socket) {
        this._conns[lane] = new Connection(i, lane, socket);
        return this._conns[lane];
      }
      endpoint.markDown(this.backoffMs, this.maxBackoffMs);
      tried.add(i);
    }
  }
}

function connectSocket(endpoint, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: endpoint.host, port: endpoint.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new KairosTimeoutError(`connecting to ${endpoint.label} timed out after ${Math.round(timeoutMs)} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new KairosConnectionError(`cannot connect to ${endpoint.label}: ${e.message}`));
    });
  });
}

module.exports = { Client, DEFAULT_PORT, parseEndpoints, Endpoint, choose };
