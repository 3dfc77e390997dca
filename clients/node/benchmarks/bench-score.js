#!/usr/bin/env node
'use strict';
// Requests/s and latency of `score` with 100 candidates from one Node.js process: one request at a time, and
// DEPTH concurrent calls pipelined on the client's one connection. Latency is per request in the client (call to
// result, including the time a pipelined request waits behind the others). Not a test: run-bench.sh runs it against
// a release server beside the Python client's benchmark.
//
//   node bench-score.js --port KAIROS_PORT [--seconds 5] [--depth 8,64] [--json]

const path = require('path');
const { Client } = require(path.join(__dirname, '..'));

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const port = Number(opt('port'));
const seconds = Number(opt('seconds', '5'));
const depths = opt('depth', '8,64').split(',').map(Number);
if (!port) {
  console.error('usage: bench-score.js --port KAIROS_PORT [--seconds 5] [--depth 8,64] [--json]');
  process.exit(2);
}
// The same candidates as the Python benchmark (clients/python/benchmarks/bench_score.py).
const CANDIDATES = Array.from({ length: 100 }, (_, i) => `item-${(i * 19) % 2000}`);

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * sorted.length + 0.5) - 1));
  return sorted[k];
}

function summary(name, lat, elapsedS) {
  const s = Float64Array.from(lat).sort();
  return { case: name, requests: s.length, req_per_s: s.length / elapsedS, p50_us: percentile(s, 50) / 1000, p99_us: percentile(s, 99) / 1000, p999_us: percentile(s, 99.9) / 1000 };
}

/** `depth` loops each issuing one call after another for `secs` seconds (after a 0.5 s warm-up). */
async function run(client, name, depth, secs) {
  const call = (i) => client.score('default', `user-${(i % 500) + 1}`, CANDIDATES);
  for (let end = Date.now() + 500, i = 0; Date.now() < end; i++) await Promise.all(Array.from({ length: depth }, (_, j) => call(i + j)));
  const lat = [];
  const stop = process.hrtime.bigint() + BigInt(Math.round(secs * 1e9));
  const start = process.hrtime.bigint();
  let n = 0;
  async function loop() {
    while (process.hrtime.bigint() < stop) {
      const t0 = process.hrtime.bigint();
      await call(n++);
      lat.push(Number(process.hrtime.bigint() - t0));
    }
  }
  await Promise.all(Array.from({ length: depth }, loop));
  return summary(name, lat, Number(process.hrtime.bigint() - start) / 1e9);
}

(async () => {
  const client = new Client(`127.0.0.1:${port}`, { timeoutMs: 10000 });
  const results = [await run(client, 'kairos node, 1 in flight', 1, seconds)];
  for (const d of depths) results.push(await run(client, `kairos node, ${d} in flight (pipelined)`, d, seconds));
  client.close();
  const meta = { node: process.version, seconds };
  if (args.includes('--json')) {
    console.log(JSON.stringify({ meta, results }));
    return;
  }
  console.log(`# node ${process.version}`);
  console.log(`${'case'.padEnd(42)} ${'req/s'.padStart(10)} ${'p50 us'.padStart(10)} ${'p99 us'.padStart(10)} ${'p99.9 us'.padStart(10)}`);
  for (const r of results) {
    console.log(`${r.case.padEnd(42)} ${r.req_per_s.toFixed(0).padStart(10)} ${r.p50_us.toFixed(1).padStart(10)} ${r.p99_us.toFixed(1).padStart(10)} ${r.p999_us.toFixed(1).padStart(10)}`);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
