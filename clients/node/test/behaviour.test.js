'use strict';
// The client against stand-in servers that misbehave on purpose: never answering, answering out of order or late,
// refusing at accept, speaking another protocol, dropping connections. No `kairos serve` needed.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const path = require('path');

const K = require('..');
const { Client } = K;
const { tcpServer, readFrames, responseFrame, errorPayload, deferred } = require('./support');

/** A stand-in server closed when the test ends, whether it passed or not. */
async function serve(t, onConnection) {
  const server = await tcpServer(onConnection);
  t.after(() => server.close());
  return server;
}

/** A SIMILAR answer naming `item`: model stamp "m" v1, flags 0, one scored item. */
function rankingPayload(item) {
  const name = Buffer.from('m');
  const it = Buffer.from(item);
  const p = Buffer.alloc(2 + 1 + 8 + 1 + 2 + 2 + it.length + 4);
  let o = p.writeUInt16LE(1, 0);
  o += name.copy(p, o);
  o = p.writeBigUInt64LE(1n, o);
  o = p.writeUInt8(0, o);
  o = p.writeUInt16LE(1, o);
  o = p.writeUInt16LE(it.length, o);
  o += it.copy(p, o);
  p.writeFloatLE(0.5, o);
  return p;
}

/** The query item of a SIMILAR request payload (model ref, then the item). */
function similarItem(payload) {
  const nameLen = payload.readUInt16LE(0);
  const at = 2 + nameLen + 8;
  return payload.toString('utf8', at + 2, at + 2 + payload.readUInt16LE(at));
}

test('no answer within the timeout rejects with KairosTimeoutError, and the next call reconnects', async (t) => {
  const silent = await serve(t, () => {});
  const c = new Client(`127.0.0.1:${silent.port}`, { timeoutMs: 150 });
  const start = Date.now();
  await assert.rejects(c.ping(), K.KairosTimeoutError);
  assert.ok(Date.now() - start >= 140, `rejected after ${Date.now() - start} ms`);
  await assert.rejects(c.ping(), K.KairosTimeoutError);
  assert.equal(silent.sockets.length, 2, 'a connection that never answered is not reused');
  c.close();
});

test('answers are matched by request id, whatever their order', async (t) => {
  const got = [];
  const all = deferred();
  const server = await serve(t, (s) => readFrames(s, (f) => {
    got.push(f);
    if (got.length === 3) {
      for (const g of got.reverse()) s.write(responseFrame(0x92, g.requestId, rankingPayload(similarItem(g.payload))));
      all.resolve();
    }
  }));
  const c = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 5000 });
  const answers = await Promise.all(['a', 'b', 'c'].map((item) => c.similar('m', item, 1)));
  await all.promise;
  assert.deepEqual(answers.map((r) => r.items[0].item), ['a', 'b', 'c']);
  assert.equal(server.sockets.length, 1);
  c.close();
});

test('a scan in progress does not hold up the requests behind it: scans have a connection of their own', async (t) => {
  // Like kairos serve, this stand-in answers each connection in order; it never finishes a TOPK, so on a shared
  // connection every request behind one would wait for it.
  const scanArrived = deferred();
  const server = await serve(t, (s) => {
    let blocked = false;
    readFrames(s, (f) => {
      if (f.opcode === 0x11) {
        blocked = true;
        scanArrived.resolve();
      }
      if (!blocked) s.write(responseFrame(f.opcode | 0x80, f.requestId));
    });
  });
  const c = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 3000 });
  const scan = c.topk('m', 'u', 10);
  scan.catch(() => {});
  await scanArrived.promise; // the TOPK is with the server before the PINGs are sent
  for (let i = 0; i < 3; i++) assert.equal(await c.ping(), undefined);
  assert.equal(server.sockets.length, 2);
  c.close();
  await assert.rejects(scan, K.KairosConnectionError);
});

test('a late answer to a timed-out request is dropped, and later requests get their own answers', async (t) => {
  let held = null;
  const server = await serve(t, (s) => readFrames(s, (f) => {
    const item = similarItem(f.payload);
    if (item === 'slow') { held = f; return; }
    if (item === 'late') { // first the answer the client gave up on, then this one's
      s.write(responseFrame(0x92, held.requestId, rankingPayload('slow')));
    }
    s.write(responseFrame(0x92, f.requestId, rankingPayload(item)));
  }));
  const c = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 200 });
  const slow = c.similar('m', 'slow', 1);
  const quick = await c.similar('m', 'quick', 1); // an answer arrives on the connection meanwhile: it stays up
  assert.equal(quick.items[0].item, 'quick');
  await assert.rejects(slow, K.KairosTimeoutError);
  const late = await c.similar('m', 'late', 1);
  assert.equal(late.items[0].item, 'late');
  assert.equal(server.sockets.length, 1);
  c.close();
});

test('a call whose signal aborts rejects with its reason at once; the connection goes on', async (t) => {
  const frames = [];
  const server = await serve(t, (s) => readFrames(s, (f) => {
    frames.push(f);
    const item = similarItem(f.payload);
    if (item !== 'slow') s.write(responseFrame(0x92, f.requestId, rankingPayload(item)));
  }));
  const c = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 5000 });
  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(c.similar('m', 'never-sent', 1, { signal: aborted.signal }), { name: 'AbortError' });
  assert.equal(frames.length, 0, 'an already aborted call sends nothing');

  const controller = new AbortController();
  const slow = c.similar('m', 'slow', 1, { signal: controller.signal });
  assert.equal((await c.similar('m', 'quick', 1)).items[0].item, 'quick'); // the slow one is on the wire by now
  const reason = new Error('the page was closed');
  controller.abort(reason);
  await assert.rejects(slow, (e) => e === reason);
  await assert.rejects(c.similar('m', 'slow', 1, { signal: AbortSignal.timeout(50) }), { name: 'TimeoutError' });
  assert.equal((await c.similar('m', 'after', 1)).items[0].item, 'after');
  assert.equal(server.sockets.length, 1, 'aborting a call does not cost its connection');
  c.close();
});

