/**
 * Data-path benchmark (issue 10, benchmark 4): iperf3 TCP from a pod to a pod on another node,
 * pod → node → tunnel → node → pod, three ways in the same run, interleaved so that the machine's
 * noise hits all of them alike:
 *   agent  through two of our agents (`aks-mesh agent --peers-dir`, spawn mode: each agent runs the
 *          build under test via AKS_MESH_WIREGUARD_GO and configures it, its link, its routing table
 *          and its `ip rule` itself);
 *   hand   the same wireguard-go binary configured by hand with `wg` and `ip` (a route in the main
 *          table, no policy routing), the same MTU as the agent chose;
 *   clear  the same topology with clear routes through the underlay (no tunnel): the limit here;
 *   rules  (only when asked for) by hand as above plus the agent's policy routing: fwmark 0x2000 on
 *          wireguard-go, `ip rule not fwmark 0x2000/0x2000 lookup 51820`, the routes in that table
 *          and their `unreachable` twins: what the routing itself costs.
 * For each wireguard-go build: Debian bookworm's (package 0.0.20220316-1+b4), trixie's (package
 * 0.0.20231211-1+b9, which calls itself v0.0.20230223: upstream did not bump its version string) and
 * sid's (package 0.0.20260522-1, v0.0.20250522), each fetched with a private apt state by
 * scripts/fetch-wireguard-go.sh; the table names each by what `--version` says.
 *
 *   node bench/datapath.ts [--builds bookworm,trixie,sid] [--runs 5] [--seconds 5]
 *                          [--ways agent,hand,clear] [--offloads default|gro] [--veth-mtu 1500]
 *                          [--wg-env K=V,...] [--tun-qdisc noqueue] [--profile] [--show-offloads] [--json]
 *
 * About 6 minutes with the defaults here (7 cells × 5 runs × 5 s, plus set-up and warm-up).
 *
 * Setup: sandbox/cluster.ts MeshCluster in peers-directory mode (no API server; agents with the default
 * --resync 60), 2 nodes each, one cluster per (build, way) and one clear cluster: node namespaces on
 * an underlay bridge, a pod namespace behind each node (veths, MTU 1500). An iperf3 server runs in node-1's pod of each
 * cluster; each run is `iperf3 -c <pod ip> -t <seconds> -J` from node-0's pod.
 * --offloads gro turns on GRO (and rx-udp-gro-forwarding) on every veth of every cluster, and
 * --veth-mtu sets every veth's and bridge's MTU (the agent's automatic MTU follows; the hand way takes
 * the agent's), for all three ways alike: properties of the test topology, not of the agent.
 * --wg-env and --tun-qdisc are experiments with wireguard-go's environment and its TUN's qdisc,
 * applied to the agent and hand ways alike.
 * --profile records `perf record -a` during one extra run of the agent way per build and prints
 * where the CPU went (by process and object, then the top symbols inside wireguard-go).
 *
 * Per cell: Gbit/s median, p95 and min over --runs; CPU seconds of both wireguard-go processes per
 * GB carried, the agents' own CPU while traffic flows; the ratios ours/hand and ours/clear. Never
 * asserts a speed. Checks behaviour, so a broken setup cannot print plausible numbers: the agent and
 * hand ways must carry at least the bytes iperf3 reports through the WireGuard device (its transfer
 * counters), and the clear way must have no WireGuard device on its path.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { MeshCluster, REPO_ROOT, SOCKET_DIR } from '../sandbox/cluster.ts';
import type { ClusterNode } from '../sandbox/cluster.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { getLink, wireguardGoVersion } from '../native/index.ts';
import { cpuSeconds } from './lib/procstat.ts';
import { percentile } from './lib/stats.ts';
import { goSymbolizer } from './gosym.ts';

const execFileAsync = promisify(execFile);

const USAGE = `usage: node bench/datapath.ts [options]
  --builds LIST       Debian suites whose wireguard-go to compare (default bookworm,trixie,sid);
                      fetched by scripts/fetch-wireguard-go.sh into ~/.cache/aks-mesh when missing
  --runs N            measured iperf3 runs per cell (default 5)
  --seconds N         iperf3 -t (default 5)
  --ways LIST         agent,hand,clear (default); also rules: by hand plus the agent's policy routing
  --offloads MODE     default (veths as the kernel makes them) or gro (GRO on every veth, all ways)
  --veth-mtu N        MTU of every veth and bridge (default 1500; e.g. 9000 for a jumbo-frame underlay, all ways)
  --wg-env K=V,...    environment for wireguard-go (agent and hand ways alike), e.g. GOGC=400
  --tun-qdisc Q       replace the WireGuard TUN's root qdisc (e.g. noqueue, as the kernel module's device has), agent and hand alike
  --profile           perf record -a during one extra run of the agent way per build: top processes and symbols
  --show-offloads     print ethtool -k of the veths and the WireGuard TUN of each build
  --json              one JSON object instead of tables
  -h, --help          this text`;

const { values: v } = parseArgs({
  options: {
    builds: { type: 'string', default: 'bookworm,trixie,sid' },
    runs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '5' },
    ways: { type: 'string', default: 'agent,hand,clear' },
    offloads: { type: 'string', default: 'default' },
    'veth-mtu': { type: 'string', default: '1500' },
    'wg-env': { type: 'string', default: '' },
    'tun-qdisc': { type: 'string', default: '' },
    profile: { type: 'boolean', default: false },
    'show-offloads': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (v.help) {
  console.log(USAGE);
  process.exit(0);
}
function whole(text: string, name: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`--${name}: ${text} is not a whole number from ${min} to ${max}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}
const runs = whole(v.runs, 'runs', 1, 50);
const vethMtu = whole(v['veth-mtu'], 'veth-mtu', 1280, 65535);
const wgEnv: Record<string, string> = {};
for (const pair of v['wg-env'].split(',').filter(Boolean)) {
  const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(pair);
  if (!m) {
    console.error(`--wg-env: ${JSON.stringify(pair)} is not NAME=value`);
    process.exit(2);
  }
  wgEnv[m[1]] = m[2];
}
const seconds = whole(v.seconds, 'seconds', 1, 60);
const suites = v.builds.split(',').filter(Boolean);
for (const s of suites) {
  if (!/^[a-z][a-z0-9-]*$/.test(s)) {
    console.error(`--builds: ${JSON.stringify(s)} is not a Debian suite name`);
    process.exit(2);
  }
}
type Way = 'agent' | 'hand' | 'rules' | 'clear';
const ways = v.ways.split(',').filter(Boolean) as Way[];
for (const w of ways) {
  if (!['agent', 'hand', 'rules', 'clear'].includes(w)) {
    console.error(`--ways: ${w} is not one of agent, hand, rules, clear`);
    process.exit(2);
  }
}
if (v['tun-qdisc'] && !/^[a-z_]+$/.test(v['tun-qdisc'])) {
  console.error(`--tun-qdisc: ${JSON.stringify(v['tun-qdisc'])} is not a qdisc name`);
  process.exit(2);
}
if (!['default', 'gro'].includes(v.offloads)) {
  console.error(`--offloads: ${v.offloads} is not default or gro`);
  process.exit(2);
}
const unavailable = networkTestsUnavailable(['wg']);
if (unavailable) {
  console.error(`datapath bench: ${unavailable}`);
  process.exit(1);
}
try {
  execFileSync('iperf3', ['--version'], { stdio: 'ignore' });
} catch {
  console.error('datapath bench: needs iperf3 (apt-get install iperf3)');
  process.exit(1);
}
const log = (line: string): void => {
  if (!v.json) console.error(`# ${line}`);
};

// ---------------------------------------------------------------- builds

interface Build {
  suite: string;
  binary: string;
  version: string;
}

function fetchBuild(suite: string): Build {
  const binary = execFileSync(join(REPO_ROOT, 'scripts', 'fetch-wireguard-go.sh'), [suite], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return { suite, binary, version: wireguardGoVersion(binary) };
}

// ---------------------------------------------------------------- cells

interface Cell {
  key: string;
  way: Way;
  build: Build | null;
  cluster: MeshCluster;
  /** The WireGuard interface on each node (agent, hand), for counters and profiles. */
  wgPids: () => number[];
  agentPids: () => number[];
  gbps: number[];
  /** wireguard-go CPU seconds (both ends) per GB received. */
  wgCpuPerGB: number[];
  /** CPU seconds of both agents during the run. */
  agentCpu: number[];
  /** CPU seconds of both agents over the same time with no traffic. */
  agentIdleCpu: number;
  retransmits: number[];
}

