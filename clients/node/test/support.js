'use strict';
// Test helpers: `kairos serve` processes on free ports, servers that misbehave on purpose, and the vectors.
// Nothing here waits by sleeping: every wait is for an event (a line printed, a connection, an exit).

const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const VECTORS = JSON.parse(fs.readFileSync(path.join(REPO, 'proto-spec', 'vectors', 'protocol-vectors.json'), 'utf8')).vectors;
const MODELS = path.join(REPO, 'models');
const LISTENING = 'kairos: listening on ';
const START_TIMEOUT_MS = 30000;

let binary = null;

/** The `kairos` binary: $KAIROS_BIN, else `swift build --product kairos` (a no-op when it is up to date). */
function kairosBinary() {
  if (binary) return binary;
  if (process.env.KAIROS_BIN) {
    if (!fs.existsSync(process.env.KAIROS_BIN)) throw new Error(`KAIROS_BIN=${process.env.KAIROS_BIN} does not exist`);
    binary = process.env.KAIROS_BIN;
    return binary;
  }
  const opts = { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], timeout: 20 * 60 * 1000, maxBuffer: 64 << 20 };
  execFileSync('swift', ['build', '--product', 'kairos'], opts);
  const dir = execFileSync('swift', ['build', '--product', 'kairos', '--show-bin-path'], opts).toString().trim();
  binary = path.join(dir, 'kairos');
  if (!fs.existsSync(binary)) throw new Error(`${binary} was not built`);
  return binary;
}

/** A running `kairos serve` on a free port, with `port`, `stop()` (SIGTERM, resolves to the exit code) and `log()`. */
function startServer(extra = [], models = MODELS) {
  const proc = spawn(kairosBinary(), ['serve', '--models', models, '--port', '0', ...extra], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stderr.on('data', (d) => { log = (log + d.toString()).slice(-8000); });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(code === null ? signal : code)));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`kairos serve printed no listening line within ${START_TIMEOUT_MS} ms; log:\n${log}`));
    }, START_TIMEOUT_MS);
    const onData = (d) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      proc.stdout.resume();
      const line = out.slice(0, nl);
      if (!line.startsWith(LISTENING)) {
        proc.kill('SIGKILL');
        reject(new Error(`unexpected first line: ${line}`));
        return;
      }
      const address = line.slice(LISTENING.length).split(' ')[0];
      const port = Number(address.slice(address.lastIndexOf(':') + 1));
      resolve({
        port,
        proc,
        log: () => log,
        async stop() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          return exited;
        },
      });
    };
    proc.stdout.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kairos serve exited (${code}) before listening; log:\n${log}`));
    });
  });
}

/** A TCP server whose connections are handed to `onConnection(socket)`; resolves to `{port, sockets, close()}`. */
function tcpServer(onConnection) {
  const sockets = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    onConnection(s);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      sockets,
      server,
      close() {
        for (const s of sockets) s.destroy();
        return new Promise((r) => server.close(() => r()));
      },
    }));
  });
}

/** Reads frames off a socket: calls `onFrame({opcode, requestId, payload, bytes})` for each whole one. */
function readFrames(socket, onFrame) {
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 12) {
      const length = buf.readUInt32LE(8);
      if (buf.length < 12 + length) break;
      const bytes = buf.subarray(0, 12 + length);
      buf = buf.subarray(12 + length);
      onFrame({ opcode: bytes[2], requestId: bytes.readUInt32LE(4), payload: bytes.subarray(12), bytes });
    }
  });
}

/** A response frame with the given opcode, request id and payload. */
function responseFrame(opcode, requestId, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(12);
  h[0] = 0xca;
  h[1] = 1;
  h[2] = opcode;
  h.writeUInt32LE(requestId, 4);
  h.writeUInt32LE(payload.length, 8);
  return Buffer.concat([h, payload]);
}

/** An error response payload: u16 code, str message. */
function errorPayload(code, message) {
  const m = Buffer.from(message, 'utf8');
  const p = Buffer.alloc(4 + m.length);
  p.writeUInt16LE(code, 0);
  p.writeUInt16LE(m.length, 2);
  m.copy(p, 4);
  return p;
}

/** A proxy in front of `targetPort` that closes the next `drop` connections when they send their first bytes. */
async function droppingProxy(targetPort, drop) {
  const state = { drop, dropped: 0, connections: 0 };
  const server = await tcpServer((client) => {
    state.connections += 1;
    client.once('data', (first) => {
      if (state.drop > 0) {
        state.drop -= 1;
        state.dropped += 1;
        client.destroy();
        return;
      }
      const upstream = net.connect(targetPort, '127.0.0.1', () => {
        upstream.write(first);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
    });
  });
  return Object.assign(state, { port: server.port, close: () => server.close() });
}

/** A promise and its resolve function (to wait for an event a callback reports). */
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

module.exports = {
  REPO,
  VECTORS,
  MODELS,
  kairosBinary,
  startServer,
  tcpServer,
  readFrames,
  responseFrame,
  errorPayload,
  droppingProxy,
  deferred,
};
