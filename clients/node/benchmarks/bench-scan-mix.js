#!/usr/bin/env node
'use strict';
// SCORE latency from a client that is also running catalogue scans: two loops of topk(k=10) and one loop of
// score(100 candidates) share one Client for SECONDS; prints the score count and its p50/p99. With scans on the
// score's connection, each score waits behind a scan's answer (the server answers a connection in order).
//
//   node bench-scan-mix.js --port KAIROS_PORT [--seconds 4] [--client PATH_TO_CLIENT_PACKAGE]
// Against a large catalogue, e.g. `kairos make-demo-model --items 500000 --dimensions 64 --out DIR/big.kmodel` and
// `kairos serve --models DIR` (release build).

const path = require('path');

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const port = Number(opt('port'));
const seconds = Number(opt('seconds', '4'));
const { Client } = require(path.resolve(opt('client', path.join(__dirname, '..'))));
if (!port) {
  console.error('usage: bench-scan-mix.js --port KAIROS_PORT [--seconds 4] [--client PATH]');
  process.exit(2);
}
const items = Array.from({ length: 100 }, (_, i) => `item-${i * 37}`);

(async () => {
  const client = new Client(`127.0.0.1:${port}`, { timeoutMs: 20000 });
  let stop = false;
  let scans = 0;
  const scanLoops = Array.from({ length: 2 }, async () => {
    while (!stop) await client.topk('default', `user-${scans++ % 1000}`, 10);
  });
  const lat = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint();
    await client.score('default', `user-${lat.length % 1000}`, items);
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  stop = true;
  await Promise.all(scanLoops);
  client.close();
  lat.sort((a, b) => a - b);
  const p = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))].toFixed(0);
  console.log(`score: ${lat.length} in ${seconds} s, p50 ${p(0.5)} us, p99 ${p(0.99)} us; topk: ${scans}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
