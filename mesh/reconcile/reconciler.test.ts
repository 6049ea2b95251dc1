/**
 * The reconciler on the real wireguard-go: bursts coalesce into one pass, and a `set` that
 * wireguard-go refuses does not keep the other peers from being configured; the error names it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../e2e/sandbox.ts';
import { SpawnedWireguardGo, generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import { Reconciler } from './reconciler.ts';
import type { DesiredState, SyncResult } from './reconciler.ts';

const skip = networkTestsUnavailable() ?? false;

describe('Reconciler on a real wireguard-go', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  let wg: SpawnedWireguardGo;
  let blocker: SpawnedWireguardGo;
  let sets = 0;

  before(async () => {
    ns = await box.addNamespace('r');
    wg = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 'r'), netns: ns, onRequest: (op) => void (op === 'set' && sets++) });
    blocker = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 'x'), netns: ns });
    for (const w of [wg, blocker]) box.trackPid(() => w.pid);
    await wg.start();
    await blocker.start();
    // The blocker holds UDP port 51899 in the same namespace.
    await blocker.client.set({ privateKey: generatePrivateKey(), listenPort: 51899 });
  });
  after(async () => {
    await wg?.stop();
    await blocker?.stop();
    await box.cleanup();
  });

  const peers = Array.from({ length: 5 }, (_, i) => ({ publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: [`10.50.${i}.0/24`] }));
  const privateKey = generatePrivateKey();

  test('a burst of 50 triggers is one pass', async () => {
    let desired: DesiredState = { device: { privateKey, listenPort: 51810, fwmark: 0, peers: [] }, routes: [] };
    const r = new Reconciler({ device: wg.client, desired: () => desired, resyncMs: 0, debounceMs: 100 });
    await r.syncNow();
    const passes = r.passes;
    for (let i = 0; i < 50; i++) {
      desired = { ...desired, device: { ...desired.device, peers: peers.slice(0, (i % 5) + 1) } };
      r.trigger('burst');
    }
    await r.idle();
    assert.equal(r.passes - passes, 1, 'one pass for the whole burst');
    assert.equal((await wg.client.get()).peers.length, 5, 'the last desired state won');
    await r.stop();
  });

  test('a refused set (port in use) does not stop the peers; the error names it and the device is re-read', async () => {
    const results: SyncResult[] = [];
    const desired: DesiredState = { device: { privateKey, listenPort: 51899, fwmark: 0, peers: peers.slice(0, 3) }, routes: [] };
    const r = new Reconciler({ device: wg.client, desired: () => desired, resyncMs: 0, onSync: (x) => results.push(x) });
    const before = sets;
    const result = await r.syncNow();
    assert.ok(result?.error, 'the pass reports that it could not converge');
    assert.match(result.error.message, /EADDRINUSE/);
    const live = await wg.client.get();
    // wireguard-go drops its old socket before it tries the new port: the re-read shows what it was left with.
    assert.equal(result.live?.listenPort, live.listenPort, 'the error carries the re-read device, not a guess');
    assert.notEqual(live.listenPort, 51899);
    assert.deepEqual(live.peers.map((p) => p.publicKey).sort(), peers.slice(0, 3).map((p) => p.publicKey).sort());
    assert.ok(sets - before <= 3 + 2 * 3, 'bounded retries, no spinning');
    await r.stop();
  });
});
