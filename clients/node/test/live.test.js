'use strict';
// Against a real `kairos serve` with the shipped default model: every method, every server error, the client's own
// refusals, pipelining, and answers compared with the Swift client's (`kairos query --json`), an independent
// implementation of the protocol.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');

const K = require('..');
const { Client, Decay, Strength } = K;
const { startServer, kairosBinary, droppingProxy } = require('./support');

const NOW = 1767225600; // 2026-01-01T00:00:00Z: fixed, so answers are reproducible

let server;
let client;

test.before(async () => {
  server = await startServer();
  client = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 10000 });
});

test.after(async () => {
  client.close();
  assert.equal(await server.stop(), 0, `kairos serve did not exit cleanly on SIGTERM; log:\n${server.log()}`);
});

/** A proxy to the server that drops the first `drop` connections; closed when the test ends. */
async function proxy(t, drop) {
  const p = await droppingProxy(server.port, drop);
  t.after(() => p.close());
  return p;
}

/** The Swift client's answer to the same request, as JSON. */
function swiftQuery(...args) {
  const out = execFileSync(kairosBinary(), ['query', '--port', String(server.port), '--json', ...args], { timeout: 30000 });
  return JSON.parse(out.toString());
}

const pairs = (items) => items.map((p) => [p.item, p.score]);

test('TOPK equals the Swift client, plain, with events, and with repeats and a category', async () => {
  const plain = await client.topk('default', 'user-1', 10);
  assert.equal(plain.items.length, 10);
  assert.deepEqual(pairs(plain.items), pairs(swiftQuery('topk', '--user', 'user-1', '--k', '10').items));
  assert.equal(plain.fallback, false);
  assert.equal(plain.model.name, 'default');

  const events = [{ item: 'item-7', strength: Strength.CART, timestamp: NOW - 60 }, ['item-9', Strength.PURCHASE, NOW - 30]];
  const withEvents = await client.topk('default', 'user-1', 10, { events, now: NOW, decay: Decay.exponential(3600) });
  const swift = swiftQuery('topk', '--user', 'user-1', '--k', '10', '--event', `item-7:4:${NOW - 60}`,
    '--event', `item-9:8:${NOW - 30}`, '--now', String(NOW), '--decay', 'exponential:3600');
  assert.deepEqual(pairs(withEvents.items), pairs(swift.items));
  assert.ok(!withEvents.itemIds.includes('item-7') && !withEvents.itemIds.includes('item-9'), 'the events\' items are left out');

  const category = 'category-1';
  const repeats = await client.topk('default', 'user-2', 5, { allowRepeats: true, category, exclude: ['item-4'], trendingWeight: 0.5, buyAgainWeight: 0.25 });
  const swiftRepeats = swiftQuery('topk', '--user', 'user-2', '--k', '5', '--allow-repeats', '--category', category,
    '--exclude', 'item-4', '--trending-weight', '0.5', '--buy-again-weight', '0.25');
  assert.deepEqual(pairs(repeats.items), pairs(swiftRepeats.items));
  assert.ok(!repeats.itemIds.includes('item-4'));
});

test('SCORE equals the Swift client; unknown items are NaN and flagged', async () => {
  const s = await client.score('default', 'user-1', ['item-1', 'no-such-item', 'item-2']);
  const swift = swiftQuery('score', '--user', 'user-1', 'item-1', 'no-such-item', 'item-2');
  assert.equal(s.scores[0], swift.scores[0]);
  assert.equal(s.scores[2], swift.scores[2]);
  assert.ok(Number.isNaN(s.scores[1]));
  assert.deepEqual(Array.from(s.itemFlags), [0, 1, 0]);
  assert.deepEqual(s.unknownItems, ['no-such-item']);
  assert.deepEqual([...s.asMap().keys()], ['item-1', 'item-2']);
  assert.deepEqual(s.ranked(1)[0].score, Math.max(s.scores[0], s.scores[2]));
});

test('an unknown user gets the trending fallback, and personal answers from events', async () => {
  const cold = await client.topk('default', 'nobody-ever', 5);
  assert.equal(cold.fallback, true);
  assert.equal(cold.coldStart, false);
  const warm = await client.topk('default', 'nobody-ever', 5, { events: [['item-3', 8, NOW - 10]], now: NOW });
  assert.equal(warm.fallback, false);
  assert.equal(warm.coldStart, true);
  assert.notDeepEqual(warm.itemIds, cold.itemIds);
});