test('OVERLOADED at accept fails over to the next endpoint; with none left it rejects', async (t) => {
  const refusing = await serve(t, (s) => s.end(responseFrame(0xff, 0, errorPayload(10, 'too many connections'))));
  const healthy = await serve(t, (s) => readFrames(s, (f) => s.write(responseFrame(0x81, f.requestId))));
  const c = new Client([`127.0.0.1:${refusing.port}`, `127.0.0.1:${healthy.port}`], { timeoutMs: 5000 });
  assert.equal(await c.ping(), undefined);
  assert.equal(c.endpoints[0].isUp(), false);
  assert.equal(await c.ping(), undefined);
  assert.equal(refusing.sockets.length, 1, 'an endpoint marked down is avoided while another is healthy');
  c.close();

  const alone = new Client(`127.0.0.1:${refusing.port}`, { timeoutMs: 5000 });
  await assert.rejects(alone.ping(), (e) => e instanceof K.Overloaded && e instanceof K.Unavailable && e.requestId === 0);
  alone.close();
});

test('SHUTTING_DOWN answering a request sends it to the next endpoint', async (t) => {
  const draining = await serve(t, (s) => readFrames(s, (f) => s.write(responseFrame(0xff, f.requestId, errorPayload(11, 'draining')))));
  const healthy = await serve(t, (s) => readFrames(s, (f) => s.write(responseFrame(0x81, f.requestId))));
  const c = new Client([`127.0.0.1:${draining.port}`, `127.0.0.1:${healthy.port}`], { timeoutMs: 5000 });
  assert.equal(await c.ping(), undefined);
  assert.equal(healthy.sockets.length, 1);
  c.close();
  const alone = new Client(`127.0.0.1:${draining.port}`, { timeoutMs: 5000 });
  await assert.rejects(alone.ping(), K.ShuttingDown);
  alone.close();
});

test('a peer that is not Kairos is a ProtocolError, and its connection is not reused', async (t) => {
  const http = await serve(t, (s) => s.once('data', () => s.write('HTTP/1.1 400 Bad Request\r\n\r\n')));
  const c = new Client(`127.0.0.1:${http.port}`, { timeoutMs: 5000 });
  await assert.rejects(c.ping(), (e) => e instanceof K.ProtocolError && /magic byte/.test(e.message));
  await assert.rejects(c.ping(), K.ProtocolError);
  assert.equal(http.sockets.length, 2);
  c.close();
});

test('an answer that does not decode is a ProtocolError, not a wrong value', async (t) => {
  const server = await serve(t, (s) => readFrames(s, (f) => {
    const good = rankingPayload('x');
    s.write(responseFrame(0x92, f.requestId, good.subarray(0, good.length - 2)));
  }));
  const c = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 5000 });
  await assert.rejects(c.similar('m', 'x', 1), (e) => e instanceof K.ProtocolError && e.code === null && /ends early/.test(e.message));
  c.close();
});

test('a length beyond the guard is refused from the header alone', async (t) => {
  const server = await serve(t, (s) => readFrames(s, (f) => {
    const h = responseFrame(0x81, f.requestId);
    h.writeUInt32LE(0xffffffff, 8);
    s.write(h);
  }));
  const c = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 5000 });
  await assert.rejects(c.ping(), /beyond this client's/);
  c.close();
});

test('close() rejects what is in flight and every later call', async (t) => {
  const silent = await serve(t, () => {});
  const c = new Client(`127.0.0.1:${silent.port}`, { timeoutMs: 5000 });
  const connected = deferred();
  silent.server.once('connection', () => connected.resolve());
  const inFlight = c.ping();
  await connected.promise;
  c.close();
  await assert.rejects(inFlight, K.KairosConnectionError);
  await assert.rejects(c.ping(), /closed/);
});

test('no endpoint reachable: KairosConnectionError naming the address', async (t) => {
  const gone = await serve(t, () => {});
  const port = gone.port;
  await gone.close(); // nothing listens there now
  const c = new Client(`127.0.0.1:${port}`, { timeoutMs: 2000 });
  await assert.rejects(c.ping(), (e) => e instanceof K.KairosConnectionError && e.message.includes(`127.0.0.1:${port}`));
  c.close();
});

test('endpoint and option arguments are checked', () => {
  assert.throws(() => new Client('127.0.0.1:0'), RangeError);
  assert.throws(() => new Client([]), RangeError);
  assert.throws(() => new Client('h', { timeoutMs: 0 }), RangeError);
  assert.deepEqual(new Client(['a:1', ['b', 2], { host: 'c' }, '[::1]:4', 'd']).endpoints.map((e) => [e.host, e.port]),
    [['a', 1], ['b', 2], ['c', 7878], ['::1', 4], ['d', 7878]]);
});

test('an idle client does not keep the process alive', async (t) => {
  // A script that pings and never closes its client must still exit on its own.
  const server = await serve(t, (s) => readFrames(s, (f) => s.write(responseFrame(0x81, f.requestId))));
  const script = `const {Client}=require(${JSON.stringify(path.resolve(__dirname, '..'))});`
    + `new Client('127.0.0.1:${server.port}').ping().then(()=>console.log('pinged'))`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
  const [code, signal] = await new Promise((r) => child.once('exit', (...a) => r(a)));
  clearTimeout(timer);
  assert.equal(signal, null, 'the script had to be killed: the idle connection kept it alive');
  assert.equal(code, 0);
  assert.equal(out.trim(), 'pinged');
});
