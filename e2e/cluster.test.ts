/**
 * The e2e cluster builder's own plumbing (not the mesh): namespaces on one bridge, the API server
 * reachable from every namespace with each member's own kubeconfig, pods behind their nodes and no
 * further, the capture on the bridge, agent processes launched with the contract flags in the right
 * namespace (a stub program stands in for the agent here), the attach-mode sidecar, addNode, the
 * directory source, and a teardown that leaves nothing of ours behind.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { DirectorySource } from '../mesh/index.ts';
import { MeshCluster, NODE_BINARY, UNDERLAY_RESERVATIONS, formatPacket, hostRoutesOverlapping, wireguardGoPids } from '../sandbox/cluster.ts';
import type { ClusterMember } from '../sandbox/cluster.ts';
import { isRunning, kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable, toolsUnavailable } from '../sandbox/sandbox.ts';

const noNetwork = networkTestsUnavailable(['wg']);
// Under AKS_MESH_REQUIRE_NETWORK=1 a missing tcpdump fails here instead of skipping the capture tests.
const noTcpdump = noNetwork ? null : toolsUnavailable(['tcpdump']);
const skipKube = noNetwork ?? kubeTestsUnavailable() ?? false;
const skipDir = noNetwork ?? false;

/** Stands in for `cli/main.ts`: says where it runs and with which arguments, then waits for SIGTERM. */
const STUB = `
const fs = require('node:fs');
const argv = process.argv.slice(2);
console.log('stub argv ' + JSON.stringify(argv));
console.log('stub netns ' + fs.readlinkSync('/proc/self/ns/net'));
if (argv.includes('--crash')) { console.error('stub crashing on purpose'); process.exit(3); }
process.on('SIGTERM', () => { console.log('stub terminated'); process.exit(0); });
console.log('stub ready');
setInterval(() => {}, 1000);
`;

/** Run inside a namespace: GET /readyz and /api/v1/nodes with a kubeconfig's server, CA and token. */
const API_PROBE = `
const https = require('node:https'); const fs = require('node:fs');
const kc = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
const server = kc.clusters[0].cluster.server; const ca = Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64');
const token = kc.users[0].user.token;
const get = (path) => new Promise((resolve, reject) => {
  const req = https.get(server + path, { ca, headers: { Authorization: 'Bearer ' + token }, timeout: 5000 }, (res) => {
    let body = ''; res.setEncoding('utf8'); res.on('data', (d) => (body += d)); res.on('end', () => resolve({ status: res.statusCode, body }));
  });
  req.on('timeout', () => req.destroy(new Error('timeout'))); req.on('error', reject);
});
(async () => {
  const ready = await get('/readyz');
  const nodes = await get('/api/v1/nodes');
  const names = nodes.status === 200 ? JSON.parse(nodes.body).items.map((n) => n.metadata.name) : [];
  process.stdout.write(JSON.stringify({ server, readyz: ready.status, readyBody: ready.body, nodes: nodes.status, names }));
})().catch((e) => { process.stderr.write(e.message); process.exit(1); });
`;

function netnsOfPid(pid: number): string {
  return readlinkSync(`/proc/${pid}/ns/net`);
}

function netnsOfName(ns: string): string {
  return `net:[${statSync(join('/run/netns', ns)).ino}]`;
}

function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

function stubArgv(log: string, nth = 1): string[] {
  const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('stub argv '));
  return JSON.parse(lines[nth - 1].slice('stub argv '.length)) as string[];
}

function count(log: string, text: string): number {
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(text)).length : 0;
}

interface Traces {
  tag: string;
  hostInterface: string;
  subnet: string;
  dir: string;
  interfaceNames: string[];
}

function tracesOf(cluster: MeshCluster): Traces {
  const { tag } = cluster.box;
  return { tag, hostInterface: cluster.underlay.hostInterface, subnet: cluster.underlay.subnet, dir: cluster.dir, interfaceNames: cluster.interfaceNames() };
}