const clusters: MeshCluster[] = [];
const cleanups: Array<() => void> = [];
async function stopAll(): Promise<void> {
  for (const c of cleanups.splice(0)) c();
  await Promise.all(clusters.splice(0).map((c) => c.stop().catch(() => undefined)));
}

async function newCluster(): Promise<MeshCluster> {
  const c = await MeshCluster.start({ nodes: 2, source: 'dir', resyncSeconds: 60 });
  clusters.push(c);
  if (v.offloads === 'gro') await groOn(c);
  if (vethMtu !== 1500) await setMtu(c, vethMtu);
  return c;
}

async function vethsOf(c: MeshCluster): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const ns of [c.underlay.ns, ...c.nodes.flatMap((n) => [n.ns, n.podNs])]) {
    const { stdout } = await execFileAsync('ip', ['-n', ns, '-j', 'link', 'show', 'type', 'veth']);
    for (const l of JSON.parse(stdout || '[]') as Array<{ ifname: string }>) out.push([ns, l.ifname]);
  }
  return out;
}

/** The same MTU on every veth and the bridge (a jumbo-frame underlay), before any agent reads it. */
async function setMtu(c: MeshCluster, mtu: number): Promise<void> {
  for (const [ns, dev] of await vethsOf(c)) await execFileAsync('ip', ['-n', ns, 'link', 'set', dev, 'mtu', String(mtu)]);
  await execFileAsync('ip', ['-n', c.underlay.ns, 'link', 'set', c.underlay.bridge, 'mtu', String(mtu)]);
}

