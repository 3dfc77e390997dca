'use strict';
// Kairos wire protocol v1 (proto-spec/PROTOCOL.md): pure bytes in, values out. No sockets here.
//
// Requests: `encode*` functions return a payload (Buffer); `frame(opcode, requestId, payload)` puts the 12-byte header
// in front. Responses: `parseHeader` reads a header, `decodeResponse(requestOpcode, responseOpcode, payload)` turns a
// payload into a result object or throws the server's error. Everything is little-endian.

const { ProtocolError, CLOSES_CONNECTION, errorForCode } = require('./errors');

const MAGIC = 0xca;
const VERSION = 1;
const HEADER_SIZE = 12;
const ERROR_OPCODE = 0xff;
/** Largest response payload this client accepts (a guard against a peer that is not Kairos). */
const MAX_RESPONSE_PAYLOAD = 64 * 1024 * 1024;
/** The latest time a request may carry (9999-12-31T23:59:59Z); the earliest is 0 (1970). */
const LATEST_TIME = 253402300799;
const MAX_U64 = (1n << 64n) - 1n;
const MAX_F32 = 3.4028234663852886e38;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Request opcodes; a success response carries `opcode | 0x80`. */
const Op = Object.freeze({
  PING: 0x01,
  HELLO: 0x02,
  INFO: 0x03,
  STATS: 0x04,
  SCORE: 0x10,
  TOPK: 0x11,
  SIMILAR: 0x12,
  PUSH_DECIDE: 0x13,
  RELOAD: 0x20,
  PIN: 0x21,
  ROLLBACK: 0x22,
});
const OP_NAMES = Object.freeze(Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k])));
// ROLLBACK pins the version below the one serving, so a retry after a lost answer could roll back two versions.
// Every other operation is idempotent (the server keeps no per-request state).
const NOT_IDEMPOTENT = new Set([Op.ROLLBACK]);

/** Answer flag bits. */
const AnswerFlag = Object.freeze({ FALLBACK: 1, COLD_START: 2 });
/** PUSH_DECIDE decisions. */
const Decision = Object.freeze({ PUSH_NOW: 0, NOT_NOW: 1, NEVER: 2 });
/** PUSH_DECIDE reason codes. */
const Reason = Object.freeze({
  OK: 0,
  DAILY_CAP: 1,
  WEEKLY_CAP: 2,
  MINIMUM_GAP: 3,
  QUIET_HOURS: 4,
  BELOW_THRESHOLD: 5,
  BETTER_TIME_LATER: 6,
  NO_CANDIDATES: 7,
});
const DECISION_NAMES = Object.fromEntries(Object.entries(Decision).map(([k, v]) => [v, k]));
const REASON_NAMES = Object.fromEntries(Object.entries(Reason).map(([k, v]) => [v, k]));
/** Event strengths the trainer's defaults use. */
const Strength = Object.freeze({ VIEW: 1, CLICK: 2, CART: 4, PURCHASE: 8 });

/** How the server discounts real-time events by age; `Decay.modelDefault()` (or leaving it out) uses the model's. */
class Decay {
  constructor(form, a = 0, b = 0) {
    this.form = form;
    this.a = a;
    this.b = b;
  }
  static modelDefault() { return new Decay(0); }
  /** Every event counts fully, whatever its age. */
  static none() { return new Decay(1); }
  static exponential(halfLifeSeconds) { return new Decay(2, halfLifeSeconds); }
  static linear(windowSeconds) { return new Decay(3, windowSeconds); }
  static sigmoid(midpointSeconds, steepnessPerSecond) { return new Decay(4, midpointSeconds, steepnessPerSecond); }
}
Decay.MODEL_DEFAULT = 0;
Decay.NONE = 1;
Decay.EXPONENTIAL = 2;
Decay.LINEAR = 3;
Decay.SIGMOID = 4;

// ------------------------------------------------------------------------------------------------------- encoding

