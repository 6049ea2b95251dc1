/**
 * An event costs what it changes (issue 10), on the real wireguard-go and the real `ip`: between
 * resyncs the reconciler trusts what it last applied and does not re-read the device or list the
 * routing table; a full pass (resync, syncNow, after a refusal) repairs what changed by hand; a
 * wireguard-go that restarts with an empty device is restored; many new peers go in a few batched
 * `set`s; the 'replace' reference mode rewrites every peer in one `set`.
 *
 * `ip` calls are counted through a wrapper on PATH that logs its arguments and runs the real `ip`.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../sandbox/sandbox.ts';
import { SpawnedWireguardGo, UapiSetError, generatePrivateKey, listFallbacks, listRoutes, publicKeyOf } from '../../native/index.ts';
import type { DeviceState, PeerConfig, SetRequest } from '../../native/index.ts';
import { Reconciler } from './reconciler.ts';
import type { DesiredState, DeviceTarget } from './reconciler.ts';

const skip = networkTestsUnavailable(['wg']) ?? false;

/** A peer with a /24 of its own (10.<i/250>.<i%250>.0/24) and a keepalive, as the topology gives them. */
function makePeers(n: number, from = 0): PeerConfig[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: [`10.${100 + Math.floor(i / 250)}.${i % 250}.0/24`], persistentKeepalive: 25 };
  });
}

/** The device's peers as `publicKey allowedIPs` lines, sorted (what a person compares). */
function peerLines(state: DeviceState): string[] {
  return state.peers.map((p) => `${p.publicKey} ${[...p.allowedIPs].sort().join(',')}`).sort();
}
function wantedLines(peers: readonly PeerConfig[]): string[] {
  return peers.map((p) => `${p.publicKey} ${[...p.allowedIPs].sort().join(',')}`).sort();
}

