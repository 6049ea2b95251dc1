/**
 * A MeshMember fed by a MemorySource (no API server), driving a real wireguard-go in a network
 * namespace of its own: what an event costs shows as behaviour here (one `set` for one changed
 * Peer, a refusal logged once however many passes follow), not as time.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { DEFAULT_FWMARK, generatePrivateKey, listFallbacks, listRoutes, listRules, loadOrCreatePrivateKey, publicKeyOf } from '../native/index.ts';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { createPeer, getPeer, installCrds } from '../sandbox/kube.ts';
import { MeshApi } from './api.ts';
import type { Peer, PeerHealth } from './crd/types.ts';
import { HealthTracker, UNHEALTHY_LIMIT, peerVerdict } from './health.ts';
import { MeshMember } from './member.ts';
import type { DeviceState, PeerState } from '../native/index.ts';
import type { DesiredPeer, Refusal } from './topology/index.ts';
import { agentRole } from '../agent/role.ts';
import { MemorySource } from './source/index.ts';

const skip = networkTestsUnavailable() ?? false;

const peer = (i: number, key: string, endpoint = `198.18.0.${i + 1}:51820`, cidr = `10.244.${i}.0/24`): Peer =>
  ({
    apiVersion: 'aksmesh.io/v1alpha1',
    kind: 'Peer',
    metadata: { name: `node-${i}` },
    spec: { publicKey: key, endpoint, allowedIPs: [cidr], meshIP: `100.96.0.${i + 1}`, nodeName: `node-${i}` },
  }) as Peer;

describe('a member on a MemorySource and a real wireguard-go', { skip, timeout: 120_000 }, () => {
  let box: Sandbox;
  let keyDir: string;
  let member: MeshMember;
  let source: MemorySource;
  const keys = Array.from({ length: 7 }, () => publicKeyOf(generatePrivateKey()));
  const sets: string[][] = [];
  const warnings: string[] = [];
  let passes = 0;
  const waitFor = async (what: string, check: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${what}: not within 10 s`);
  };
  const device = async (): Promise<Map<string, { endpoint: string | null; allowedIPs: string[] }>> =>
    new Map((await member.wireguard.client.get()).peers.map((p) => [p.publicKey, { endpoint: p.endpoint, allowedIPs: [...p.allowedIPs].sort() }]));

  before(async () => {
    box = new Sandbox();
    const ns = await box.addNamespace('m');
    keyDir = await mkdtemp(join(tmpdir(), 'aks-mesh-member-test-'));
    const keyPath = join(keyDir, 'private.key');
    keys[0] = publicKeyOf(loadOrCreatePrivateKey(keyPath).privateKey);
    source = new MemorySource({
      nodes: Array.from({ length: 6 }, (_, i) => ({ name: `node-${i}`, podCIDRs: [`10.244.${i}.0/24`], internalIPs: [`198.18.0.${i + 1}`] })),
      peers: [0, 1, 2, 3].map((i) => peer(i, keys[i])),
    });
    member = new MeshMember({
      role: agentRole({ nodeName: 'node-0', listenPort: 51820 }),
      name: 'node-0',
      nodeName: 'node-0',
      interfaceName: box.ifName('wm', 'a'),
      listenPort: 51820,
      meshCIDR: '100.96.0.0/16',
      fwmark: DEFAULT_FWMARK,
      table: 51820,
      rulePriority: 5280,
      mtu: 1420,
      keyPath,
      wireguard: 'spawn',
      netns: ns,
      source,
      resyncMs: 0,
      debounceMs: 20,
      log: { error: () => undefined, info: () => undefined, debug: () => undefined, warn: (m: string, meta?: Record<string, unknown>) => void warnings.push(`${m} ${JSON.stringify(meta ?? {})}`) },
      onRequest: (op, lines) => void (op === 'set' && sets.push([...lines])),
      onSync: () => void passes++,
    });
    box.trackPid(() => (member.wireguard as { pid?: number }).pid);
    await member.start();
  });

  after(async () => {
    await member?.stop().catch(() => undefined);
    await box?.cleanup();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  test('converges on the other nodes, never itself', async () => {
    await waitFor('three peers on the device', async () => (await device()).size === 3);
    const d = await device();
    assert.deepEqual([...d.keys()].sort(), [keys[1], keys[2], keys[3]].sort());
    assert.deepEqual(d.get(keys[2])?.allowedIPs, ['10.244.2.0/24', '100.96.0.3/32']);
  });

  test("one Peer's endpoint changed: one set, naming that peer only", async () => {
    await member.reconciler.idle();
    sets.length = 0;
    source.putPeer(peer(2, keys[2], '198.18.0.33:51820'));
    await waitFor('the new endpoint on the device', async () => (await device()).get(keys[2])?.endpoint === '198.18.0.33:51820');
    await member.reconciler.idle();
    assert.equal(sets.length, 1, sets.map((s) => s.join(' ')).join('\n'));
    const named = sets[0].filter((l) => l.startsWith('public_key='));
    assert.equal(named.length, 1);
    assert.equal(Buffer.from(named[0].slice('public_key='.length), 'hex').toString('base64'), keys[2]);
  });

  test('a refused Peer is logged once, however many passes follow; the others are untouched', async () => {
    // node-4 claims node-1's pod CIDR: outside its own Node's.
    source.putPeer(peer(4, keys[4], '198.18.0.5:51820', '10.244.1.0/24'));
    await waitFor('the refusal logged', () => warnings.some((w) => w.startsWith('refused') && w.includes('"name":"node-4"')));
    const before = passes;
    for (let i = 0; i < 3; i++) {
      source.putPeer(peer(3, keys[3], `198.18.0.4:5182${i}`));
      await waitFor('a pass', () => passes > before + i);
      await member.reconciler.idle();
    }
    assert.equal(warnings.filter((w) => w.startsWith('refused') && w.includes('"name":"node-4"')).length, 1, warnings.join('\n'));
    const d = await device();
    assert.equal(d.has(keys[4]), false);
    assert.deepEqual(d.get(keys[1])?.allowedIPs, ['10.244.1.0/24', '100.96.0.2/32']);
  });

  test('a deleted Peer leaves the device; a Peer added afterwards arrives, the rest untouched', async () => {
    await member.reconciler.idle();
    sets.length = 0;
    source.deletePeer('node-2');
    await waitFor('node-2 gone from the device', async () => !(await device()).has(keys[2]));
    source.putPeer(peer(5, keys[5]));
    await waitFor('node-5 on the device', async () => (await device()).has(keys[5]));
    await member.reconciler.idle();
    const named = sets.flatMap((s) => s.filter((l) => l.startsWith('public_key=')).map((l) => Buffer.from(l.slice('public_key='.length), 'hex').toString('base64')));
    assert.deepEqual([...new Set(named)].sort(), [keys[2], keys[5]].sort(), 'only the removed and the added peer are written');
  });
});

describe('--cleanup when the API no longer lets the node delete its Peer (after helm uninstall --no-hooks removed its RBAC)', { skip: skip || kubeTestsUnavailable() || false, timeout: 120_000 }, () => {
  let cluster: TestCluster;
  let box: Sandbox;
  let keyDir: string;
  let member: MeshMember;
  let ns: string;
  const warnings: string[] = [];

  before(async () => {
    // A token user bound to nothing: every write is refused (403), as for the agent's token once its Role is gone.
    cluster = await TestCluster.start({ users: [{ name: 'revoked', groups: [] }] });
    await installCrds(cluster);
    const admin = cluster.kubeConfig();
    await createPeer(admin, 'node-0', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.244.0.0/24'], nodeName: 'node-0' });
    box = new Sandbox();
    ns = await box.addNamespace('c');
    keyDir = await mkdtemp(join(tmpdir(), 'aks-mesh-member-cleanup-'));
    member = new MeshMember({
      role: agentRole({ nodeName: 'node-0', listenPort: 51820 }),
      name: 'node-0',
      nodeName: 'node-0',
      interfaceName: box.ifName('wc', 'a'),
      listenPort: 51820,
      meshCIDR: '100.96.0.0/16',
      fwmark: DEFAULT_FWMARK,
      table: 51821,
      rulePriority: 5281,
      mtu: 1420,
      keyPath: join(keyDir, 'private.key'),
      wireguard: 'spawn',
      netns: ns,
      source: new MemorySource({
        nodes: [0, 1].map((i) => ({ name: `node-${i}`, podCIDRs: [`10.244.${i}.0/24`], internalIPs: [`198.18.0.${i + 1}`] })),
        peers: [peer(1, publicKeyOf(generatePrivateKey()))],
      }),
      api: new MeshApi(cluster.kubeConfig('revoked'), { instance: 'node-0', component: 'aks-mesh-agent' }),
      resyncMs: 0,
      debounceMs: 20,
      log: { error: () => undefined, info: () => undefined, debug: () => undefined, warn: (m: string) => void warnings.push(m) },
    });
    box.trackPid(() => (member.wireguard as { pid?: number }).pid);
    await member.start();
  });

  after(async () => {
    await member?.stop().catch(() => undefined);
    await box?.cleanup();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
    await cluster?.stop();
  });

  test('the node is cleaned all the same, the Peer left is named, and the cleanup succeeds (a cleanup pod must not crash-loop)', async () => {
    const opts = { netns: ns };
    const ruleThere = async () => (await listRules(opts)).some((r) => r.priority === 5281);
    const deadline = Date.now() + 20_000;
    while (!((await ruleThere()) && (await listRoutes(51821, opts)).length > 0)) {
      assert.ok(Date.now() < deadline, 'the member set up its rule and routes');
      await new Promise((r) => setTimeout(r, 100));
    }
    await member.stop();
    await member.cleanup();
    assert.equal(await ruleThere(), false, 'rule removed');
    assert.deepEqual(await listRoutes(51821, opts), [], 'routes removed');
    assert.deepEqual(await listFallbacks(51821, opts), [], 'fallbacks removed');
    assert.ok(await getPeer(cluster.kubeConfig(), 'node-0'), 'the Peer is still there (the API refused)');
    assert.ok(warnings.some((w) => /could not delete Peer node-0 \(HTTP 403.*kubectl delete peers\.aksmesh\.io node-0/.test(w)), warnings.join('\n'));
  });
});

// ------------------------------------------------------------------ per-peer health (status.peers)

/**
 * Per-peer health is a pure function of the desired peers and the device as read: these states are
 * written by hand because a real wireguard-go cannot be made to hold a 4-minute-old handshake on
 * demand (the e2e test in e2e/health.test.ts waits out the real 3 minutes instead).
 */