/** What of ours can be seen on the machine: namespaces, the host veth, host routes, live pids, sockets, files. */
async function leftovers(c: Traces, pids: number[]): Promise<string[]> {
  const found: string[] = [];
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of netns.split('\n')) if (line.startsWith(`am-${c.tag}-`)) found.push(`namespace ${line}`);
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  if (links.includes(c.hostInterface)) found.push(`host link ${c.hostInterface}`);
  found.push(...(await hostRoutesOverlapping(c.subnet)));
  for (const pid of pids) if (isRunning(pid)) found.push(`process ${pid}`);
  for (const p of wireguardGoPids(c.interfaceNames)) found.push(`wireguard-go ${p.pid} on ${p.interfaceName}`);
  for (const name of c.interfaceNames) if (existsSync(`/var/run/wireguard/${name}.sock`)) found.push(`socket ${name}.sock`);
  if (existsSync(c.dir)) found.push(`dir ${c.dir}`);
  if (existsSync(join(UNDERLAY_RESERVATIONS, c.subnet.split('.')[2]))) found.push(`reservation of ${c.subnet}`);
  return found;
}

describe('MeshCluster with an API server', { skip: skipKube }, () => {
  let cluster: MeshCluster;
  let stubDir: string;
  let stub: string;
  const pids: number[] = [];

  before(async () => {
    stubDir = mkdtempSync(join(tmpdir(), 'aks-mesh-stub-'));
    stub = join(stubDir, 'stub.cjs');
    writeFileSync(stub, STUB);
    cluster = await MeshCluster.start({ nodes: 3, gateway: true, source: 'kube', attach: ['node-2'], keepLogs: false });
  });
  after(async () => {
    await cluster?.stop();
    rmSync(stubDir, { recursive: true, force: true });
  });

  test('builds the underlay, nodes, pods and gateway', (t) => {
    const { timings: tm, underlay } = cluster;
    t.diagnostic(
      `setup ${ms(tm.totalMs)}: underlay ${ms(tm.underlayMs)}, namespaces ${ms(tm.namespacesMs)} and API server ${ms(tm.apiServerMs)} in parallel, objects ${ms(tm.objectsMs)}`,
    );
    assert.match(underlay.subnet, /^198\.18\.(\d+)\.0\/24$/);
    const x = Number(underlay.prefix.split('.')[2]);
    assert.ok(x >= 1 && x <= 254);
    assert.equal(cluster.kube?.server.startsWith(`https://${underlay.hostIp}:`), true);
    assert.deepEqual(
      cluster.nodes.map((n) => [n.name, n.underlayIp, n.podIp, n.podCIDR, n.wireguard]),
      [0, 1, 2].map((i) => [`node-${i}`, `${underlay.prefix}.${i + 1}`, `10.244.${i}.2`, `10.244.${i}.0/24`, i === 2 ? 'attach' : 'spawn']),
    );
    assert.equal(cluster.gateway?.underlayIp, `${underlay.prefix}.100`);
    const names = cluster.interfaceNames();
    assert.equal(new Set(names).size, names.length);
    for (const name of names) assert.ok(name.includes(cluster.box.tag) && name.length <= 15, name);
    for (const m of [...cluster.nodes, cluster.gateway as ClusterMember]) {
      assert.equal((statSync(m.keyFile).mode & 0o777).toString(8), '600');
      assert.equal((statSync(m.kubeconfig as string).mode & 0o777).toString(8), '600');
    }
  });

  test('every namespace reaches the API server with its member\'s own kubeconfig (TLS checked against the CA)', async () => {
    const results = await Promise.all(
      [...cluster.nodes, cluster.gateway as ClusterMember].map(async (m) => {
        const { stdout } = await cluster.box.exec(m.ns, NODE_BINARY, ['-e', API_PROBE, m.kubeconfig as string], { timeoutMs: 20_000 });
        return [m.name, JSON.parse(stdout)] as const;
      }),
    );
    for (const [name, r] of results) {
      assert.equal(r.server, cluster.kube?.server, name);
      assert.equal(r.readyz, 200, `${name}: /readyz ${r.readyz} ${r.readyBody}`);
      assert.equal(r.nodes, 200, `${name}: list nodes answered ${r.nodes} (the shipped ClusterRole should allow it)`);
      assert.deepEqual(r.names.sort(), ['node-0', 'node-1', 'node-2']);
    }
  });

  test('Node objects carry the pod CIDR and the underlay InternalIP', async () => {
    const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
    for (const n of cluster.nodes) {
      const node = await core.readNode({ name: n.name });
      assert.deepEqual(node.spec?.podCIDRs, [n.podCIDR]);
      assert.deepEqual(node.status?.addresses?.map((a) => ({ type: a.type, address: a.address })), [{ type: 'InternalIP', address: n.underlayIp }]);
    }
  });

  test('a pod reaches its own node; without agents, no other pod (no route)', async () => {
    const [a, b] = cluster.nodes;
    const own = await cluster.ping(a.podNs, a.podGatewayIp);
    assert.ok(own.ok, own.output);
    const other = await cluster.ping(a.podNs, b.podIp, { timeoutMs: 1000 });
    assert.equal(other.ok, false, other.output);
    assert.match(other.output, /unreachable/i);
    const m = await cluster.matrix({ timeoutMs: 1000 });
    assert.equal(m.ok, false);
    assert.equal(m.cells.length, 3 * 2 + 3);
    assert.equal(m.failed.length, m.cells.length, m.table);
    // the underlay itself: node to node, gateway to node
    assert.ok((await cluster.ping(a.name, b.underlayIp)).ok);
    assert.ok((await cluster.ping('gateway', b.underlayIp)).ok);
  });

  test('a capture on the bridge sees ICMP between two node underlay IPs', { skip: noTcpdump ?? false }, async (t) => {
    const [a, b] = cluster.nodes;
    const capture = await cluster.startCapture();
    const ping = await cluster.ping(a.name, b.underlayIp, { count: 3, timeoutMs: 3000 });
    assert.ok(ping.ok, ping.output);
    const packets = await capture.stop();
    t.diagnostic(`${packets.length} packets, e.g. ${packets.filter((p) => p.protocol === 'icmp').slice(0, 2).map(formatPacket).join(' | ')}`);
    const requests = packets.filter((p) => p.protocol === 'icmp' && p.src === a.underlayIp && p.dst === b.underlayIp && p.icmpType === 8);
    const replies = packets.filter((p) => p.protocol === 'icmp' && p.src === b.underlayIp && p.dst === a.underlayIp && p.icmpType === 0);
    // At least the 3 asked for: with -w, a ping descheduled around its third echo sends one more.
    assert.ok(requests.length >= 3, `${requests.length} requests`);
    assert.ok(replies.length >= 3, `${replies.length} replies`);
    assert.match(requests[0].summary, /ICMP echo request/);
    assert.equal(requests[0].ipVersion, 4);
    assert.equal(await capture.stop(), packets, 'stop() is idempotent');
  });

  test('with plain routes over the underlay, tcp() works and the capture sees the pod traffic in clear', { skip: noTcpdump ?? false }, async () => {
    // What the mesh must prevent, built by hand: node-0 and node-1 route each other's pod CIDR over the bridge.
    const [a, b] = cluster.nodes;
    await cluster.box.ip(a.ns, 'route', 'add', b.podCIDR, 'via', b.underlayIp);
    await cluster.box.ip(b.ns, 'route', 'add', a.podCIDR, 'via', a.underlayIp);
    try {
      const m = await cluster.matrix({ timeoutMs: 1000 });
      assert.deepEqual(
        m.cells.filter((c) => c.ok).map((c) => `${c.from}>${c.to}`),
        ['node-0>node-1', 'node-1>node-0'],
        m.table,
      );
      assert.match(m.table, /^node-0 +- +ok +FAIL/m);
      const capture = await cluster.startCapture({ filter: ['tcp'] });
      const r = await cluster.tcp(a.name, b.name, 256 * 1024, { port: 5301 });
      assert.ok(r.intact, JSON.stringify(r));
      const packets = await capture.stop();
      assert.ok(packets.length > 0 && packets.every((p) => p.protocol === 'tcp'), 'the filter applies');
      const data = packets.filter((p) => p.src === a.podIp && p.dst === b.podIp && p.dstPort === 5301 && p.payload.length > 0);
      assert.ok(data.length > 0, packets.slice(0, 5).map(formatPacket).join('\n'));
      assert.ok(packets.some((p) => p.src === b.podIp && p.srcPort === 5301));
    } finally {
      await cluster.box.ip(a.ns, 'route', 'del', b.podCIDR);
      await cluster.box.ip(b.ns, 'route', 'del', a.podCIDR);
    }
    assert.equal((await cluster.ping(a.podNs, b.podIp, { timeoutMs: 1000 })).ok, false);
  });

  test('agents run in their own namespace with the contract flags; stop, restart, crash', async () => {
    const [n0, n1] = cluster.nodes;
    const { pid } = await cluster.startAgent(n0.name, { program: stub });
    pids.push(pid);
    await cluster.waitFor('the stub agent of node-0', () => count(n0.logFile, 'stub ready') === 1, { timeoutMs: 30_000 });
    assert.equal(netnsOfPid(pid), netnsOfName(n0.ns));
    assert.notEqual(netnsOfPid(pid), netnsOfPid(process.pid));
    const argv = stubArgv(n0.logFile);
    assert.equal(argv[0], 'agent');
    assert.deepEqual(
      Object.fromEntries(['--node-name', '--interface', '--listen-port', '--mesh-cidr', '--kubeconfig', '--key-file', '--wireguard', '--endpoint', '--resync', '--metrics-address', '--log-format'].map((f) => [f, flagValue(argv, f)])),
      {
        '--node-name': 'node-0',
        '--interface': n0.interfaceName,
        '--listen-port': '51820',
        '--mesh-cidr': '100.96.0.0/16',
        '--kubeconfig': n0.kubeconfig,
        '--key-file': n0.keyFile,
        '--wireguard': 'spawn',
        '--endpoint': `${n0.underlayIp}:51820`,
        '--resync': '10',
        '--metrics-address': `${n0.underlayIp}:9464`,
        '--log-format': 'text',
      },
    );
    assert.equal(flagValue(argv, '--peers-dir'), undefined);
    assert.equal(cluster.agentPid(n0.name), pid);

    const exit = await cluster.stopAgent(n0.name);
    assert.deepEqual(exit, { code: 0, signal: null, forced: false });
    assert.equal(count(n0.logFile, 'stub terminated'), 1);
    assert.equal(cluster.agentPid(n0.name), undefined);

    const restarted = await cluster.restartAgent(n0.name, { program: stub, flags: { '--resync': '1', '--endpoint': null } });
    pids.push(restarted.pid);
    assert.notEqual(restarted.pid, pid);
    await cluster.waitFor('the restarted stub', () => count(n0.logFile, 'stub ready') === 2, { timeoutMs: 30_000 });
    assert.equal(flagValue(stubArgv(n0.logFile, 2), '--resync'), '1');
    assert.equal(flagValue(stubArgv(n0.logFile, 2), '--endpoint'), undefined);

    const gw = cluster.gateway as ClusterMember;
    pids.push((await cluster.startAgent(gw.name, { program: stub })).pid);
    await cluster.waitFor('the stub gateway', () => count(gw.logFile, 'stub ready') === 1, { timeoutMs: 30_000 });
    const gwArgv = stubArgv(gw.logFile);
    assert.equal(gwArgv[0], 'gateway');
    assert.equal(flagValue(gwArgv, '--node-name'), 'gateway');
    assert.equal(flagValue(gwArgv, '--gateway-endpoint'), `${gw.underlayIp}:51820`);
    assert.equal(flagValue(gwArgv, '--pod-cidr'), '10.244.0.0/16');
    assert.equal(flagValue(gwArgv, '--kubeconfig'), gw.kubeconfig);
    assert.equal(flagValue(gwArgv, '--wireguard'), 'spawn');
    assert.equal(netnsOfPid(cluster.agentPid(gw.name) as number), netnsOfName(gw.ns));

    // An agent that dies on its own fails the next wait at once, with its log in the error.
    pids.push((await cluster.startAgent(n1.name, { program: stub, extraArgs: ['--crash'] })).pid);
    // The wait fails because of the exit (its message says so), not because its timeout ran out.
    await assert.rejects(
      cluster.waitFor('something that never happens', () => false, { timeoutMs: 20_000 }),
      (err: Error) => /agent of node-1 .*exited \(code 3\)/.test(err.message) && err.message.includes('stub crashing on purpose') && !/timed out/.test(err.message),
    );
    assert.deepEqual(cluster.agentExit(n1.name), { code: 3, signal: null, forced: false });
  });

  test('attach mode: the sidecar serves our interface and wireguardGoPid finds it', async () => {
    const n2 = cluster.nodes[2];
    const { pid } = await cluster.startAgent(n2.name, { program: stub });
    pids.push(pid);
    await cluster.waitFor('the stub agent of node-2', () => count(n2.logFile, 'stub ready') === 1, { timeoutMs: 30_000 });
    assert.equal(flagValue(stubArgv(n2.logFile), '--wireguard'), 'attach');
    assert.ok(existsSync(n2.socketPath), n2.socketPath);
    const wg = cluster.wireguardGoPid(n2.name);
    assert.ok(wg, cluster.logTail(n2.name));
    pids.push(wg);
    assert.equal(netnsOfPid(wg), netnsOfName(n2.ns));
    assert.deepEqual(readFileSync(`/proc/${wg}/cmdline`, 'utf8').split('\0').slice(1, 3), ['-f', n2.interfaceName]);
    const dump = execFileSync('wg', ['show', n2.interfaceName, 'dump'], { encoding: 'utf8' }).split('\t');
    assert.equal(dump[0], '(none)', 'a fresh device has no private key');
    assert.equal(cluster.wireguardGoPid(cluster.nodes[0].name), undefined, 'the stub starts no wireguard-go');

    const exit = await cluster.stopSidecar(n2.name);
    assert.deepEqual(exit, { code: 0, signal: null, forced: false });
    assert.equal(cluster.wireguardGoPid(n2.name), undefined);
    assert.equal(existsSync(n2.socketPath), false, 'wireguard-go removes its socket on SIGTERM');
    await cluster.startSidecar(n2.name);
    assert.ok(cluster.wireguardGoPid(n2.name));
  });

  test('addNode adds a node without restarting the API server', async () => {
    const apiPid = cluster.kube?.apiServerPid;
    const n3 = await cluster.addNode();
    assert.equal(cluster.kube?.apiServerPid, apiPid);
    assert.deepEqual([n3.name, n3.index, n3.underlayIp, n3.podCIDR], ['node-3', 3, `${cluster.underlay.prefix}.4`, '10.244.3.0/24']);
    assert.ok((await cluster.ping(n3.podNs, n3.podGatewayIp)).ok);
    assert.ok((await cluster.ping(n3.name, cluster.nodes[0].underlayIp)).ok);
    const { stdout } = await cluster.box.exec(n3.ns, NODE_BINARY, ['-e', API_PROBE, n3.kubeconfig as string], { timeoutMs: 20_000 });
    const r = JSON.parse(stdout);
    assert.equal(r.nodes, 200);
    assert.ok(r.names.includes('node-3'));
  });

  test('stop() tears everything down and leaves nothing of ours', async (t) => {
    pids.push(cluster.kube?.apiServerPid as number, cluster.kube?.etcdPid as number);
    for (const m of cluster.nodes) {
      const pid = cluster.agentPid(m.name);
      if (pid) pids.push(pid);
    }
    assert.ok(cluster.agentPid('node-0') && cluster.agentPid('gateway'), 'agents still run when stop() starts');
    const report = await cluster.stop();
    t.diagnostic(`teardown ${ms(report.ms)}: ${Object.entries(report.steps).map(([k, v]) => `${k} ${ms(v)}`).join(', ')}`);
    assert.deepEqual(report.forced, []);
    assert.deepEqual(await leftovers(tracesOf(cluster), pids), []);
    assert.equal(count(cluster.nodes[0].logFile, 'stub terminated'), 0, 'the log dir is gone');
    assert.deepEqual(await cluster.stop(), { forced: [], ms: 0, steps: {} }, 'stop() is idempotent');
  });
});