function checkInt(v, lo, hi, what) {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`${what} must be an integer, not ${describe(v)}`);
  }
  if (v < lo || v > hi) throw new RangeError(`${what} must be in ${lo}..${hi}, not ${v}`);
  return v;
}

function describe(v) {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : (v.constructor ? `a ${v.constructor.name}` : 'an object');
  return String(v);
}

function checkF32(v, what) {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number, not ${describe(v)}`);
  // The server refuses NaN and infinities (BAD_REQUEST); a finite double beyond float32's range becomes infinite.
  if (!Number.isFinite(v) || Math.abs(v) > MAX_F32) throw new RangeError(`${what} must be a finite float32, not ${v}`);
  return v;
}

function checkF64(v, what) {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number, not ${describe(v)}`);
  if (!Number.isFinite(v)) throw new RangeError(`${what} must be finite, not ${v}`);
  return v;
}

// A lone surrogate would be sent as U+FFFD by Buffer.from, silently naming another id; refuse it instead.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkString(s, what) {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string, not ${describe(s)}`);
  const n = Buffer.byteLength(s, 'utf8');
  // Byte length = length only for ASCII, which has no surrogates to check.
  if (n !== s.length && LONE_SURROGATE.test(s)) throw new TypeError(`${what} is not well-formed Unicode (a lone surrogate)`);
  if (n > 0xffff) throw new RangeError(`${what} is ${n} bytes of UTF-8; the wire format allows at most 65535`);
  return n;
}

/** Unix seconds from a number (fractions truncated), a bigint or a Date, checked to be 1970 to 9999. */
function unixSeconds(t, what = 'time') {
  let v;
  if (t instanceof Date) {
    v = Math.floor(t.getTime() / 1000);
  } else if (typeof t === 'bigint') {
    if (t < 0n || t > BigInt(LATEST_TIME)) throw new RangeError(`${what} must be a unix time from 1970 to 9999 (0..${LATEST_TIME}), not ${t}`);
    return Number(t);
  } else if (typeof t === 'number') {
    if (!Number.isFinite(t)) throw new RangeError(`${what} must be finite, not ${t}`);
    v = Math.trunc(t);
  } else {
    throw new TypeError(`${what} must be unix seconds (a number) or a Date, not ${describe(t)}`);
  }
  if (!(v >= 0 && v <= LATEST_TIME)) {
    throw new RangeError(`${what} must be a unix time from 1970 to 9999 (0..${LATEST_TIME}), not ${v}`);
  }
  return v;
}

