/**
 * Benchmark 3 of issue 10, "Full resync": one real agent process brings 5,000 peers from nothing to
 * applied (desired state + diff + apply), and its CPU time and memory are read from /proc.
 *
 *   node bench/resync.ts [--source kube|dir] [--peers 5000] [--runs 5] [--resync 10]
 *                        [--apply-mode incremental|replace] [--node-flags=--max-semi-space-size=1]
 *                        [--profile] [--imports] [--modules] [--json]
 *
 * Setup: N simulated Nodes with a Peer each (random keys, pod CIDRs 10.1.0.0/24 …, mesh IPs in
 * 100.96.0.0/16, InternalIPs and endpoints in 10.224.0.0/12, routed in the agent's namespace to a
 * sink namespace that drops them, so nothing leaves our namespaces), and one real agent
 * (`aks-mesh agent … --wireguard spawn` through the CLI; it starts the real wireguard-go itself).
 *   kube (default, what operators run): node-0 of a one-node e2e MeshCluster (its namespace, a real
 *     kube-apiserver + etcd on the underlay, the shipped agent role); the Nodes carry a kubelet-like
 *     status (~9 KB: conditions, capacity, nodeInfo, 40 images); creating 5,000 takes ~4 min here,
 *     once; between runs the mesh table is flushed (wireguard-go starts empty with each agent).
 *   dir: a fresh namespace per run and a peers directory of YAML (250 Nodes+Peers a file).
 * --node-flags are the agent's node flags (given through NODE_OPTIONS in kube mode); the image is
 * meant to run with --max-semi-space-size=1 (see README). Measured on the agent process alone:
 *   - CPU (utime + stime, /proc/<pid>/stat) from exec to converged: the device holds all N peers
 *     with their allowed IPs (read through the UAPI socket) and the mesh table holds a route through
 *     the device for each of them (`ip route`); module loading and start-up included;
 *   - RSS once converged and settled (2 s), and the peak (VmHWM);
 *   - the CPU of one resync period after that (--resync seconds, one full pass with nothing to do:
 *     read the device and the routes, find no difference), minus nothing: idle costs are in it.
 * Goals (issue 10, Done-when 4): full resync ≤ 1 s CPU, steady RSS ≤ 120 MB, peak ≤ 200 MB.
 *
 * --profile runs the agent once more under `node --cpu-prof` and sums self time by module group
 * (module loading/compiling, directory source and YAML, desired state, reconcile, UAPI, ip, GC):
 * where the CPU goes. --imports prints the RSS each part of the agent costs when imported alone in
 * a fresh process: where the memory goes. Benchmarks print numbers and never assert timings; they
 * check that the device really holds what was asked, so a broken setup cannot print plausible ones.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { MeshCluster, NODE_BINARY, REPO_ROOT } from '../sandbox/cluster.ts';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { UapiClient } from '../native/uapi/client.ts';
import { DEFAULT_TABLE } from '../native/link/marks.ts';
import { GROUP, VERSION } from '../mesh/crd/types.ts';
import { readLogEntries } from './lib/agentlog.ts';
import { inParallel, kubeletStatus, simulatedNode, simulatedObjects, sleep, startAgent, stopAgent, writePeersDir } from './lib/member-run.ts';
import { cpuSeconds, memoryMiB } from './lib/procstat.ts';
import { percentile, table } from './lib/stats.ts';

const execFileAsync = promisify(execFile);

const USAGE = `usage: node bench/resync.ts [options]
  --peers N           Nodes with a Peer each (default 5000)
  --source S          kube (default: a real kube-apiserver, what operators run) or dir (--peers-dir)
  --runs N            agent starts measured (default 5)
  --resync S          the agent's --resync seconds; one such period is measured after convergence (default 10)
  --apply-mode M      incremental (default) or replace (the full-rewrite reference)
  --node-flags F      V8/Node flags for the agent's process, e.g. "--max-semi-space-size=2" (default: none)
  --program P         run this instead of cli/main.ts, e.g. dist/aks-mesh.mjs (node scripts/build.ts: what the image runs)
  --profile           one more run under node --cpu-prof: self time by module group
  --imports           RSS of each part of the agent imported alone
  --modules           list what a --peers-dir agent loaded (and whether @kubernetes/client-node is among it)
  --json              one JSON object instead of tables
  -h, --help          this text`;

interface Options {
  peers: number;
  runs: number;
  resync: number;
  applyMode: 'incremental' | 'replace';
  source: 'kube' | 'dir';
  nodeFlags: string[];
  /** What the agent runs (default cli/main.ts). */
  program?: string;
  profile: boolean;
  imports: boolean;
  modules: boolean;
  json: boolean;
}

