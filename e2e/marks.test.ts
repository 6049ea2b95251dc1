/**
 * Marks that coexist (issue 9, "Done when" 4): with kube-proxy's and kubelet's iptables mark rules in
 * every node's namespace, the mesh carries ping and TCP with the default fwmark; the old default,
 * 51820 (0xca6c), carries kube-proxy's masquerade bit 0x4000 and kubelet's drop bit 0x8000, and the
 * same cluster with it carries nothing: kubelet's KUBE-FIREWALL rule drops every tunnel packet.
 *
 * The rules are the real shapes (kubelet pkg/kubelet/kubelet_network_linux.go, kube-proxy
 * pkg/proxy/iptables/proxier.go, Kubernetes 1.20 to 1.27), jumped to from the built-in chains as
 * those components do, added with `iptables` (the nft backend) inside the node namespaces only, and
 * removed again at teardown (the namespaces go too).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { ClusterNode } from '../sandbox/cluster.ts';
import { parseDump } from '../sandbox/kube.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { DEFAULT_FWMARK, DEFAULT_TABLE, formatMark, listFallbacks, listRoutes } from '../native/index.ts';

const OLD_FWMARK = 51820;

function iptablesMissing(): string | null {
  try {
    execFileSync('iptables', ['-V'], { stdio: 'ignore' });
    return null;
  } catch {
    if (process.env.AKS_MESH_REQUIRE_NETWORK === '1') throw new Error('network tests required but unavailable: needs iptables (apt-get install iptables)');
    return 'needs iptables (apt-get install iptables)';
  }
}

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? iptablesMissing() ?? false;

/** kubelet's and kube-proxy's mark rules, as `iptables` argument lists, in the order they are added. */
const KUBERNETES_RULES: Array<{ table: 'filter' | 'nat'; args: string[] }> = [
  // kubelet: packets with the drop bit are dropped on the way in and out.
  { table: 'filter', args: ['-N', 'KUBE-FIREWALL'] },
  { table: 'filter', args: ['-A', 'KUBE-FIREWALL', '-m', 'comment', '--comment', 'kubernetes firewall for dropping marked packets', '-m', 'mark', '--mark', '0x8000/0x8000', '-j', 'DROP'] },
  { table: 'filter', args: ['-I', 'INPUT', '-j', 'KUBE-FIREWALL'] },
  { table: 'filter', args: ['-I', 'OUTPUT', '-j', 'KUBE-FIREWALL'] },
  { table: 'nat', args: ['-N', 'KUBE-MARK-DROP'] },
  { table: 'nat', args: ['-A', 'KUBE-MARK-DROP', '-j', 'MARK', '--or-mark', '0x8000'] },
  // kube-proxy: packets with the masquerade bit leave with the node's address and a random port.
  { table: 'nat', args: ['-N', 'KUBE-MARK-MASQ'] },
  { table: 'nat', args: ['-A', 'KUBE-MARK-MASQ', '-j', 'MARK', '--or-mark', '0x4000'] },
  { table: 'nat', args: ['-N', 'KUBE-SERVICES'] },
  { table: 'nat', args: ['-N', 'KUBE-POSTROUTING'] },
  { table: 'nat', args: ['-A', 'KUBE-POSTROUTING', '-m', 'mark', '!', '--mark', '0x4000/0x4000', '-j', 'RETURN'] },
  { table: 'nat', args: ['-A', 'KUBE-POSTROUTING', '-j', 'MARK', '--xor-mark', '0x4000'] },
  { table: 'nat', args: ['-A', 'KUBE-POSTROUTING', '-m', 'comment', '--comment', 'kubernetes service traffic requiring SNAT', '-j', 'MASQUERADE', '--random-fully'] },
  { table: 'nat', args: ['-I', 'PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', args: ['-I', 'OUTPUT', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', args: ['-I', 'POSTROUTING', '-m', 'comment', '--comment', 'kubernetes postrouting rules', '-j', 'KUBE-POSTROUTING'] },
];

/** Our jumps and chains only, by name (the built-in chains keep whatever else they hold). */
const REMOVE_RULES: Array<{ table: 'filter' | 'nat'; args: string[] }> = [
  { table: 'filter', args: ['-D', 'INPUT', '-j', 'KUBE-FIREWALL'] },
  { table: 'filter', args: ['-D', 'OUTPUT', '-j', 'KUBE-FIREWALL'] },
  { table: 'nat', args: ['-D', 'PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', args: ['-D', 'OUTPUT', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', args: ['-D', 'POSTROUTING', '-m', 'comment', '--comment', 'kubernetes postrouting rules', '-j', 'KUBE-POSTROUTING'] },
  ...(['KUBE-FIREWALL'] as const).flatMap((chain) => [
    { table: 'filter' as const, args: ['-F', chain] },
    { table: 'filter' as const, args: ['-X', chain] },
  ]),
  ...(['KUBE-MARK-DROP', 'KUBE-MARK-MASQ', 'KUBE-SERVICES', 'KUBE-POSTROUTING'] as const).flatMap((chain) => [
    { table: 'nat' as const, args: ['-F', chain] },
    { table: 'nat' as const, args: ['-X', chain] },
  ]),
];

/**
 * A bounded TCP check (cluster.tcp waits up to two minutes for a connection that cannot come): a
 * listener in `to`'s pod answers "ok"; the client in `from`'s pod must read it within timeoutMs.
 */
const PROBE_SERVER = `
const net = require('node:net'); const [host, port] = process.argv.slice(1);
const srv = net.createServer((s) => s.end('ok')); srv.listen(Number(port), host, () => process.stdout.write('listening\\n'));
setTimeout(() => process.exit(0), 60000).unref();
`;
const PROBE_CLIENT = `
const net = require('node:net'); const [host, port, ms] = process.argv.slice(1); let got = '';
const s = net.connect(Number(port), host); s.on('data', (d) => { got += d; }); s.on('end', () => process.exit(got === 'ok' ? 0 : 4));
s.on('error', () => process.exit(2)); setTimeout(() => process.exit(3), Number(ms));
`;

async function tcpConnects(c: MeshCluster, from: ClusterNode, to: ClusterNode, timeoutMs: number, port: number): Promise<boolean> {
  const server = c.box.spawn(to.podNs, process.execPath, ['-e', PROBE_SERVER, to.podIp, String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout?.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`probe listener in ${to.podNs} exited (${code}) before listening`)));
    });
    await c.box.exec(from.podNs, process.execPath, ['-e', PROBE_CLIENT, to.podIp, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 3 || (err as { code?: unknown }).code === 2) return false;
    throw err;
  } finally {
    server.kill('SIGKILL');
  }
}

describe("marks that coexist with kube-proxy's and kubelet's iptables rules", { skip }, () => {
  let c: MeshCluster;
  const installed: string[] = [];

  const iptables = (ns: string, table: string, args: string[]): Promise<{ stdout: string }> => c.box.exec(ns, 'iptables', ['-w', '5', '-t', table, ...args]);
  /** Packets kubelet's KUBE-FIREWALL rule has dropped in a node's namespace. */
  const dropped = async (node: ClusterNode): Promise<number> => {
    const { stdout } = await iptables(node.ns, 'filter', ['-L', 'KUBE-FIREWALL', '-v', '-x', '-n']);
    const line = stdout.split('\n').find((l) => /\bDROP\b/.test(l) && l.includes('0x8000'));
    assert.ok(line, `kubelet's DROP rule is in ${node.ns}:\n${stdout}`);
    return Number(line.trim().split(/\s+/)[0]);
  };
  const dump = async (node: ClusterNode): Promise<ReturnType<typeof parseDump>> =>
    parseDump((await c.box.exec(node.ns, 'wg', ['show', node.interfaceName, 'dump'])).stdout);
  /** Each node's device holds the other nodes with endpoints, with this mark, and the rule tests it. */
  const converged = async (fwmark: number): Promise<boolean> => {
    for (const n of c.nodes) {
      const d = await dump(n);
      if (d.fwmark !== fwmark || d.peers.size < c.nodes.length - 1 || [...d.peers.values()].some((p) => !p.endpoint)) return false;
      const rules = await c.box.ip(n.ns, 'rule', 'show');
      if (!rules.includes(`not from all fwmark ${formatMark(fwmark)}/${formatMark(fwmark)} lookup ${DEFAULT_TABLE}`)) return false;
    }
    return true;
  };
  const startAll = async (flags: Record<string, string>): Promise<void> => {
    for (const n of c.nodes) {
      if (c.agentPid(n.name)) await c.restartAgent(n.name, { flags });
      else await c.startAgent(n.name, { flags });
    }
  };

  /** Another device's route in node-0's mesh table (the table shared by mistake, as with wg-quick's 51820). */
  const FOREIGN = '10.99.0.0/24';
  const foreign = async (): Promise<string> => c.box.ip(c.nodes[0].ns, 'route', 'show', 'table', String(DEFAULT_TABLE), FOREIGN);

  before(async () => {
    c = await MeshCluster.start({ nodes: 2, source: 'kube' });
    for (const n of c.nodes) {
      installed.push(n.ns);
      for (const r of KUBERNETES_RULES) await iptables(n.ns, r.table, r.args);
    }
    await c.box.ip(c.nodes[0].ns, 'route', 'add', FOREIGN, 'dev', c.nodes[0].underlayInterface, 'table', String(DEFAULT_TABLE));
  });
  after(async () => {
    for (const ns of installed) {
      for (const r of REMOVE_RULES) await iptables(ns, r.table, r.args).catch(() => undefined);
    }
    await c?.stop();
  });

  test(`the default mark ${formatMark(DEFAULT_FWMARK)}: ping and TCP cross the mesh, nothing is dropped or masqueraded`, async () => {
    await startAll({});
    await c.waitFor(`both devices with fwmark ${formatMark(DEFAULT_FWMARK)}, each other as peer, and the masked rule`, () => converged(DEFAULT_FWMARK), { timeoutMs: 60_000 });
    const m = await c.waitForMatrix({ timeoutMs: 60_000 });
    assert.ok(m.ok, m.table);
    const capture = await c.startCapture({ filter: ['udp'] });
    let packets;
    try {
      const [a, b] = c.nodes;
      for (const [from, to] of [[a, b], [b, a]]) {
        assert.ok((await c.ping(from.podNs, to.podIp, { count: 3, timeoutMs: 5000 })).ok, `ping ${from.name} pod -> ${to.name} pod`);
        const t = await c.tcp(from.name, to.name, 1 << 20);
        assert.ok(t.intact && t.received === t.sent, `TCP ${from.name} -> ${to.name}: ${t.received} of ${t.sent} bytes, intact ${t.intact}`);
      }
    } finally {
      packets = await capture.stop();
    }
    const tunnel = packets.filter((p) => p.wireguard);
    assert.ok(tunnel.length > 0, 'the traffic crossed the underlay inside WireGuard');
    // kube-proxy's MASQUERADE --random-fully would have rewritten the source port of marked packets.
    const rewritten = tunnel.filter((p) => p.srcPort !== c.nodes[0].listenPort || p.dstPort !== c.nodes[0].listenPort);
    assert.deepEqual(rewritten.map((p) => p.summary), [], 'every tunnel packet goes from port to port unchanged');
    for (const n of c.nodes) assert.equal(await dropped(n), 0, `kubelet's rule dropped nothing in ${n.name}`);
  });

  test(`the old default ${OLD_FWMARK} (${formatMark(OLD_FWMARK)}) fails the same test: kubelet's rule drops the tunnel`, async () => {
    const before = await Promise.all(c.nodes.map((n) => dropped(n)));
    // The agents refuse this mark unless told that the cluster moved Kubernetes' bits: say so, to show what it did.
    await startAll({ '--fwmark': String(OLD_FWMARK), '--allow-kubernetes-mark-bits': 'true' });
    await c.waitFor(`both devices with fwmark ${formatMark(OLD_FWMARK)}`, () => converged(OLD_FWMARK), { timeoutMs: 60_000 });
    const [a, b] = c.nodes;
    // The expected outcome: nothing crosses, in either direction, by ping or TCP.
    for (const [from, to] of [[a, b], [b, a]]) {
      const ping = await c.ping(from.podNs, to.podIp, { count: 1, timeoutMs: 5000 });
      assert.equal(ping.ok, false, `ping ${from.name} pod -> ${to.name} pod should fail with the old mark:\n${ping.output}`);
      assert.equal(await tcpConnects(c, from, to, 5000, 5301), false, `TCP ${from.name} -> ${to.name} should fail with the old mark`);
    }
    // And because of the marks: the tunnel's own packets (handshakes) were dropped by kubelet's rule.
    const after = await Promise.all(c.nodes.map((n) => dropped(n)));
    assert.ok(after.every((n, i) => n > before[i]), `kubelet's DROP rule counted the tunnel's packets: before ${before.join(', ')}, after ${after.join(', ')}`);
  });

  test('back to the default: the rule with the old mark is replaced and the mesh carries traffic again', async () => {
    await startAll({});
    await c.waitFor(`both devices back on ${formatMark(DEFAULT_FWMARK)}`, () => converged(DEFAULT_FWMARK), { timeoutMs: 60_000 });
    for (const n of c.nodes) assert.doesNotMatch(await c.box.ip(n.ns, 'rule', 'show'), /fwmark 0xca6c/, `no rule with the old mark is left in ${n.name}`);
    const m = await c.waitForMatrix({ timeoutMs: 60_000 });
    assert.ok(m.ok, m.table);
    assert.ok(await tcpConnects(c, c.nodes[0], c.nodes[1], 10_000, 5302), 'TCP node-0 pod -> node-1 pod');
  });

  test("another device's route in the mesh table survives every reconcile pass above and the agent's --cleanup", async () => {
    const node = c.nodes[0];
    assert.match(await foreign(), new RegExp(`dev ${node.underlayInterface}`), 'still there after three agent starts and their reconcile passes');
    await c.stopAgent(node.name);
    const argv = c.agentCommand(node.name, { extraArgs: ['--cleanup'] });
    const { stdout, stderr } = await c.box.exec(node.ns, argv[0], argv.slice(1), { timeoutMs: 60_000 });
    assert.match(stdout + stderr, /cleaned up/);
    assert.deepEqual(
      (await listRoutes(DEFAULT_TABLE, { netns: node.ns })).map((r) => `${r.dst} ${r.dev}`),
      [`${FOREIGN} ${node.underlayInterface}`],
      'our routes are gone, theirs stays',
    );
    assert.deepEqual(await listFallbacks(DEFAULT_TABLE, { netns: node.ns }), [], 'our fallbacks are gone');
  });
});