/** GRO on every veth of the cluster (both ends, bridge ports too): the same for all three ways. */
async function groOn(c: MeshCluster): Promise<void> {
  for (const [ns, dev] of await vethsOf(c)) {
    await execFileAsync('ip', ['netns', 'exec', ns, 'ethtool', '-K', dev, 'gro', 'on', 'rx-udp-gro-forwarding', 'on']);
  }
}

/** What each agent would have registered as its Peer (no API server: nobody else writes them). */
function writePeers(c: MeshCluster): void {
  c.writePeersFile(
    'members.yaml',
    c.nodes.map((n, i) => ({
      apiVersion: 'aksmesh.io/v1alpha1',
      kind: 'Peer',
      metadata: { name: n.name },
      spec: { publicKey: n.publicKey, endpoint: n.endpoint, allowedIPs: [n.podCIDR], meshIP: `100.96.0.${i + 1}`, nodeName: n.name },
    })),
  );
}

async function agentCell(build: Build): Promise<Cell> {
  const c = await newCluster();
  writePeers(c);
  for (const n of c.nodes) await c.startAgent(n.name, { env: { ...wgEnv, AKS_MESH_WIREGUARD_GO: build.binary } });
  await c.waitForMatrix({ timeoutMs: 60_000 });
  await tunQdisc(c);
  return cell('agent', build, c);
}

