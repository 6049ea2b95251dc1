/**
 * Benchmark 5 of issue 10, "Start to traffic": how long after an agent starts on a new node its
 * pods can reach the rest of the mesh. Goal (Done-when 7): ≤ 3 s to the first packet.
 *
 *   node bench/start.ts [--runs 5] [--nodes 3] [--source kube|dir] [--node-flags "--max-semi-space-size=2"]
 *
 * Setup: the e2e cluster in network namespaces (sandbox/cluster.ts MeshCluster: an underlay bridge,
 * nodes each with a pod namespace behind them, a real kube-apiserver + etcd on the underlay), with
 * --nodes agents running and converged. Each run then adds a new node (its Node object exists, as a
 * kubelet would have registered it; in dir mode its Node and Peer files are written first, as an
 * operator would) and, in its pod, starts `ping -D -i 0.01` towards node-0's pod (one packet every
 * 10 ms; the pod has no way out until the agent routes it). Then it starts the new node's agent
 * (`aks-mesh agent` through the CLI, spawn mode) and measures, from the moment just before the
 * process is spawned:
 *   - the first echo reply: the first packet from the new pod reached node-0's pod, and its reply
 *     came back (ping's own reception timestamp, -D; a reply needs both directions configured,
 *     which the first packet needs anyway: node-0 only accepts a handshake from a key it knows);
 *   - phases from the new agent's JSON log: its first log line (node started, modules loaded,
 *     flags parsed), wireguard-go ready, its own Peer registered (kube), its first applied pass;
 *     and when node-0's agent configured the newcomer (its 'reconciled' line).
 * The new agent's CPU time up to the first reply comes from /proc/<pid>/stat.
 * Benchmarks print numbers and assert no timings; a run whose ping never answers fails the run.
 */
import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { ClusterNode } from '../sandbox/cluster.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { API_VERSION } from '../mesh/crd/types.ts';
import { readLogEntries } from './lib/agentlog.ts';
import type { LogEntry } from './lib/agentlog.ts';
import { cpuSeconds } from './lib/procstat.ts';
import { percentile, table } from './lib/stats.ts';

const USAGE = `usage: node bench/start.ts [options]
  --runs N           new nodes started, one after the other (default 5)
  --nodes N          agents already running (default 3)
  --source S         kube (default: a real API server) or dir (a peers directory)
  --node-flags F     flags for the new agent's node process (default: none; the image's are a proposal)
  --json             one JSON object instead of tables
  -h, --help         this text`;

interface Run {
  /** ms from spawn to each point; NaN when the point was not seen. */
  firstReply: number;
  firstLog: number;
  wireguardReady: number;
  registered: number;
  firstPass: number;
  farConfigured: number;
  cpuS: number;
}

function options(argv: string[]): { runs: number; nodes: number; source: 'kube' | 'dir'; nodeFlags: string[]; json: boolean } | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      runs: { type: 'string' },
      nodes: { type: 'string' },
      source: { type: 'string' },
      'node-flags': { type: 'string' },
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
  const source = values.source ?? 'kube';
  if (source !== 'kube' && source !== 'dir') throw new Error(`--source ${JSON.stringify(source)}: expected kube or dir`);
  return {
    runs: whole(values.runs, 5, 'runs', 1, 40),
    nodes: whole(values.nodes, 3, 'nodes', 1, 50),
    source,
    nodeFlags: (values['node-flags'] ?? '').split(/\s+/).filter(Boolean),
    json: values.json,
  };
}

/** The first reply's reception time (epoch ms, from ping -D) once one arrived. */
function watchPing(child: ChildProcess): { first: () => number | null; output: () => string } {
  let out = '';
  let first: number | null = null;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (first !== null) return;
    const m = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(out);
    if (m) first = Number(m[1]) * 1000;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    out = (out + d).slice(-4000);
  });
  return { first: () => first, output: () => out.slice(-2000) };
}