function toU64(v, what) {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} must be an integer in 0..2^64-1, not ${v}`);
    return BigInt(v);
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v > MAX_U64) throw new RangeError(`${what} must be an integer in 0..2^64-1, not ${v}`);
    return v;
  }
  throw new TypeError(`${what} must be a number or a bigint, not ${describe(v)}`);
}

/** Builds one payload: sizes are known before anything is written, so the buffer is allocated once. */
class Writer {
  constructor(size) {
    this.buf = Buffer.allocUnsafe(size);
    this.pos = 0;
  }
  u8(v) { this.pos = this.buf.writeUInt8(v, this.pos); }
  u16(v) { this.pos = this.buf.writeUInt16LE(v, this.pos); }
  i16(v) { this.pos = this.buf.writeInt16LE(v, this.pos); }
  u32(v) { this.pos = this.buf.writeUInt32LE(v, this.pos); }
  u64(v) { this.pos = this.buf.writeBigUInt64LE(v, this.pos); }
  i64(v) { this.pos = this.buf.writeBigInt64LE(BigInt(v), this.pos); }
  f32(v) { this.pos = this.buf.writeFloatLE(v, this.pos); }
  f64(v) { this.pos = this.buf.writeDoubleLE(v, this.pos); }
  str(s, n) {
    this.u16(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }
  done() {
    if (this.pos !== this.buf.length) throw new Error(`internal: wrote ${this.pos} of ${this.buf.length} bytes`);
    return this.buf;
  }
}

const ASCII = /^[\x00-\x7f]*$/;
// u16 little-endian length prefixes as two latin-1 characters, for the all-ASCII path of stringList.
const PREFIX = Array.from({ length: 1025 }, (_, n) => String.fromCharCode(n & 0xff, n >> 8));

/** A checked string list: the strings and their UTF-8 byte lengths. Item ids are almost always ASCII: then the
 * whole list, length prefixes included, is one latin-1 string written with one call (3x faster than item by item). */
function stringList(items, what) {
  if (typeof items === 'string' || !items || typeof items[Symbol.iterator] !== 'function') {
    throw new TypeError(`${what} must be an array of strings, not ${describe(items)}`);
  }
  const list = Array.isArray(items) ? items : Array.from(items);
  if (list.length > 0xffffffff) throw new RangeError(`${what} has too many entries`);
  let chars = 0;
  for (let i = 0; i < list.length; i++) {
    if (typeof list[i] !== 'string') throw new TypeError(`${what}[${i}] must be a string, not ${describe(list[i])}`);
    chars += list[i].length;
  }
  if (ASCII.test(list.join(''))) {
    const parts = new Array(2 * list.length);
    for (let i = 0; i < list.length; i++) {
      const n = list[i].length;
      if (n > 0xffff) throw new RangeError(`${what}[${i}] is ${n} bytes of UTF-8; the wire format allows at most 65535`);
      parts[2 * i] = n < PREFIX.length ? PREFIX[n] : String.fromCharCode(n & 0xff, n >> 8);
      parts[2 * i + 1] = list[i];
    }
    return { list, ascii: parts.join(''), bytes: 4 + 2 * list.length + chars };
  }
  const lengths = new Array(list.length);
  let bytes = 4;
  for (let i = 0; i < list.length; i++) {
    const n = checkString(list[i], `${what}[${i}]`);
    lengths[i] = n;
    bytes += 2 + n;
  }
  return { list, lengths, bytes };
}

function writeStringList(w, l) {
  w.u32(l.list.length);
  if (l.ascii !== undefined) {
    w.pos += w.buf.write(l.ascii, w.pos, 'latin1');
  } else {
    for (let i = 0; i < l.list.length; i++) w.str(l.list[i], l.lengths[i]);
  }
}

/** `{name, version}` of a model argument: "name" (the version serving now), [name, version] or {name, version}. */
function modelRef(model) {
  let name;
  let version = 0;
  if (typeof model === 'string') {
    name = model;
  } else if (Array.isArray(model) && model.length === 2) {
    [name, version] = model;
  } else if (model && typeof model === 'object' && typeof model.name === 'string') {
    name = model.name;
    version = model.version === undefined ? 0 : model.version;
  } else {
    throw new TypeError(`model must be a name, a [name, version] pair or {name, version}, not ${describe(model)}`);
  }
  const nameBytes = checkString(name, 'model name');
  return { name, nameBytes, version: toU64(version, 'model version'), bytes: 2 + nameBytes + 8 };
}

function writeModelRef(w, m) {
  w.str(m.name, m.nameBytes);
  w.u64(m.version);
}

/** Checked realtime context: events `{item, strength, timestamp}` or `[item, strength, timestamp]`, decay, now. */
function context(events, decay, now) {
  const list = events == null ? [] : (Array.isArray(events) ? events : Array.from(events));
  if (list.length > 0xffff) throw new RangeError(`${list.length} events cannot be encoded (u16 count)`);
  const checked = new Array(list.length);
  let bytes = 2 + 1 + 8 + 8 + 8;
  for (let i = 0; i < list.length; i++) {
    const e = list[i];
    let item;
    let strength;
    let timestamp;
    if (Array.isArray(e) && e.length === 3) {
      [item, strength, timestamp] = e;
    } else if (e && typeof e === 'object') {
      ({ item, strength, timestamp } = e);
    } else {
      throw new TypeError(`event ${i} must be {item, strength, timestamp} or [item, strength, timestamp], not ${describe(e)}`);
    }
    const n = checkString(item, `event ${i} item`);
    checked[i] = [item, n, checkF32(strength, `event ${i} strength`), unixSeconds(timestamp, `event ${i} timestamp`)];
    bytes += 2 + n + 4 + 8;
  }
  const d = decay == null ? Decay.modelDefault() : decay;
  if (typeof d !== 'object' || !Number.isInteger(d.form)) {
    throw new TypeError(`decay must be a Decay (Decay.exponential(3600), ...), not ${describe(decay)}`);
  }
  checkInt(d.form, 0, 255, 'decay form');
  return {
    events: checked,
    form: d.form,
    a: checkF64(d.a || 0, 'decay a'),
    b: checkF64(d.b || 0, 'decay b'),
    now: now == null ? 0 : unixSeconds(now, 'now'),
    bytes,
  };
}

function writeContext(w, c) {
  w.u16(c.events.length);
  for (const [item, n, strength, timestamp] of c.events) {
    w.str(item, n);
    w.f32(strength);
    w.i64(timestamp);
  }
  w.u8(c.form);
  w.f64(c.a);
  w.f64(c.b);
  w.i64(c.now);
}

/** Header plus payload. */
function frame(opcode, requestId, payload) {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out[0] = MAGIC;
  out[1] = VERSION;
  out[2] = opcode;
  out[3] = 0;
  out.writeUInt32LE(requestId, 4);
  out.writeUInt32LE(payload.length, 8);
  payload.copy(out, HEADER_SIZE);
  return out;
}

const EMPTY = Buffer.alloc(0);

function encodeHello(versions = [VERSION]) {
  const list = Array.from(versions);
  checkInt(list.length, 0, 255, 'number of versions');
  const w = new Writer(1 + list.length);
  w.u8(list.length);
  list.forEach((v, i) => w.u8(checkInt(v, 0, 255, `version ${i}`)));
  return w.done();
}

/** SCORE: model, user, candidate items, and the realtime context from `options` (`events`, `now`, `decay`). */
function encodeScore(model, user, items, options = {}) {
  const m = modelRef(model);
  const u = checkString(user, 'user');
  const l = stringList(items, 'items');
  const c = context(options.events, options.decay, options.now);
  const w = new Writer(m.bytes + 2 + u + l.bytes + c.bytes);
  writeModelRef(w, m);
  w.str(user, u);
  writeStringList(w, l);
  writeContext(w, c);
  return w.done();
}

/** TOPK. Giving either `trendingWeight` or `buyAgainWeight` sets the custom-weights option (the other is then 0). */
function encodeTopk(model, user, k, options = {}) {
  const m = modelRef(model);
  const u = checkString(user, 'user');
  checkInt(k, 0, 0xffff, 'k');
  const custom = options.trendingWeight != null || options.buyAgainWeight != null;
  const flags = (options.allowRepeats ? 1 : 0) | (custom ? 2 : 0);
  const category = options.category || '';
  const cat = checkString(category, 'category');
  const trending = checkF32(options.trendingWeight || 0, 'trendingWeight');
  const buyAgain = checkF32(options.buyAgainWeight || 0, 'buyAgainWeight');
  const ex = stringList(options.exclude || [], 'exclude');
  const c = context(options.events, options.decay, options.now);
  const w = new Writer(m.bytes + 2 + u + 3 + 2 + cat + 8 + ex.bytes + c.bytes);
  writeModelRef(w, m);
  w.str(user, u);
  w.u16(k);
  w.u8(flags);
  w.str(category, cat);
  w.f32(trending);
  w.f32(buyAgain);
  writeStringList(w, ex);
  writeContext(w, c);
  return w.done();
}

/** SIMILAR: the query item, k, and an optional `category`. */
function encodeSimilar(model, item, k, options = {}) {
  const m = modelRef(model);
  const i = checkString(item, 'item');
  checkInt(k, 0, 0xffff, 'k');
  const category = options.category || '';
  const cat = checkString(category, 'category');
  const w = new Writer(m.bytes + 2 + i + 2 + 2 + cat);
  writeModelRef(w, m);
  w.str(item, i);
  w.u16(k);
  w.str(category, cat);
  return w.done();
}

/** PUSH_DECIDE. `quietHours` is `[start, end]` in the user's local hours, or null for none. */
function encodePushDecide(model, user, now, options = {}) {
  const m = modelRef(model);
  const u = checkString(user, 'user');
  const pushes = Array.from(options.recentPushes || [], (t, i) => unixSeconds(t, `recent push ${i}`));
  if (pushes.length > 0xffff) throw new RangeError(`${pushes.length} recent pushes cannot be encoded (u16 count)`);
  const quiet = options.quietHours === undefined ? [22, 8] : (options.quietHours || [0, 0]);
  if (!Array.isArray(quiet) || quiet.length !== 2) throw new TypeError('quietHours must be [start, end] or null');
  const minGap = options.minGapSeconds === undefined ? 4 * 3600 : options.minGapSeconds;
  const fields = {
    maxPerDay: checkInt(options.maxPerDay === undefined ? 2 : options.maxPerDay, 0, 255, 'maxPerDay'),
    maxPerWeek: checkInt(options.maxPerWeek === undefined ? 7 : options.maxPerWeek, 0, 255, 'maxPerWeek'),
    minGap: checkInt(Math.trunc(checkF64(minGap, 'minGapSeconds')), 0, 0xffffffff, 'minGapSeconds'),
    quietStart: checkInt(quiet[0], 0, 255, 'quiet start hour'),
    quietEnd: checkInt(quiet[1], 0, 255, 'quiet end hour'),
    utcOffset: checkInt(options.utcOffsetMinutes || 0, -32768, 32767, 'utcOffsetMinutes'),
    threshold: checkF32(options.threshold || 0, 'threshold'),
    k: checkInt(options.k === undefined ? 3 : options.k, 0, 0xffff, 'k'),
  };
  const c = context(options.events, options.decay, now);
  const w = new Writer(m.bytes + 2 + u + 2 + 8 * pushes.length + 1 + 1 + 4 + 1 + 1 + 2 + 4 + 2 + c.bytes);
  writeModelRef(w, m);
  w.str(user, u);
  w.u16(pushes.length);
  for (const t of pushes) w.i64(t);
  w.u8(fields.maxPerDay);
  w.u8(fields.maxPerWeek);
  w.u32(fields.minGap);
  w.u8(fields.quietStart);
  w.u8(fields.quietEnd);
  w.i16(fields.utcOffset);
  w.f32(fields.threshold);
  w.u16(fields.k);
  writeContext(w, c);
  return w.done();
}

/** PIN: model name, version (0 = unpin: the highest valid version serves again). */
function encodePin(name, version) {
  const n = checkString(name, 'model name');
  const w = new Writer(2 + n + 8);
  w.str(name, n);
  w.u64(toU64(version, 'version'));
  return w.done();
}

/** ROLLBACK: model name. */
function encodeRollback(name) {
  const n = checkString(name, 'model name');
  const w = new Writer(2 + n);
  w.str(name, n);
  return w.done();
}

// ------------------------------------------------------------------------------------------------------- decoding

/** `{opcode, requestId, length}` of a 12-byte header; ProtocolError if it is not a Kairos v1 frame. */
function parseHeader(buf, offset = 0) {
  const magic = buf[offset];
  if (magic !== MAGIC) {
    throw new ProtocolError(`response does not start with the Kairos magic byte (got 0x${hex2(magic)}): not a Kairos server?`);
  }
  if (buf[offset + 1] !== VERSION) {
    throw new ProtocolError(`response speaks protocol version ${buf[offset + 1]}; this client speaks ${VERSION}`);
  }
  const length = buf.readUInt32LE(offset + 8);
  if (length > MAX_RESPONSE_PAYLOAD) {
    throw new ProtocolError(`response payload of ${length} bytes is beyond this client's ${MAX_RESPONSE_PAYLOAD}-byte guard`);
  }
  return { opcode: buf[offset + 2], requestId: buf.readUInt32LE(offset + 4), length };
}