test('SIMILAR and PUSH_DECIDE equal the Swift client', async () => {
  const sim = await client.similar('default', 'item-1', 5);
  assert.deepEqual(pairs(sim.items), pairs(swiftQuery('similar', 'item-1', '--k', '5').items));
  assert.ok(!sim.itemIds.includes('item-1'));

  const push = await client.pushDecide('default', 'user-1', NOW, { recentPushes: [NOW - 3600], utcOffsetMinutes: 60 });
  const swift = swiftQuery('push', '--user', 'user-1', '--now', String(NOW), '--pushed-at', String(NOW - 3600), '--utc-offset', '60');
  assert.equal(push.decisionName.toLowerCase(), swift.decision);
  assert.equal(push.reasonName, swift.reason);
  assert.equal(push.sendAt, swift.send_at);
  assert.deepEqual(pairs(push.items), pairs(swift.items));
});

test('PING, HELLO, INFO, STATS and RELOAD answer', async () => {
  assert.equal(await client.ping(), undefined);
  const hello = await client.hello();
  assert.equal(hello.chosenVersion, 1);
  assert.deepEqual(hello.versions, [1]);
  const info = await client.info();
  const swiftInfo = swiftQuery('info');
  assert.equal(info.limits.maxK, swiftInfo.limits.max_k);
  const m = info.model('default');
  const sm = swiftInfo.models.find((x) => x.name === 'default');
  assert.deepEqual([m.version, m.dimensions, m.items, m.users, m.encoding, m.checksum],
    [sm.version, sm.dimensions, sm.items, sm.users, sm.encoding, sm.checksum]);
  const stats = await client.stats();
  assert.ok(stats.ops.find((o) => o.op === 'PING').requests >= 1);
  const report = await client.reload();
  assert.equal(report.model('default').checksum, m.checksum);
});

test('server errors reject with their classes, and the connection goes on serving', async () => {
  await assert.rejects(client.topk('no-such-model', 'user-1', 3), K.UnknownModel);
  await assert.rejects(client.topk({ name: 'default', version: 999 }, 'user-1', 3), K.UnknownModel);
  await assert.rejects(client.similar('default', 'no-such-item', 3), K.UnknownItem);
  await assert.rejects(client.topk('default', 'user-1', 1001), K.LimitExceeded);
  await assert.rejects(client.pushDecide('default', 'user-1', NOW, { quietHours: [25, 8] }), K.BadRequest);
  await assert.rejects(client.topk('default', 'user-1', 3, { events: [['item-1', 1, NOW]], decay: Decay.exponential(0) }), (e) => {
    assert.ok(e instanceof K.BadRequest);
    assert.equal(e.code, 5);
    assert.match(e.message, /^BAD_REQUEST: /);
    return true;
  });
  await assert.rejects(client.rollback('default'), K.UnknownModel); // nothing below the one version: changes nothing
  assert.equal((await client.topk('default', 'user-1', 3)).items.length, 3);
});

test('bad arguments reject before anything is sent', async () => {
  const before = (await client.stats()).ops.find((o) => o.op === 'SCORE');
  const sent = before ? before.requests : 0;
  const cases = [
    [() => client.score('default', 'user-1', ['item-1'], { events: [['item-2', NaN, NOW]] }), RangeError],
    [() => client.score('default', 'user-1', ['item-1'], { events: [['item-2', 1e39, NOW]] }), RangeError],
    [() => client.score('default', 'user-1', ['item-1'], { events: [['item-2', 1, -1]] }), RangeError],
    [() => client.score('default', 'user-1', ['item-1'], { now: K.LATEST_TIME + 1 }), RangeError],
    [() => client.score('default', 'user-\uD800', ['item-1']), TypeError],
    [() => client.score('default', 'user-1', 'item-1'), TypeError],
    [() => client.score('default', 'user-1', [7]), TypeError],
    [() => client.score('default', 'user-1', { 0: 'item-1' }), TypeError],
    [() => client.score({ name: 'default', version: -1 }, 'user-1', ['item-1']), RangeError],
    [() => client.score('default', 'x'.repeat(70000), ['item-1']), RangeError],
  ];
  for (const [call, cls] of cases) await assert.rejects(call(), cls);
  await assert.rejects(client.topk('default', 'user-1', 2.5), TypeError);
  const after = (await client.stats()).ops.find((o) => o.op === 'SCORE');
  assert.equal(after ? after.requests : 0, sent);
});

