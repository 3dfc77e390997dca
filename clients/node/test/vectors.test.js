'use strict';
// Every vector in proto-spec/vectors/protocol-vectors.json, byte-exact: requests encoded by this client's codec and
// sent by the real Client over a socket, responses decoded to the vector's values (NaN included), and the invalid
// byte streams sent raw to a live `kairos serve`, which must answer each with its documented error.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('net');

const { Client, Decay, ProtocolError, UnknownModel, FrameTimeout, KairosError, ErrorCode } = require('..');
const P = require('../lib/protocol');
const { VECTORS, startServer, tcpServer, readFrames, responseFrame } = require('./support');

const REQUESTS = VECTORS.filter((v) => v.kind === 'request');
const RESPONSES = VECTORS.filter((v) => v.kind === 'response');
const INVALID = VECTORS.filter((v) => v.kind === 'invalid');
const OPCODES = { PING: 0x01, HELLO: 0x02, INFO: 0x03, STATS: 0x04, SCORE: 0x10, TOPK: 0x11, SIMILAR: 0x12, PUSH_DECIDE: 0x13, RELOAD: 0x20, PIN: 0x21, ROLLBACK: 0x22 };
const hex = (s) => Buffer.from(s, 'hex');
const num = (x) => (x === 'NaN' ? NaN : x);

function decay(d) {
  switch (d.form) {
    case 'model': return undefined;
    case 'none': return Decay.none();
    case 'exponential': return Decay.exponential(d.a);
    case 'linear': return Decay.linear(d.a);
    case 'sigmoid': return Decay.sigmoid(d.a, d.b);
    default: throw new Error(d.form);
  }
}

// Each accepted spelling of a model: a name for version 0, {name, version} for a pinned one.
const model = (m) => (m.version === 0 ? m.name : { name: m.name, version: m.version });

function contextOptions(c) {
  return { events: c.events.map((e) => ({ item: e.item, strength: num(e.strength), timestamp: e.timestamp })), now: c.now, decay: decay(c.decay) };
}

/** [method, args] of the Client call that sends message `m`. */
function callFor(m) {
  switch (m.op) {
    case 'PING': case 'INFO': case 'STATS': case 'RELOAD': return [m.op.toLowerCase(), []];
    case 'PIN': return m.version === 0 ? ['unpin', [m.name]] : ['pin', [m.name, m.version]];
    case 'ROLLBACK': return ['rollback', [m.name]];
    case 'HELLO': return ['hello', [m.versions]];
    case 'SCORE': return ['score', [model(m.model), m.user, m.candidates, contextOptions(m.context)]];
    case 'TOPK': {
      const o = { ...contextOptions(m.context), exclude: m.exclude, allowRepeats: (m.options & 1) !== 0, category: m.category || undefined };
      if (m.options & 2) Object.assign(o, { trendingWeight: m.trendingWeight, buyAgainWeight: m.buyAgainWeight });
      else assert.ok(m.trendingWeight === 0 && m.buyAgainWeight === 0);
      return ['topk', [model(m.model), m.user, m.k, o]];
    }
    case 'SIMILAR': return ['similar', [model(m.model), m.item, m.k, { category: m.category || undefined }]];
    case 'PUSH_DECIDE': {
      const c = m.context;
      return ['pushDecide', [model(m.model), m.user, c.now, {
        recentPushes: m.recentPushes,
        maxPerDay: m.maxPerDay,
        maxPerWeek: m.maxPerWeek,
        minGapSeconds: m.minGapSeconds,
        quietHours: [m.quietStartHour, m.quietEndHour],
        utcOffsetMinutes: m.utcOffsetMinutes,
        threshold: m.threshold,
        k: m.k,
        events: c.events.map((e) => [e.item, e.strength, e.timestamp]),
        decay: decay(c.decay),
      }]];
    }
    default: throw new Error(m.op);
  }
}

