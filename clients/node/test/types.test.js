'use strict';
// index.d.ts against the TypeScript compiler (`tsc`, Debian's node-typescript; .ci/setup installs it): an app's
// use of every method compiles under --strict, and each line of misuse.ts is refused.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const tsc = (process.env.PATH || '').split(':').map((d) => path.join(d, 'tsc')).find((p) => fs.existsSync(p));

/** Runs tsc --strict on `file`, with 'kairos-client' resolved to this package's declarations. */
function compile(file) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kairos-tsc-'));
  const config = {
    compilerOptions: {
      strict: true, noEmit: true, target: 'es2020', module: 'commonjs', moduleResolution: 'node', types: [],
      baseUrl: dir, paths: { 'kairos-client': [path.join(ROOT, 'index.d.ts')] },
    },
    files: [path.join(__dirname, 'types', file)],
  };
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(config));
  const r = spawnSync(tsc, ['-p', dir], { encoding: 'utf8', timeout: 120000 });
  fs.rmSync(dir, { recursive: true, force: true });
  return r;
}

test('an app using every method and option compiles under --strict', { skip: !tsc && 'tsc not found (apt-get install node-typescript)' }, () => {
  const r = compile('usage.ts');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('each line of misuse.ts is a type error', { skip: !tsc && 'tsc not found (apt-get install node-typescript)' }, () => {
  const source = fs.readFileSync(path.join(__dirname, 'types', 'misuse.ts'), 'utf8').split('\n');
  const expected = source.flatMap((line, i) => (line.includes('// expect-error') ? [i + 1] : []));
  const r = compile('misuse.ts');
  const errorLines = new Set([...r.stdout.matchAll(/misuse\.ts\((\d+),\d+\): error/g)].map((m) => Number(m[1])));
  assert.equal(expected.length, 5);
  assert.deepEqual(expected.filter((l) => !errorLines.has(l)), [], r.stdout);
  assert.equal(errorLines.size, expected.length, r.stdout);
});
