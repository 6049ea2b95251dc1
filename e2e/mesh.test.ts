/**
 * The product's promise, end to end on one machine: three nodes and a gateway, each a network
 * namespace on a shared underlay bridge with its own `aks-mesh agent|gateway` process and its own
 * wireguard-go, all against a real kube-apiserver + etcd. Pod traffic crosses the underlay only
 * encrypted; nodes join and leave; wireguard-go crashes and agent restarts do not break the mesh.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { CapturedPacket } from '../sandbox/cluster.ts';
import { createPeer, deletePeer, getPeer, parseDump } from '../sandbox/kube.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { DEFAULT_FWMARK, generatePrivateKey, listFallbacks, listRoutes, publicKeyOf } from '../native/index.ts';

const skip = networkTestsUnavailable(['wg', 'tcpdump', 'kubectl']) ?? kubeTestsUnavailable() ?? false;
const RESYNC = 5;
const TABLE = 51820;
/** The mark the agents put on wireguard-go's packets (the default): marked packets skip the mesh table. */
const MARK = String(DEFAULT_FWMARK);

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
    // Like a CNI with host-gw routes (kubenet): every pod CIDR is also routable in clear through the
    // underlay, in each namespace's main table. The mesh's ip rule must still win.
    const plain = await c.addClearPodRoutes();
    const probe = c.nodes[1];
    assert.match(await c.box.ip(c.nodes[0].ns, 'route', 'get', probe.podIp, 'mark', MARK), new RegExp(`via ${probe.underlayIp.replace(/\./g, '\\.')}`), 'a clear path exists');
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
      await plain.remove();
      assertOnlyWireguardAndControlPlane(packets, c);
    }
  });

  test("each agent's /metrics carries the common exporter's per-peer series, read from the live device: a transfer moves them by at least its size", async () => {
    const [a, b] = c.nodes;
    const scrape = async (): Promise<string> => (await c.box.exec(a.ns, 'curl', ['-sf', `http://${a.metricsAddress}/metrics`], { timeoutMs: 10_000 })).stdout;
    const sample = (text: string, metric: string): number | null => {
      const line = text.split('\n').find((l) => l.startsWith(`${metric}{`) && l.includes(`peer="Peer/${b.name}"`));
      return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const before = await scrape();
    assert.match(before, /^# TYPE wireguard_sent_bytes_total counter$/m);
    const sent0 = sample(before, 'wireguard_sent_bytes_total');
    assert.ok(sent0 !== null, `no wireguard_sent_bytes_total for Peer/${b.name}:\n${before.split('\n').filter((l) => l.startsWith('wireguard_')).join('\n')}`);
    const size = 3 * 1024 * 1024;
    const t = await c.tcp(a.name, b.name, size);
    assert.ok(t.intact);
    // The agent shares one device read for a second between scrapes: poll until the transfer shows.
    let sent = sent0;
    for (let i = 0; i < 50 && sent - sent0 < size; i++) {
      await new Promise((r) => setTimeout(r, 200));
      sent = sample(await scrape(), 'wireguard_sent_bytes_total') ?? sent;
    }
    assert.ok(sent - sent0 >= size, `wireguard_sent_bytes_total moved by ${sent - sent0}, the transfer was ${size}`);
    const handshake = sample(await scrape(), 'wireguard_latest_handshake_seconds');
    assert.ok(handshake !== null && handshake > 1_700_000_000, `latest handshake ${handshake}`);
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

  test('an agent whose tunnel is gone fails closed: pod traffic is refused, never sent in clear', async () => {
    const plain = await c.addClearPodRoutes();
    const [a, b] = c.nodes;
    try {
      await c.stopAgent(b.name); // spawn mode: its wireguard-go and interface go with it
      const capture = await c.startCapture();
      const fromB = await c.ping(b.podNs, a.podIp, { count: 3, timeoutMs: 1000 });
      const toB = await c.ping(a.podNs, b.podIp, { count: 3, timeoutMs: 1000 });
      const packets = await capture.stop();
      assert.equal(fromB.received, 0, 'node-1 pod -> node-0 pod: refused, not sent in clear');
      assert.match(await c.box.ip(b.ns, 'rule', 'show'), /lookup 51820/, 'the rule stays after a plain stop');
      assert.deepEqual((await listFallbacks(TABLE, { netns: b.ns })).includes(a.podCIDR), true);
      // (node-0's WireGuard packets to node-1's closed port may draw ICMP port-unreachable between node addresses: not pod traffic.)
      const podIps = new Set(c.nodes.map((n) => n.podIp));
      const clear = packets.filter((p) => podIps.has(p.src) || podIps.has(p.dst));
      assert.deepEqual(clear.map((p) => `${p.protocol} ${p.src} -> ${p.dst}`), [], 'no pod packet in clear on the underlay');
      assert.equal(toB.received, 0);
    } finally {
      await plain.remove();
      await c.startAgent(b.name);
    }
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });

  test('restarting an agent in attach mode loses no ping', async () => {
    const from = c.nodes[0];
    const to = c.nodes[2]; // attach mode: wireguard-go is a sidecar
    const before = await dumpOf(to.name);
    const countersBefore = await transfer(c, to.name);
    let pingsDone = false;
    // 40 s of pings: longer than the restart may take (the wait for ready below allows 30 s), so a
    // slow machine cannot end the pings before the new agent has reconciled.
    const pinging = c.box.exec(from.podNs, 'ping', ['-n', '-i', '0.2', '-c', '200', '-W', '1', to.podIp], { timeoutMs: 80_000 }).finally(() => (pingsDone = true));
    await new Promise((r) => setTimeout(r, 1500));
    await c.restartAgent(to.name);
    // The new agent must have attached and reconciled while the pings still run (else the test proves nothing).
    await c.waitFor('the restarted agent ready', () => ready(c, to.name), { timeoutMs: 30_000 });
    assert.equal(pingsDone, false, 'the restarted agent was ready while the pings still ran');
    const { stdout } = await pinging;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
    assert.ok(m, stdout);
    assert.equal(Number(m[2]), Number(m[1]), `lost pings during the agent restart:\n${stdout.split('\n').slice(-3).join('\n')}`);
    const afterDump = await dumpOf(to.name);
    assert.equal(afterDump.publicKey, before.publicKey, 'same device, never reset');
    assert.equal(afterDump.peers.size, before.peers.size);
    const countersAfter = await transfer(c, to.name);
    for (const [key, was] of countersBefore) {
      const now = countersAfter.get(key);
      assert.ok(now && now.rx >= was.rx && now.tx >= was.tx && now.handshake >= was.handshake, `peer ${key}: counters or handshake went back (a device reset)`);
    }
  });

  test("an endpoint inside a routed CIDR (the gateway's) does not loop", async () => {
    // An outside machine's Peer claims the gateway's underlay address: every node now routes it into
    // the tunnel, yet wireguard-go's own packets to the gateway's endpoint carry the fwmark and skip that table.
    const gw = c.gateway;
    assert.ok(gw);
    const bait = `${gw.underlayIp}/32`;
    await createPeer(c.kubeConfig(), 'outside-site', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: [bait] });
    try {
      for (const n of c.nodes) {
        await c.waitFor(`${n.name} routes ${bait} into the tunnel`, async () => (await routesOf(n.name)).includes(bait));
        const plain = (await c.box.ip(n.ns, 'route', 'get', gw.underlayIp)).trim();
        const marked = (await c.box.ip(n.ns, 'route', 'get', gw.underlayIp, 'mark', MARK)).trim();
        assert.match(plain, new RegExp(`dev ${n.interfaceName}`), `unmarked packets to ${gw.underlayIp} go into the tunnel`);
        assert.match(marked, new RegExp(`dev ${n.underlayInterface}`), "wireguard-go's marked packets go out the underlay");
      }
      // Force fresh handshakes with the gateway (its wireguard-go restarts), then prove it still reaches every pod.
      const pid = c.wireguardGoPid(gw.name);
      assert.ok(pid);
      process.kill(pid, 'SIGKILL');
      await c.waitFor('a new wireguard-go on the gateway', () => {
        const now = c.wireguardGoPid(gw.name);
        return now !== undefined && now !== pid;
      }, { timeoutMs: 30_000 });
      await c.waitForMatrix({ timeoutMs: 60_000 });
      const d = await dumpOf(c.nodes[0].name);
      assert.equal(d.peers.get(gw.publicKey)?.endpoint, gw.endpoint, 'node-0 still reaches the gateway at its endpoint');
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
    const meshIP = (await getPeer(c.kubeConfig(), added.name))?.spec.meshIP;
    assert.ok(meshIP);
    await c.stopAgent(added.name);
    await deletePeer(c.kubeConfig(), added.name);
    for (const name of [...c.nodes.filter((n) => n.name !== added.name).map((n) => n.name), 'gateway']) {
      await c.waitFor(`${added.name} gone from ${name}'s device and routes`, async () => {
        const d = await dumpOf(name);
        const routes = await routesOf(name);
        return !d.peers.has(added.publicKey) && !routes.includes(added.podCIDR) && !routes.includes(`${meshIP}/32`);
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
    assert.deepEqual(await listFallbacks(TABLE, { netns: added.ns }), [], 'its fallbacks are gone too');
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

/** Per peer: bytes received and sent, and the last handshake (unix seconds), from `wg show`. */
async function transfer(c: MeshCluster, name: string): Promise<Map<string, { rx: number; tx: number; handshake: number }>> {
  const m = c.member(name);
  const out = new Map<string, { rx: number; tx: number; handshake: number }>();
  const t = (await c.box.exec(m.ns, 'wg', ['show', m.interfaceName, 'transfer'])).stdout.trim().split('\n');
  const h = (await c.box.exec(m.ns, 'wg', ['show', m.interfaceName, 'latest-handshakes'])).stdout.trim().split('\n');
  for (const line of t) {
    const [key, rx, tx] = line.split('\t');
    out.set(key, { rx: Number(rx), tx: Number(tx), handshake: 0 });
  }
  for (const line of h) {
    const [key, sec] = line.split('\t');
    const entry = out.get(key);
    if (entry) entry.handshake = Number(sec);
  }
  return out;
}

/** The member's /readyz (source synced, last pass converged), asked from inside its namespace. */
async function ready(c: MeshCluster, name: string): Promise<boolean> {
  const m = c.member(name);
  const script = `fetch('http://${m.metricsAddress}/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
  try {
    await c.box.exec(m.ns, process.execPath, ['-e', script], { timeoutMs: 5000 });
    return true;
  } catch {
    return false;
  }
}

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
