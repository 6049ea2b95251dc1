/**
 * The reconciler on the real wireguard-go: bursts coalesce into one pass, and a `set` that
 * wireguard-go refuses does not keep the other peers from being configured; the error names it.
 * Routes: fallbacks beyond the routes fail closed; a route through another device is never deleted.
 * preview() says what a full pass would change (drift made by hand with `wg set` and `ip route`)
 * without sending a single `set` or touching the table; each pass logs the peers it changed, by name.
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

  test('preview: what a full pass would change, read from the device and the table, and nothing changed', async () => {
    const table = 51878;
    const dev = box.ifName('wg', 'r');
    await box.ip(ns, 'link', 'set', dev, 'up');
    const named = peers.slice(0, 3).map((p, i) => ({ ...p, kind: 'Peer', name: `node-${i}` }));
    const desired: DesiredState = { device: { privateKey, listenPort: 51813, fwmark: 0, peers: named }, routes: ['10.50.0.0/24', '10.50.1.0/24'] };
    const r = new Reconciler({ device: wg.client, routes: { table, dev, netns: ns }, desired: () => desired, resyncMs: 0 });
    assert.equal((await r.syncNow())?.error, undefined);
    const clean = await r.preview();
    assert.ok(clean);
    assert.deepEqual(clean.ops, [], 'nothing to do right after a pass');
    assert.deepEqual([clean.routes?.add, clean.routes?.remove], [[], []]);

    // Drift by hand: node-1 removed, node-2's allowed IPs changed, a stranger added, a route deleted.
    const stranger = publicKeyOf(generatePrivateKey());
    await box.exec(ns, 'wg', ['set', dev, 'peer', named[1].publicKey, 'remove', 'peer', named[2].publicKey, 'allowed-ips', '10.59.0.0/24', 'peer', stranger, 'allowed-ips', '10.58.0.0/24']);
    await box.ip(ns, 'route', 'del', '10.50.1.0/24', 'dev', dev, 'table', String(table));
    const setsBefore = sets;
    const before = await wg.client.get();
    const p = await r.preview();
    assert.ok(p);
    assert.equal(sets, setsBefore, 'a preview sends no set');
    assert.deepEqual((await wg.client.get()).peers.map((x) => `${x.publicKey} ${x.allowedIPs}`).sort(), before.peers.map((x) => `${x.publicKey} ${x.allowedIPs}`).sort(), 'the device is as it was');
    assert.deepEqual((await listRoutes(table, { netns: ns })).map((x) => x.dst), ['10.50.0.0/24'], 'the table is as it was');
    assert.deepEqual(p.drift.missing, [named[1].publicKey]);
    assert.deepEqual(p.drift.extra, [stranger]);
    assert.deepEqual(p.drift.different, [{ publicKey: named[2].publicKey, fields: ['allowedIPs'] }]);
    assert.deepEqual(
      p.ops.map((o) => (o.op === 'put' ? `put ${o.peer.publicKey} ${o.created}` : o.op === 'remove' ? `remove ${o.publicKey}` : o.op)).sort(),
      [`put ${named[1].publicKey} true`, `put ${named[2].publicKey} false`, `remove ${stranger}`].sort(),
    );
    assert.deepEqual(p.routes?.add, ['10.50.1.0/24']);

    // The pass that repairs it says which peers it changed, by name, one line each.
    const lines: Array<{ level: string; message: string; meta?: Record<string, unknown> }> = [];
    const log = {
      error: (message: string, meta?: Record<string, unknown>) => lines.push({ level: 'error', message, meta }),
      warn: (message: string, meta?: Record<string, unknown>) => lines.push({ level: 'warn', message, meta }),
      info: (message: string, meta?: Record<string, unknown>) => lines.push({ level: 'info', message, meta }),
      debug: (message: string, meta?: Record<string, unknown>) => lines.push({ level: 'debug', message, meta }),
    };
    const logged = new Reconciler({ device: wg.client, routes: { table, dev, netns: ns }, desired: () => desired, resyncMs: 0, log });
    const repair = await logged.syncNow();
    assert.deepEqual(
      repair?.changes?.map((c) => `${c.change} ${c.kind ?? '-'}/${c.name ?? '-'} ${(c.fields ?? []).join(',')}`).sort(),
      ['added Peer/node-1 ', 'removed -/- ', 'updated Peer/node-2 allowedIPs'],
      'a stranger added by hand has no name: it is named by its key',
    );
    const info = lines.filter((l) => l.level === 'info' && l.message.startsWith('peer '));
    assert.deepEqual(info.map((l) => `${l.message} ${String(l.meta?.peer)}${l.meta?.fields ? ` ${String(l.meta.fields)}` : ''}`).sort(), ['peer added Peer/node-1', 'peer removed (unknown)', 'peer updated Peer/node-2 allowedIPs']);
    assert.ok(info.every((l) => typeof l.meta?.publicKey === 'string'));
    assert.ok(!JSON.stringify(lines).includes(privateKey), 'no private key in any line');
    const after = await logged.preview();
    assert.deepEqual(after?.ops, []);
    assert.deepEqual(after?.routes?.add, []);
    await r.stop();
    await logged.stop();
  });

  test('a pass of many changes logs a summary at info, not a line per peer', async () => {
    const many = Array.from({ length: 40 }, (_, i) => ({ publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: [`10.70.${i}.0/24`], kind: 'Peer', name: `n${i}` }));
    const lines: string[] = [];
    const log = { error: () => undefined, warn: () => undefined, info: (m: string) => lines.push(m), debug: () => undefined, isLevelEnabled: () => false };
    const r = new Reconciler({ device: wg.client, desired: () => ({ device: { privateKey, listenPort: 51814, fwmark: 0, peers: many }, routes: [] }), resyncMs: 0, log });
    const left = (await wg.client.get()).peers.length;
    const result = await r.syncNow();
    assert.equal(result?.changes?.length, many.length + left, 'every change (the adds, and removals of what earlier tests left) is still recorded on the result');
    assert.deepEqual(lines.filter((m) => m.startsWith('peer ')), [], 'no per-peer info lines');
    assert.deepEqual(lines.filter((m) => m === 'reconciled'), ['reconciled']);
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
