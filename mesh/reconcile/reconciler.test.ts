/**
 * The reconciler on the real wireguard-go: bursts coalesce into one pass, and a `set` that
 * wireguard-go refuses does not keep the other peers from being configured; the error names it.
 * Routes: fallbacks beyond the routes fail closed; a route through another device is never deleted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../sandbox/sandbox.ts';
import { SpawnedWireguardGo, generatePrivateKey, listFallbacks, listRoutes, publicKeyOf } from '../../native/index.ts';
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

  test('fallbacks cover more than the routes (a pod CIDR with no peer is refused, not routed elsewhere); a foreign route stays', async () => {
    const table = 51877;
    const dev = box.ifName('wg', 'r');
    // Another device's route in our table (a --table shared by mistake, here the blocker's tunnel): not ours to delete.
    const other = box.ifName('wg', 'x');
    for (const d of [dev, other]) await box.ip(ns, 'link', 'set', d, 'up');
    await box.ip(ns, 'route', 'add', '10.60.0.0/24', 'dev', other, 'table', String(table));
    let desired: DesiredState = {
      device: { privateKey, listenPort: 51811, fwmark: 0, peers: peers.slice(0, 1) },
      routes: ['10.50.0.0/24'],
      fallbacks: ['10.50.0.0/24', '10.51.0.0/24'],
    };
    const r = new Reconciler({ device: wg.client, routes: { table, dev, netns: ns }, desired: () => desired, resyncMs: 0 });
    const first = await r.syncNow();
    assert.equal(first?.error, undefined);
    assert.deepEqual((await listRoutes(table, { netns: ns })).map((x) => `${x.dst} ${x.dev}`).sort(), [`10.50.0.0/24 ${dev}`, `10.60.0.0/24 ${other}`]);
    assert.deepEqual((await listFallbacks(table, { netns: ns })).sort(), ['10.50.0.0/24', '10.51.0.0/24']);
    // 10.51.0.0/24 (a node with no accepted peer) has no route, only its fallback.
    assert.match(await box.ip(ns, 'route', 'show', 'table', String(table), '10.51.0.0/24'), /^unreachable 10\.51\.0\.0\/24/m);

    // The peer and its node go: its route and fallbacks go, the foreign route stays.
    desired = { device: { ...desired.device, peers: [] }, routes: [], fallbacks: [] };
    const second = await r.syncNow();
    assert.deepEqual(second?.routesRemoved, ['10.50.0.0/24']);
    assert.deepEqual((await listRoutes(table, { netns: ns })).map((x) => `${x.dst} ${x.dev}`), [`10.60.0.0/24 ${other}`]);
    assert.deepEqual(await listFallbacks(table, { netns: ns }), []);
    await r.stop();
  });

  test('an onSync listener that throws does not end the pass loop', async () => {
    const desired: DesiredState = { device: { privateKey, listenPort: 51812, fwmark: 0, peers: [] }, routes: [] };
    let calls = 0;
    const r = new Reconciler({
      device: wg.client,
      desired: () => desired,
      resyncMs: 0,
      debounceMs: 10,
      onSync: () => {
        calls++;
        throw new Error('listener bug');
      },
    });
    await r.syncNow();
    r.trigger('again');
    await r.idle();
    assert.equal(calls, 2, 'the next pass still ran');
    await r.stop();
  });
});