const ENCODERS = {
  ping: () => P.EMPTY,
  info: () => P.EMPTY,
  stats: () => P.EMPTY,
  reload: () => P.EMPTY,
  pin: P.encodePin,
  unpin: (name) => P.encodePin(name, 0),
  rollback: P.encodeRollback,
  hello: P.encodeHello,
  score: P.encodeScore,
  topk: P.encodeTopk,
  similar: P.encodeSimilar,
  pushDecide: P.encodePushDecide,
};

test('the vector file has every kind, every request op and every reply', () => {
  assert.deepEqual(new Set(VECTORS.map((v) => v.kind)), new Set(['request', 'response', 'invalid']));
  assert.deepEqual(new Set(REQUESTS.map((v) => v.message.op)), new Set(Object.keys(OPCODES)));
  // PIN has no reply vector of its own: it answers a serving report, the layout of RELOAD's and ROLLBACK's.
  const replies = new Set(Object.keys(OPCODES).filter((o) => o !== 'PIN').concat(['ERROR']));
  assert.deepEqual(new Set(RESPONSES.map((v) => v.message.op)), replies);
});

for (const v of REQUESTS) {
  test(`request ${v.name} encodes byte-exact`, () => {
    const [method, args] = callFor(v.message);
    const payload = ENCODERS[method](...args);
    assert.equal(P.frame(OPCODES[v.message.op], v.request_id, payload).toString('hex'), v.hex);
  });
}

test('an explicit model-default decay and now 0 encode like leaving them out', () => {
  const v = REQUESTS.find((x) => x.name === 'score');
  const items = ['item-1', 'item-2', 'nope'];
  const explicit = P.encodeScore('default', 'user-1', items, { events: [], now: 0, decay: Decay.modelDefault() });
  assert.equal(P.frame(0x10, 5, explicit).toString('hex'), v.hex);
  assert.deepEqual(P.encodeScore({ name: 'default' }, 'user-1', items), explicit);
  assert.deepEqual(P.encodeScore(['default', 0], 'user-1', new Set(items)), explicit);
});

// ---------------------------------------------------------------------------------------------------- decoding

function checkModels(got, want) {
  assert.deepEqual(got.map((m) => [m.name, m.version, m.dimensions, m.items, m.users, m.encoding, m.loadedAt, m.checksum]),
    want.map((m) => [m.name, m.version, m.dimensions, m.items, m.users, m.encoding, m.loadedAt, m.checksum]));
}

function checkItems(got, want) {
  assert.deepEqual(got.map((p) => [p.item, p.score]), want.map((w) => [w.item, w.score]));
}

/** The decoded `result` carries exactly the values of response message `m`. */
function checkResult(m, result) {
  switch (m.op) {
    case 'PING': assert.equal(result, undefined); break;
    case 'HELLO':
      assert.equal(result.chosenVersion, m.chosen);
      assert.deepEqual(result.versions, m.versions);
      assert.equal(result.server, m.server);
      assert.deepEqual(result.limits, m.limits);
      break;
    case 'INFO':
      assert.deepEqual(result.limits, m.limits);
      checkModels(result.models, m.models);
      break;
    case 'RELOAD': case 'ROLLBACK':
      checkModels(result.models, m.models);
      assert.deepEqual(result.rejected, m.rejected);
      break;
    case 'STATS':
      assert.deepEqual([result.uptimeSeconds, result.openConnections, result.totalConnections], [m.uptimeSeconds, m.openConnections, m.totalConnections]);
      assert.deepEqual(result.ops.map((o) => [o.op, o.opcode, o.requests, o.errors, o.p50Us, o.p99Us, o.p999Us]),
        m.ops.map((o) => [o.op, OPCODES[o.op], o.requests, o.errors, o.p50, o.p99, o.p999]));
      break;
    case 'SCORE':
      assert.deepEqual({ ...result.model }, m.model);
      assert.equal(result.modelVersion, m.model.version);
      assert.equal(result.flags, m.flags);
      assert.equal(result.fallback, (m.flags & 1) !== 0);
      assert.equal(result.scores.length, m.scores.length);
      m.scores.forEach((want, i) => {
        if (want === 'NaN') assert.ok(Number.isNaN(result.scores[i]));
        else assert.equal(result.scores[i], want);
      });
      assert.deepEqual(Array.from(result.itemFlags), m.itemFlags);
      break;
    case 'TOPK': case 'SIMILAR':
      assert.deepEqual({ ...result.model }, m.model);
      assert.equal(result.flags, m.flags);
      checkItems(result.items, m.items);
      break;
    case 'PUSH_DECIDE':
      assert.deepEqual({ ...result.model }, m.model);
      assert.deepEqual([result.flags, result.decision, result.reason, result.sendAt], [m.flags, m.decision, m.reason, m.sendAt]);
      assert.equal(result.decisionName, 'NOT_NOW');
      assert.equal(result.reasonName, 'BETTER_TIME_LATER');
      checkItems(result.items, m.items);
      break;
    default: throw new Error(m.op);
  }
}

