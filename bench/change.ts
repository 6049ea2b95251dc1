/**
 * Benchmark 2, "Cost of one change" (issue 10): the CPU time and UAPI bytes of the whole reconcile
 * pass that a single-Peer change causes, on a device holding 9, 999 and 4,999 peers (10, 1,000 and
 * 5,000 Nodes with a Peer each; this member's own Peer is not on its device). The goal: a change on
 * 5,000 costs at most 2x the same change on 10, in CPU and in bytes.
 *
 *   node bench/change.ts [--sizes 10,1000,5000] [--runs 20] [--warmup 3] [--source directory|memory]
 *                        [--apply-mode incremental|replace] [--binary /path/to/wireguard-go] [--json]
 *
 * Setup, per size: one network namespace of the benchmark's own (only `lo`), a MeshMember of role
 * node (node-0) in this process, spawn mode (it starts a real wireguard-go), with its routes, rule
 * and fallbacks in that namespace, fed by a peers directory of one file per Node (node-i.yaml: the
 * Node and its Peer; the layout the issue measured with --peers-dir) or, with --source memory, by
 * a MemorySource holding the same objects. Peers have random keys and endpoints in 10.224.0.0/12,
 * routed into a veth pair inside that namespace (wireguard-go's handshake attempts vanish there;
 * nothing leaves the namespace), no keepalive. No API server (directory mode: no
 * status, no events). The periodic resync and the directory poll are off during the measurement
 * (benchmark 3 measures a full resync); every pass measured is an event pass.
 *
 * Each change, once the member has converged: one Peer's endpoint, one Peer's allowedIPs (its /24
 * and two /25s in turn: a route change too), one Peer added (for a Node that had none), that Peer
 * deleted. For each: CPU time of this process (process.cpuUsage: user + system) from just before
 * the change is written to the end of the synchronous work of the pass that applies it (onSync,
 * then a microtask: the rest of afterSync has run); the CPU of the `ip` processes it spawned
 * (/proc/self/stat cutime + cstime, counted once they are reaped); UAPI bytes sent and received,
 * counted on the socket itself (node:diagnostics_channel 'net.client.socket' hands every client
 * socket this process opens to us; only the UAPI client opens any here: socket.bytesWritten +
 * socket.bytesRead); UAPI requests by op (MemberOptions.onRequest). Also the longest event-loop
 * block over the whole run and over the changes (perf_hooks.monitorEventLoopDelay, max): a pass
 * must never block long enough to miss a health probe.
 *
 * Benchmarks print numbers and never assert timings. They do check behaviour, so that a broken
 * setup cannot print plausible numbers: the device must hold exactly the desired peers after
 * convergence and at the end (a UAPI get), and every change must land on the device.
 *
 * To see where the time goes: node --cpu-prof --cpu-prof-dir=/tmp/prof bench/change.ts --sizes 5000
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFileSync, rmSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { Session } from 'node:inspector';
import { parseArgs } from 'node:util';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { DEFAULT_FWMARK, findWireguardGo, loadOrCreatePrivateKey, publicKeyOf, wireguardGoVersion } from '../native/index.ts';
import type { Logger } from '../native/index.ts';
import { MeshMember } from '../mesh/member.ts';
import { agentRole } from '../agent/role.ts';
import { DirectorySource, MemorySource } from '../mesh/source/index.ts';
import type { PeerSource } from '../mesh/source/index.ts';
import type { NodeInfo, Peer } from '../mesh/crd/types.ts';
import type { SyncResult } from '../mesh/reconcile/index.ts';
import type { Topology } from '../mesh/topology/index.ts';

// ---------------------------------------------------------------- options

type Kind = 'endpoint' | 'allowedIPs' | 'add' | 'delete';
const KINDS: readonly Kind[] = ['endpoint', 'allowedIPs', 'add', 'delete'];

interface Options {
  sizes: number[];
  runs: number;
  warmup: number;
  source: 'directory' | 'memory';
  applyMode: 'incremental' | 'replace';
  binary: string;
  json: boolean;
  /** Write a CPU profile of each size's changes (not its start) into this directory. */
  profile: string | null;
}