function hex2(v) { return (v >>> 0).toString(16).padStart(2, '0'); }

/** u64 as a number when it is exact, else a bigint. */
function u64Value(v) { return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }

/** Bounds-checked reads from one payload; any overrun is a ProtocolError. */
class Reader {
  constructor(buf, what) {
    this.buf = buf;
    this.pos = 0;
    this.what = what;
  }
  fail(detail) { return new ProtocolError(`malformed ${this.what} response: ${detail}`); }
  need(n) {
    if (this.pos + n > this.buf.length) throw this.fail('ends early');
    const p = this.pos;
    this.pos += n;
    return p;
  }
  u8() { return this.buf[this.need(1)]; }
  u16() { return this.buf.readUInt16LE(this.need(2)); }
  i16() { return this.buf.readInt16LE(this.need(2)); }
  u32() { return this.buf.readUInt32LE(this.need(4)); }
  u64() { return u64Value(this.buf.readBigUInt64LE(this.need(8))); }
  u64Hex() { return this.buf.readBigUInt64LE(this.need(8)).toString(16).padStart(16, '0'); }
  i64() {
    const v = this.buf.readBigInt64LE(this.need(8));
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  f32() { return this.buf.readFloatLE(this.need(4)); }
  string() {
    const n = this.u16();
    if (this.pos + n > this.buf.length) throw this.fail('string runs past the end');
    const p = this.need(n);
    return utf8(this.buf, p, p + n, this);
  }
  take(n) {
    const p = this.need(n);
    return this.buf.subarray(p, p + n);
  }
  finish() {
    if (this.pos !== this.buf.length) throw this.fail(`${this.buf.length - this.pos} unexpected bytes at the end`);
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function utf8(buf, start, end, reader) {
  // ASCII (almost every id) decodes without the strict decoder's setup cost.
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (buf[i] > 0x7f) { ascii = false; break; }
  }
  if (ascii) return buf.toString('latin1', start, end);
  try {
    return STRICT_UTF8.decode(buf.subarray(start, end));
  } catch (e) {
    throw reader.fail('string is not UTF-8');
  }
}

/** The model name and version that computed an answer. */
class ModelStamp {
  constructor(name, version) {
    this.name = name;
    this.version = version;
  }
}

class Answer {
  /** Unknown user: trending popularity, not personal. */
  get fallback() { return (this.flags & AnswerFlag.FALLBACK) !== 0; }
  /** Unknown user made personal by the request's events. */
  get coldStart() { return (this.flags & AnswerFlag.COLD_START) !== 0; }
  get modelVersion() { return this.model.version; }
}

/** SCORE's answer: one score per candidate, in order (NaN for unknown items). */
class Scores extends Answer {
  constructor(model, flags, items, scores, itemFlags) {
    super();
    this.model = model;
    this.flags = flags;
    this.items = items;
    this.scores = scores;
    this.itemFlags = itemFlags;
  }
  /** The candidates the model does not know. */
  get unknownItems() {
    const out = [];
    for (let i = 0; i < this.itemFlags.length; i++) if (this.itemFlags[i] & 1) out.push(this.items[i]);
    return out;
  }
  /** item -> score, unknown items left out. */
  asMap() {
    const m = new Map();
    for (let i = 0; i < this.scores.length; i++) if (!(this.itemFlags[i] & 1)) m.set(this.items[i], this.scores[i]);
    return m;
  }
  /** The `n` best known candidates as `{item, score}`, best first. */
  ranked(n = this.scores.length) {
    const idx = [];
    for (let i = 0; i < this.scores.length; i++) if (!(this.itemFlags[i] & 1) && !Number.isNaN(this.scores[i])) idx.push(i);
    idx.sort((a, b) => this.scores[b] - this.scores[a] || a - b);
    return idx.slice(0, n).map((i) => ({ item: this.items[i], score: this.scores[i] }));
  }
}

/** TOPK's and SIMILAR's answer: `{item, score}` best first. */
class Ranking extends Answer {
  constructor(model, flags, items) {
    super();
    this.model = model;
    this.flags = flags;
    this.items = items;
  }
  get itemIds() { return this.items.map((p) => p.item); }
}

/** PUSH_DECIDE's answer. */
class PushDecision extends Answer {
  constructor(model, flags, decision, reason, sendAt, items) {
    super();
    this.model = model;
    this.flags = flags;
    this.decision = decision;
    this.reason = reason;
    this.sendAt = sendAt;
    this.items = items;
  }
  get pushNow() { return this.decision === Decision.PUSH_NOW; }
  /** `PUSH_NOW`, `NOT_NOW`, `NEVER` (the number for a value a newer server added). */
  get decisionName() { return DECISION_NAMES[this.decision] || String(this.decision); }
  get reasonName() { return REASON_NAMES[this.reason] || String(this.reason); }
}

function readStamp(r) { return new ModelStamp(r.string(), r.u64()); }

function readLimits(r) {
  return { maxPayload: r.u32(), maxCandidates: r.u32(), maxK: r.u16(), maxEvents: r.u16() };
}

function readScoredList(r) {
  const n = r.u16();
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = { item: r.string(), score: r.f32() };
  return out;
}

function readModelInfos(r) {
  const n = r.u16();
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = {
      name: r.string(),
      version: r.u64(),
      dimensions: r.u32(),
      items: r.u32(),
      users: r.u32(),
      encoding: r.string(),
      loadedAt: r.i64(),
      checksum: r.u64Hex(),
    };
  }
  return out;
}

function decodeScores(payload, items = []) {
  const r = new Reader(payload, 'SCORE');
  const model = readStamp(r);
  const flags = r.u8();
  const n = r.u32();
  if (n > payload.length) throw r.fail('ends early');
  const raw = r.take(4 * n);
  const itemFlags = Uint8Array.from(r.take(n));
  r.finish();
  // One copy into an aligned Float32Array, not a read per score.
  const scores = new Float32Array(n);
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(scores.buffer).set(raw);
  } else {
    for (let i = 0; i < n; i++) scores[i] = raw.readFloatLE(4 * i);
  }
  if (items.length && items.length !== n) throw new ProtocolError(`SCORE answered ${n} scores for ${items.length} candidates`);
  return new Scores(model, flags, items, scores, itemFlags);
}