for (const v of RESPONSES) {
  test(`response ${v.name} decodes to the vector's values`, () => {
    const bytes = hex(v.hex);
    const h = P.parseHeader(bytes);
    assert.equal(h.length, bytes.length - 12);
    const payload = bytes.subarray(12);
    if (v.message.op === 'ERROR') {
      assert.equal(h.opcode, 0xff);
      assert.throws(() => P.decodeResponse(0x10, h.opcode, payload, h.requestId), (e) => {
        assert.ok(e instanceof KairosError);
        assert.equal(e.codeName, v.message.code);
        assert.equal(e.code, ErrorCode[v.message.code]);
        assert.equal(e.serverMessage, v.message.message);
        assert.equal(e.requestId, h.requestId);
        return true;
      });
      return;
    }
    const opcode = OPCODES[v.message.op];
    const items = v.message.op === 'SCORE' ? v.message.scores.map((_, i) => `c${i}`) : [];
    checkResult(v.message, P.decodeResponse(opcode, h.opcode, payload, h.requestId, items));
  });
}

test('error vectors decode to their classes', () => {
  const byName = Object.fromEntries(RESPONSES.map((v) => [v.name, hex(v.hex).subarray(12)]));
  assert.throws(() => P.decodeResponse(0x10, 0xff, byName['error-reply']), UnknownModel);
  assert.throws(() => P.decodeResponse(0x10, 0xff, byName['error-frame-timeout']), FrameTimeout);
  assert.ok(P.closesConnection(P.decodeError(byName['error-frame-timeout'])));
  assert.ok(!P.closesConnection(P.decodeError(byName['error-reply'])));
});

test('a PIN is answered with a serving report', () => {
  const payload = hex(RESPONSES.find((v) => v.name === 'rollback-reply').hex).subarray(12);
  const report = P.decodeResponse(0x21, 0xa1, payload);
  assert.equal(report.model('default').version, 2);
  assert.deepEqual(report.rejected, []);
});

test('every truncation of every response vector is a ProtocolError, never a wrong value', () => {
  for (const v of RESPONSES) {
    const bytes = hex(v.hex);
    const opcode = v.message.op === 'ERROR' ? 0x10 : OPCODES[v.message.op];
    for (let cut = 12; cut < bytes.length; cut++) {
      assert.throws(() => P.decodeResponse(opcode, bytes[2], bytes.subarray(12, cut)), ProtocolError, `${v.name} cut at ${cut}`);
    }
    const longer = Buffer.concat([bytes.subarray(12), Buffer.from([0])]);
    assert.throws(() => P.decodeResponse(opcode, bytes[2], longer), /unexpected bytes at the end/, v.name);
  }
});

// ----------------------------------------------------------------------------- requests sent by the real client

