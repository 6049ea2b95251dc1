/** The README's first command: the demo builds a mesh, shows it working, and leaves nothing behind. */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { networkTestsUnavailable } from '../e2e/sandbox.ts';

const skip = networkTestsUnavailable() ?? false;

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
}

test('aks-mesh demo --once: full connectivity, intact transfer, inspect output, clean teardown', { skip }, async () => {
  const before = new Set(namespaces());
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [join(import.meta.dirname, 'main.ts'), 'demo', '--once'], { encoding: 'utf8', timeout: 120_000 }, (err, out, errOut) =>
      err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out),
    );
  });
  assert.match(stdout, /node-a\s+-\s+ok\s*\n\s+node-b\s+ok\s+-/);
  assert.match(stdout, /TCP node-a -> node-b: 33554432 of 33554432 bytes, intact/);
  assert.equal(stdout.match(/^interface: /gm)?.length, 2);
  assert.match(stdout, /torn down/);
  const names = [...stdout.matchAll(/namespace (am-\w+-\w)/g)].map((m) => m[1]);
  assert.equal(names.length, 2);
  const left = namespaces().filter((ns) => !before.has(ns));
  assert.deepEqual(left, [], 'the demo left namespaces behind');
});