const USAGE = `usage: node bench/change.ts [options]
  --sizes LIST        Nodes (each with a Peer) per run, comma-separated (default 10,1000,5000; the first is the reference)
  --runs N            measured changes of each kind per size (default 20)
  --warmup N          unmeasured rounds of changes first (default 3)
  --source KIND       directory (default: a peers directory, one file per Node) or memory (a MemorySource)
  --apply-mode MODE   incremental (default) or replace (every peer rewritten with replace_peers: the reference way)
  --binary PATH       wireguard-go to run (default: findWireguardGo())
  --json              print one JSON object instead of tables
  --profile DIR       write a CPU profile of each size's changes alone (not its start) to DIR/change-<nodes>.cpuprofile
  -h, --help          this text`;

class UsageError extends Error {}

function whole(text: string | undefined, fallback: number, name: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`--${name} ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
  return n;
}

function readOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      sizes: { type: 'string' },
      runs: { type: 'string' },
      warmup: { type: 'string' },
      source: { type: 'string' },
      'apply-mode': { type: 'string' },
      binary: { type: 'string' },
      json: { type: 'boolean', default: false },
      profile: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const sizes = (values.sizes ?? '10,1000,5000').split(',').map((s, i) => whole(s.trim(), 0, `sizes[${i}]`, 2, 16_000));
  const source = values.source ?? 'directory';
  if (source !== 'directory' && source !== 'memory') throw new UsageError(`--source ${JSON.stringify(source)}: expected directory or memory`);
  const applyMode = values['apply-mode'] ?? 'incremental';
  if (applyMode !== 'incremental' && applyMode !== 'replace') throw new UsageError(`--apply-mode ${JSON.stringify(applyMode)}: expected incremental or replace`);
  return {
    sizes,
    runs: whole(values.runs, 20, 'runs', 1, 1000),
    warmup: whole(values.warmup, 3, 'warmup', 0, 100),
    source,
    applyMode,
    binary: values.binary ?? findWireguardGo(),
    json: values.json,
    profile: values.profile ?? null,
  };
}

// ---------------------------------------------------------------- statistics and output

interface Stats {
  n: number;
  median: number;
  p95: number;
  max: number;
}

function stats(samples: readonly number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return { n, median, p95: n === 0 ? NaN : s[Math.min(n - 1, Math.ceil(0.95 * n) - 1)], max: n === 0 ? NaN : s[n - 1] };
}

const ratio = (a: number, b: number): string => (b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}x` : '-');
const fixed = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : '-');
const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]): string => '  ' + cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------- counters

/** UAPI bytes, counted on the sockets themselves (only the UAPI client opens client sockets in this process). */
class SocketBytes {
  private readonly open = new Map<Socket, number>();
  private closedBytes = 0;
  private readonly onSocket = (message: unknown): void => {
    const socket = (message as { socket: Socket }).socket;
    this.open.set(socket, 0);
    socket.once('close', () => {
      this.closedBytes += socket.bytesRead + socket.bytesWritten;
      this.open.delete(socket);
    });
  };

  constructor() {
    subscribe('net.client.socket', this.onSocket);
  }

  /** Every byte sent or received so far, sockets still open included. */
  total(): number {
    let t = this.closedBytes;
    for (const socket of this.open.keys()) t += socket.bytesRead + socket.bytesWritten;
    return t;
  }

  close(): void {
    unsubscribe('net.client.socket', this.onSocket);
  }
}

/** Wait until process `pid` uses under 10% of a CPU for 3 s in a row (or `maxMs` passed); how long it took. */
async function waitQuiet(pid: number | undefined, maxMs: number): Promise<number> {
  const start = performance.now();
  if (pid === undefined) return 0;
  const cpuOf = (): number => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, seconds (USER_HZ 100)
  };
  let calm = 0;
  let last = cpuOf();
  while (calm < 3 && performance.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuOf();
    calm = now - last < 0.1 ? calm + 1 : 0;
    last = now;
  }
  return performance.now() - start;
}

/** CPU of reaped child processes (the `ip` commands), ms: /proc/self/stat cutime + cstime. */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 (cutime, cstime) are at 13 and 14 after "pid (comm) ".
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100;
}

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** The inspector's CPU profiler in this process, started now (node --cpu-prof profiles the whole run, start-up included). */
async function startProfile(): Promise<{ stop(): Promise<object> }> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 200 });
  await post('Profiler.start');
  return {
    stop: async () => {
      const { profile } = (await post('Profiler.stop')) as { profile: object };
      session.disconnect();
      return profile;
    },
  };
}

