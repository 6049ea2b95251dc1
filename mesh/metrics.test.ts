/**
 * /healthz and aksmesh_wireguard_restarts_total follow the real wireguard-go supervision: a quick
 * restart after kill -9 keeps the member healthy and is counted; a wireguard-go that cannot be
 * brought back (its binary gone) makes /healthz fail, naming why, until it runs again.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { SpawnedWireguardGo, findWireguardGo, generatePrivateKey } from '../native/index.ts';
import { MemberMetrics } from './metrics.ts';

const skip = networkTestsUnavailable() ?? false;

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('health and restarts of wireguard-go in /healthz and /metrics', { skip }, () => {
  const box = new Sandbox();
  let dir: string;
  let binary: string;
  let wg: SpawnedWireguardGo;
  let server: Server;
  let base: string;

  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const r = await fetch(`${base}${path}`);
    return { status: r.status, body: await r.text() };
  };
  const restartsMetric = async (): Promise<number> => {
    const m = /^aksmesh_wireguard_restarts_total\{[^}]*\} (\d+)$/m.exec((await get('/metrics')).body);
    assert.ok(m, 'aksmesh_wireguard_restarts_total is exported');
    return Number(m[1]);
  };

  before(async () => {
    const ns = await box.addNamespace('met');
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-metrics-'));
    // A wrapper that runs the real wireguard-go in our namespace, so the test can take the binary away.
    binary = join(dir, 'wireguard-go');
    writeFileSync(binary, `#!/bin/sh\nexec ip netns exec ${ns} ${findWireguardGo()} "$@"\n`, { mode: 0o755 });
    const privateKey = generatePrivateKey();
    const interfaceName = box.ifName('wg', 'm');
    wg = new SpawnedWireguardGo({ interfaceName, binary, backoffInitialMs: 100, backoffMaxMs: 400, onReady: async ({ client }) => client.replaceDevice({ privateKey, peers: [] }) });
    box.trackPid(() => wg.pid);
    await wg.start();
    const metrics = new MemberMetrics({ role: 'node', name: 'node-m', interface: interfaceName });
    // Loopback of this test process only; no packet leaves it.
    server = await metrics.serve('127.0.0.1:0', { synced: () => true, maxSilenceMs: 60_000, wireguard: () => wg.status() });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    await wg?.stop();
    await box.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('running: healthy, no restarts', async () => {
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    assert.equal(await restartsMetric(), 0);
  });

  test('kill -9 with a working binary: a restart, counted, and still healthy', async () => {
    const ready = once(wg, 'ready');
    process.kill(wg.pid as number, 'SIGKILL');
    await ready;
    assert.equal((await get('/healthz')).status, 200);
    assert.equal(await restartsMetric(), 1);
  });

  test('kill -9 with the binary gone: /healthz fails and says why, restarts keep being counted; back to 200 once it runs', async () => {
    renameSync(binary, `${binary}.away`);
    process.kill(wg.pid as number, 'SIGKILL');
    let last = { status: 0, body: '' };
    await waitUntil('/healthz to fail', async () => (last = await get('/healthz')).status === 503);
    assert.match(last.body, /^wireguard-go is not running \(restarting for \d+ s, \d+ failed restarts\): could not start .*wireguard-go.*ENOENT/);
    const during = await restartsMetric();
    assert.ok(during >= 2, `restarts counted while failing: ${during}`);
    const ready = once(wg, 'ready');
    renameSync(`${binary}.away`, binary);
    await ready;
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    assert.ok((await restartsMetric()) > during);
  });
});