/** wireguard-go started and configured by hand in each node namespace, with the agent's MTU. */
async function handCell(build: Build, mtu: number, way: 'hand' | 'rules' = 'hand'): Promise<Cell> {
  const c = await newCluster();
  const [a, b] = c.nodes;
  for (const [self, other, i] of [[a, b, 1], [b, a, 2]] as Array<[ClusterNode, ClusterNode, number]>) {
    c.box.spawn(self.ns, build.binary, ['-f', self.interfaceName], { env: { ...process.env, ...wgEnv, WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' } });
    await c.waitFor(`the UAPI socket of ${self.interfaceName}`, () => existsSync(join(SOCKET_DIR, `${self.interfaceName}.sock`)), { timeoutMs: 10_000, failOnAgentExit: false });
    const inNs = (cmd: string, ...args: string[]) => execFileAsync('ip', ['netns', 'exec', self.ns, cmd, ...args]);
    await inNs('wg', 'set', self.interfaceName, 'private-key', self.keyFile, 'listen-port', String(self.listenPort),
      'peer', other.publicKey, 'endpoint', other.endpoint, 'allowed-ips', `${other.podCIDR},100.96.0.${3 - i}/32`);
    await inNs('ip', 'addr', 'add', `100.96.0.${i}/16`, 'dev', self.interfaceName);
    await inNs('ip', 'link', 'set', self.interfaceName, 'mtu', String(mtu), 'up');
    if (way === 'hand') await inNs('ip', 'route', 'add', other.podCIDR, 'dev', self.interfaceName);
    else {
      // The agent's layout (native/link, mesh/failclosed.ts): a table of its own behind an ip rule that
      // wireguard-go's own marked packets skip, each route with an unreachable twin behind it.
      await inNs('wg', 'set', self.interfaceName, 'fwmark', '0x2000');
      await inNs('ip', 'rule', 'add', 'not', 'fwmark', '0x2000/0x2000', 'lookup', '51820', 'priority', '5280');
      for (const dst of [other.podCIDR, `100.96.0.${3 - i}/32`]) {
        await inNs('ip', 'route', 'add', dst, 'dev', self.interfaceName, 'table', '51820');
        await inNs('ip', 'route', 'add', 'unreachable', dst, 'table', '51820', 'metric', '4000000000');
      }
    }
  }
  await tunQdisc(c);
  await c.waitForMatrix({ timeoutMs: 30_000 });
  return cell(way, build, c);
}

/** --tun-qdisc: the same root qdisc on both nodes' WireGuard TUN. */
async function tunQdisc(c: MeshCluster): Promise<void> {
  if (!v['tun-qdisc']) return;
  for (const n of c.nodes) await execFileAsync('ip', ['netns', 'exec', n.ns, 'tc', 'qdisc', 'replace', 'dev', n.interfaceName, 'root', v['tun-qdisc']]);
}

async function clearCell(): Promise<Cell> {
  const c = await newCluster();
  const routes = await c.addClearPodRoutes();
  cleanups.push(() => void routes.remove());
  await c.waitForMatrix({ timeoutMs: 10_000 });
  return cell('clear', null, c);
}

function cell(way: Way, build: Build | null, cluster: MeshCluster): Cell {
  const server = cluster.nodes[1];
  cluster.box.spawn(server.podNs, 'iperf3', ['-s', '--bind', server.podIp]);
  const names = cluster.nodes.map((n) => n.name);
  return {
    key: build ? `${build.suite} ${way}` : way,
    way,
    build,
    cluster,
    wgPids: () => names.map((n) => cluster.wireguardGoPid(n)).filter((p): p is number => p !== undefined),
    agentPids: () => names.map((n) => cluster.agentPid(n)).filter((p): p is number => p !== undefined),
    gbps: [],
    wgCpuPerGB: [],
    agentCpu: [],
    agentIdleCpu: NaN,
    retransmits: [],
  };
}

/** Bytes the WireGuard device of node-0 has sent (0 when it has none). */
async function wgSent(c: MeshCluster): Promise<bigint> {
  const n = c.nodes[0];
  try {
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', n.ns, 'wg', 'show', n.interfaceName, 'transfer']);
    return stdout.trim().split('\n').filter(Boolean).reduce((sum, line) => sum + BigInt(line.split('\t')[2] ?? '0'), 0n);
  } catch {
    return 0n;
  }
}

interface IperfJson {
  end?: { sum_received?: { bytes: number; bits_per_second: number }; sum_sent?: { retransmits?: number } };
  error?: string;
}

/** One iperf3 run from node-0's pod to node-1's pod; records it in the cell unless warmup. */
async function run(cell: Cell, secs: number, record: boolean): Promise<void> {
  const c = cell.cluster;
  const [a, b] = c.nodes;
  const wgBefore = await wgSent(c);
  const wgPids = cell.wgPids();
  const agentPids = cell.agentPids();
  const wgCpu0 = wgPids.map(cpuSecondsOf);
  const agentCpu0 = agentPids.map(cpuSecondsOf);
  let out: string;
  try {
    out = (await c.box.exec(a.podNs, 'iperf3', ['-c', b.podIp, '-t', String(secs), '-J'], { timeoutMs: (secs + 30) * 1000 })).stdout;
  } catch (err) {
    out = (err as { stdout?: string }).stdout ?? '';
    if (!out) throw new Error(`${cell.key}: iperf3 failed: ${(err as Error).message}`);
  }
  const r = JSON.parse(out) as IperfJson;
  if (r.error || !r.end?.sum_received) throw new Error(`${cell.key}: iperf3: ${r.error ?? 'no result'}`);
  const bytes = r.end.sum_received.bytes;
  const wgCpu = wgPids.map(cpuSecondsOf).reduce((s, x, i) => s + x - wgCpu0[i], 0);
  const agentCpu = agentPids.map(cpuSecondsOf).reduce((s, x, i) => s + x - agentCpu0[i], 0);
  if (cell.way !== 'clear') {
    const carried = (await wgSent(c)) - wgBefore;
    if (carried < BigInt(bytes)) throw new Error(`${cell.key}: the WireGuard device of ${a.name} sent ${carried} bytes but iperf3 received ${bytes}: traffic did not take the tunnel`);
  } else if (cell.wgPids().length) throw new Error(`${cell.key}: a wireguard-go runs in the clear cluster`);
  if (!record) return;
  cell.gbps.push(r.end.sum_received.bits_per_second / 1e9);
  cell.wgCpuPerGB.push(bytes ? wgCpu / (bytes / 1e9) : 0);
  cell.agentCpu.push(agentCpu);
  cell.retransmits.push(r.end.sum_sent?.retransmits ?? 0);
}

async function offloadsOf(c: MeshCluster, withWg: boolean): Promise<string> {
  const n = c.nodes[0];
  const out: string[] = [];
  const devs: Array<[string, string]> = [[n.podNs, `pd${c.box.tag}0`], [n.ns, `po${c.box.tag}0`], [n.ns, n.underlayInterface]];
  if (withWg) devs.push([n.ns, n.interfaceName]);
  for (const [ns, dev] of devs) {
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, 'ethtool', '-k', dev]);
    const on = stdout.split('\n').filter((l) => /^\s*(tx-checksumming|scatter-gather|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|rx-udp-gro-forwarding|rx-gro-list|tx-udp-segmentation|rx-checksumming):/.test(l));
    out.push(`${dev}: ${on.map((l) => l.trim().replace(/: /, '=').replace(/ \[fixed\]/, '')).join(' ')}`);
  }
  return out.join('\n');
}

/**
 * perf record of the whole machine during one run of the agent way: where the CPU goes by process
 * and object (wireguard-go, iperf3, the kernel's softirq work, and whatever else runs here), then the
 * top symbols inside wireguard-go (Debian strips its Go symbols: its own code shows as addresses,
 * the kernel's by name).
 */
async function profile(cell: Cell): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-perf-'));
  try {
    const data = join(dir, 'perf.data');
    const recorder = execFileAsync('perf', ['record', '-a', '-F', '999', '-o', data, '--', 'sleep', String(seconds)], { maxBuffer: 16 << 20 }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 300));
    await run(cell, seconds, false);
    const rec = await recorder;
    if (rec instanceof Error) return `perf record failed: ${rec.message.split('\n')[0]}`;
    const report = async (args: string[], lines: number): Promise<string> => {
      const { stdout } = await execFileAsync('perf', ['report', '-i', data, '--stdio', '--no-children', ...args], { maxBuffer: 64 << 20 });
      return stdout.split('\n').filter((l) => l.trim() && !l.startsWith('#')).slice(0, lines).join('\n');
    };
    const byProcess = await report(['--sort', 'comm,dso', '--percent-limit', '1.5'], 20);
    const inWireguard = await wireguardSymbols(data, cell.build?.binary ?? '', cell.wgPids());
    return `whole machine, by process and object:\n${byProcess}\ninside this cell's two wireguard-go processes, by symbol (percent of their samples):\n${inWireguard}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The top symbols of wireguard-go's samples: its own code named from .gopclntab (gosym.ts), the kernel's by perf. */
async function wireguardSymbols(data: string, binary: string, pids: number[]): Promise<string> {
  // Only this cell's two processes: other wireguard-go processes on a shared machine are not ours to count.
  const { stdout } = await execFileAsync('perf', ['script', '-i', data, '--pid', pids.join(','), '-F', 'ip,sym,dso'], { maxBuffer: 512 << 20 });
  let symbolize: (pc: number) => string | undefined = () => undefined;
  try {
    symbolize = goSymbolizer(binary);
  } catch (err) {
    log(`no Go symbols: ${(err as Error).message}`);
  }
  const counts = new Map<string, number>();
  let total = 0;
  for (const line of stdout.split('\n')) {
    const m = /^\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$/.exec(line);
    if (!m) continue;
    const [, ip, sym, dso] = m;
    const name = dso.endsWith('/wireguard-go') ? `go ${symbolize(parseInt(ip, 16)) ?? `0x${ip}`}` : `${dso.includes('kernel') ? 'kernel' : dso.split('/').pop()} ${sym.replace(/\+0x[0-9a-f]+$/, '')}`;
    counts.set(name, (counts.get(name) ?? 0) + 1);
    total++;
  }
  // Grouped by package too: where the time goes at a glance (crypto, runtime, the kernel, ...).
  const groups = new Map<string, number>();
  for (const [name, n] of counts) {
    const group = name.startsWith('go ') ? name.slice(3).replace(/^(.*?)\.[^/]*$/, '$1').replace(/\.\(.*$/, '') : name.split(' ')[0];
    groups.set(group, (groups.get(group) ?? 0) + n);
  }
  const byGroup = [...groups.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([g, n]) => `${((n / total) * 100).toFixed(0)}% ${g}`).join(', ');
  return `${byGroup}\n${[...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 20)
    .map(([name, n]) => `${((n / total) * 100).toFixed(1).padStart(6)}%  ${name}`)
    .join('\n')}`;
}

// ---------------------------------------------------------------- main

const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '-');
const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const median = (xs: number[]): number => percentile(sorted(xs), 50);
const cpuSecondsOf = (pid: number): number => cpuSeconds(pid) ?? 0;

try {
  const builds = suites.map(fetchBuild);
  log(`builds: ${builds.map((b) => `${b.suite} ${b.version}`).join(', ')}; ${runs} runs × ${seconds} s per cell; offloads ${v.offloads}; ${cpus().length} CPUs`);
  const cells: Cell[] = [];
  if (ways.includes('clear')) cells.push(await clearCell());
  let mtu = 1420;
  for (const build of builds) {
    if (ways.includes('agent')) {
      const cl = await agentCell(build);
      cells.push(cl);
      const link = await getLink(cl.cluster.nodes[0].interfaceName, { netns: cl.cluster.nodes[0].ns });
      if (link) mtu = link.mtu;
    }
    if (ways.includes('hand')) cells.push(await handCell(build, mtu));
    if (ways.includes('rules')) cells.push(await handCell(build, mtu, 'rules'));
  }
  log(`set up ${cells.length} clusters; WireGuard MTU ${mtu}`);
  if (v['show-offloads']) {
    for (const cl of cells.filter((x) => x.way === 'agent' || x.way === 'clear')) console.error(`# offloads, ${cl.key}:\n${await offloadsOf(cl.cluster, cl.way !== 'clear')}`);
  }
  // Warm-up: the iperf3 servers listen, the handshakes are done, TCP and the kernel are warm.
  for (const cl of cells) {
    for (let attempt = 1; ; attempt++) {
      try {
        await run(cl, 1, false);
        break;
      } catch (err) {
        if (attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }
  // The agents' own CPU with no traffic, over as long as one run, to set beside the CPU during runs.
  const agentCells = cells.filter((x) => x.way === 'agent');
  const idle0 = agentCells.map((cl) => cl.agentPids().map(cpuSecondsOf));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  agentCells.forEach((cl, i) => (cl.agentIdleCpu = cl.agentPids().map(cpuSecondsOf).reduce((sum, x, j) => sum + x - idle0[i][j], 0)));
  for (let r = 0; r < runs; r++) {
    // Interleaved, the order rotated every round so that no way always follows the same one.
    const order = cells.map((_, i) => cells[(i + r) % cells.length]);
    for (const cl of order) await run(cl, seconds, true);
    log(`round ${r + 1}/${runs}: ${order.map((cl) => `${cl.key} ${fmt(cl.gbps[cl.gbps.length - 1])}`).join(', ')}`);
  }
  const profiles: Record<string, string> = {};
  if (v.profile) for (const cl of cells.filter((x) => x.way === 'agent')) profiles[cl.key] = await profile(cl);

  const clear = cells.find((x) => x.way === 'clear');
  const rows = cells.map((cl) => {
    const hand = cells.find((x) => x.way === 'hand' && x.build === cl.build);
    return {
      cell: cl.key,
      version: cl.build?.version ?? '',
      median: median(cl.gbps),
      p95: percentile(sorted(cl.gbps), 95),
      min: Math.min(...cl.gbps),
      wgCpuPerGB: median(cl.wgCpuPerGB),
      agentCpuMs: median(cl.agentCpu) * 1000,
      agentIdleCpuMs: cl.agentIdleCpu * 1000,
      retransmits: median(cl.retransmits),
      vsHand: cl.way !== 'hand' && cl.way !== 'clear' && hand ? median(cl.gbps) / median(hand.gbps) : NaN,
      // CPU per GB is steadier than Gbit/s on a busy machine: the same work costs the same CPU.
      cpuVsHand: cl.way !== 'hand' && cl.way !== 'clear' && hand ? median(cl.wgCpuPerGB) / median(hand.wgCpuPerGB) : NaN,
      vsClear: cl.way !== 'clear' && clear ? median(cl.gbps) / median(clear.gbps) : NaN,
    };
  });
  if (v.json) console.log(JSON.stringify({ runs, seconds, offloads: v.offloads, vethMtu, wireguardMtu: mtu, rows, profiles }, null, 2));
  else {
    console.log(`iperf3 TCP pod → pod, ${seconds} s × ${runs} runs per cell, interleaved; offloads: ${v.offloads}; wireguard-go env: ${v['wg-env'] || 'none'}; TUN qdisc ${v['tun-qdisc'] || 'default'}; veth MTU ${vethMtu}, WireGuard MTU ${mtu}`);
    console.log('cell              version        Gbit/s med    p95    min  wg CPU s/GB  agents CPU ms run/idle  retr  ours/hand  CPU/GB ours/hand  /clear');
    for (const r of rows) {
      console.log(
        `${r.cell.padEnd(17)} ${r.version.padEnd(14)} ${fmt(r.median).padStart(10)} ${fmt(r.p95).padStart(6)} ${fmt(r.min).padStart(6)} ${fmt(r.wgCpuPerGB).padStart(12)} ${`${fmt(r.agentCpuMs, 0)}/${fmt(r.agentIdleCpuMs, 0)}`.padStart(23)} ${fmt(r.retransmits, 0).padStart(5)} ${fmt(r.vsHand).padStart(10)} ${fmt(r.cpuVsHand).padStart(18)} ${fmt(r.vsClear).padStart(7)}`,
      );
    }
    for (const [k, p] of Object.entries(profiles)) console.log(`\nperf during one ${seconds} s run, ${k}:\n${p}`);
  }
} finally {
  await stopAll();
}

