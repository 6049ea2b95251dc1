/**
 * The agent against a real kube-apiserver + etcd and a real wireguard-go in a network namespace of
 * its own. Nodes node-b and node-c are only objects here (their Peers written as their agents
 * would); `wg show <if> dump` is the independent reader of what the device holds. Also: the agent
 * removes its Node's not-ready taint (and only that) once converged, and restores its own Peer
 * when another writer changes it, saying who (a Warning event and a log line).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { createNode, createPeer, deletePeer, getPeer, grantShippedRole, installCrds, parseDump, updatePeerSpec, waitFor } from '../sandbox/kube.ts';
import type { DumpPeer } from '../sandbox/kube.ts';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { DEFAULT_FWMARK, generatePrivateKey, listFallbacks, listRoutes, publicKeyOf } from '../native/index.ts';
import { GROUP, KubeSource, MeshApi, NOT_READY_TAINT, SPEC_OVERWRITTEN_REASON, VERSION } from '../mesh/index.ts';

const execFileP = promisify(execFile);
import type { Condition } from '../mesh/index.ts';
import { createAgent } from './agent.ts';
import type { MeshMember } from '../mesh/index.ts';

const skip = networkTestsUnavailable(['wg', 'kubectl']) ?? kubeTestsUnavailable() ?? false;
const TABLE = 51820;

describe('agent against a real API server and a real wireguard-go', { skip }, () => {
  let cluster: TestCluster;
  let admin: k8s.KubeConfig;
  let box: Sandbox;
  let ns: string;
  let ifName: string;
  let agent: MeshMember;
  let api: MeshApi;
  let keyDir: string;
  const sets: string[][] = [];
  /** The agent's log lines, as `level message {meta}`. */
  const logLines: string[] = [];
  const line = (level: string) => (message: string, meta?: Record<string, unknown>) => void logLines.push(`${level} ${message} ${JSON.stringify(meta ?? {})}`);
  const log = { error: line('error'), warn: line('warn'), info: line('info'), debug: () => undefined };
  const otherTaint = { key: 'example.com/dedicated', value: 'mesh', effect: 'NoSchedule' };
  const keys = { b: publicKeyOf(generatePrivateKey()), c: publicKeyOf(generatePrivateKey()) };

  const dump = async (): Promise<ReturnType<typeof parseDump>> => parseDump((await box.exec(ns, 'wg', ['show', ifName, 'dump'])).stdout);
  const peersOf = async (): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const p of (await dump()).peers.values()) out[p.publicKey] = p.allowedIPs;
    return out;
  };
  const routes = async (): Promise<string[]> => (await listRoutes(TABLE, { netns: ns })).map((r) => `${r.dst} ${r.dev}`).sort();
  const condition = async (name: string, type: string): Promise<Condition | undefined> =>
    ((await getPeer(admin, name))?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);

  before(async () => {
    cluster = await TestCluster.start({ users: [{ name: 'agent-node-a' }, { name: 'tamperer' }] });
    admin = cluster.kubeConfig();
    await installCrds(cluster);
    await grantShippedRole(cluster, 'agent', 'agent-node-a');
    // Another identity allowed to update Peers (what a compromised node's agent could do without node-bound writes).
    await grantShippedRole(cluster, 'agent', 'tamperer');
    await createNode(admin, 'node-a', ['10.244.0.0/24'], '198.18.0.1');
    // node-a's pool registers its Nodes not ready (and with a taint of the operator's own, which must stay).
    await admin.makeApiClient(k8s.CoreV1Api).patchNode(
      { name: 'node-a', body: { spec: { taints: [{ ...NOT_READY_TAINT }, otherTaint] } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    // One family per Node: 1.20 drops a second podCIDR unless the IPv6DualStack gate is on.
    await createNode(admin, 'node-b', ['10.244.1.0/24'], '198.18.0.2');
    await createNode(admin, 'node-c', ['10.244.2.0/24'], '198.18.0.3');
    await createPeer(admin, 'node-b', { publicKey: keys.b, endpoint: '198.18.0.2:51820', allowedIPs: ['10.244.1.0/24'], meshIP: '100.96.0.2', nodeName: 'node-b' });
    await createPeer(admin, 'node-c', { publicKey: keys.c, endpoint: '198.18.0.3:51820', allowedIPs: ['10.244.2.0/24'], meshIP: '100.96.0.3', nodeName: 'node-c' });

    box = new Sandbox();
    ns = await box.addNamespace('a');
    ifName = box.ifName('wg', 'a');
    keyDir = await mkdtemp(join(tmpdir(), 'aks-mesh-agent-test-'));
    // The agent acts with the shipped agent ClusterRole only.
    const kc = cluster.kubeConfig('agent-node-a');
    agent = createAgent({
      nodeName: 'node-a',
      interfaceName: ifName,
      listenPort: 51820,
      meshCIDR: '100.96.0.0/16',
      fwmark: DEFAULT_FWMARK,
      table: TABLE,
      rulePriority: 5280,
      mtu: 'auto',
      keyPath: join(keyDir, 'private.key'),
      wireguard: 'spawn',
      netns: ns,
      endpoint: '198.18.0.1:51820',
      source: new KubeSource(kc, { backoffMs: 200, maxBackoffMs: 1000 }),
      api: (api = new MeshApi(kc, { instance: 'node-a', component: 'aks-mesh-agent' })),
      resyncMs: 1500,
      debounceMs: 50,
      log,
      onRequest: (op, lines) => {
        if (op === 'set') sets.push([...lines]);
      },
    });
    box.trackPid(() => (agent.wireguard as { pid?: number }).pid);
    await agent.start();
  });

  after(async () => {
    await agent?.stop().catch(() => undefined);
    await box?.cleanup();
    await cluster?.stop();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  test('converges: exactly the other nodes, their pod CIDRs and mesh IPs, routed through the tunnel', async () => {
    const expected = {
      [keys.b]: ['10.244.1.0/24', '100.96.0.2/32'],
      [keys.c]: ['10.244.2.0/24', '100.96.0.3/32'],
    };
    await waitFor('the device to hold nodes b and c', async () => JSON.stringify(sortKeys(await peersOf())) === JSON.stringify(sortKeys(expected)));
    const d = await dump();
    assert.equal(d.listenPort, 51820);
    assert.equal(d.fwmark, DEFAULT_FWMARK);
    assert.equal(d.peers.get(keys.b)?.endpoint, '198.18.0.2:51820');
    await waitFor('routes in the mesh table', async () => (await routes()).length === 4);
    assert.deepEqual(await routes(), ['10.244.1.0/24', '10.244.2.0/24', '100.96.0.2/32', '100.96.0.3/32'].map((r) => `${r} ${ifName}`));

    // Self-registration: its own Peer with its key, its Node's pod CIDRs and a mesh IP; Ready on its status.
    const own = await waitFor('own Peer registered', () => getPeer(admin, 'node-a'));
    assert.equal(own.spec.publicKey, agent.publicKey);
    assert.deepEqual(own.spec.allowedIPs, ['10.244.0.0/24']);
    assert.equal(own.spec.endpoint, '198.18.0.1:51820');
    assert.match(own.spec.meshIP ?? '', /^100\.96\.\d+\.\d+$/);
    await waitFor('Ready=True on its own Peer', async () => (await condition('node-a', 'Ready'))?.status === 'True');
    const mp = await cluster.kubectl(['get', 'mp', 'node-a']);
    assert.match(mp.stdout, /node-a\s+198\.18\.0\.1:51820\s+100\.96\.\d+\.\d+\s+\["10\.244\.0\.0\/24"\]\s+True\s+\d+s/);
    await waitFor('its mesh IP on the interface', async () => (await box.ip(ns, '-4', 'addr', 'show', 'dev', ifName)).includes(`${own.spec.meshIP}/32`));

    // Converged: the not-ready taint is gone from its own Node, the operator's other taint stays.
    const taints = await waitFor('the not-ready taint removed from node-a', async () => {
      const t = (await admin.makeApiClient(k8s.CoreV1Api).readNode({ name: 'node-a' })).spec?.taints ?? [];
      return t.some((x) => x.key === NOT_READY_TAINT.key) ? null : t;
    });
    assert.deepEqual(taints.map((t) => ({ key: t.key, value: t.value, effect: t.effect })), [otherTaint]);
    // Logged once the PATCH's answer is back, which can come after our own read saw the taint gone.
    await waitFor('the taint removal logged', () => logLines.some((l) => /removed the not-ready taint/.test(l)), 30_000);
    // Fail closed beyond the routes: every other Node's pod CIDR has its fallback, never its own.
    assert.deepEqual((await listFallbacks(TABLE, { netns: ns })).filter((c) => c.startsWith('10.244.')).sort(), ['10.244.1.0/24', '10.244.2.0/24']);
    // And the mesh CIDR: a refused or missing member's mesh IP is refused, never sent by the default route.
    assert.ok((await listFallbacks(TABLE, { netns: ns })).includes('100.96.0.0/16'));

    // A converged, quiet mesh writes no status: its own writes must not wake it up again.
    const passes = agent.reconciler.passes;
    const writes = api.statusWrites;
    await waitFor('three resync passes', () => agent.reconciler.passes >= passes + 3, 15_000);
    assert.equal(api.statusWrites, writes, 'no status write while nothing changes');
  });

  test('changing one Peer costs one UAPI set, touching only that peer', async () => {
    await waitFor('quiet device', async () => (await agent.reconciler.idle(), true));
    const before = sets.length;
    await updatePeerSpec(admin, 'node-b', (s) => ({ ...s, allowedIPs: ['10.244.1.0/25', '10.244.1.128/25'] }));
    await waitFor('node-b with its pod CIDR in two halves', async () => (await peersOf())[keys.b]?.join() === '10.244.1.0/25,10.244.1.128/25,100.96.0.2/32');
    await new Promise((r) => setTimeout(r, 2000)); // a resync period: nothing else may be written
    const mine = sets.slice(before);
    assert.equal(mine.length, 1, `expected one set, got ${JSON.stringify(mine)}`);
    const touched = mine[0].filter((l) => l.startsWith('public_key='));
    assert.deepEqual(touched, [`public_key=${Buffer.from(keys.b, 'base64').toString('hex')}`]);
    assert.ok(mine[0].includes('update_only=true'), mine[0].join(' '));
    // The routes follow the set in the same pass (ip runs after the device is written).
    await waitFor('the route split in two halves, the old route gone', async () => {
      const r = await routes();
      return r.includes(`10.244.1.128/25 ${ifName}`) && !r.includes(`10.244.1.0/24 ${ifName}`);
    }, 30_000);
  });

  test('manual drift (wg set by hand) is undone by the periodic resync', async () => {
    // wg set succeeding is the drift; the resync may undo it before we could even look, so only the repair is asserted.
    await box.exec(ns, 'wg', ['set', ifName, 'peer', keys.c, 'allowed-ips', '10.99.0.0/24']);
    await waitFor('resync to restore node-c', async () => (await peersOf())[keys.c]?.join() === '10.244.2.0/24,100.96.0.3/32', 30_000);
  });

  test("a Peer claiming another node's pod CIDR is refused: victim untouched, condition and Warning event", async () => {
    // node-b holds exactly its pod CIDR, the very prefix node-c will claim (WireGuard would move it to the last claimant).
    await updatePeerSpec(admin, 'node-b', (s) => ({ ...s, allowedIPs: ['10.244.1.0/24'] }));
    await waitFor('node-b back to its /24', async () => (await peersOf())[keys.b]?.join() === '10.244.1.0/24,100.96.0.2/32');
    const victimBefore: DumpPeer | undefined = (await dump()).peers.get(keys.b);
    await updatePeerSpec(admin, 'node-c', (s) => ({ ...s, allowedIPs: ['10.244.2.0/24', '10.244.1.0/24'] }));
    const refused = await waitFor('Accepted=False on node-c', async () => {
      const c = await condition('node-c', 'Accepted');
      return c?.status === 'False' ? c : null;
    });
    assert.equal(refused.reason, 'AllowedIPsOutsidePodCIDRs');
    assert.match(refused.message, /Peer node-c: spec\.allowedIPs\[1\] 10\.244\.1\.0\/24 is not inside Node node-c's podCIDRs \[10\.244\.2\.0\/24\]/);
    await waitFor('node-c left out of the device', async () => !(keys.c in (await peersOf())));
    assert.deepEqual((await dump()).peers.get(keys.b), victimBefore, 'the victim is untouched');
    assert.ok(!(await routes()).some((r) => r.startsWith('10.244.2.0/24')), 'the refused peer has no routes');

    const events = await waitFor('a Warning event', async () => {
      const list = await cluster.kubeConfig().makeApiClient(k8s.CoreV1Api).listNamespacedEvent({ namespace: 'default' });
      return list.items.filter((e) => e.involvedObject.name === 'node-c' && e.type === 'Warning');
    });
    assert.equal(events[0].reason, 'AllowedIPsOutsidePodCIDRs');
    assert.equal(events[0].involvedObject.kind, 'Peer');
    assert.match(events[0].message ?? '', /10\.244\.1\.0\/24 is not inside Node node-c's podCIDRs/);
    const described = await cluster.kubectl(['get', 'events', '-n', 'default', '--field-selector', 'involvedObject.name=node-c']);
    assert.match(described.stdout, /Warning\s+AllowedIPsOutsidePodCIDRs\s+peer\/node-c/);

    // Fixed: accepted again, the condition says so, and the peer comes back.
    await updatePeerSpec(admin, 'node-c', (s) => ({ ...s, allowedIPs: ['10.244.2.0/24'] }));
    await waitFor('node-c back', async () => (await peersOf())[keys.c]?.join() === '10.244.2.0/24,100.96.0.3/32');
    await waitFor('Accepted=True on node-c', async () => (await condition('node-c', 'Accepted'))?.status === 'True');
  });

  test('deleting a Peer removes it from the device and its routes from the table', async () => {
    await deletePeer(admin, 'node-c');
    await waitFor('node-c gone', async () => !(keys.c in (await peersOf())));
    await waitFor('its routes gone', async () => !(await routes()).some((r) => /^(10\.244\.2\.0\/24|100\.96\.0\.3\/32) /.test(r)));
    assert.deepEqual(Object.keys(await peersOf()), [keys.b]);
  });

  test("its own Peer rewritten by another writer: restored, with a Warning event and a log line naming that writer", async () => {
    const before = await waitFor('own Peer', () => getPeer(admin, 'node-a'));
    const tamperer = cluster.kubeConfig('tamperer').makeApiClient(k8s.CustomObjectsApi);
    const current = (await tamperer.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: 'node-a' })) as { spec: Record<string, unknown> };
    // Claim node-b's pod CIDR (were it kept, node-a would be refused everywhere): another identity, another field manager.
    await tamperer.replaceClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'peers',
      name: 'node-a',
      body: { ...current, spec: { ...current.spec, allowedIPs: ['10.244.0.0/24', '10.244.1.0/24'] } },
      fieldManager: 'tamper-tool',
    });
    await waitFor('node-a restored by its agent', async () => (await getPeer(admin, 'node-a'))?.spec.allowedIPs.join() === before.spec.allowedIPs.join());
    const events = await waitFor('a Warning event on node-a naming the writer', async () => {
      const list = await admin.makeApiClient(k8s.CoreV1Api).listNamespacedEvent({ namespace: 'default' });
      return list.items.filter((e) => e.involvedObject.name === 'node-a' && e.type === 'Warning' && e.reason === SPEC_OVERWRITTEN_REASON);
    });
    assert.equal(events[0].involvedObject.kind, 'Peer');
    assert.match(events[0].message ?? '', /^Peer node-a: spec changed by "tamper-tool" \(Update at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\), not by its owner; restored by the agent on node-a \(fields spec\.allowedIPs\)$/);
    const logged = logLines.filter((l) => /own Peer was changed by another writer; restored/.test(l));
    assert.equal(logged.length, 1, logLines.join('\n'));
    assert.match(logged[0], /"changedBy":"tamper-tool"/);
    assert.match(logged[0], /"fields":"allowedIPs"/);
    // Its own later writes (a restore is one) are not mistaken for someone else's.
    await waitFor('Ready=True on node-a again', async () => (await condition('node-a', 'Ready'))?.status === 'True');
    assert.equal(logLines.filter((l) => /changed by another writer/.test(l)).length, 1);
  });

  test('its own mesh IP rewritten by others: never put on the interface, restored, one Warning event a minute whoever writes', async () => {
    const before = await waitFor('own Peer', () => getPeer(admin, 'node-a'));
    const ownIP = before.spec.meshIP as string;
    const tamperer = cluster.kubeConfig('tamperer').makeApiClient(k8s.CustomObjectsApi);
    // Read-modify-write, again on a conflict (the agent writes its status meanwhile).
    const rewrite = (meshIP: string, fieldManager: string): Promise<unknown> =>
      waitFor(`node-a rewritten by ${fieldManager}`, async () => {
        const current = (await tamperer.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: 'node-a' })) as { spec: Record<string, unknown> };
        try {
          await tamperer.replaceClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: 'node-a', body: { ...current, spec: { ...current.spec, meshIP } }, fieldManager });
          return true;
        } catch (err) {
          if ((err as { code?: number }).code === 409) return false;
          throw err;
        }
      });
    // What the agent assigns to its interface, sampled all along (it sets agent.meshIP before touching the interface).
    const assigned = new Set<string>();
    const sampler = setInterval(() => void (agent.meshIP && assigned.add(agent.meshIP)), 2);
    const eventsBefore = (await admin.makeApiClient(k8s.CoreV1Api).listNamespacedEvent({ namespace: 'default' })).items.filter((e) => e.reason === SPEC_OVERWRITTEN_REASON).length;
    try {
      // A link-local address (the metadata service's): never on node-a's interface, even before the restore.
      await rewrite('169.254.169.254', 'tamper-two');
      await waitFor('node-a restored after tamper-two', async () => (await getPeer(admin, 'node-a'))?.spec.meshIP === ownIP);
      // A valid, free mesh IP under yet another field manager: restored too, not silently adopted.
      await rewrite('100.96.0.77', 'tamper-three');
      await waitFor('node-a restored after tamper-three', async () => (await getPeer(admin, 'node-a'))?.spec.meshIP === ownIP);
      await waitFor('both restores logged', () => logLines.some((l) => /"changedBy":"tamper-three"/.test(l)) && logLines.some((l) => /"changedBy":"tamper-two"/.test(l)), 10_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${logLines.filter((l) => /another writer|meshIP/.test(l)).join('\n')}`);
      });
    } finally {
      clearInterval(sampler);
    }
    assert.deepEqual([...assigned], [ownIP]);
    assert.ok((await box.ip(ns, '-4', 'addr', 'show', 'dev', ifName)).includes(`${ownIP}/32`));
    // The previous test's event was less than a minute ago: a new field-manager name buys no new event.
    const events = (await admin.makeApiClient(k8s.CoreV1Api).listNamespacedEvent({ namespace: 'default' })).items.filter((e) => e.reason === SPEC_OVERWRITTEN_REASON);
    assert.equal(events.length, eventsBefore);
    assert.ok(!events.some((e) => /tamper-(two|three)/.test(e.message ?? '')));
  });

  test('aks-mesh status shows each Peer at a glance: Ready with its peers, a refused Peer with the reason', async () => {
    await createPeer(admin, 'greedy', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.244.0.0/16'] });
    await waitFor('Accepted=False on greedy', async () => (await condition('greedy', 'Accepted'))?.status === 'False');
    await waitFor('Ready=True on node-a', async () => (await condition('node-a', 'Ready'))?.status === 'True');
    const kubeconfig = await cluster.writeKubeconfig(join(keyDir, 'admin.kubeconfig'));
    const { stdout } = await execFileP(process.execPath, [join(import.meta.dirname, '../cli/main.ts'), 'status', '--kubeconfig', kubeconfig], { encoding: 'utf8' });
    const lines = stdout.trim().split('\n');
    assert.match(lines[0], /^KIND\s+NAME\s+NODE\s+MESH IP\s+READY\s+ACCEPTED\s+HEALTHY\s+PEERS\s+HANDSHAKES<3M\s+LAST SYNC\s+PROBLEM$/);
    // ACCEPTED: "-" when never refused, True after a refusal cleared (the tampering test above makes one).
    assert.match(stdout, /^Peer\s+node-a\s+node-a\s+100\.96\.\d+\.\d+\s+True\s+(-|True)\s+0\/1\s+1\/1\s+0\/1\s+\d+s ago\s*$/m);
    assert.match(stdout, /^Peer\s+greedy\s+-\s+-\s+-\s+False\s+-\s+-\s+-\s+-\s+Peer greedy: spec\.allowedIPs\[0\] 10\.244\.0\.0\/16 overlaps Node node-a's podCIDR 10\.244\.0\.0\/24$/m);
    await deletePeer(admin, 'greedy');
  });

  test('another object carrying its own public key is never put on the device (no endless retries), and is logged once', async () => {
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const ownKeyHex = Buffer.from(agent.publicKey, 'base64').toString('hex');
    const setsBefore = sets.length;
    // Without its Node, node-a's Peer claims no key: an external Peer with the same key takes it.
    await core.deleteNode({ name: 'node-a' });
    await createPeer(admin, 'impostor', { publicKey: agent.publicKey, allowedIPs: ['192.0.2.0/24'], meshIP: '100.96.0.99' });
    try {
      await waitFor('the impostor left off, logged', () => logLines.some((l) => /"name":"impostor","reason":"OwnPublicKey"/.test(l)));
      const passes = agent.reconciler.passes;
      await waitFor('three more passes', () => agent.reconciler.passes >= passes + 3, 15_000);
      assert.ok(!sets.slice(setsBefore).some((lines) => lines.includes(`public_key=${ownKeyHex}`)), 'no set carried its own key');
      assert.ok(!(agent.publicKey in (await peersOf())));
      assert.ok(!(await routes()).some((r) => r.startsWith('192.0.2.0/24 ')));
      assert.equal(logLines.filter((l) => /"reason":"OwnPublicKey"/.test(l)).length, 1);
    } finally {
      await deletePeer(admin, 'impostor').catch(() => undefined);
      await createNode(admin, 'node-a', ['10.244.0.0/24'], '198.18.0.1').catch(() => undefined);
    }
    await waitFor('Ready=True on node-a again', async () => (await condition('node-a', 'Ready'))?.status === 'True');
  });

  test('API server away for 20 s: the device stays as it was, then converges on what changed meanwhile', async () => {
    const before = await dump();
    const setsBefore = sets.length;
    const passesBefore = agent.reconciler.passes;
    await cluster.stopApiServer();
    // Meanwhile the cluster changes through a second API server on the same etcd, which this agent does not use.
    const other = await cluster.startSecondApiServer();
    try {
      const kc2 = other.kubeConfig();
      await createPeer(kc2, 'node-c', { publicKey: keys.c, endpoint: '198.18.0.3:51820', allowedIPs: ['10.244.2.0/24'], meshIP: '100.96.0.3', nodeName: 'node-c' });
      await updatePeerSpec(kc2, 'node-b', (s) => ({ ...s, endpoint: '198.18.0.22:51820' }));
    } finally {
      await other.stop();
    }
    const samples: string[] = [];
    for (let t = 0; t < 20; t++) {
      await new Promise((r) => setTimeout(r, 1000));
      samples.push(JSON.stringify([...(await dump()).peers.values()].map((p) => [p.publicKey, p.allowedIPs, p.endpoint])));
    }
    const expectedSame = JSON.stringify([...before.peers.values()].map((p) => [p.publicKey, p.allowedIPs, p.endpoint]));
    assert.ok(samples.every((s) => s === expectedSame), 'the device did not change while the API server was away');
    assert.equal(sets.length, setsBefore, 'no UAPI set during the outage');
    assert.ok(agent.reconciler.passes >= passesBefore + 5, 'resync passes kept running on the last snapshot during the outage');

    const listsBefore = (agent.o.source as KubeSource).lists;
    await cluster.startApiServer();
    await waitFor('node-c back and node-b moved', async () => {
      const d = await dump();
      return d.peers.get(keys.c)?.allowedIPs.join() === '10.244.2.0/24,100.96.0.3/32' && d.peers.get(keys.b)?.endpoint === '198.18.0.22:51820';
    }, 60_000);
    // The restarted API server's watch cache starts after the agent's resourceVersion: 410 Gone, then a relist.
    assert.ok((agent.o.source as KubeSource).lists > listsBefore, 'the informers relisted after the outage');
  });
});

function sortKeys(o: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
