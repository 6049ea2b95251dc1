/**
 * Fail closed for every pod CIDR (issue 9, "Done when" 3), on the namespace cluster with a real API
 * server and clear host-gw routes for every pod CIDR in the node namespaces (what a kubenet-style
 * CNI leaves there): pod traffic to a node that the mesh cannot carry right now is refused at the
 * sender, never sent across the underlay in clear, whether that node's Peer is refused by the trust
 * rules (a) or not registered yet (b). And a node holds its not-ready taint until its agent has
 * converged, so no ordinary pod lands on it before the mesh is there (c). A Node that goes away
 * takes its fallback with it (d).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { CapturedPacket, ClusterNode } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { getPeer, parseDump, updatePeerSpec } from '../sandbox/kube.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { NOT_READY_TAINT } from '../mesh/index.ts';
import { listFallbacks, listRoutes } from '../native/index.ts';

const skip = networkTestsUnavailable(['wg', 'tcpdump']) ?? kubeTestsUnavailable() ?? false;
const TABLE = 51820;
const TAINT = `${NOT_READY_TAINT.key}:${NOT_READY_TAINT.effect}`;

describe('fail closed for every pod CIDR, and the not-ready taint', { skip }, () => {
  let c: MeshCluster;

  const routesOf = async (n: ClusterNode): Promise<string[]> => (await listRoutes(TABLE, { netns: n.ns })).map((r) => r.dst);
  const fallbacksOf = async (n: ClusterNode): Promise<string[]> => listFallbacks(TABLE, { netns: n.ns });
  const peersOf = async (n: ClusterNode): Promise<Set<string>> => new Set(parseDump((await c.box.exec(n.ns, 'wg', ['show', n.interfaceName, 'dump'])).stdout).peers.keys());

  /** Ping `to`'s pod from the pods of `from` under a capture; the packets that carry a pod address in clear. */
  async function probe(from: ClusterNode[], to: ClusterNode): Promise<{ outputs: string[]; received: number; clear: string[] }> {
    const capture = await c.startCapture();
    let packets: CapturedPacket[] = [];
    const outputs: string[] = [];
    let received = 0;
    try {
      for (const f of from) {
        const r = await c.ping(f.podNs, to.podIp, { count: 3, timeoutMs: 2000 });
        outputs.push(`${f.name} -> ${to.name}: ${r.output}`);
        received += r.received;
      }
    } finally {
      packets = await capture.stop();
    }
    const podIps = new Set(c.nodes.map((n) => n.podIp));
    const clear = packets.filter((p) => podIps.has(p.src) || podIps.has(p.dst)).map((p) => `${p.protocol} ${p.src} -> ${p.dst}`);
    return { outputs, received, clear };
  }

  /** How `from` forwards its pod's packets to `to`'s pod: the route, or the kernel's refusal ("Network is unreachable"). */
  async function refusal(from: ClusterNode, to: ClusterNode): Promise<string> {
    return c.box
      .ip(from.ns, 'route', 'get', to.podIp, 'from', from.podIp, 'iif', c.box.ifName('po', String(from.index)))
      .catch((err: { stderr?: string; message: string }) => err.stderr ?? err.message);
  }

  before(async () => {
    // Every Node starts with the not-ready taint, as a node pool registered with it would.
    c = await MeshCluster.start({ nodes: 3, source: 'kube', resyncSeconds: 5, notReadyTaint: true });
    for (const n of c.nodes) await c.startAgent(n.name);
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });
  after(async () => {
    await c?.stop();
  });

  test('each agent removed its own Node\'s not-ready taint once it had converged', async () => {
    for (const n of c.nodes) await c.waitFor(`${n.name} untainted`, async () => !(await c.nodeTaints(n.name)).includes(TAINT));
  });

  test('(a) node-1\'s Peer refused: traffic to its pods is refused at the sender, none of it in clear on the underlay', async () => {
    const [n0, n1, n2] = c.nodes;
    const clear = await c.addClearPodRoutes();
    const original = await getPeer(c.kubeConfig(), n1.name);
    assert.ok(original);
    try {
      // Its agent stops (it would restore its Peer), then its Peer claims a neighbour's pods: refused everywhere.
      await c.stopAgent(n1.name);
      await updatePeerSpec(c.kubeConfig(), n1.name, (s) => ({ ...s, allowedIPs: [n1.podCIDR, n2.podCIDR] }));
      for (const n of [n0, n2]) {
        await c.waitFor(`${n.name} to drop node-1's peer and routes`, async () => !(await peersOf(n)).has(n1.publicKey) && !(await routesOf(n)).includes(n1.podCIDR));
      }
      assert.match(await c.box.ip(n0.ns, 'route', 'show', n1.podCIDR), new RegExp(`via ${n1.underlayIp.replace(/\./g, '\\.')}`), 'a clear path exists in the main table');
      const r = await probe([n0, n2], n1);
      const decision = await refusal(n0, n1);
      assert.deepEqual(r.clear, [], `no pod packet in clear on the underlay (node-0 decides: ${decision.trim()})`);
      assert.equal(r.received, 0, r.outputs.join('\n'));
      assert.match(decision, /No route to host|unreachable/i, 'refused at the sender (an unreachable route: EHOSTUNREACH), not sent anywhere');
      for (const n of [n0, n2]) assert.ok((await fallbacksOf(n)).includes(n1.podCIDR), `${n.name} keeps a fallback for node-1's pod CIDR`);
      // Its mesh IP has no /32 through the tunnel any more: the mesh CIDR's fallback refuses it.
      for (const n of [n0, n2]) assert.ok((await fallbacksOf(n)).includes(c.meshCIDR), `${n.name} has a fallback for the mesh CIDR ${c.meshCIDR}`);
      const toMeshIP = await c.box.ip(n0.ns, 'route', 'get', String(original.spec.meshIP)).catch((err: { stderr?: string; message: string }) => err.stderr ?? err.message);
      assert.match(toMeshIP, /No route to host|unreachable/i, `node-1's mesh IP is refused at node-0, not routed elsewhere: ${toMeshIP.trim()}`);
    } finally {
      await clear.remove();
      // Its agent comes back and restores its own Peer.
      await c.startAgent(n1.name);
    }
    await c.waitFor('node-1 restored its Peer', async () => (await getPeer(c.kubeConfig(), n1.name))?.spec.allowedIPs.join() === original.spec.allowedIPs.join());
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });

  let added: ClusterNode;

  test('(b) a new node before its agent registered (Node, no Peer): traffic to its pods is refused, none of it in clear', async () => {
    added = await c.addNode({ notReadyTaint: true });
    const [n0, n1] = c.nodes;
    for (const n of [n0, n1]) await c.waitFor(`${n.name} to fail closed for ${added.name}'s pod CIDR`, async () => (await fallbacksOf(n)).includes(added.podCIDR));
    assert.equal(await getPeer(c.kubeConfig(), added.name), null, 'no Peer yet');
    const clear = await c.addClearPodRoutes();
    try {
      const r = await probe([n0, n1], added);
      const decision = await refusal(n0, added);
      assert.deepEqual(r.clear, [], `no pod packet in clear on the underlay (node-0 decides: ${decision.trim()})`);
      assert.equal(r.received, 0, r.outputs.join('\n'));
      assert.match(decision, /No route to host|unreachable/i, 'refused at the sender (an unreachable route: EHOSTUNREACH), not sent anywhere');
    } finally {
      await clear.remove();
    }
    assert.ok((await c.nodeTaints(added.name)).includes(TAINT), 'its Node still carries the not-ready taint');
  });

  test('(c) the new node holds its not-ready taint until its agent has converged, then it is gone', async () => {
    assert.ok(added, 'needs (b)');
    await c.startAgent(added.name);
    await c.waitFor(`${added.name}'s taint removed`, async () => !(await c.nodeTaints(added.name)).includes(TAINT), { timeoutMs: 60_000 });
    // The moment it is gone, the agent has converged: its Peer registered and accepted, every other node on its device.
    const own = await getPeer(c.kubeConfig(), added.name);
    assert.equal(own?.spec.publicKey, added.publicKey);
    const accepted = (own?.status?.conditions as Array<{ type: string; status: string }> | undefined)?.find((x) => x.type === 'Accepted');
    assert.notEqual(accepted?.status, 'False', 'its Peer is not refused');
    const peers = await peersOf(added);
    for (const n of c.nodes) if (n !== added) assert.ok(peers.has(n.publicKey), `${n.name} on ${added.name}'s device`);
    // The agent logs the removal once its PATCH's answer is back, which can be after our own read saw it.
    await c.waitFor(`${added.name} logs the taint removal`, async () => /converged: removed the not-ready taint from this Node/.test(await readFile(added.logFile, 'utf8')), { timeoutMs: 30_000 });
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });

  test('(d) a Node that goes away takes its fallback with it', async () => {
    assert.ok(added, 'needs (b)');
    await c.stopAgent(added.name);
    await c.kubeConfig().makeApiClient(k8s.CoreV1Api).deleteNode({ name: added.name });
    for (const n of c.nodes.filter((x) => x !== added)) {
      await c.waitFor(`${n.name} to drop the fallback for ${added.name}'s pod CIDR`, async () => !(await fallbacksOf(n)).includes(added.podCIDR));
    }
  });
});