describe('Reconciler: event passes trust what was applied; full passes repair', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  let dev: string;
  let wg: SpawnedWireguardGo;
  const requests: Array<{ op: 'get' | 'set'; lines: readonly string[] }> = [];
  /** `ip` invocations seen through the PATH wrapper. */
  let ipLog: string;
  let wrapperDir: string;
  const oldPath = process.env.PATH;
  const table = 51866;
  const privateKey = generatePrivateKey();
  let port = 51830;

  before(async () => {
    ns = await box.addNamespace('ev');
    dev = box.ifName('wg', 'e');
    wg = new SpawnedWireguardGo({ interfaceName: dev, netns: ns, onRequest: (op, lines) => void requests.push({ op, lines }) });
    box.trackPid(() => wg.pid);
    await wg.start();
    await box.ip(ns, 'link', 'set', dev, 'up');
    wrapperDir = mkdtempSync(join(tmpdir(), 'am-ipwrap-'));
    ipLog = join(wrapperDir, 'calls.log');
    const realIp = execFileSync('sh', ['-c', 'command -v ip'], { encoding: 'utf8' }).trim();
    writeFileSync(join(wrapperDir, 'ip'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${ipLog}'\nexec '${realIp}' "$@"\n`);
    chmodSync(join(wrapperDir, 'ip'), 0o755);
    process.env.PATH = `${wrapperDir}:${oldPath ?? ''}`;
  });
  after(async () => {
    process.env.PATH = oldPath;
    await wg?.stop();
    await box.cleanup();
    if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    requests.length = 0;
    writeFileSync(ipLog, '');
    port++;
  });

  const ipCalls = (): string[] => readFileSync(ipLog, 'utf8').split('\n').filter(Boolean);
  const routeListings = (): number => ipCalls().filter((c) => / route show /.test(` ${c} `)).length;
  const count = (op: 'get' | 'set'): number => requests.filter((r) => r.op === op).length;
  const tableRoutes = async (): Promise<string[]> => (await listRoutes(table, { netns: ns })).filter((r) => r.dev === dev).map((r) => r.dst).sort();

  test('an event pass changes one peer with one set: no get, no route listing; the result says it was not full', async () => {
    const peers = makePeers(20);
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes: peers.flatMap((p) => p.allowedIPs) };
    const r = new Reconciler({ device: wg.client, routes: { table, dev, netns: ns }, desired: () => desired, resyncMs: 0, debounceMs: 5 });
    const first = await r.syncNow();
    assert.equal(first?.error, undefined);
    assert.equal(first?.full, true);
    assert.ok(count('get') >= 1 && routeListings() >= 1, 'the first pass reads the device and the table');

    requests.length = 0;
    writeFileSync(ipLog, '');
    // One peer gets a second CIDR; the rest are the same objects.
    const changed = { ...peers[7], allowedIPs: [...peers[7].allowedIPs, '10.199.7.0/24'] };
    const next = peers.map((p, i) => (i === 7 ? changed : p));
    desired = { device: { ...desired.device, peers: next }, routes: next.flatMap((p) => p.allowedIPs) };
    r.trigger('peer changed');
    await r.idle();
    const result = r.lastResult;
    assert.equal(result?.error, undefined);
    assert.equal(result?.full, false, 'an event pass');
    assert.equal(count('get'), 0, 'the device is not re-read between resyncs');
    assert.equal(count('set'), 1, 'one set');
    assert.equal(requests[0].lines.filter((l) => l.startsWith('public_key=')).length, 1, 'that set touches the changed peer alone');
    assert.equal(routeListings(), 0, 'the table is not listed between resyncs');
    assert.equal(ipCalls().length, 1, 'one ip batch for the new route and its fallback');
    assert.deepEqual(result?.routesAdded, ['10.199.7.0/24']);

    // What the pass reports is what the device and the table hold.
    const live = await wg.client.get();
    assert.deepEqual(peerLines(live), wantedLines(next));
    assert.deepEqual(peerLines(result?.live as DeviceState), peerLines(live), 'SyncResult.live is the device as applied');
    assert.deepEqual(await tableRoutes(), [...next.flatMap((p) => p.allowedIPs)].sort());
    assert.ok((await listFallbacks(table, { netns: ns })).includes('10.199.7.0/24'));

    // Nothing changed: no request at all.
    requests.length = 0;
    writeFileSync(ipLog, '');
    r.trigger('nothing changed');
    await r.idle();
    assert.equal(requests.length, 0);
    assert.equal(ipCalls().length, 0);

    // A peer goes: one removal, its route and fallback go, still without listing.
    const fewer = next.slice(1);
    desired = { device: { ...desired.device, peers: fewer }, routes: fewer.flatMap((p) => p.allowedIPs) };
    r.trigger('peer deleted');
    await r.idle();
    assert.equal(r.lastResult?.full, false);
    assert.deepEqual(requests.map((q) => q.op), ['set']);
    assert.ok(requests[0].lines.includes('remove=true'));
    assert.equal(routeListings(), 0);
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines(fewer));
    assert.deepEqual(await tableRoutes(), [...fewer.flatMap((p) => p.allowedIPs)].sort());
    assert.ok(!(await listFallbacks(table, { netns: ns })).includes(next[0].allowedIPs[0]));
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });

  test("an event pass never takes over or deletes another device's route in the table", async () => {
    // A veth end inside the namespace stands for the other tool's device.
    const other = box.ifName('ve', 'a');
    await box.ip(ns, 'link', 'add', other, 'type', 'veth', 'peer', 'name', box.ifName('ve', 'b'));
    await box.ip(ns, 'link', 'set', other, 'up');
    await box.ip(ns, 'route', 'add', '10.77.0.0/24', 'dev', other, 'table', String(table));
    try {
      const peers = makePeers(3);
      let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes: peers.flatMap((p) => p.allowedIPs) };
      const warnings: string[] = [];
      const log = { error: () => undefined, info: () => undefined, debug: () => undefined, warn: (m: string, meta?: Record<string, unknown>) => void warnings.push(`${m} ${JSON.stringify(meta)}`) };
      const r = new Reconciler({ device: wg.client, routes: { table, dev, netns: ns }, desired: () => desired, resyncMs: 0, debounceMs: 5, log });
      await r.syncNow();
      // A peer now claims the destination the dummy device holds.
      const claimant = { ...peers[0], allowedIPs: [...peers[0].allowedIPs, '10.77.0.0/24'] };
      desired = { ...desired, device: { ...desired.device, peers: [claimant, ...peers.slice(1)] }, routes: [...desired.routes, '10.77.0.0/24'].sort() };
      r.trigger('claims a foreign destination');
      await r.idle();
      assert.equal(r.lastResult?.full, false);
      assert.equal(r.lastResult?.error, undefined);
      const held = async (): Promise<string[]> => (await listRoutes(table, { netns: ns })).filter((x) => x.dst === '10.77.0.0/24').map((x) => x.dev);
      assert.deepEqual(await held(), [other], 'still through the other device');
      assert.ok(warnings.some((w) => /belong to another device/.test(w) && w.includes('10.77.0.0/24')), warnings.join('\n'));
      // The claim goes: the other device's route stays.
      desired = { ...desired, device: { ...desired.device, peers }, routes: peers.flatMap((p) => p.allowedIPs) };
      r.trigger('claim withdrawn');
      await r.idle();
      assert.equal(r.lastResult?.error, undefined);
      assert.deepEqual(await held(), [other]);
      await r.stop();
    } finally {
      await box.ip(ns, 'link', 'del', other);
      await wg.client.set({ replacePeers: true });
    }
  });

  test('desired arrays rebuilt without identity: equal values send nothing, one changed value sends one set', async () => {
    const peers = makePeers(10);
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes: [] };
    const r = new Reconciler({ device: wg.client, desired: () => structuredClone(desired), resyncMs: 0, debounceMs: 5 });
    await r.syncNow();
    requests.length = 0;
    r.trigger('rebuilt, same values');
    await r.idle();
    assert.equal(requests.length, 0, 'a deep copy of the same state changes nothing');
    desired = { ...desired, device: { ...desired.device, peers: peers.map((p, i) => (i === 3 ? { ...p, persistentKeepalive: 0 } : p)) } };
    r.trigger('one keepalive off');
    await r.idle();
    assert.equal(count('set'), 1);
    assert.equal(count('get'), 0);
    assert.equal((await wg.client.get()).peers.find((p) => p.publicKey === peers[3].publicKey)?.persistentKeepalive, 0);
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });

  test('a peer removed and a route deleted by hand stay gone until the next full pass, which restores them', async () => {
    const peers = makePeers(5);
    const routes = peers.flatMap((p) => p.allowedIPs);
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes };
    const r = new Reconciler({ device: wg.client, routes: { table, dev, netns: ns }, desired: () => desired, resyncMs: 0, debounceMs: 5 });
    await r.syncNow();
    await box.exec(ns, 'wg', ['set', dev, 'peer', peers[2].publicKey, 'remove']);
    await box.ip(ns, 'route', 'del', routes[3], 'dev', dev, 'table', String(table));

    // An event that changes something else: it trusts the mirror and does not notice the drift.
    const extra = makePeers(1, 50);
    desired = { ...desired, device: { ...desired.device, peers: [...peers, ...extra] }, routes: [...routes, ...extra[0].allowedIPs] };
    r.trigger('peer added');
    await r.idle();
    assert.equal(r.lastResult?.full, false);
    assert.equal((await wg.client.get()).peers.some((p) => p.publicKey === peers[2].publicKey), false, 'not re-read between resyncs');

    // The resync reads everything and repairs it.
    r.resync();
    await r.idle();
    assert.equal(r.lastResult?.full, true);
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines(desired.device.peers));
    assert.deepEqual(await tableRoutes(), [...desired.routes].sort());
    assert.ok(r.lastResult?.routesAdded.includes(routes[3]));
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });

  test('600 new peers go in 10 batched sets, and later changes to them are single sets', async () => {
    const peers = makePeers(600);
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes: [] };
    const r = new Reconciler({ device: wg.client, desired: () => desired, resyncMs: 0, debounceMs: 5 });
    const result = await r.syncNow();
    assert.equal(result?.error, undefined);
    // The device settings (key, port) in one set, then 9 sets of 64 peers and one of 24.
    assert.equal(result?.sets, 11);
    assert.equal(count('set'), 11);
    assert.equal(count('get'), 1, 'read once, trusted after: no re-read after a clean apply');
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines(peers));
    assert.equal(result?.live?.peers.length, 600);

    requests.length = 0;
    desired = { ...desired, device: { ...desired.device, peers: peers.map((p, i) => (i === 599 ? { ...p, allowedIPs: ['10.198.0.0/24'] } : p)) } };
    r.trigger('one of 600 changed');
    await r.idle();
    assert.deepEqual(requests.map((q) => q.op), ['set']);
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });

  test('a new peer added by an event pass gets a handshake initiation from us at once (its own first one may have been dropped before we knew its key)', async () => {
    const known = makePeers(3);
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers: known }, routes: [] };
    const r = new Reconciler({ device: wg.client, desired: () => desired, resyncMs: 0, debounceMs: 5 });
    assert.equal((await r.syncNow())?.error, undefined);
    // A node that just registered: an endpoint (the namespace's loopback, nobody answers) and no keepalive.
    const newcomer: PeerConfig = { publicKey: publicKeyOf(generatePrivateKey()), endpoint: '127.0.0.1:9', allowedIPs: ['10.197.0.0/24'], persistentKeepalive: 0 };
    const quiet: PeerConfig = { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.197.1.0/24'], persistentKeepalive: 0 };
    desired = { ...desired, device: { ...desired.device, peers: [...known, newcomer, quiet] } };
    requests.length = 0;
    r.trigger('a node joined');
    await r.idle();
    assert.equal(r.lastResult?.full, false);
    // The prompt: keepalive on then off for the newcomer alone, in one set after the one that created it.
    assert.deepEqual(requests.map((q) => q.op), ['set', 'set']);
    assert.deepEqual(requests[1].lines.filter((l) => l.startsWith('public_key=') || l.startsWith('persistent_keepalive_interval=')), [
      `public_key=${Buffer.from(newcomer.publicKey, 'base64').toString('hex')}`,
      'persistent_keepalive_interval=25',
      `public_key=${Buffer.from(newcomer.publicKey, 'base64').toString('hex')}`,
      'persistent_keepalive_interval=0',
    ]);
    const live = await wg.client.get();
    const peer = live.peers.find((p) => p.publicKey === newcomer.publicKey);
    assert.ok(peer && peer.txBytes > 0n, 'an initiation left for the newcomer without any traffic of ours');
    assert.equal(peer.persistentKeepalive, 0, 'its keepalive is back to what the desired state says');
    assert.equal(live.peers.find((p) => p.publicKey === quiet.publicKey)?.txBytes, 0n, 'a peer without an endpoint is not prompted');
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });

  test('a wireguard-go that restarts with an empty device is restored by syncNow (its ready hook)', async () => {
    const peers = makePeers(8);
    const routes = peers.flatMap((p) => p.allowedIPs);
    const desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes };
    const ownBox = new Sandbox();
    const own = ownBox.ifName('wg', 'z');
    let reconciler: Reconciler | null = null;
    const restarted = new SpawnedWireguardGo({
      interfaceName: own,
      netns: ns,
      backoffInitialMs: 50,
      onReady: async (ctx) => {
        if (!ctx.restart) return;
        await box.ip(ns, 'link', 'set', own, 'up');
        await reconciler?.syncNow();
      },
    });
    ownBox.trackPid(() => restarted.pid);
    try {
      await restarted.start();
      await box.ip(ns, 'link', 'set', own, 'up');
      const r = new Reconciler({ device: restarted.client, routes: { table: table + 1, dev: own, netns: ns }, desired: () => desired, resyncMs: 0 });
      reconciler = r;
      await r.syncNow();
      assert.equal((await restarted.client.get()).peers.length, 8);
      const ready = new Promise((resolve) => restarted.once('ready', resolve));
      process.kill(restarted.pid as number, 'SIGKILL');
      await ready;
      const live = await restarted.client.get();
      assert.equal(live.publicKey, publicKeyOf(privateKey), 'the key is back');
      assert.equal(live.listenPort, port);
      assert.deepEqual(peerLines(live), wantedLines(peers));
      assert.deepEqual((await listRoutes(table + 1, { netns: ns })).map((x) => x.dst).sort(), [...routes].sort(), 'routes went with the old interface and are back');
      assert.equal(r.lastResult?.full, true);
      await r.stop();
    } finally {
      await restarted.stop();
      await ownBox.cleanup();
    }
  });

  test('replace mode: any peer change is one set rewriting every peer with replace_peers', async () => {
    const peers = makePeers(30);
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers }, routes: [] };
    const r = new Reconciler({ device: wg.client, desired: () => desired, resyncMs: 0, debounceMs: 5, applyMode: 'replace' });
    const first = await r.syncNow();
    assert.deepEqual(first?.applied.map((o) => o.op), ['device', 'replace']);
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines(peers));

    requests.length = 0;
    const next = [...peers.slice(1), ...makePeers(1, 40)];
    desired = { ...desired, device: { ...desired.device, peers: next } };
    r.trigger('one in, one out');
    await r.idle();
    assert.equal(count('get'), 0);
    assert.equal(count('set'), 1);
    assert.ok(requests[0].lines.includes('replace_peers=true'));
    assert.equal(requests[0].lines.filter((l) => l.startsWith('public_key=')).length, 30, 'every desired peer, in full');
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines(next));

    requests.length = 0;
    r.trigger('nothing changed');
    await r.idle();
    assert.equal(requests.length, 0, 'no rewrite when the peers are the same');
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });

  test('a set refused in the middle of a batch: the batch goes one peer per set, the device is re-read, and the pass converges', async () => {
    // The refusal is staged: wireguard-go refuses no valid peer on its own. The wrapper sends the
    // lines before the chosen peer to the real device (a set is not transactional: they stay
    // applied) and then fails as a refused set does; every other request goes to the real device.
    const peers = makePeers(40);
    const bad = peers[25].publicKey;
    let refusals = 1;
    const device: DeviceTarget = {
      get: () => wg.client.get(),
      set: async (req: SetRequest) => {
        const at = req.peers?.findIndex((p) => p.publicKey === bad && !p.remove) ?? -1;
        if (at >= 0 && refusals > 0) {
          refusals--;
          await wg.client.set({ ...req, peers: req.peers?.slice(0, at) });
          throw new UapiSetError({ socketPath: wg.client.socketPath, errno: 22, lines: [], refused: null, deviceAfter: null });
        }
        await wg.client.set(req);
      },
    };
    let desired: DesiredState = { device: { privateKey, listenPort: port, fwmark: 0, peers: peers.slice(0, 10) }, routes: [] };
    const r = new Reconciler({ device, desired: () => desired, resyncMs: 0, debounceMs: 5 });
    await r.syncNow();

    // An event adds 30 peers in one batch; the batch is refused at the 16th.
    requests.length = 0;
    desired = { ...desired, device: { ...desired.device, peers } };
    r.trigger('30 new peers');
    await r.idle();
    const result = r.lastResult;
    assert.equal(result?.error, undefined, 'converged in the same pass');
    assert.equal(result?.full, true, 'the refusal made the pass read the device');
    assert.ok(count('get') >= 1);
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines(peers));

    // A refusal that lasts: the pass fails, and the next pass is a full one that converges.
    refusals = 100;
    desired = { ...desired, device: { ...desired.device, peers: peers.filter((p) => p.publicKey !== bad) } };
    r.trigger('bad peer goes');
    await r.idle();
    // It comes back with 8 new peers behind it in the same batch: they land, it does not.
    const more = makePeers(8, 60);
    desired = { ...desired, device: { ...desired.device, peers: [...peers, ...more] } };
    r.trigger('bad peer back, 8 new ones');
    await r.idle();
    assert.ok(r.lastResult?.error, 'the peer cannot be put');
    assert.match(r.lastResult.error.message, /EINVAL|errno|refused|attempts/);
    const after = await wg.client.get();
    assert.deepEqual(peerLines(after), wantedLines([...peers, ...more].filter((p) => p.publicKey !== bad)), 'one refused peer keeps no other out');
    refusals = 0;
    requests.length = 0;
    r.trigger('after the failure');
    await r.idle();
    assert.equal(r.lastResult?.full, true, 'the pass after a failed one reads the device');
    assert.equal(r.lastResult?.error, undefined);
    assert.ok(count('get') >= 1);
    assert.deepEqual(peerLines(await wg.client.get()), wantedLines([...peers, ...more]));
    await r.stop();
    await wg.client.set({ replacePeers: true });
  });
});