const T0 = 1_800_000_000;
const at = (sec: number): Date => new Date(sec * 1000);
const desired = (kind: 'Peer' | 'Gateway', name: string, key = `${kind}-${name}-key`): DesiredPeer =>
  ({ kind, name, publicKey: key, allowedIPs: [], nodeName: null, meshIP: null }) as unknown as DesiredPeer;
const state = (key: string, handshakeAt: number | null, endpoint: string | null = '198.18.0.9:51820'): PeerState => ({
  publicKey: key,
  presharedKey: null,
  endpoint,
  allowedIPs: [],
  persistentKeepalive: 25,
  lastHandshake: handshakeAt === null ? null : { sec: BigInt(handshakeAt), nsec: 0 },
  rxBytes: 0n,
  txBytes: 0n,
  protocolVersion: 1,
});
const device = (peers: PeerState[]): DeviceState => ({ privateKey: null, publicKey: null, listenPort: 51820, fwmark: 0, peers }) as DeviceState;
const refusal = (kind: 'Peer' | 'Gateway', name: string): Refusal => ({ kind, name, reason: 'OutsideNodePodCIDRs', field: 'spec.allowedIPs[0]', message: `${kind} ${name}: refused` });

describe('per-peer health (mesh/health.ts)', () => {
  test('the reasons: not on the device, never a handshake, no endpoint, a handshake older than 3 minutes; younger is healthy', () => {
    assert.deepEqual(peerVerdict(undefined, T0), { reason: 'NotConfigured' });
    assert.deepEqual(peerVerdict(state('k', null), T0), { reason: 'NoHandshake' });
    assert.deepEqual(peerVerdict(state('k', null, null), T0), { reason: 'NoEndpoint' });
    assert.equal(peerVerdict(state('k', T0 - 179), T0), null, '179 s: healthy');
    assert.deepEqual(peerVerdict(state('k', T0 - 180), T0), { reason: 'StaleHandshake', lastHandshake: new Date((T0 - 180) * 1000).toISOString().replace(/\.\d+Z$/, 'Z') });
    // A roaming peer we never had an endpoint for, but which handshook once: this side cannot renew it.
    assert.equal(peerVerdict(state('k', T0 - 600, null), T0)?.reason, 'NoEndpoint');
    assert.equal(peerVerdict(state('k', T0 - 5, null), T0), null, 'a fresh handshake is healthy without an endpoint (the peer roams to us)');
  });

  test('status.peers: counts, summary n/m, the unhealthy list (pairs by kind then name, then refused objects) with its reasons; refused objects listed but not counted in m', () => {
    const peers = [desired('Peer', 'node-c'), desired('Peer', 'node-a'), desired('Gateway', 'gw'), desired('Peer', 'node-b'), desired('Peer', 'Node-Z')];
    const live = device([state(peers[0].publicKey, T0 - 10), state(peers[1].publicKey, T0 - 400), state(peers[2].publicKey, null), state(peers[4].publicKey, T0 - 1)]);
    const h = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers, live, refused: [refusal('Peer', 'evil'), refusal('Peer', 'self')], full: true, at: at(T0) });
    assert.deepEqual(h, {
      desired: 5,
      configured: 4,
      handshakeWithin3m: 2,
      healthy: 2,
      summary: '2/5',
      unhealthy: [
        { kind: 'Gateway', name: 'gw', reason: 'NoHandshake' },
        { kind: 'Peer', name: 'node-a', reason: 'StaleHandshake', lastHandshake: new Date((T0 - 400) * 1000).toISOString().replace(/\.\d+Z$/, 'Z') },
        { kind: 'Peer', name: 'node-b', reason: 'NotConfigured' },
        { kind: 'Peer', name: 'evil', reason: 'Refused' },
      ],
    } satisfies PeerHealth);
    // The member's own refusal is its Ready condition's business, not one of its peers.
    assert.ok(!h.unhealthy?.some((u) => u.name === 'self'));
  });

  test(`the list is bounded: the first ${UNHEALTHY_LIMIT} in order, and how many more were left out`, () => {
    const peers = Array.from({ length: 50 }, (_, i) => desired('Peer', `node-${String(i).padStart(2, '0')}`));
    const h = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers, live: device([]), refused: [refusal('Gateway', 'gw')], full: true, at: at(T0) });
    assert.equal(h.unhealthy?.length, UNHEALTHY_LIMIT);
    assert.equal(h.unhealthyOmitted, 51 - UNHEALTHY_LIMIT);
    assert.deepEqual(h.unhealthy?.[0], { kind: 'Peer', name: 'node-00', reason: 'NotConfigured' }, 'pairs come before refused objects');
    assert.equal(h.unhealthy?.at(-1)?.name, `node-${String(UNHEALTHY_LIMIT - 1).padStart(2, '0')}`);
    assert.ok(!h.unhealthy?.some((u) => u.reason === 'Refused'), 'the refused Gateway is what was cut');
    assert.equal(h.summary, '0/50');
    const healthy = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers: peers.slice(0, 2), live: device(peers.slice(0, 2).map((p) => state(p.publicKey, T0))), refused: [], full: true, at: at(T0) });
    assert.deepEqual(healthy, { desired: 2, configured: 2, handshakeWithin3m: 2, healthy: 2, summary: '2/2' }, 'no list and no omitted count when all are healthy');
  });

  test('refused objects never crowd a broken pair out of the list: 40 refused a-* and one broken peer z, z is listed', () => {
    const ok = Array.from({ length: 3 }, (_, i) => desired('Peer', `b-${i}`));
    const z = desired('Peer', 'z');
    const refused = [...Array.from({ length: 20 }, (_, i) => refusal('Peer', `a-${String(i).padStart(2, '0')}`)), ...Array.from({ length: 20 }, (_, i) => refusal('Gateway', `a-${String(i).padStart(2, '0')}`))];
    const live = device([...ok.map((p) => state(p.publicKey, T0 - 5)), state(z.publicKey, null)]);
    const h = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers: [...ok, z], live, refused, full: true, at: at(T0) });
    assert.equal(h.summary, '3/4');
    assert.deepEqual(h.unhealthy?.[0], { kind: 'Peer', name: 'z', reason: 'NoHandshake' });
    assert.equal(h.unhealthy?.length, UNHEALTHY_LIMIT);
    assert.equal(h.unhealthyOmitted, 41 - UNHEALTHY_LIMIT, 'what was cut is counted: refusals only');
    // The refusals that fit keep their order (kind then name), so every member cuts the same ones.
    assert.deepEqual(h.unhealthy?.slice(1, 3), [
      { kind: 'Gateway', name: 'a-00', reason: 'Refused' },
      { kind: 'Gateway', name: 'a-01', reason: 'Refused' },
    ]);
  });

  test('unchanged input gives the same object; an event pass judges only what changed, as of the last read; a full pass judges again with its time', () => {
    const tracker = new HealthTracker({ kind: 'Peer', name: 'self' });
    const a = desired('Peer', 'node-a');
    const b = desired('Peer', 'node-b');
    const peers = [a, b];
    const liveA = state(a.publicKey, T0 - 100);
    const live = device([liveA, state(b.publicKey, T0 - 100)]);
    const first = tracker.update({ peers, live, refused: [], full: true, at: at(T0) });
    assert.equal(first.summary, '2/2');
    // An event pass 2 minutes later that changed nothing: no re-judging (handshakes were not re-read).
    assert.equal(tracker.update({ peers, live, refused: [], full: false, at: at(T0 + 120) }), first);
    // An event pass adds node-c (on the device, no handshake yet) and removes node-b.
    const c = desired('Peer', 'node-c');
    const next = tracker.update({ peers: [a, c], live: device([liveA, state(c.publicKey, null)]), refused: [], full: false, at: at(T0 + 120) });
    assert.deepEqual(next.unhealthy, [{ kind: 'Peer', name: 'node-c', reason: 'NoHandshake' }]);
    assert.equal(next.summary, '1/2', 'node-a is still judged as of the last read (100 s old then)');
    // The next full pass reads the same handshakes 120 s later: node-a's is 220 s old now.
    const full = tracker.update({ peers: [a, c], live: device([liveA, state(c.publicKey, null)]), refused: [], full: true, at: at(T0 + 120) });
    assert.deepEqual(full.unhealthy?.map((u) => `${u.name}:${u.reason}`), ['node-a:StaleHandshake', 'node-c:NoHandshake']);
    assert.equal(full.summary, '0/2');
    // A peer whose key changed (same name): judged on its new key.
    const c2 = desired('Peer', 'node-c', 'new-key');
    const rekeyed = tracker.update({ peers: [a, c2], live: device([liveA, state('new-key', T0 + 119)]), refused: [], full: false, at: at(T0 + 121) });
    assert.deepEqual(rekeyed.unhealthy?.map((u) => `${u.name}:${u.reason}`), ['node-a:StaleHandshake']);
    assert.equal(rekeyed.summary, '1/2');
  });

  test('an event pass is judged the same as a full pass over the same input (random changes)', () => {
    let seed = 11;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const pool = Array.from({ length: 30 }, (_, i) => desired(i % 5 === 0 ? 'Gateway' : 'Peer', `m-${i}`));
    const states = new Map(pool.map((p) => [p.publicKey, state(p.publicKey, next() % 3 === 0 ? null : T0 - (next() % 400), next() % 7 === 0 ? null : '198.18.0.1:1')]));
    const tracker = new HealthTracker({ kind: 'Peer', name: 'self' });
    let peers = pool.slice(0, 10);
    let live = device(peers.filter(() => next() % 4 !== 0).map((p) => states.get(p.publicKey) as PeerState));
    tracker.update({ peers, live, refused: [], full: true, at: at(T0) });
    for (let round = 0; round < 200; round++) {
      peers = pool.filter(() => next() % 3 !== 0).sort((x, y) => (x.publicKey < y.publicKey ? -1 : 1));
      live = device(peers.filter(() => next() % 5 !== 0).map((p) => states.get(p.publicKey) as PeerState));
      const refused = next() % 4 === 0 ? [refusal('Peer', `r-${next() % 3}`)] : [];
      const event = tracker.update({ peers, live, refused, full: false, at: at(T0 + round) });
      const fresh = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers, live, refused, full: true, at: at(T0) });
      assert.deepEqual(event, fresh, `round ${round}`);
    }
  });
});

