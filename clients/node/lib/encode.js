'use strict';
// Requests (proto-spec/PROTOCOL.md): `encode*` functions check their arguments and return a payload (Buffer);
// `frame(opcode, requestId, payload)` puts the 12-byte header in front. Pure: no sockets here.

const { Decay, HEADER_SIZE, LATEST_TIME, MAGIC, MAX_F32, MAX_U64, VERSION } = require('./wire');

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

module.exports = {
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
};