function options(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      peers: { type: 'string' },
      runs: { type: 'string' },
      resync: { type: 'string' },
      'apply-mode': { type: 'string' },
      'node-flags': { type: 'string' },
      program: { type: 'string' },
      source: { type: 'string' },
      profile: { type: 'boolean', default: false },
      imports: { type: 'boolean', default: false },
      modules: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const whole = (v: string | undefined, d: number, name: string, min: number, max: number): number => {
    if (v === undefined) return d;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`--${name} ${JSON.stringify(v)}: expected a whole number from ${min} to ${max}`);
    return Number(v);
  };
  const mode = values['apply-mode'] ?? 'incremental';
  if (mode !== 'incremental' && mode !== 'replace') throw new Error(`--apply-mode ${JSON.stringify(mode)}: expected incremental or replace`);
  const source = values.source ?? 'kube';
  if (source !== 'kube' && source !== 'dir') throw new Error(`--source ${JSON.stringify(source)}: expected kube or dir`);
  return {
    source,
    peers: whole(values.peers, 5000, 'peers', 1, 60_000),
    runs: whole(values.runs, 5, 'runs', 1, 100),
    resync: whole(values.resync, 10, 'resync', 2, 600),
    applyMode: mode,
    nodeFlags: (values['node-flags'] ?? '').split(/\s+/).filter(Boolean),
    program: values.program === undefined ? undefined : resolve(values.program),
    profile: values.profile,
    imports: values.imports,
    modules: values.modules,
    json: values.json,
  };
}

interface RunResult {
  /** Wall seconds from exec to converged (the machine is shared: CPU is the measure). */
  wallS: number;
  /** Agent CPU seconds from exec to converged. */
  cpuS: number;
  /** Agent CPU seconds before its first log line ('starting': modules loaded, flags parsed). */
  startCpuS: number;
  /** Agent CPU seconds of the full pass that applied the 5,000 peers (desired state + diff + apply + routes), as it logged it. */
  passCpuS: number;
  steadyMiB: number;
  peakMiB: number;
  /** Agent CPU seconds over one resync period after convergence. */
  resyncCpuS: number;
  /** RSS at points of the start (MiB). */
  rssAt: Record<string, number>;
}

/**
 * Where the simulated nodes' addresses (10.224.0.0/12) lead: a veth into a second namespace of ours
 * that does not forward, so wireguard-go's handshakes leave without an error and vanish there, as
 * towards nodes that do not answer yet. Without it every handshake fails with "network unreachable"
 * and the agent logs a warning per peer every 5 s, which is not what a cluster costs.
 */
async function underlay(box: Sandbox, ns: string, suffix: string): Promise<void> {
  const sink = await box.addNamespace(`s${suffix}`);
  await box.veth(ns, '192.0.2.1/30', sink, '192.0.2.2/30', suffix);
  await box.ip(ns, 'route', 'add', '10.224.0.0/12', 'via', '192.0.2.2');
}

/** Whether the device and the mesh table hold every simulated peer. */
async function converged(ns: string, iface: string, n: number): Promise<boolean> {
  const { stdout } = await execFileAsync('ip', ['-n', ns, '-4', 'route', 'show', 'table', String(DEFAULT_TABLE)], { maxBuffer: 64 * 1024 * 1024 });
  let routes = 0;
  for (const line of stdout.split('\n')) if (line.includes(` dev ${iface}`) && !line.startsWith('unreachable')) routes++;
  if (routes < 2 * n) return false;
  const device = await UapiClient.forInterface(iface, { timeoutMs: 10_000 }).get();
  if (device.peers.length !== n) return false;
  const want = new Set(Array.from({ length: n }, (_, i) => simulatedNode(i).podCIDR));
  return device.peers.every((p) => p.allowedIPs.length === 2 && p.allowedIPs.some((c) => want.has(c)));
}

