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
import type { Peer } from './crd/types.ts';
import { MeshMember } from './member.ts';
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