function decodeRanking(payload, what = 'TOPK') {
  const r = new Reader(payload, what);
  const model = readStamp(r);
  const flags = r.u8();
  const items = readScoredList(r);
  r.finish();
  return new Ranking(model, flags, items);
}

function decodePushDecision(payload) {
  const r = new Reader(payload, 'PUSH_DECIDE');
  const model = readStamp(r);
  const flags = r.u8();
  const decision = r.u8();
  const reason = r.u16();
  const sendAt = r.i64();
  const items = readScoredList(r);
  r.finish();
  return new PushDecision(model, flags, decision, reason, sendAt, items);
}

function decodeInfo(payload) {
  const r = new Reader(payload, 'INFO');
  const limits = readLimits(r);
  const models = readModelInfos(r);
  r.finish();
  return { limits, models, model(name) { return models.find((m) => m.name === name) || null; } };
}

function decodeServingReport(payload, what = 'RELOAD') {
  const r = new Reader(payload, what);
  const models = readModelInfos(r);
  const m = r.u16();
  const rejected = new Array(m);
  for (let i = 0; i < m; i++) rejected[i] = r.string();
  r.finish();
  return { models, rejected, model(name) { return models.find((x) => x.name === name) || null; } };
}

function decodeStats(payload) {
  const r = new Reader(payload, 'STATS');
  const uptimeSeconds = r.u64();
  const openConnections = r.u64();
  const totalConnections = r.u64();
  const n = r.u16();
  const ops = new Array(n);
  for (let i = 0; i < n; i++) {
    const opcode = r.u8();
    ops[i] = {
      opcode,
      op: OP_NAMES[opcode] || `0x${hex2(opcode)}`,
      requests: r.u64(),
      errors: r.u64(),
      p50Us: r.f32(),
      p99Us: r.f32(),
      p999Us: r.f32(),
    };
  }
  r.finish();
  return { uptimeSeconds, openConnections, totalConnections, ops };
}