/** One agent process as a run sees it, whichever mode started it. */
interface Launched {
  pid: number;
  ns: string;
  iface: string;
  exited(): boolean;
  /** When the agent logged `message` first (epoch ms). */
  loggedAt(message: string): number | undefined;
  /** The `cpuMs` of the first full pass that applied something ('reconciled' with full: true). */
  firstPassCpuMs(): number | undefined;
  tail(): string;
  stop(): Promise<void>;
}

/** --peers-dir mode: a fresh namespace (and sink) per run, the agent started by startAgent(). */
function dirLauncher(box: Sandbox, o: Options, peersDir: string) {
  return async (run: number, extra: { nodeFlags?: string[]; modulesFile?: string }): Promise<Launched> => {
    const ns = await box.addNamespace(`r${run}`);
    await underlay(box, ns, `r${run}`);
    const iface = box.ifName('wg', `r${run}`);
    const keyDir = mkdtempSync(join(tmpdir(), 'aks-mesh-resync-key-'));
    const args = [
      '--node-name', 'bench-self', '--peers-dir', peersDir, '--interface', iface, '--key-file', join(keyDir, 'private.key'),
      '--wireguard', 'spawn', '--endpoint', '10.239.255.254:51820', '--mtu', '1420', '--metrics-address', 'off',
      '--log-format', 'json', '--log-level', 'info', '--resync', String(o.resync), '--apply-mode', o.applyMode,
    ];
    const agent = startAgent(box, ns, args, { ...extra, program: o.program, nodeFlags: [...o.nodeFlags, ...(extra.nodeFlags ?? [])] });
    return {
      pid: agent.pid,
      ns,
      iface,
      exited: () => agent.child.exitCode !== null || agent.child.signalCode !== null,
      loggedAt: (message) => agent.logs.find((l) => l.message === message)?.at,
      firstPassCpuMs: () => agent.logs.find((l) => l.message === 'reconciled' && l.fields.full === true)?.fields.cpuMs as number | undefined,
      tail: () => agent.other.slice(-20).join('\n'),
      stop: async () => {
        await stopAgent(agent);
        rmSync(keyDir, { recursive: true, force: true });
        for (const n of [ns, box.nsName(`sr${run}`)]) await execFileAsync('ip', ['netns', 'del', n]).catch(() => undefined);
      },
    };
  };
}

/**
 * Kube mode: node-0 of a one-node MeshCluster (its namespace, a real kube-apiserver + etcd on the
 * underlay, the shipped agent role) with N simulated Nodes (kubelet-like status) and their Peers in
 * the API. Between runs the mesh table is flushed; each run's wireguard-go starts empty (spawn
 * mode: it goes with the agent), so every run goes from nothing to applied.
 */
async function kubeLauncher(o: Options, log: (line: string) => void) {
  const c = await MeshCluster.start({ nodes: 1, source: 'kube', resyncSeconds: o.resync, log });
  const node = c.node('node-0');
  try {
    await underlay(c.box, node.ns, 'k');
    const kc = c.kubeConfig();
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const t0 = performance.now();
    const sims = simulatedObjects(o.peers);
    await inParallel(sims.map((x, i) => ({ ...x, i })), 24, async ({ node: n, peer, i }) => {
      const name = `sim-${i}`;
      const sim = simulatedNode(i);
      const created = await core.createNode({ body: { ...(n as k8s.V1Node), metadata: { name } } });
      await core.replaceNodeStatus({ name, body: { ...created, status: kubeletStatus(sim.internalIP, name) as k8s.V1NodeStatus } });
      const p = peer as { spec: Record<string, unknown> };
      await custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', body: { ...p, metadata: { name }, spec: { ...p.spec, nodeName: name } } });
    });
    log(`created ${o.peers} Nodes and Peers in ${Math.round((performance.now() - t0) / 1000)} s`);
  } catch (err) {
    await c.stop();
    throw err;
  }
  const launch = async (_run: number, extra: { nodeFlags?: string[] }): Promise<Launched> => {
    await execFileAsync('ip', ['-n', node.ns, 'route', 'flush', 'table', String(DEFAULT_TABLE)]).catch(() => undefined);
    const flags = [...o.nodeFlags, ...(extra.nodeFlags ?? [])];
    const since = Date.now();
    const { pid } = await c.startAgent('node-0', {
      ...(o.program ? { program: o.program } : {}),
      flags: { '--log-format': 'json', '--log-level': 'info', '--resync': String(o.resync), '--apply-mode': o.applyMode, '--mtu': '1420' },
      env: flags.length ? { NODE_OPTIONS: flags.join(' ') } : {},
    });
    return {
      pid,
      ns: node.ns,
      iface: node.interfaceName,
      exited: () => c.agentExit('node-0') !== undefined,
      loggedAt: (message) => readLogEntries(node.logFile).find((e) => e.message === message && e.at >= since)?.at,
      firstPassCpuMs: () => readLogEntries(node.logFile).find((e) => e.message === 'reconciled' && e.fields.full === true && e.at >= since)?.fields.cpuMs as number | undefined,
      tail: () => c.logTail('node-0', 20),
      stop: async () => void (await c.stopAgent('node-0')),
    };
  };
  return { launch, stop: () => c.stop() };
}