describe('a member that cannot read its own device (audit12 #2: a hung wireguard-go read healthy for 3 minutes)', () => {
  const iso = (sec: number): string => new Date(sec * 1000).toISOString().replace(/\.\d+Z$/, 'Z');

  test('the last good count is not kept: healthy 0, every desired peer DeviceUnreadable (with the handshake last read), refusals after; the next full pass judges again', () => {
    const tracker = new HealthTracker({ kind: 'Peer', name: 'self' });
    const a = desired('Peer', 'node-a');
    const b = desired('Peer', 'node-b');
    const g = desired('Gateway', 'gw');
    const peers = [b, a, g];
    const live = device([state(a.publicKey, T0 - 10), state(b.publicKey, T0 - 20)]);
    const refused = [refusal('Peer', 'evil')];
    const good = tracker.update({ peers, live, refused, full: true, at: at(T0) });
    assert.equal(good.summary, '2/3');
    // The next full pass could not read the device: the reconciler hands back the device as last read.
    const failed = { peers, live, refused, full: true, at: at(T0 + 60), unreadable: true };
    const h = tracker.update(failed);
    assert.deepEqual(h, {
      desired: 3,
      configured: 2,
      handshakeWithin3m: 0,
      healthy: 0,
      summary: '0/3',
      unhealthy: [
        { kind: 'Gateway', name: 'gw', reason: 'DeviceUnreadable' },
        { kind: 'Peer', name: 'node-a', reason: 'DeviceUnreadable', lastHandshake: iso(T0 - 10) },
        { kind: 'Peer', name: 'node-b', reason: 'DeviceUnreadable', lastHandshake: iso(T0 - 20) },
        { kind: 'Peer', name: 'evil', reason: 'Refused' },
      ],
    } satisfies PeerHealth);
    assert.equal(tracker.update(failed), h, 'the same object while it stays unreadable (no status write)');
    // Read again: judged from the fresh read, as a new tracker would.
    const fresh = device([state(a.publicKey, T0 + 100), state(b.publicKey, T0 + 100), state(g.publicKey, null)]);
    const back = tracker.update({ peers, live: fresh, refused, full: true, at: at(T0 + 120) });
    assert.deepEqual(back, new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers, live: fresh, refused, full: true, at: at(T0 + 120) }));
    assert.equal(back.summary, '2/3');
    assert.deepEqual(back.unhealthy?.map((u) => `${u.name}:${u.reason}`), ['gw:NoHandshake', 'evil:Refused']);
  });

  test('no live state at all (the device was never read) is unreadable too, not NotConfigured; the list stays bounded', () => {
    const peers = Array.from({ length: 40 }, (_, i) => desired('Peer', `node-${String(i).padStart(2, '0')}`));
    const h = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers, live: null, refused: [], full: true, at: at(T0) });
    assert.equal(h.summary, '0/40');
    assert.equal(h.configured, 0);
    assert.equal(h.unhealthy?.length, UNHEALTHY_LIMIT);
    assert.equal(h.unhealthyOmitted, 40 - UNHEALTHY_LIMIT);
    assert.ok(h.unhealthy?.every((u) => u.reason === 'DeviceUnreadable'));
  });
});