test('a Date and a bigint are times too', async () => {
  const a = await client.topk('default', 'u-new', 5, { events: [['item-3', 2, new Date((NOW - 5) * 1000)]], now: BigInt(NOW) });
  const b = await client.topk('default', 'u-new', 5, { events: [['item-3', 2, NOW - 5]], now: NOW });
  assert.deepEqual(pairs(a.items), pairs(b.items));
});

test('2,000 concurrent calls are pipelined on one connection, each with its own answer', async () => {
  const users = Array.from({ length: 200 }, (_, i) => `user-${i + 1}`);
  const items = ['item-1', 'item-2', 'item-3'];
  const alone = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 10000 });
  const expected = new Map();
  for (const u of users) expected.set(u, Array.from((await alone.score('default', u, items)).scores));
  alone.close();

  const fresh = new Client(`127.0.0.1:${server.port}`, { timeoutMs: 20000 });
  const connectionsBefore = (await client.stats()).totalConnections;
  const calls = [];
  for (let i = 0; i < 2000; i++) {
    const u = users[i % users.length];
    calls.push(fresh.score('default', u, items).then((s) => [u, Array.from(s.scores)]));
  }
  for (const [u, scores] of await Promise.all(calls)) assert.deepEqual(scores, expected.get(u), u);
  assert.equal((await client.stats()).totalConnections - connectionsBefore, 1);
  fresh.close();
});

test('a broken connection is retried once on a fresh one, but never a ROLLBACK', async (t) => {
  const once = await proxy(t, 1);
  const c1 = new Client(`127.0.0.1:${once.port}`, { timeoutMs: 10000 });
  assert.equal((await c1.topk('default', 'user-1', 3)).items.length, 3);
  assert.deepEqual([once.dropped, once.connections], [1, 2]);
  c1.close();

  const twice = await proxy(t, 2);
  const c2 = new Client(`127.0.0.1:${twice.port}`, { timeoutMs: 10000 });
  await assert.rejects(c2.ping(), /on a fresh connection too/);
  assert.equal(twice.dropped, 2);
  c2.close();

  const rollback = await proxy(t, 1);
  const c3 = new Client(`127.0.0.1:${rollback.port}`, { timeoutMs: 10000 });
  await assert.rejects(c3.rollback('default'), (e) => e instanceof K.KairosConnectionError && /not retried/.test(e.message));
  assert.deepEqual([rollback.dropped, rollback.connections], [1, 1]);
  c3.close();
});

test('failover: an endpoint that refuses connections is skipped', async (t) => {
  const dead = await proxy(t, 0);
  const deadPort = dead.port;
  await dead.close(); // nothing listens there now
  const c = new Client([`127.0.0.1:${deadPort}`, ['127.0.0.1', server.port]], { timeoutMs: 10000 });
  assert.equal(await c.ping(), undefined);
  assert.equal(c.endpoints[0].isUp(), false);
  assert.equal(c.endpoints[1].isUp(), true);
  c.close();
});

test('a rolling restart loses no request: calls move to the other server while the first drains', async (t) => {
  const first = await startServer();
  const second = await startServer();
  t.after(async () => { await first.stop(); await second.stop(); });
  const c = new Client([`127.0.0.1:${first.port}`, `127.0.0.1:${second.port}`], { timeoutMs: 5000, backoffMs: 30000 });
  let done = 0;
  let signalled = false;
  const worker = async (w) => {
    for (let i = 0; i < 150; i++) {
      // Half scans, half scores: both connections of the first server must move over.
      if (i % 2) assert.equal((await c.topk('default', `user-${w}`, 3)).items.length, 3);
      else assert.equal((await c.score('default', `user-${w}`, ['item-1', 'item-2'])).scores.length, 2);
      done += 1;
      if (done === 200 && !signalled) {
        signalled = true;
        first.proc.kill('SIGTERM'); // drain, then exit
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  assert.equal(done, 8 * 150);
  assert.equal(await first.stop(), 0);
  assert.equal(c.endpoints[0].isUp(), false);
  c.close();
});