test('the Client sends every request vector byte-exact and decodes the answer', async () => {
  // A stand-in server: each frame is checked against the vector the test expects, then answered with a reply.
  const replyFor = (m) => {
    const op = m.op === 'PIN' ? 'ROLLBACK' : m.op;
    const v = RESPONSES.find((r) => r.message.op === op && (op !== 'SCORE' || r.message.scores.length === m.candidates.length));
    return hex(v.hex).subarray(12);
  };
  let expected = null;
  const server = await tcpServer((s) => readFrames(s, (f) => {
    const v = expected;
    const want = hex(v.hex);
    // The request id is the client's own; everything else is the vector's.
    assert.deepEqual(Buffer.concat([f.bytes.subarray(0, 4), f.bytes.subarray(8)]), Buffer.concat([want.subarray(0, 4), want.subarray(8)]));
    s.write(responseFrame(f.opcode | 0x80, f.requestId, replyFor(v.message)));
  }));
  const client = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 5000 });
  try {
    for (const v of REQUESTS) {
      expected = v;
      const [method, args] = callFor(v.message);
      const result = await client[method](...args);
      if (v.message.op !== 'PING') assert.ok(result, v.name);
    }
  } finally {
    client.close();
    await server.close();
  }
});

// --------------------------------------------------------------------------------- invalid streams, live server

test('a live server answers every invalid vector with its documented error', async () => {
  const server = await startServer();
  try {
    for (const v of INVALID) {
      const { code, closed } = await sendRaw(server.port, hex(v.hex));
      assert.equal(code, ErrorCode[v.error], `${v.name}: got code ${code}`);
      assert.equal(closed, v.closes_connection, `${v.name}: connection closed ${closed}`);
    }
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

/** Sends `bytes`, reads the first answer's error code, then a PING: whether the connection still answers. */
function sendRaw(port, bytes) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let code = null;
    let pingAnswered = false;
    s.on('error', () => {}); // a reset after the server closes is fine: we only ask whether it closed
    readFrames(s, (f) => {
      if (code === null) {
        if (f.opcode !== 0xff) { reject(new Error(`expected an error frame, got opcode ${f.opcode}`)); s.destroy(); return; }
        code = f.payload.readUInt16LE(0);
        s.write(responseFrame(0x01, 99)); // a PING (request opcode 1, id 99)
      } else if (f.requestId === 99) {
        pingAnswered = true;
        s.destroy();
        resolve({ code, closed: false });
      }
    });
    s.on('close', () => { if (!pingAnswered) resolve({ code, closed: true }); });
    s.write(bytes);
  });
}

test('mutated answers decode to a value or a KairosError, never another exception', () => {
  // Deterministic (xorshift32, fixed seed): every response vector with 1-4 bytes changed, cut or extended.
  let x = 0x9e3779b9;
  const rand = (n) => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x % n;
  };
  let decoded = 0;
  let refused = 0;
  for (let trial = 0; trial < 20000; trial++) {
    const v = RESPONSES[rand(RESPONSES.length)];
    const opcode = v.message.op === 'ERROR' ? 0x10 : OPCODES[v.message.op];
    let payload = Buffer.from(hex(v.hex).subarray(12));
    const edits = 1 + rand(4);
    for (let e = 0; e < edits && payload.length; e++) {
      const kind = rand(4);
      if (kind === 0) payload = payload.subarray(0, rand(payload.length));
      else if (kind === 1) payload = Buffer.concat([payload, Buffer.from([rand(256), rand(256)])]);
      else payload[rand(payload.length)] = [0x00, 0xff, 0x7f, 0x80][rand(4)] ^ (kind === 3 ? rand(256) : 0);
    }
    const responseOpcode = rand(10) === 0 ? 0xff : hex(v.hex)[2];
    try {
      P.decodeResponse(opcode, responseOpcode, payload, 1, []);
      decoded += 1;
    } catch (e) {
      assert.ok(e instanceof KairosError, `${v.name} trial ${trial}: ${e && e.stack}`);
      refused += 1;
    }
  }
  assert.ok(decoded > 1000 && refused > 1000, `decoded ${decoded}, refused ${refused}`);
});