function decodeHello(payload) {
  const r = new Reader(payload, 'HELLO');
  const chosenVersion = r.u8();
  const versions = Array.from(r.take(r.u8()));
  const limits = readLimits(r);
  const server = r.string();
  r.finish();
  return { chosenVersion, versions, limits, server };
}

function decodePing(payload) {
  new Reader(payload, 'PING').finish();
  return undefined;
}

/** The error an error response stands for. */
function decodeError(payload, requestId = null) {
  const r = new Reader(payload, 'error');
  const code = r.u16();
  const message = r.string();
  r.finish();
  return errorForCode(code, message, requestId);
}

const DECODERS = {
  [Op.PING]: decodePing,
  [Op.HELLO]: decodeHello,
  [Op.INFO]: decodeInfo,
  [Op.STATS]: decodeStats,
  [Op.TOPK]: (p) => decodeRanking(p, 'TOPK'),
  [Op.SIMILAR]: (p) => decodeRanking(p, 'SIMILAR'),
  [Op.PUSH_DECIDE]: decodePushDecision,
  [Op.RELOAD]: (p) => decodeServingReport(p, 'RELOAD'),
  [Op.PIN]: (p) => decodeServingReport(p, 'PIN'),
  [Op.ROLLBACK]: (p) => decodeServingReport(p, 'ROLLBACK'),
};