async function oneRun(c: MeshCluster, nodeFlags: string[]): Promise<Run> {
  const node: ClusterNode = await c.addNode();
  if (c.source === 'dir') {
    c.writePeersFile(`peer.${node.name}.yaml`, [
      { apiVersion: API_VERSION, kind: 'Peer', metadata: { name: node.name }, spec: { publicKey: node.publicKey, endpoint: node.endpoint, allowedIPs: [node.podCIDR], nodeName: node.name } },
    ]);
    await new Promise((r) => setTimeout(r, 1500)); // the running agents take the new Peer first (a directory is not a registration)
  }
  const far = c.node('node-0');
  const farLogStart = Date.now();
  const ping = c.box.spawn(node.podNs, 'ping', ['-n', '-D', '-i', '0.01', '-W', '1', far.podIp], { stdio: ['ignore', 'pipe', 'pipe'] });
  const replies = watchPing(ping);
  try {
    await new Promise((r) => setTimeout(r, 200));
    const env: Record<string, string> = nodeFlags.length ? { NODE_OPTIONS: nodeFlags.join(' ') } : {};
    const t0 = Date.now();
    const { pid } = await c.startAgent(node.name, { flags: { '--log-format': 'json' }, env });
    let cpu = 0;
    const deadline = Date.now() + 60_000;
    while (replies.first() === null) {
      if (Date.now() > deadline) throw new Error(`no echo reply from ${far.podIp} within 60 s:\n${replies.output()}\n${c.logTail(node.name, 30)}`);
      cpu = cpuSeconds(pid) ?? cpu;
      await new Promise((r) => setTimeout(r, 10));
    }
    cpu = cpuSeconds(pid) ?? cpu;
    const first = replies.first() as number;
    const logs = readLogEntries(node.logFile);
    const at = (pred: (e: LogEntry) => boolean, entries = logs): number => {
      const e = entries.find((x) => x.at >= t0 && pred(x));
      return e ? e.at - t0 : NaN;
    };
    const farLogs = readLogEntries(far.logFile).filter((e) => e.at >= farLogStart);
    return {
      firstReply: first - t0,
      firstLog: at(() => true),
      wireguardReady: at((e) => e.message === 'wireguard-go ready'),
      registered: at((e) => /^own Peer (created|updated)/.test(e.message)),
      firstPass: at((e) => e.message === 'reconciled'),
      farConfigured: at((e) => e.message === 'reconciled', farLogs),
      cpuS: cpu,
    };
  } finally {
    ping.kill('SIGINT');
    await c.stopAgent(node.name);
  }
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  if (!o) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const why = networkTestsUnavailable(['tcpdump']);
  if (why) throw new Error(`cannot run: ${why}`);
  const c = await MeshCluster.start({ nodes: o.nodes, source: o.source, spareNodes: o.runs, resyncSeconds: 60 });
  try {
    // The far node logs JSON too, so that when it configured the newcomer can be read.
    for (const n of c.nodes) await c.startAgent(n.name, { flags: { '--log-format': 'json' } });
    await c.waitForMatrix({ timeoutMs: 60_000 });
    const runs: Run[] = [];
    for (let i = 0; i < o.runs; i++) {
      const r = await oneRun(c, o.nodeFlags);
      runs.push(r);
      if (!o.json) process.stderr.write(`run ${i + 1}/${o.runs}: first reply after ${Math.round(r.firstReply)} ms (${r.cpuS.toFixed(2)} s CPU)\n`);
    }
    if (o.json) {
      console.log(JSON.stringify({ source: o.source, nodes: o.nodes, nodeFlags: o.nodeFlags, runs }));
      return;
    }
    const row = (name: string, f: (r: Run) => number, goal = ''): Array<string | number> => {
      const s = runs.map(f).filter(Number.isFinite).sort((a, b) => a - b);
      const p50 = percentile(s, 50);
      return [name, Math.round(p50), Math.round(percentile(s, 95)), goal, goal ? Math.round((p50 / 3000) * 100) / 100 : NaN];
    };
    console.log(`\nBenchmark 5, start to traffic: a new node's agent (${o.source} mode) joining ${o.nodes} running nodes, ${o.runs} runs; ms from spawning the agent\n`);
    console.log(
      table([
        ['point', 'median', 'p95', 'goal', 'median / goal'],
        row('first log line (node up, modules loaded, flags parsed)', (r) => r.firstLog),
        row('wireguard-go ready', (r) => r.wireguardReady),
        ...(o.source === 'kube' ? [row('own Peer registered in the API', (r) => r.registered)] : []),
        row('first pass applied on the new node', (r) => r.firstPass),
        row('node-0 configured the newcomer', (r) => r.farConfigured),
        row('first echo reply from node-0\'s pod', (r) => r.firstReply, '≤ 3000'),
        ['new agent CPU to the first reply (s)', Math.round(percentile(runs.map((r) => r.cpuS).sort((a, b) => a - b), 50) * 100) / 100, Math.round(percentile(runs.map((r) => r.cpuS).sort((a, b) => a - b), 95) * 100) / 100, '', NaN],
      ]),
    );
  } finally {
    await c.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