async function oneRun(o: Options, run: number, launch: (run: number, extra: { nodeFlags?: string[]; modulesFile?: string }) => Promise<Launched>, extra: { nodeFlags?: string[]; modulesFile?: string } = {}): Promise<RunResult> {
  const startedAt = performance.now();
  const agent = await launch(run, extra);
  const { ns, iface } = agent;
  const read = (): { cpu: number; rss: number; peak: number } => {
    const cpu = cpuSeconds(agent.pid);
    const mem = memoryMiB(agent.pid);
    if (cpu === null || mem === null) throw new Error(`the agent (pid ${agent.pid}) is gone:\n${agent.tail()}`);
    return { cpu, rss: mem.rss, peak: mem.peak };
  };
  const timeline: Array<{ wall: number; rss: number; cpu: number }> = [];
  const sampler = setInterval(() => {
    try {
      const s = read();
      timeline.push({ wall: Date.now(), rss: s.rss, cpu: s.cpu });
    } catch {
      /* gone: the wait below reports it */
    }
  }, 20);
  try {
    const deadline = performance.now() + 300_000;
    for (;;) {
      if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail()}`);
      if (performance.now() > deadline) throw new Error(`not converged after 300 s:\n${agent.tail()}`);
      if (await converged(ns, iface, o.peers).catch(() => false)) break;
      await sleep(100);
    }
    const at = read();
    const wallS = (performance.now() - startedAt) / 1000;
    await sleep(2000);
    const steady = read();
    await sleep(o.resync * 1000);
    const after = read();
    if (!(await converged(ns, iface, o.peers))) throw new Error('the device or the routes changed after convergence');
    const sampleAt = (message: string) => {
      const when = agent.loggedAt(message);
      return when === undefined ? undefined : timeline.find((t) => t.wall >= when);
    };
    return {
      wallS,
      cpuS: at.cpu,
      startCpuS: sampleAt('starting')?.cpu ?? NaN,
      passCpuS: (agent.firstPassCpuMs() ?? NaN) / 1000,
      steadyMiB: steady.rss,
      peakMiB: steady.peak,
      resyncCpuS: after.cpu - steady.cpu,
      rssAt: { starting: sampleAt('starting')?.rss ?? NaN, 'wireguard-go ready': sampleAt('wireguard-go ready')?.rss ?? NaN, converged: at.rss, steady: steady.rss },
    };
  } finally {
    clearInterval(sampler);
    await agent.stop();
  }
}

/** Self time under `node --cpu-prof`, summed by what the code is (its file). */
function profileGroups(dir: string): Array<[string, number]> {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${dir}`);
  const prof = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string } }>;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const groups = new Map<string, number>();
  const group = (url: string, fn: string): string => {
    if (fn === '(garbage collector)') return 'garbage collection';
    if (fn === '(idle)' || fn === '(program)') return fn === '(idle)' ? '(idle)' : 'V8/Node internals (program)';
    if (/@kubernetes\/client-node|node_modules\/(openapi|undici|ws|jsonpath|js-yaml|hpagent|form-data|rfc4648|tar|stream-buffers|@types)/.test(url)) return 'client-node';
    if (/\/mesh\/source\/|node_modules\/yaml\//.test(url)) return 'source (directory, YAML, informers)';
    if (/\/mesh\/topology\/|ipaddr\.js/.test(url)) return 'desired state (mesh/topology)';
    if (/\/mesh\/reconcile\//.test(url)) return 'reconcile (diff, routes)';
    if (/\/native\/uapi\//.test(url)) return 'UAPI client and codec';
    if (/\/native\/link\//.test(url)) return 'ip (link, routes)';
    if (/\/mesh\/crd\//.test(url)) return 'validation (mesh/crd)';
    if (/winston|logform|\/native\/log/.test(url)) return 'logging';
    if (/yargs|cliui|y18n/.test(url)) return 'CLI parsing (yargs)';
    if (/^node:/.test(url) || url === '') return fn.includes('compile') || fn.includes('Module') ? 'module loading' : 'Node built-ins';
    if (/node_modules/.test(url)) return 'other dependencies';
    return 'other agent code';
  };
  prof.samples.forEach((id, i) => {
    const n = byId.get(id);
    if (!n) return;
    const g = group(n.callFrame.url, n.callFrame.functionName);
    groups.set(g, (groups.get(g) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000);
  });
  return [...groups.entries()].filter(([g]) => g !== '(idle)').sort((a, b) => b[1] - a[1]);
}

/** RSS and heap of a fresh node process that imports `modules` (what each part costs by itself). */
async function importCost(modules: string[]): Promise<{ rss: number; heap: number; cpu: number }> {
  const code = `const c=process.cpuUsage();for (const m of ${JSON.stringify(modules)}) await import(m);globalThis.gc?.();const u=process.cpuUsage(c);const m=process.memoryUsage();console.log(JSON.stringify({rss:m.rss,heap:m.heapUsed,cpu:(u.user+u.system)/1e6}))`;
  const { stdout } = await execFileAsync(NODE_BINARY, ['--expose-gc', '--input-type=module', '-e', code], { cwd: REPO_ROOT });
  const r = JSON.parse(stdout) as { rss: number; heap: number; cpu: number };
  return { rss: r.rss / 2 ** 20, heap: r.heap / 2 ** 20, cpu: r.cpu };
}

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  if (!o) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const why = networkTestsUnavailable();
  if (why) throw new Error(`cannot run: ${why}`);
  const box = new Sandbox();
  const dataDir = mkdtempSync(join(tmpdir(), 'aks-mesh-resync-'));
  const out: Record<string, unknown> = { peers: o.peers, source: o.source, applyMode: o.applyMode };
  let stopCluster: (() => Promise<unknown>) | undefined;
  try {
    const peersDir = join(dataDir, 'peers');
    let launch: (run: number, extra: { nodeFlags?: string[]; modulesFile?: string }) => Promise<Launched>;
    const writeDir = (): void =>
      writePeersDir(peersDir, o.peers, [
        { apiVersion: 'v1', kind: 'Node', metadata: { name: 'bench-self' }, spec: { podCIDR: '10.250.0.0/24', podCIDRs: ['10.250.0.0/24'] }, status: { addresses: [{ type: 'InternalIP', address: '10.239.255.254' }] } },
      ]);
    if (o.source === 'dir') {
      writeDir();
      launch = dirLauncher(box, o, peersDir);
    } else {
      const kube = await kubeLauncher(o, (line) => o.json || process.stderr.write(`${line}\n`));
      launch = kube.launch;
      stopCluster = kube.stop;
    }
    const runs: RunResult[] = [];
    for (let r = 0; r < o.runs; r++) {
      runs.push(await oneRun(o, r, launch));
      if (!o.json) process.stderr.write(`run ${r + 1}/${o.runs}: ${round(runs[r].cpuS)} s CPU, ${round(runs[r].wallS)} s wall, steady ${runs[r].steadyMiB} MiB, peak ${runs[r].peakMiB} MiB\n`);
    }
    const col = (f: (r: RunResult) => number): { p50: number; p95: number; samples: number[] } => {
      const s = runs.map(f).sort((a, b) => a - b);
      return { p50: percentile(s, 50), p95: percentile(s, 95), samples: runs.map(f) };
    };
    const rows: Array<[string, ReturnType<typeof col>, number, string]> = [
      ['CPU, exec to converged (s)', col((r) => r.cpuS), 1, '≤ 1 s'],
      ['  of which start-up before the first log line (s)', col((r) => r.startCpuS), NaN, ''],
      ['  of which the full pass that applied them (s)', col((r) => r.passCpuS), 1, '≤ 1 s'],
      ['wall, exec to converged (s; busy machine)', col((r) => r.wallS), NaN, ''],
      ['steady RSS (MiB)', col((r) => r.steadyMiB), 120, '≤ 120 MB'],
      ['peak RSS, VmHWM (MiB)', col((r) => r.peakMiB), 200, '≤ 200 MB'],
      [`CPU of one resync period, nothing to do (s; --resync ${o.resync})`, col((r) => r.resyncCpuS), NaN, ''],
    ];
    out.runs = runs;
    if (!o.json) {
      console.log(`\nBenchmark 3, full resync: ${o.peers} peers, ${o.source === 'dir' ? '--peers-dir' : 'a real kube-apiserver (kubelet-like Node status)'}, --apply-mode ${o.applyMode}${o.nodeFlags.length ? `, node ${o.nodeFlags.join(' ')}` : ''}, ${o.runs} runs (agent process only)\n`);
      console.log(table([['measurement', 'median', 'p95', 'goal', 'median / goal'], ...rows.map(([name, s, goal, text]) => [name, round(s.p50), round(s.p95), text, Number.isFinite(goal) ? round(s.p50 / goal) : NaN])]));
      const points = Object.keys(runs[0].rssAt);
      console.log(`\nRSS during a start (MiB, median): ${points.map((p) => `${p} ${percentile(runs.map((r) => r.rssAt[p]).sort((a, b) => a - b), 50)}`).join(', ')}`);
    }
    if (o.modules) {
      const file = join(dataDir, 'modules.txt');
      if (o.source === 'kube') writeDir();
      await oneRun({ ...o, resync: 2 }, o.runs, dirLauncher(box, o, peersDir), { modulesFile: file });
      const mods = readFileSync(file, 'utf8').split('\n').filter(Boolean);
      const kube = mods.filter((m) => m.includes('@kubernetes/client-node'));
      out.modules = { total: mods.length, clientNode: kube.length };
      if (!o.json) console.log(`\nModules loaded by a --peers-dir agent: ${mods.length}, of them from @kubernetes/client-node: ${kube.length}`);
    }
    if (o.profile) {
      const profDir = join(dataDir, 'profile');
      await oneRun({ ...o, resync: 2 }, o.runs + 1, launch, { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', profDir] });
      const groups = profileGroups(profDir);
      out.profile = Object.fromEntries(groups.map(([g, ms]) => [g, round(ms, 1)]));
      if (!o.json) console.log(`\nWhere the agent's CPU goes (one run under --cpu-prof, self time, ms; the profiler adds its own):\n${table([['group', 'ms'], ...groups.map(([g, ms]) => [g, round(ms, 1)])])}`);
    }
    if (o.imports) {
      const parts: Array<[string, string[]]> = [
        ['node alone', []],
        ['+ CLI (yargs, flags)', ['./cli/commands/member.ts', 'yargs']],
        ['+ native (keys, UAPI, ip, wireguard-go, winston)', ['./cli/commands/member.ts', 'yargs', './native/index.ts']],
        ['+ member, topology, reconciler, metrics (prom-client)', ['./cli/commands/member.ts', 'yargs', './native/index.ts', './mesh/member.ts', './mesh/metrics.ts']],
        ['+ directory source (--peers-dir: all an agent loads)', ['./cli/commands/member.ts', 'yargs', './native/index.ts', './mesh/member.ts', './mesh/metrics.ts', './mesh/source/directory.ts']],
        ['+ informers and API writes (kube mode: all an agent loads)', ['./cli/commands/member.ts', 'yargs', './native/index.ts', './mesh/member.ts', './mesh/metrics.ts', './mesh/source/kube.ts', './mesh/api.ts']],
        ['@kubernetes/client-node alone', ['@kubernetes/client-node']],
      ];
      const costs: Array<[string, number, number, number]> = [];
      for (const [name, mods] of parts) {
        const c = await importCost(mods.map((m) => (m.startsWith('./') ? join(REPO_ROOT, m) : m)));
        costs.push([name, round(c.rss, 0), round(c.heap, 1), round(c.cpu, 2)]);
      }
      out.imports = costs;
      if (!o.json) console.log(`\nWhat loading costs (a fresh process importing these, after a GC):\n${table([['imported', 'RSS MiB', 'heap used MiB', 'CPU s'], ...costs])}`);
    }
    if (o.json) console.log(JSON.stringify(out));
  } finally {
    await stopCluster?.();
    await box.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/resync: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