/** The result of a response to a request with `requestOpcode`; throws the server's error if it is one. */
function decodeResponse(requestOpcode, responseOpcode, payload, requestId = null, items = []) {
  if (responseOpcode === ERROR_OPCODE) throw decodeError(payload, requestId);
  if (responseOpcode !== (requestOpcode | 0x80)) {
    throw new ProtocolError(`response opcode 0x${hex2(responseOpcode)} does not answer request opcode 0x${hex2(requestOpcode)}`);
  }
  if (requestOpcode === Op.SCORE) return decodeScores(payload, items);
  const decoder = DECODERS[requestOpcode];
  if (!decoder) throw new ProtocolError(`no decoder for opcode 0x${hex2(requestOpcode)}`);
  return decoder(payload);
}

/** Whether the server closes the connection after sending this error. */
function closesConnection(err) { return err.code != null && CLOSES_CONNECTION.has(err.code); }

module.exports = {
  MAGIC,
  VERSION,
  HEADER_SIZE,
  ERROR_OPCODE,
  MAX_RESPONSE_PAYLOAD,
  LATEST_TIME,
  Op,
  OP_NAMES,
  NOT_IDEMPOTENT,
  AnswerFlag,
  Decision,
  Reason,
  Strength,
  Decay,
  ModelStamp,
  Scores,
  Ranking,
  PushDecision,
  EMPTY,
  unixSeconds,
  frame,
  encodeHello,
  encodeScore,
  encodeTopk,
  encodeSimilar,
  encodePushDecide,
  encodePin,
  encodeRollback,
  parseHeader,
  decodeScores,
  decodeRanking,
  decodePushDecision,
  decodeInfo,
  decodeServingReport,
  decodeStats,
  decodeHello,
  decodePing,
  decodeError,
  decodeResponse,
  closesConnection,
};
