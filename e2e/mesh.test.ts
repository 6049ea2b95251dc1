/**
 * The product's promise, end to end on one machine: three nodes and a gateway, each a network
 * namespace on a shared underlay bridge with its own `aks-mesh agent|gateway` process and its own
 * wireguard-go, all against a real kube-apiserver + etcd. Pod traffic crosses the underlay only
 * encrypted; nodes join and leave; wireguard-go crashes and agent restarts do not break the mesh.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MeshCluster } from './cluster.ts';
import type { CapturedPacket } from './cluster.ts';
import { deletePeer, createPeer, parseDump } from './kube/mesh.ts';
import { kubeTestsUnavailable } from './kube/apiserver.ts';
import { networkTestsUnavailable } from './sandbox.ts';
import { generatePrivateKey, listRoutes, publicKeyOf } from '../native/index.ts';

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? false;
const RESYNC = 5;
const TABLE = 51820;

describe('a 3-node mesh with a gateway, in namespaces, against a real API server', { skip }, () => {
  let c: MeshCluster;

  const dumpOf = async (name: string): Promise<ReturnType<typeof parseDump>> => {
    const m = c.member(name);
    return parseDump((await c.box.exec(m.ns, 'wg', ['show', m.interfaceName, 'dump'])).stdout);
  };
  const routesOf = async (name: string): Promise<string[]> => (await listRoutes(TABLE, { netns: c.member(name).ns })).map((r) => r.dst).sort();

  before(async () => {
    c = await MeshCluster.start({ nodes: 3, gateway: true, source: 'kube', attach: ['node-2'], resyncSeconds: RESYNC });
    for (const m of [...c.nodes.map((n) => n.name), 'gateway']) await c.startAgent(m);
  });
  after(async () => {
    await c?.stop();
  });

  test('every pod reaches every other pod (ping and TCP, N×N), the gateway reaches every pod, nothing in clear on the underlay', async () => {
    await c.waitForMatrix({ timeoutMs: 60_000 });
    const capture = await c.startCapture();
    const transfers: string[] = [];
    try {
      const m = await c.matrix();
      assert.ok(m.ok, m.table);
      for (const from of c.nodes) {
        for (const to of c.nodes) {
          if (from === to) continue;
          const t = await c.tcp(from.name, to.name, 2 * 1024 * 1024);
          transfers.push(`${from.name}->${to.name}: ${t.received} bytes ${t.intact ? 'intact' : 'CORRUPTED'}`);
          assert.ok(t.intact && t.received === t.sent, transfers.at(-1));
        }
      }
      const g = await c.tcp('gateway', c.nodes[1].name, 1024 * 1024);
      assert.ok(g.intact, 'gateway -> pod TCP intact');
    } finally {
      const packets = await capture.stop();
      assertOnlyWireguardAndControlPlane(packets, c);
    }
  });

  test('the matrix holds again after a resync period', async () => {
    await new Promise((r) => setTimeout(r, (RESYNC + 1) * 1000));
    const m = await c.matrix();
    assert.ok(m.ok, m.table);
  });

  test('kill -9 of one node\'s wireguard-go: connectivity returns with no action', async () => {
    const node = c.nodes[0];
    const pid = c.wireguardGoPid(node.name);
    assert.ok(pid, 'found node-0 wireguard-go');
    process.kill(pid, 'SIGKILL');
    await c.waitFor('a new wireguard-go on node-0', () => {
      const now = c.wireguardGoPid(node.name);
      return now !== null && now !== undefined && now !== pid;
    }, { timeoutMs: 30_000 });
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });

  test('restarting an agent in attach mode loses no ping', async () => {
    const from = c.nodes[0];
    const to = c.nodes[2]; // attach mode: wireguard-go is a sidecar
    const before = await dumpOf(to.name);
    const pinging = c.box.exec(from.podNs, 'ping', ['-n', '-i', '0.2', '-c', '50', '-W', '1', to.podIp], { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 1500));
    await c.restartAgent(to.name);
    const { stdout } = await pinging;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
    assert.ok(m, stdout);
    assert.equal(Number(m[2]), Number(m[1]), `lost pings during the agent restart:\n${stdout.split('\n').slice(-3).join('\n')}`);
    const afterDump = await dumpOf(to.name);
    assert.equal(afterDump.publicKey, before.publicKey, 'same device, never reset');
    assert.equal(afterDump.peers.size, before.peers.size);
  });

  test('an endpoint inside a routed CIDR does not loop', async () => {
    // An outside machine's Peer claims node-2's underlay address: every member now routes it into the
    // tunnel, yet wireguard-go's own packets to node-2's endpoint carry the fwmark and skip that table.
    const victim = c.nodes[2];
    const bait = `${victim.underlayIp}/32`;
    await createPeer(c.kubeConfig(), 'outside-site', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: [bait] });
    try {
      for (const n of [c.nodes[0], c.nodes[1]]) {
        await c.waitFor(`${n.name} routes ${bait} into the tunnel`, async () => (await routesOf(n.name)).includes(bait));
        const plain = (await c.box.ip(n.ns, 'route', 'get', victim.underlayIp)).trim();
        const marked = (await c.box.ip(n.ns, 'route', 'get', victim.underlayIp, 'mark', '51820')).trim();
        assert.match(plain, new RegExp(`dev ${n.interfaceName}`), `unmarked packets to ${victim.underlayIp} go into the tunnel`);
        assert.match(marked, new RegExp(`dev ${n.underlayInterface}`), "wireguard-go's marked packets go out the underlay");
      }
      // Force fresh handshakes towards node-2's endpoint, then prove the pods still talk.
      const pid = c.wireguardGoPid(c.nodes[0].name);
      if (pid) process.kill(pid, 'SIGKILL');
      await c.waitForMatrix({ timeoutMs: 60_000 });
    } finally {
      await deletePeer(c.kubeConfig(), 'outside-site');
    }
  });

  test('a node that joins becomes reachable from all; a node whose Peer is deleted disappears everywhere', async () => {
    const added = await c.addNode();
    await c.startAgent(added.name);
    await c.waitForMatrix({ timeoutMs: 60_000 });
    const m = await c.matrix();
    assert.ok(m.cells.some((cell) => cell.to === added.name && cell.from === 'gateway' && cell.ok), m.table);
    assert.ok(m.cells.some((cell) => cell.from === added.name && cell.ok), m.table);

    // It leaves: its agent stops, then its Peer is deleted.
    await c.stopAgent(added.name);
    await deletePeer(c.kubeConfig(), added.name);
    for (const name of [...c.nodes.filter((n) => n.name !== added.name).map((n) => n.name), 'gateway']) {
      await c.waitFor(`${added.name} gone from ${name}'s device and routes`, async () => {
        const d = await dumpOf(name);
        const routes = await routesOf(name);
        return !d.peers.has(added.publicKey) && !routes.includes(added.podCIDR);
      }, { timeoutMs: 30_000 });
    }
  });

  test('aks-mesh agent --cleanup removes its routes, rule, address, peers and Peer; the others drop it', async () => {
    // Attach mode: the sidecar's device outlives the agent, so only --cleanup can undo what it set up.
    const added = await c.addNode({ attach: true });
    await c.startAgent(added.name);
    await c.waitFor(`${added.name} in node-0's device`, async () => (await dumpOf('node-0')).peers.has(added.publicKey), { timeoutMs: 30_000 });
    await c.stopAgent(added.name);
    assert.ok((await routesOf(added.name)).length > 0, 'a plain stop leaves the routes (a restart loses nothing)');
    assert.ok((await dumpOf(added.name)).peers.size > 0);
    const argv = c.agentCommand(added.name, { extraArgs: ['--cleanup'] });
    const { stdout, stderr } = await c.box.exec(added.ns, argv[0], argv.slice(1), { timeoutMs: 60_000 });
    assert.match(stdout + stderr, /cleaned up/);
    assert.deepEqual(await routesOf(added.name), [], 'its mesh table is empty');
    const rules = await c.box.ip(added.ns, 'rule', 'show');
    assert.doesNotMatch(rules, /lookup 51820/, 'its ip rule is gone');
    assert.equal((await dumpOf(added.name)).peers.size, 0, "the sidecar's device holds no peer");
    assert.doesNotMatch(await c.box.ip(added.ns, '-4', 'addr', 'show', 'dev', added.interfaceName), /inet /, 'its mesh IP is gone');
    const mp = await c.kube?.kubectl(['get', 'mp', added.name]);
    assert.match(mp?.stderr ?? '', /NotFound/, 'its Peer is gone');
    for (const name of ['node-0', 'gateway']) {
      await c.waitFor(`${added.name} gone from ${name}`, async () => !(await dumpOf(name)).peers.has(added.publicKey) && !(await routesOf(name)).includes(added.podCIDR), { timeoutMs: 30_000 });
    }
  });
});

/**
 * Every packet on the underlay must be WireGuard (UDP to or from a member's listen port), the
 * control plane (TCP to or from the API server) or ARP: no pod ICMP, TCP or UDP in clear.
 */
function assertOnlyWireguardAndControlPlane(packets: CapturedPacket[], c: MeshCluster): void {
  const wgPorts = new Set([...c.nodes.map((n) => n.listenPort), c.gateway?.listenPort].filter((p): p is number => p !== undefined));
  const apiPort = Number(new URL(c.kube?.server ?? 'https://x:0').port);
  const wrong: string[] = [];
  let wireguard = 0;
  for (const p of packets) {
    if (p.protocol === 'arp') continue;
    if (p.protocol === 'udp' && (wgPorts.has(p.srcPort ?? -1) || wgPorts.has(p.dstPort ?? -1)) && p.wireguard) {
      wireguard++;
      continue;
    }
    if (p.protocol === 'tcp' && (p.srcPort === apiPort || p.dstPort === apiPort) && (p.src === c.underlay.hostIp || p.dst === c.underlay.hostIp)) continue;
    wrong.push(`${p.protocol} ${p.src}:${p.srcPort ?? ''} -> ${p.dst}:${p.dstPort ?? ''} (${p.payload.length} bytes)`);
  }
  assert.ok(wireguard > 100, `expected the traffic as WireGuard on the underlay, saw ${wireguard} WireGuard packets of ${packets.length}`);
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} packets in clear on the underlay`);
}