// ---------------------------------------------------------------- the cluster's objects

/** Node i: pod CIDR 10.(1 + i/256).(i%256).0/24, InternalIP 10.224.x.y, mesh IP 100.96.x.y (.0.0 and .0.1 stay free). */
function nodeOf(i: number): { name: string; podCIDR: string; internalIP: string; meshIP: string } {
  const k = i + 2;
  return {
    name: `node-${i}`,
    podCIDR: `10.${1 + (i >> 8)}.${i & 255}.0/24`,
    internalIP: `10.${224 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`,
    meshIP: `100.96.${k >> 8}.${k & 255}`,
  };
}

const LISTEN_PORT = 51820;

function peerOf(i: number, publicKey: string, change: { port?: number; split?: boolean } = {}): Peer {
  const n = nodeOf(i);
  const prefix = n.podCIDR.slice(0, n.podCIDR.lastIndexOf('.'));
  const allowedIPs = change.split ? [`${prefix}.0/25`, `${prefix}.128/25`] : [n.podCIDR];
  return {
    apiVersion: 'aksmesh.io/v1alpha1',
    kind: 'Peer',
    metadata: { name: n.name },
    spec: { publicKey, endpoint: `${n.internalIP}:${change.port ?? LISTEN_PORT}`, allowedIPs, meshIP: n.meshIP, nodeName: n.name },
  } as Peer;
}

function nodeInfoOf(i: number): NodeInfo {
  const n = nodeOf(i);
  return { name: n.name, podCIDRs: [n.podCIDR], internalIPs: [n.internalIP] };
}

function nodeManifest(i: number): string {
  const n = nodeOf(i);
  return `apiVersion: v1\nkind: Node\nmetadata: {name: ${n.name}}\nspec: {podCIDRs: [${n.podCIDR}]}\nstatus: {addresses: [{type: InternalIP, address: ${n.internalIP}}]}\n`;
}

function peerManifest(p: Peer): string {
  const s = p.spec;
  return `apiVersion: aksmesh.io/v1alpha1\nkind: Peer\nmetadata: {name: ${p.metadata.name}}\nspec: {publicKey: "${s.publicKey}", endpoint: "${s.endpoint}", allowedIPs: [${s.allowedIPs.join(', ')}], meshIP: ${s.meshIP}, nodeName: ${s.nodeName}}\n`;
}

/** What the benchmark changes: the directory's files (written by rename, atomically) or a MemorySource. */
interface Cluster {
  source: PeerSource;
  putPeer(i: number, peer: Peer): void;
  deletePeer(i: number): void;
  close(): void;
}

