/** The README's first command: the demo builds a mesh, shows it working, and leaves nothing behind. */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';

const skip = networkTestsUnavailable() ?? false;

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
}

function demo(env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [join(import.meta.dirname, 'main.ts'), 'demo', '--once', '--transfer-mib', '8'], { encoding: 'utf8', timeout: 180_000, env: { ...process.env, ...env } }, (err, out, errOut) =>
      err ? reject(new Error(`${err.message}\n${out}\n${errOut}`)) : resolve(out),
    );
  });
}

function assertDemo(stdout: string): void {
  // Every pod reaches every other pod, and the gateway reaches every pod.
  assert.match(stdout, /node-0\s+-\s+ok\s+ok\s*\n\s+node-1\s+ok\s+-\s+ok\s*\n\s+node-2\s+ok\s+ok\s+-\s*\n\s+gateway\s+ok\s+ok\s+ok/);
  assert.match(stdout, /TCP node-0 pod -> node-1 pod: 8388608 of 8388608 bytes, intact/);
  assert.equal(stdout.match(/^interface: /gm)?.length, 4, 'inspect of three nodes and the gateway');
  assert.equal(stdout.match(/latest handshake: /g)?.length, 3 * 3 + 3, 'every peer of every device has a handshake');
  assert.match(stdout, /torn down/);
}

test('aks-mesh demo --once against the real API server: full matrix, intact transfer, inspect, clean teardown', { skip }, async () => {
  const before = new Set(namespaces());
  const stdout = await demo();
  assertDemo(stdout);
  assert.match(stdout, /kube-apiserver 1\.20\.2 at https:\/\/198\.18\.\d+\.254:\d+/);
  assert.match(stdout, /peer\.aksmesh\.io\/node-0\s+198\.18\.\d+\.1:51820\s+100\.96\.\d+\.\d+\s+\["10\.244\.0\.0\/24"\]\s+True/);
  assert.match(stdout, /gateway\.aksmesh\.io\/gateway\s+198\.18\.\d+\.100:51820/);
  assert.deepEqual(namespaces().filter((ns) => !before.has(ns)), [], 'the demo left namespaces behind');
});

test('aks-mesh demo --once without a built API server falls back to a peers directory and still works', { skip }, async () => {
  const stdout = await demo({ AKS_MESH_KUBE_APISERVER: '/nonexistent/kube-apiserver' });
  assert.match(stdout, /kube-apiserver is not built yet/);
  assertDemo(stdout);
});