describe('MeshCluster.start failing half-way', { skip: skipKube }, () => {
  test('removes what it built (namespaces, host veth, reservation, files) and rethrows', async () => {
    const lines: string[] = [];
    const saved = process.env.AKS_MESH_KUBE_APISERVER;
    process.env.AKS_MESH_KUBE_APISERVER = '/bin/false'; // kube-apiserver "exits before it is ready"
    try {
      await assert.rejects(MeshCluster.start({ nodes: 2, gateway: true, keepLogs: false, log: (l) => lines.push(l) }), /kube-apiserver .*exited with code 1 before it was ready/);
    } finally {
      if (saved === undefined) delete process.env.AKS_MESH_KUBE_APISERVER;
      else process.env.AKS_MESH_KUBE_APISERVER = saved;
    }
    const m = /^underlay (\S+), tag (\w+), dir (\S+)$/.exec(lines[0] ?? '');
    assert.ok(m, lines.join('\n'));
    const [, subnet, tag, dir] = m;
    const names = ['n0', 'n1', 'gw'].map((s) => `wg${tag}${s}`);
    assert.deepEqual(await leftovers({ tag, subnet, dir, hostInterface: `am${tag}h`, interfaceNames: names }, []), []);
  });
});

describe('MeshCluster with a peers directory', { skip: skipDir }, () => {
  let cluster: MeshCluster;
  before(async () => {
    cluster = await MeshCluster.start({ nodes: 2, source: 'dir', keepLogs: false });
  });
  after(() => cluster?.stop());

  test('Node YAML files in the peers directory, read back by the directory source', async (t) => {
    t.diagnostic(`setup ${ms(cluster.timings.totalMs)}`);
    assert.equal(cluster.kube, null);
    const source = new DirectorySource(cluster.peersDir as string);
    await source.start();
    try {
      const nodes = source.snapshot().nodes.map((n) => ({ name: n.name, podCIDRs: n.podCIDRs, internalIPs: n.internalIPs }));
      assert.deepEqual(
        nodes.sort((a, b) => a.name.localeCompare(b.name)),
        cluster.nodes.map((n) => ({ name: n.name, podCIDRs: [n.podCIDR], internalIPs: [n.underlayIp] })),
      );
    } finally {
      await source.stop();
    }
    const argv = cluster.agentCommand('node-1');
    assert.equal(flagValue(argv, '--peers-dir'), cluster.peersDir);
    assert.equal(flagValue(argv, '--kubeconfig'), undefined);
    assert.equal(cluster.nodes[1].kubeconfig, undefined);
    assert.ok((await cluster.ping(cluster.nodes[0].name, cluster.nodes[1].underlayIp)).ok);
  });

  test('a SIGTERM to the test process tears its cluster down (agents get SIGTERM first)', async () => {
    const stubDir = mkdtempSync(join(tmpdir(), 'aks-mesh-stub-'));
    const stub = join(stubDir, 'stub.cjs');
    writeFileSync(stub, STUB);
    const child = spawn(NODE_BINARY, ['--input-type=module', '-e', CHILD, stub], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) resolve(out.split('\n')[0]);
        });
        void exited.then((code) => reject(new Error(`child exited (${code}) before reporting: ${stderr}`)));
      });
      const { traces, pids, logs } = JSON.parse(line) as { traces: Traces; pids: number[]; logs: string[] };
      assert.equal(pids.length, 3);
      for (const pid of pids) assert.ok(isRunning(pid), `pid ${pid} runs before the signal`);
      child.kill('SIGTERM');
      assert.equal(await exited, 128 + 15);
      for (const log of logs) assert.equal(count(log, 'stub terminated'), 1, `${log}: the agent got SIGTERM`);
      rmSync(traces.dir, { recursive: true, force: true }); // kept (keepLogs) so that we could read the logs
      assert.deepEqual(await leftovers(traces, pids), []);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(stubDir, { recursive: true, force: true });
    }
  });

  test('added nodes get a file too; stop() leaves nothing', async () => {
    const n2 = await cluster.addNode();
    assert.ok(existsSync(join(cluster.peersDir as string, `node.${n2.name}.yaml`)));
    const report = await cluster.stop();
    assert.deepEqual(await leftovers(tracesOf(cluster), []), []);
    assert.deepEqual(report.forced, []);
  });
});