describe('a member writes its per-peer health on its own Peer, only when it changes', { skip: skip || kubeTestsUnavailable() || false, timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let box: Sandbox;
  let keyDir: string;
  let member: MeshMember;
  let api: MeshApi;
  let source: MemorySource;
  const keys = Array.from({ length: 4 }, () => publicKeyOf(generatePrivateKey()));
  const health = async (): Promise<PeerHealth | undefined> => (await getPeer(cluster.kubeConfig(), 'node-0'))?.status?.peers as PeerHealth | undefined;
  const until = async <T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await read();
      if (ok(v)) return v;
      assert.ok(Date.now() < deadline, `${what}: last seen ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  before(async () => {
    cluster = await TestCluster.start();
    await installCrds(cluster);
    box = new Sandbox();
    const ns = await box.addNamespace('h');
    keyDir = await mkdtemp(join(tmpdir(), 'aks-mesh-member-health-'));
    const keyPath = join(keyDir, 'private.key');
    keys[0] = publicKeyOf(loadOrCreatePrivateKey(keyPath).privateKey);
    // The own Peer as the role would write it, in the API (status goes there) and in the source.
    const own = peer(0, keys[0]);
    await createPeer(cluster.kubeConfig(), 'node-0', own.spec);
    source = new MemorySource({
      nodes: Array.from({ length: 4 }, (_, i) => ({ name: `node-${i}`, podCIDRs: [`10.244.${i}.0/24`], internalIPs: [`198.18.0.${i + 1}`] })),
      peers: [
        own,
        // An endpoint nobody answers at: configured, never a handshake.
        peer(1, keys[1]),
        // No endpoint: this side cannot start a handshake.
        { ...peer(2, keys[2]), spec: { ...peer(2, keys[2]).spec, endpoint: undefined } } as Peer,
        // Claims node-1's pod CIDR: refused by the trust rules.
        peer(3, keys[3], '198.18.0.4:51820', '10.244.1.0/24'),
      ],
    });
    api = new MeshApi(cluster.kubeConfig(), { instance: 'node-0', component: 'aks-mesh-agent' });
    member = new MeshMember({
      role: agentRole({ nodeName: 'node-0', listenPort: 51820 }),
      name: 'node-0',
      nodeName: 'node-0',
      interfaceName: box.ifName('wh', 'a'),
      listenPort: 51820,
      meshCIDR: '100.96.0.0/16',
      fwmark: DEFAULT_FWMARK,
      table: 51822,
      rulePriority: 5282,
      mtu: 1420,
      keyPath,
      wireguard: 'spawn',
      netns: ns,
      source,
      api,
      resyncMs: 0,
      debounceMs: 20,
    });
    box.trackPid(() => (member.wireguard as { pid?: number }).pid);
    await member.start();
  });

  after(async () => {
    await member?.stop().catch(() => undefined);
    await box?.cleanup();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
    await cluster?.stop();
  });

  test('status.peers names each unhealthy peer with its reason; HEALTHY reads 0/2 (the refused one is listed, not counted)', async () => {
    const h = await until('the health on Peer node-0', health, (v) => v?.unhealthy?.length === 3);
    assert.deepEqual(h, {
      desired: 2,
      configured: 2,
      handshakeWithin3m: 0,
      healthy: 0,
      summary: '0/2',
      unhealthy: [
        { kind: 'Peer', name: 'node-1', reason: 'NoHandshake' },
        { kind: 'Peer', name: 'node-2', reason: 'NoEndpoint' },
        { kind: 'Peer', name: 'node-3', reason: 'Refused' },
      ],
    });
    const wide = await cluster.kubectl(['get', 'mp', 'node-0', '-o', 'wide']);
    assert.match(wide.stdout, /^node-0\s.*\s0\/2\s+\d+s$/m, wide.stdout);
  });

  test('passes that change nothing write nothing; a change of the unhealthy set is written once', async () => {
    // Let a write held back by STATUS_MIN_INTERVAL_MS go out first.
    await new Promise((r) => setTimeout(r, 11_000));
    // lastSyncTime alone is refreshed once a minute (MeshApi.updateStatus' heartbeat): on a slow
    // machine one may fall into this test, and is then the one write allowed beside the change.
    const syncTime = async () => ((await getPeer(cluster.kubeConfig(), 'node-0'))?.status as { lastSyncTime?: string } | undefined)?.lastSyncTime;
    const syncBefore = await syncTime();
    const before = api.statusWrites;
    for (let i = 0; i < 3; i++) await member.reconciler.syncNow();
    await new Promise((r) => setTimeout(r, 11_000));
    const heartbeat = (await syncTime()) === syncBefore ? 0 : 1;
    assert.equal(api.statusWrites, before + heartbeat, 'three full passes with the same health: no status write');
    source.deletePeer('node-3');
    const h = await until('node-3 off the list', health, (v) => v?.unhealthy?.length === 2);
    assert.deepEqual(h?.unhealthy?.map((u) => u.name), ['node-1', 'node-2']);
    await member.reconciler.idle();
    await new Promise((r) => setTimeout(r, 500));
    // A heartbeat that falls due just as the change is written rides on that write, so it may add
    // no write of its own: at most one (one a minute), never more.
    const heartbeats = (await syncTime()) === syncBefore ? 0 : 1;
    const extra = api.statusWrites - before - 1;
    assert.ok(extra >= 0 && extra <= heartbeats, `one write for the one change (+${heartbeats} heartbeat allowed), got ${api.statusWrites - before}`);
  });

  test('a frozen wireguard-go (SIGSTOP): the member lists every peer DeviceUnreadable at its next full pass, and its own reasons again once it answers (audit12 #2)', async () => {
    const pid = (member.wireguard as { pid?: number }).pid;
    assert.ok(pid, 'spawn mode: the member runs its own wireguard-go');
    process.kill(pid, 'SIGSTOP');
    try {
      // A full pass now: its read gets no answer within the UAPI timeout.
      const failed = await member.reconciler.syncNow();
      assert.ok(failed?.error, 'the pass failed to read the frozen device');
      assert.equal(member.cannotReadDevice(failed), true);
      const h = await until('DeviceUnreadable on Peer node-0', health, (v) => v?.unhealthy?.[0]?.reason === 'DeviceUnreadable');
      assert.deepEqual(h, {
        desired: 2,
        configured: 2,
        handshakeWithin3m: 0,
        healthy: 0,
        summary: '0/2',
        unhealthy: [
          { kind: 'Peer', name: 'node-1', reason: 'DeviceUnreadable' },
          { kind: 'Peer', name: 'node-2', reason: 'DeviceUnreadable' },
        ],
      });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const ok = await member.reconciler.syncNow();
    assert.equal(ok?.error, undefined, ok?.error?.message);
    assert.equal(member.cannotReadDevice(ok as NonNullable<typeof ok>), false);
    const h = await until('the reasons back on Peer node-0', health, (v) => v?.unhealthy?.[0]?.reason === 'NoHandshake');
    assert.deepEqual(h?.unhealthy, [
      { kind: 'Peer', name: 'node-1', reason: 'NoHandshake' },
      { kind: 'Peer', name: 'node-2', reason: 'NoEndpoint' },
    ]);
  });
});
