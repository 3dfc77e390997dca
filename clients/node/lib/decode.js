'use strict';
// Responses (proto-spec/PROTOCOL.md): `parseHeader` reads a frame header, `decodeResponse(requestOpcode,
// responseOpcode, payload)` turns a payload into an answer object or throws the server's error. Every read is
// bounds-checked: a payload that does not decode is a ProtocolError, never a wrong value. Pure: no sockets here.

const { ProtocolError, CLOSES_CONNECTION, errorForCode } = require('./errors');
const {
  AnswerFlag, DECISION_NAMES, Decision, ERROR_OPCODE, LITTLE_ENDIAN_HOST, MAGIC, MAX_RESPONSE_PAYLOAD, OP_NAMES, Op,
  REASON_NAMES, VERSION,
} = require('./wire');

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
  ModelStamp,
  Scores,
  Ranking,
  PushDecision,
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