/**
 * A test process of its own: builds a cluster (logs kept), starts two stub agents (one with a
 * sidecar), prints what it made, then waits to be signalled.
 */
const CHILD = `
import { readFileSync } from 'node:fs';
import { MeshCluster } from ${JSON.stringify(join(import.meta.dirname, '..', 'sandbox', 'cluster.ts'))};
const stub = process.argv[1];
const cluster = await MeshCluster.start({ nodes: 2, source: 'dir', attach: ['node-1'], keepLogs: true });
const pids = [];
for (const n of cluster.nodes) pids.push((await cluster.startAgent(n.name, { program: stub })).pid);
const ready = (f) => { try { return readFileSync(f, 'utf8').includes('stub ready'); } catch { return false; } };
await cluster.waitFor('stubs', () => cluster.nodes.every((n) => ready(n.logFile)));
pids.push(cluster.wireguardGoPid('node-1'));
const traces = { tag: cluster.box.tag, hostInterface: cluster.underlay.hostInterface, subnet: cluster.underlay.subnet, dir: cluster.dir, interfaceNames: cluster.interfaceNames() };
process.stdout.write(JSON.stringify({ traces, pids, logs: cluster.nodes.map((n) => n.logFile) }) + '\\n');
setInterval(() => {}, 1000);
`;

function ms(x: number): string {
  return `${(x / 1000).toFixed(2)} s`;
}