function directoryCluster(nodes: number, peers: Map<number, Peer>): Cluster {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-bench-change-'));
  const write = (i: number): void => {
    const peer = peers.get(i);
    const tmp = join(dir, `.node-${i}.tmp`);
    writeFileSync(tmp, peer ? `${nodeManifest(i)}---\n${peerManifest(peer)}` : nodeManifest(i));
    renameSync(tmp, join(dir, `node-${i}.yaml`));
  };
  for (let i = 0; i < nodes; i++) write(i);
  // The poll (a stat of every file every pollMs) is background work, not a change's: off here.
  const source = new DirectorySource(dir, { pollMs: 3_600_000 });
  return {
    source,
    putPeer: (i, peer) => {
      peers.set(i, peer);
      write(i);
    },
    deletePeer: (i) => {
      peers.delete(i);
      write(i);
    },
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function memoryCluster(nodes: number, peers: Map<number, Peer>): Cluster {
  const source = new MemorySource({ nodes: Array.from({ length: nodes }, (_, i) => nodeInfoOf(i)), peers: [...peers.values()] });
  return {
    source,
    putPeer: (i, peer) => {
      peers.set(i, peer);
      source.putPeer(peer);
    },
    deletePeer: (i) => {
      peers.delete(i);
      source.deletePeer(nodeOf(i).name);
    },
    close: () => undefined,
  };
}

// ---------------------------------------------------------------- one size

interface Sample {
  cpuMs: number;
  childCpuMs: number;
  uapiBytes: number;
  gets: number;
  sets: number;
  passes: number;
}

interface SizeResult {
  nodes: number;
  devicePeers: number;
  convergeMs: number;
  convergeCpuMs: number;
  kinds: Record<Kind, { cpuMs: Stats; childCpuMs: Stats; uapiBytes: Stats; gets: number; sets: number; passes: number }>;
  all: { cpuMs: Stats; uapiBytes: Stats };
  /** Longest event-loop block during the changes, ms. */
  maxBlockMs: number;
  /** Longest event-loop block from start to converged (the first full pass), ms. */
  startBlockMs: number;
}

const quietLog = (warnings: string[]): Logger & { isLevelEnabled(level: string): boolean } => ({
  error: (m: string, meta?: Record<string, unknown>) => warnings.push(`error ${m} ${JSON.stringify(meta ?? {})}`),
  warn: (m: string, meta?: Record<string, unknown>) => warnings.push(`warn ${m} ${JSON.stringify(meta ?? {})}`),
  info: () => undefined,
  debug: () => undefined,
  // Like the agent at its default level (info): debug lines are not even formatted.
  isLevelEnabled: (level: string) => level !== 'debug',
});

async function runSize(box: Sandbox, opts: Options, nodes: number, index: number, bytes: SocketBytes, log: (line: string) => void): Promise<SizeResult> {
  const ns = await box.addNamespace(`c${index}`);
  // The peers' endpoints lead into a veth pair inside the namespace, where nobody answers ARP and
  // packets vanish: wireguard-go's handshake attempts (it prompts every peer at start) then fail
  // silently instead of logging an error line per peer every 5 s for 90 s, which this process
  // would read and log during the measurement. (No `dummy` links in every kernel.)
  // Through one gateway with a permanent neighbour entry: no ARP per endpoint (thousands would
  // overflow the neighbour table); the far end drops frames not addressed to it.
  const sink = box.ifName('ws', `${index}a`);
  const sinkPeer = box.ifName('ws', `${index}b`);
  await box.ip(ns, 'link', 'add', sink, 'type', 'veth', 'peer', 'name', sinkPeer);
  await box.ip(ns, 'addr', 'add', '192.0.2.1/30', 'dev', sink);
  await box.ip(ns, 'link', 'set', sink, 'up');
  await box.ip(ns, 'link', 'set', sinkPeer, 'up');
  await box.ip(ns, 'neigh', 'add', '192.0.2.2', 'lladdr', '02:00:00:00:00:02', 'dev', sink, 'nud', 'permanent');
  await box.ip(ns, 'route', 'add', '10.224.0.0/12', 'via', '192.0.2.2', 'dev', sink);
  const keyDir = mkdtempSync(join(tmpdir(), 'aks-mesh-bench-key-'));
  const warnings: string[] = [];
  const requests = { get: 0, set: 0 };
  let lastSync: { result: SyncResult; topology: Topology } | null = null;
  const waiters = new Set<{ check: (result: SyncResult, topology: Topology) => boolean; resolve: (end: { cpu: number; child: number; bytes: number }) => void }>();
  let passes = 0;

  const extra = nodes; // a Node with no Peer: the one a Peer is added for, then deleted
  const keys = Array.from({ length: nodes + 1 }, () => randomBytes(32).toString('base64'));
  const peers = new Map<number, Peer>();
  for (let i = 1; i < nodes; i++) peers.set(i, peerOf(i, keys[i]));

  let cluster: Cluster | null = null;
  let member: MeshMember | null = null;
  try {
    // Its own Peer as its agent would have registered it (directory mode has no API server to register in).
    const memberOptions = {
      role: agentRole({ nodeName: 'node-0', listenPort: LISTEN_PORT }),
      name: 'node-0',
      nodeName: 'node-0',
      interfaceName: box.ifName('wc', String(index)),
      listenPort: LISTEN_PORT,
      meshCIDR: '100.96.0.0/16',
      fwmark: DEFAULT_FWMARK,
      table: 51820,
      rulePriority: 5280,
      mtu: 1420,
      keyPath: join(keyDir, 'private.key'),
      wireguard: 'spawn' as const,
      wireguardBinary: opts.binary,
      netns: ns,
      resyncMs: 0,
      applyMode: opts.applyMode,
      log: quietLog(warnings),
      onRequest: (op: 'get' | 'set') => void requests[op]++,
      onSync: (result: SyncResult, topology: Topology) => {
        passes++;
        lastSync = { result, topology };
        for (const w of waiters) {
          if (!w.check(result, topology)) continue;
          waiters.delete(w);
          // The rest of afterSync runs synchronously after this listener: measure once it has.
          queueMicrotask(() => w.resolve({ cpu: cpuMs(), child: childrenCpuMs(), bytes: bytes.total() }));
        }
      },
    };
    const self = nodeOf(0);
    const ownKey = publicKeyOf(loadOrCreatePrivateKey(memberOptions.keyPath).privateKey);
    peers.set(0, {
      apiVersion: 'aksmesh.io/v1alpha1',
      kind: 'Peer',
      metadata: { name: self.name },
      spec: { publicKey: ownKey, endpoint: `${self.internalIP}:${LISTEN_PORT}`, allowedIPs: [self.podCIDR], meshIP: self.meshIP, nodeName: self.name },
    } as Peer);
    cluster = opts.source === 'directory' ? directoryCluster(nodes + 1, peers) : memoryCluster(nodes + 1, peers);
    member = new MeshMember({ ...memberOptions, source: cluster.source });
    box.trackPid(() => (member?.wireguard as { pid?: number } | undefined)?.pid);

    const desiredKeys = (): Set<string> => new Set([...peers.entries()].filter(([i]) => i !== 0).map(([, p]) => p.spec.publicKey));
    const deviceHoldsDesired = (result: SyncResult): boolean => {
      const want = desiredKeys();
      const live = result.live?.peers ?? [];
      return !result.error && live.length === want.size && live.every((p) => want.has(p.publicKey));
    };
    const until = (check: (result: SyncResult, topology: Topology) => boolean, timeoutMs: number, what: string): Promise<{ cpu: number; child: number; bytes: number }> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(w);
          const r = lastSync?.result;
          reject(new Error(`${nodes} nodes: ${what} did not happen within ${timeoutMs} ms (last pass: ${r ? `${r.live?.peers.length ?? 0} peers live, error ${r.error?.message ?? 'none'}` : 'none'}; ${warnings.slice(-3).join(' | ')})`));
        }, timeoutMs);
        const w = {
          check,
          resolve: (end: { cpu: number; child: number; bytes: number }) => {
            clearTimeout(timer);
            resolve(end);
          },
        };
        waiters.add(w);
      });

    log(`${nodes} nodes: starting the member (${nodes - 1} peers on its device)...`);
    const startHistogram = monitorEventLoopDelay({ resolution: 10 });
    startHistogram.enable();
    const t0 = performance.now();
    const c0 = cpuMs();
    const converged = until((result, topology) => deviceHoldsDesired(result) && (member as MeshMember).converged(result, topology), 600_000, 'convergence');
    await member.start();
    const startEnd = await converged;
    const convergeMs = performance.now() - t0;
    const convergeCpuMs = startEnd.cpu - c0;
    startHistogram.disable();
    await member.reconciler.idle();
    // wireguard-go prompts a handshake with every peer at start and retries for 90 s: with
    // thousands of peers it is busy enough to delay UAPI answers on a small machine. The changes
    // are measured once it has calmed down (its CPU under 10% for 3 s in a row, at most 120 s).
    const quietMs = await waitQuiet((member.wireguard as { pid?: number }).pid, 120_000);
    log(`${nodes} nodes: converged in ${(convergeMs / 1000).toFixed(1)} s; wireguard-go quiet ${(quietMs / 1000).toFixed(0)} s later`);

    // The changes.
    const samples: Record<Kind, Sample[]> = { endpoint: [], allowedIPs: [], add: [], delete: [] };
    const histogram = monitorEventLoopDelay({ resolution: 10 });
    const onDevice = (publicKey: string, test: (p: { endpoint: string | null; allowedIPs: string[] } | undefined) => boolean) => (result: SyncResult): boolean =>
      !result.error && test(result.live?.peers.find((p) => p.publicKey === publicKey));
    log(`${nodes} nodes: ${opts.warmup} + ${opts.runs} rounds of ${KINDS.join(', ')}...`);
    const profiler = opts.profile ? await startProfile() : null;
    for (let round = -opts.warmup; round < opts.runs; round++) {
      if (round === 0) histogram.enable();
      for (const kind of KINDS) {
        // A different Peer each round (never this member's own, never the extra Node's).
        const i = 1 + ((round + opts.warmup) * 7919 + 13) % (nodes - 1);
        let check: (result: SyncResult) => boolean;
        let change: () => void;
        switch (kind) {
          case 'endpoint': {
            // The other of two ports than this Peer has now: always a change.
            const now = (peers.get(i) as Peer).spec.endpoint ?? '';
            const p = peerOf(i, keys[i], { port: now.endsWith(`:${LISTEN_PORT}`) ? LISTEN_PORT + 1 : LISTEN_PORT, split: (peers.get(i) as Peer).spec.allowedIPs.length > 1 });
            const want = p.spec.endpoint as string;
            change = () => cluster?.putPeer(i, p);
            check = onDevice(keys[i], (d) => d?.endpoint === want);
            break;
          }
          case 'allowedIPs': {
            // Its /24 as two /25s, or back.
            const now = peers.get(i) as Peer;
            const split = now.spec.allowedIPs.length === 1;
            const p = peerOf(i, keys[i], { split, port: Number((now.spec.endpoint ?? '').split(':')[1]) });
            const n = split ? 3 : 2;
            change = () => cluster?.putPeer(i, p);
            check = onDevice(keys[i], (d) => d?.allowedIPs.length === n);
            break;
          }
          case 'add':
            change = () => cluster?.putPeer(extra, peerOf(extra, keys[extra]));
            check = onDevice(keys[extra], (d) => d !== undefined);
            break;
          case 'delete':
            change = () => cluster?.deletePeer(extra);
            check = onDevice(keys[extra], (d) => d === undefined);
            break;
        }
        const before = { cpu: cpuMs(), child: childrenCpuMs(), bytes: bytes.total(), gets: requests.get, sets: requests.set, passes };
        const landed = until(check, 60_000, `the ${kind} change of node-${kind === 'add' || kind === 'delete' ? extra : i}`);
        change();
        const end = await landed;
        if (round >= 0) {
          samples[kind].push({
            cpuMs: end.cpu - before.cpu,
            childCpuMs: end.child - before.child,
            uapiBytes: end.bytes - before.bytes,
            gets: requests.get - before.gets,
            sets: requests.set - before.sets,
            passes: passes - before.passes,
          });
        }
        // Let whatever the change left behind (a second watch event, route processes) finish before the next one.
        await member.reconciler.idle();
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    histogram.disable();
    if (profiler && opts.profile) {
      const file = join(opts.profile, `change-${nodes}.cpuprofile`);
      writeFileSync(file, JSON.stringify(await profiler.stop()));
      log(`${nodes} nodes: profile of the changes in ${file}`);
    }

    // The device must hold exactly what the cluster says (and the last pass must agree).
    const state = await member.wireguard.client.get();
    const want = desiredKeys();
    if (state.peers.length !== want.size || !state.peers.every((p) => want.has(p.publicKey))) {
      throw new Error(`${nodes} nodes: the device holds ${state.peers.length} peers, expected ${want.size}`);
    }
    const refusals = warnings.filter((w) => w.startsWith('warn refused '));
    if (refusals.length) throw new Error(`${nodes} nodes: objects were refused: ${refusals.slice(0, 3).join(' | ')}`);

    const sum = (s: Sample[], f: (x: Sample) => number): number => s.reduce((t, x) => t + f(x), 0);
    const kinds = Object.fromEntries(
      KINDS.map((k) => [
        k,
        {
          cpuMs: stats(samples[k].map((s) => s.cpuMs)),
          childCpuMs: stats(samples[k].map((s) => s.childCpuMs)),
          uapiBytes: stats(samples[k].map((s) => s.uapiBytes)),
          gets: sum(samples[k], (s) => s.gets) / samples[k].length,
          sets: sum(samples[k], (s) => s.sets) / samples[k].length,
          passes: sum(samples[k], (s) => s.passes) / samples[k].length,
        },
      ]),
    ) as SizeResult['kinds'];
    const all = KINDS.flatMap((k) => samples[k]);
    return {
      nodes,
      devicePeers: nodes - 1,
      convergeMs,
      convergeCpuMs,
      kinds,
      all: { cpuMs: stats(all.map((s) => s.cpuMs)), uapiBytes: stats(all.map((s) => s.uapiBytes)) },
      maxBlockMs: histogram.max / 1e6,
      startBlockMs: startHistogram.max / 1e6,
    };
  } finally {
    await member?.stop().catch(() => undefined);
    cluster?.close();
    rmSync(keyDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

interface Result {
  meta: { wireguardGo: string; node: string; cpu: string; source: string; applyMode: string; runs: number; warmup: number };
  sizes: SizeResult[];
}

function render(res: Result): string {
  const ref = res.sizes[0];
  const out: string[] = [
    'Benchmark 2: cost of one change (bench/change.ts)',
    `  wireguard-go ${res.meta.wireguardGo}; node ${res.meta.node}; ${res.meta.cpu}`,
    `  source ${res.meta.source}; apply mode ${res.meta.applyMode}; ${res.meta.runs} changes of each kind per size after ${res.meta.warmup} warm-up rounds`,
    `  CPU: this process (user + system) from the change to the end of its pass; ip: the ip processes it spawned; bytes: UAPI sent + received`,
    '',
  ];
  const rows: string[][] = [];
  for (const s of res.sizes) {
    const r = res.sizes[0];
    for (const k of KINDS) {
      const x = s.kinds[k];
      const y = r.kinds[k];
      rows.push([
        `${int(s.nodes)} nodes, ${k}`,
        fixed(x.cpuMs.median),
        fixed(x.cpuMs.p95),
        ratio(x.cpuMs.median, y.cpuMs.median),
        fixed(x.childCpuMs.median, 0),
        int(x.uapiBytes.median),
        int(x.uapiBytes.p95),
        ratio(x.uapiBytes.median, y.uapiBytes.median),
        `${fixed(x.gets, 1)}/${fixed(x.sets, 1)}`,
        fixed(x.passes, 1),
      ]);
    }
    rows.push([
      `${int(s.nodes)} nodes, all`,
      fixed(s.all.cpuMs.median),
      fixed(s.all.cpuMs.p95),
      ratio(s.all.cpuMs.median, ref.all.cpuMs.median),
      '',
      int(s.all.uapiBytes.median),
      int(s.all.uapiBytes.p95),
      ratio(s.all.uapiBytes.median, ref.all.uapiBytes.median),
      '',
      '',
    ]);
  }
  out.push(table(['change', 'CPU ms p50', 'p95', `vs ${int(ref.nodes)}`, 'ip ms', 'UAPI B p50', 'p95', `vs ${int(ref.nodes)}`, 'get/set', 'passes'], rows));
  out.push('');
  out.push(
    table(
      ['nodes', 'device peers', 'start to converged s', 'its CPU s', 'longest block, start ms', 'longest block, changes ms'],
      res.sizes.map((s) => [int(s.nodes), int(s.devicePeers), fixed(s.convergeMs / 1000, 1), fixed(s.convergeCpuMs / 1000, 1), fixed(s.startBlockMs, 1), fixed(s.maxBlockMs, 1)]),
    ),
  );
  out.push('');
  return out.join('\n');
}

async function main(): Promise<number> {
  let opts: Options | null;
  try {
    opts = readOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (opts === null) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const unavailable = networkTestsUnavailable();
  if (unavailable) {
    process.stderr.write(`bench/change.ts ${unavailable}\n`);
    return 1;
  }
  const log = (line: string): void => void process.stderr.write(`# ${line}\n`);
  const box = new Sandbox();
  const bytes = new SocketBytes();
  try {
    const sizes: SizeResult[] = [];
    for (const [i, n] of opts.sizes.entries()) sizes.push(await runSize(box, opts, n, i, bytes, log));
    const cpu = cpus();
    const result: Result = {
      meta: {
        wireguardGo: `${wireguardGoVersion(opts.binary)} (${opts.binary})`,
        node: process.version,
        cpu: `${cpu.length} x ${cpu[0]?.model.trim() ?? 'unknown'}`,
        source: opts.source,
        applyMode: opts.applyMode,
        runs: opts.runs,
        warmup: opts.warmup,
      },
      sizes,
    };
    process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : render(result));
    return 0;
  } finally {
    bytes.close();
    await box.cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench/change.ts failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
