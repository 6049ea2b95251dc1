/**
 * Convergence at scale (issue 10, benchmark 1): how long a Peer change takes from the API server
 * accepting it until the `set` has landed on every real agent, on a mesh of N nodes.
 *
 *   node bench/convergence.ts [--nodes 1000] [--agents 5] [--changes 200] [--rate 10/s]
 *                             [--modes incremental,replace] [--resync 60] [--seed 1]
 *                             [--concurrency 16] [--keep-logs] [--json]
 *
 * Setup: sandbox/cluster.ts MeshCluster with `--agents` real nodes (each a network namespace on one
 * underlay bridge with its own `aks-mesh agent` process driving its own wireguard-go, started with
 * `--log-format json --log-level debug`) against a real kube-apiserver + etcd with the CRDs and the
 * shipped RBAC, exactly as the e2e tests have them. The other `--nodes` minus `--agents` nodes are
 * simulated: a Node object (pod CIDR 10.248.0.0/13 carved into /24s, InternalIP in 198.19.0.0/16)
 * and its Peer (random public key, endpoint <InternalIP>:51820, meshIP in 100.96.128.0/17), written
 * through the API. No simulated peer has a persistent keepalive and nothing sends traffic, so
 * wireguard-go sends nothing to them (the node namespaces have no route to 198.19.0.0/16 anyway).
 *
 * The agents start while no simulated Peer exists (a starting agent prompts a handshake with every
 * peer on its device, and wireguard-go would retry towards peers that never answer, logging each
 * failure, for 90 s: load a real cluster does not have); then the simulated Peers are written, and
 * once every real agent's device holds every peer, each mode runs the same change sequence (a
 * seeded mix of Peer creates, endpoint changes, allowedIPs changes within the Node's pod CIDR and
 * Peer deletes; a delete keeps its Node, so a later create brings the Peer back with a new key),
 * one write every 1/rate seconds whatever the answers take, on simulated Peers only, never the
 * same Peer twice within `--cooldown` writes:
 *   - incremental: the agents as they ship (one small `set` per changed peer);
 *   - replace: the same agents restarted with `--apply-mode replace` (every change rewrites the
 *     whole device with replace_peers, as the Go prototype and Kilo do): the reference.
 * Between modes the simulated Peers are deleted, the agents restarted in the next mode, and the
 * simulated Peers written again in their starting state.
 *
 * Latency of a change = max over the real agents of (landed - t0): t0 is when the API server's
 * response to the write arrived (client side), landed is the timestamp of the agent's debug line
 * 'applied' {op, publicKey} for that peer's key (native/log.ts timestamps, millisecond precision,
 * the same machine clock). In replace mode the line is 'applied' {op: 'replace'} without a key: when
 * the agent logs 'replace carries' {publicKeys} before each rewrite (the keys whose put or remove
 * the rewrite stands for), a change lands with the first rewrite after a line naming its key
 * (exact); otherwise with the first rewrite logged at or after the write was sent, a lower bound
 * (a rewrite already under way may not carry it, so the reference can only look faster than it
 * is), and the output says which.
 * Without 'applied' lines (agents older than issue 10) the pass's 'reconciled' info line is used the
 * same way, and the table says so.
 *
 * At the end of each mode every agent's device is read over UAPI and must hold exactly the desired
 * peers (keys; endpoints and allowed IPs of the simulated ones), so a broken setup cannot print
 * plausible numbers. CPU is the agents' own (utime + stime from /proc/<pid>/stat) over the phase,
 * and their wireguard-go's. Everything (namespaces, processes, the API server) is removed at the
 * end, on failure and on Ctrl-C (MeshCluster's hooks). Benchmarks print numbers; nothing here
 * asserts a time.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { MeshCluster, REPO_ROOT } from '../sandbox/cluster.ts';
import type { ClusterNode } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { createNode, customApi } from '../sandbox/kube.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { API_VERSION, GROUP, VERSION } from '../mesh/index.ts';
import type { PeerSpec } from '../mesh/index.ts';
import { UapiClient, findWireguardGo, wireguardGoVersion } from '../native/index.ts';
import type { DeviceState } from '../native/index.ts';
import { base64Key, logOffset, readLogEntries } from './lib/agentlog.ts';
import type { LogEntry } from './lib/agentlog.ts';
import { cpuSeconds, memoryMiB } from './lib/procstat.ts';
import { prng, ratio, summarize, table } from './lib/stats.ts';
import type { Summary } from './lib/stats.ts';

/** 10.248.0.0/13 holds 2,048 /24 pod CIDRs; the real nodes keep MeshCluster's 10.244.i.0/24. */
const MAX_SIMULATED = 2048;
const SIM_PORT = 51820;

type Mode = 'incremental' | 'replace';

interface Options {
  nodes: number;
  agents: number;
  changes: number;
  rate: number;
  modes: Mode[];
  resync: number;
  seed: number;
  concurrency: number;
  cooldown: number;
  convergeTimeoutMs: number;
  quietSeconds: number;
  keepLogs: boolean;
  json: boolean;
}

const USAGE = `usage: node bench/convergence.ts [options]
  --nodes N          Node objects and Peers in all, real ones included (default 1000)
  --agents N         real agents, each with its own wireguard-go in its own namespace (default 5, at most 99)
  --changes N        Peer writes per mode (default 200)
  --rate R           writes per second, "10" or "10/s" (default 10)
  --modes LIST       incremental,replace (default both; replace is the full-rewrite reference)
  --resync S         the agents' --resync seconds (default 60, the agent's own default)
  --seed N           seed of the change sequence (default 1)
  --concurrency N    parallel API writes while creating the simulated nodes (default 16)
  --cooldown N       writes between two changes of the same Peer (default 50)
  --converge-timeout S  how long devices may take to hold every peer (default 300)
  --quiet S          before measuring, wait until wireguard-go logged nothing for S seconds (default 6, at most 120 s in all)
  --keep-logs        keep the agents' logs (the temp dir is printed)
  --json             print one JSON object instead of tables
  -h, --help         this text`;

function readOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      nodes: { type: 'string' },
      agents: { type: 'string' },
      changes: { type: 'string' },
      rate: { type: 'string' },
      modes: { type: 'string' },
      resync: { type: 'string' },
      seed: { type: 'string' },
      concurrency: { type: 'string' },
      cooldown: { type: 'string' },
      'converge-timeout': { type: 'string' },
      quiet: { type: 'string' },
      'keep-logs': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  const agents = whole(values.agents, 5, '--agents', 1, 99);
  const nodes = whole(values.nodes, 1000, '--nodes', agents + 2, agents + MAX_SIMULATED);
  const rateText = (values.rate ?? '10').replace(/\/s$/, '');
  const rate = Number(rateText);
  if (!Number.isFinite(rate) || rate <= 0 || rate > 1000) throw new Error(`--rate: ${values.rate} is not a rate between 0 and 1000 per second`);
  const modes = (values.modes ?? 'incremental,replace').split(',').map((m) => m.trim());
  for (const m of modes) if (m !== 'incremental' && m !== 'replace') throw new Error(`--modes: ${m} is neither incremental nor replace`);
  return {
    nodes,
    agents,
    changes: whole(values.changes, 200, '--changes', 1, 100_000),
    rate,
    modes: modes as Mode[],
    resync: whole(values.resync, 60, '--resync', 0, 86_400),
    seed: whole(values.seed, 1, '--seed', 0, 2 ** 31),
    concurrency: whole(values.concurrency, 16, '--concurrency', 1, 256),
    cooldown: whole(values.cooldown, 50, '--cooldown', 0, 100_000),
    convergeTimeoutMs: whole(values['converge-timeout'], 300, '--converge-timeout', 1, 3600) * 1000,
    quietSeconds: whole(values.quiet, 6, '--quiet', 0, 120),
    keepLogs: values['keep-logs'],
    json: values.json,
  };
}

function whole(text: string | undefined, fallback: number, name: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: ${text} is not a whole number from ${min} to ${max}`);
  return n;
}

// ---------------------------------------------------------------- the simulated nodes

interface SimNode {
  name: string;
  podCIDR: string;
  /** Its pod CIDR as two /25s: the other allowedIPs value a change toggles to. */
  halves: string[];
  internalIP: string;
  meshIP: string;
}

/** What a simulated node's Peer says (null: it has none). */
interface SimPeer {
  publicKey: string;
  endpoint: string;
  allowedIPs: string[];
}

function simNode(j: number): SimNode {
  const a = 248 + (j >> 8);
  const b = j & 255;
  const host = `${Math.floor(j / 250)}.${1 + (j % 250)}`;
  return {
    name: `sim-${String(j).padStart(4, '0')}`,
    podCIDR: `10.${a}.${b}.0/24`,
    halves: [`10.${a}.${b}.0/25`, `10.${a}.${b}.128/25`],
    internalIP: `198.19.${host}`,
    meshIP: '',
  };
}

/** The real nodes' mesh IPs, which their agents chose (allocateMeshIP): the simulated ones must differ. */
async function realMeshIPs(api: k8s.CustomObjectsApi, realNodes: ClusterNode[]): Promise<Set<string>> {
  const taken = new Set<string>();
  for (const n of realNodes) {
    const peer = (await api.getClusterCustomObject({ ...PEERS, name: n.name })) as { spec?: PeerSpec };
    if (peer.spec?.meshIP) taken.add(peer.spec.meshIP);
  }
  return taken;
}

/** Mesh IPs for the simulated nodes from 100.96.128.1 on, none of them `taken` (so none is refused as a duplicate). */
function assignMeshIPs(nodes: SimNode[], taken: Set<string>): void {
  let k = 0;
  for (const n of nodes) {
    do {
      n.meshIP = `100.96.${128 + Math.floor(k / 250)}.${1 + (k % 250)}`;
      k++;
    } while (taken.has(n.meshIP));
  }
}

/** A WireGuard public key: wireguard-go takes any 32 bytes, and nobody needs the private half. */
function randomKey(): string {
  return randomBytes(32).toString('base64');
}

function peerSpec(node: SimNode, p: SimPeer): PeerSpec {
  return { publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: p.allowedIPs, meshIP: node.meshIP, nodeName: node.name };
}

// ---------------------------------------------------------------- the change sequence

type ChangeKind = 'create' | 'endpoint' | 'allowedIPs' | 'delete';

interface Change {
  index: number;
  kind: ChangeKind;
  node: SimNode;
  /** The Peer after the change (null after a delete). */
  after: SimPeer | null;
  /** The key whose `set` the agents must log: the new key (create, update) or the removed one. */
  publicKey: string;
}

/**
 * A seeded sequence over the starting state: about 20% creates (only of Peers deleted earlier),
 * 20% deletes, 30% endpoint and 30% allowedIPs changes; a Peer is left alone for `cooldown` writes
 * after each change, so every change is its own `set` and lines are matched without ambiguity.
 */
function changeSequence(nodes: SimNode[], start: Map<string, SimPeer | null>, count: number, seed: number, cooldown: number): Change[] {
  const rand = prng(seed);
  const state = new Map(start);
  const lastTouched = new Map<string, number>();
  const out: Change[] = [];
  const free = (i: number) => (n: SimNode) => i - (lastTouched.get(n.name) ?? -Infinity) > cooldown;
  let port = SIM_PORT;
  for (let i = 0; i < count; i++) {
    const eligible = nodes.filter(free(i));
    if (eligible.length === 0) throw new Error(`--cooldown ${cooldown}: no simulated Peer is free to change at write ${i} (fewer nodes or a smaller cooldown)`);
    const absent = eligible.filter((n) => state.get(n.name) === null);
    const present = eligible.filter((n) => state.get(n.name) !== null);
    const r = rand();
    let kind: ChangeKind = r < 0.2 ? 'create' : r < 0.4 ? 'delete' : r < 0.7 ? 'endpoint' : 'allowedIPs';
    if (kind === 'create' && absent.length === 0) kind = 'endpoint';
    if (kind !== 'create' && present.length === 0) kind = 'create';
    const pool = kind === 'create' ? absent : present;
    const node = pool[Math.floor(rand() * pool.length)];
    const before = state.get(node.name) ?? null;
    let after: SimPeer | null;
    if (kind === 'create') after = { publicKey: randomKey(), endpoint: `${node.internalIP}:${SIM_PORT}`, allowedIPs: [node.podCIDR] };
    else if (kind === 'delete') after = null;
    else if (kind === 'endpoint') {
      port = port >= 60_000 ? SIM_PORT + 1 : port + 1;
      after = { ...(before as SimPeer), endpoint: `${node.internalIP}:${port}` };
    } else {
      const whole = (before as SimPeer).allowedIPs.length === 1;
      after = { ...(before as SimPeer), allowedIPs: whole ? node.halves : [node.podCIDR] };
    }
    out.push({ index: i, kind, node, after, publicKey: (after ?? (before as SimPeer)).publicKey });
    state.set(node.name, after);
    lastTouched.set(node.name, i);
  }
  return out;
}

// ---------------------------------------------------------------- API writes

const PEERS = { group: GROUP, version: VERSION, plural: 'peers' };
const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

async function writeChange(api: k8s.CustomObjectsApi, c: Change): Promise<void> {
  const name = c.node.name;
  if (c.kind === 'create') {
    const after = c.after as SimPeer;
    await api.createClusterCustomObject({ ...PEERS, body: { apiVersion: API_VERSION, kind: 'Peer', metadata: { name }, spec: peerSpec(c.node, after) } });
  } else if (c.kind === 'delete') {
    await api.deleteClusterCustomObject({ ...PEERS, name });
  } else {
    const after = c.after as SimPeer;
    const spec = c.kind === 'endpoint' ? { endpoint: after.endpoint } : { allowedIPs: after.allowedIPs };
    await api.patchClusterCustomObject({ ...PEERS, name, body: { spec } }, mergePatch);
  }
}

/** Bring a simulated Peer from `now` to `want` (create, delete, or a merge patch of every field we vary). */
async function putBack(api: k8s.CustomObjectsApi, node: SimNode, now: SimPeer | null, want: SimPeer | null): Promise<void> {
  if (now === null && want === null) return;
  if (want === null) return void (await api.deleteClusterCustomObject({ ...PEERS, name: node.name }));
  if (now === null) {
    await api.createClusterCustomObject({ ...PEERS, body: { apiVersion: API_VERSION, kind: 'Peer', metadata: { name: node.name }, spec: peerSpec(node, want) } });
    return;
  }
  if (now.publicKey === want.publicKey && now.endpoint === want.endpoint && now.allowedIPs.join() === want.allowedIPs.join()) return;
  await api.patchClusterCustomObject({ ...PEERS, name: node.name, body: { spec: { publicKey: want.publicKey, endpoint: want.endpoint, allowedIPs: want.allowedIPs } } }, mergePatch);
}

/** Run `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>, progress?: (done: number) => void): Promise<void> {
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
      done++;
      if (progress && done % 100 === 0) progress(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// ---------------------------------------------------------------- devices

interface ExpectedPeer {
  endpoint: string;
  /** Sorted; null: not checked (a real node's Peer, whose mesh IP its agent chose). */
  allowedIPs: string[] | null;
}

/** What every real agent's device must hold besides its own key: the other real nodes and every simulated Peer. */
function expectedPeers(realNodes: ClusterNode[], self: ClusterNode, nodes: SimNode[], state: Map<string, SimPeer | null>): Map<string, ExpectedPeer> {
  const out = new Map<string, ExpectedPeer>();
  for (const n of realNodes) if (n !== self) out.set(n.publicKey, { endpoint: n.endpoint, allowedIPs: null });
  for (const node of nodes) {
    const p = state.get(node.name);
    if (p) out.set(p.publicKey, { endpoint: p.endpoint, allowedIPs: [...p.allowedIPs, `${node.meshIP}/32`].sort() });
  }
  return out;
}

/** How a device differs from what it must hold (at most a few examples), or '' when it holds exactly that. */
function deviceProblems(device: DeviceState, want: Map<string, ExpectedPeer>): string {
  const problems: string[] = [];
  let missing = 0;
  let extra = 0;
  let wrong = 0;
  const seen = new Set<string>();
  for (const p of device.peers) {
    seen.add(p.publicKey);
    const w = want.get(p.publicKey);
    if (!w) {
      if (extra++ < 3) problems.push(`extra peer ${p.publicKey}`);
      continue;
    }
    const allowed = [...p.allowedIPs].sort();
    if (p.endpoint !== w.endpoint || (w.allowedIPs !== null && allowed.join() !== w.allowedIPs.join())) {
      if (wrong++ < 3) problems.push(`peer ${p.publicKey}: endpoint ${p.endpoint} allowed ${allowed.join(',')}, want ${w.endpoint} ${w.allowedIPs?.join(',') ?? ''}`);
    }
  }
  for (const key of want.keys()) if (!seen.has(key) && missing++ < 3) problems.push(`missing peer ${key}`);
  if (missing + extra + wrong === 0) return '';
  return `${device.peers.length} peers, want ${want.size}: ${missing} missing, ${extra} extra, ${wrong} different (${problems.join('; ')})`;
}

/** Wait until every real agent's device holds exactly the desired peers (read over UAPI). */
async function waitConverged(cluster: MeshCluster, realNodes: ClusterNode[], nodes: SimNode[], state: Map<string, SimPeer | null>, timeoutMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  const wants = new Map(realNodes.map((n) => [n.name, expectedPeers(realNodes, n, nodes, state)]));
  const pending = new Set(realNodes.map((n) => n.name));
  await cluster.waitFor(
    what,
    async () => {
      const problems: string[] = [];
      for (const n of realNodes) {
        if (!pending.has(n.name)) continue;
        try {
          const problem = deviceProblems(await new UapiClient(n.socketPath, { timeoutMs: 10_000 }).get(), wants.get(n.name) as Map<string, ExpectedPeer>);
          if (problem) problems.push(`${n.name}: ${problem}`);
          else pending.delete(n.name);
        } catch (err) {
          problems.push(`${n.name}: ${(err as Error).message}`);
        }
      }
      // A thrown error is what waitFor shows as "last" on a timeout.
      if (problems.length) throw new Error(problems.join('\n'));
      return true;
    },
    { timeoutMs, intervalMs: 1000 },
  );
  // Once converged, a device must stay so: read them all again (a late stray write shows here).
  for (const n of realNodes) {
    const problem = deviceProblems(await new UapiClient(n.socketPath, { timeoutMs: 10_000 }).get(), wants.get(n.name) as Map<string, ExpectedPeer>);
    if (problem) throw new Error(`${n.name} no longer holds the desired peers after converging: ${problem}`);
  }
  return performance.now() - t0;
}

/**
 * Wait until wireguard-go has gone quiet in every agent's log (no line for `quietMs`, at most
 * `capMs`). After a start the agent prompts a handshake with every peer (native/wireguard-go
 * prompt.ts); towards simulated peers, which never answer, wireguard-go retries every 5 s for 90 s
 * and logs each failure, which the agent relays: load that a real cluster (where peers answer)
 * does not have, so it must be over before measuring. Returns how long it waited.
 */
async function waitQuiet(realNodes: ClusterNode[], offsets: number[], quietMs: number, capMs: number): Promise<number> {
  const t0 = Date.now();
  const read = offsets.slice();
  let last = t0;
  for (;;) {
    for (let i = 0; i < realNodes.length; i++) {
      const entries = readLogEntries(realNodes[i].logFile, read[i]);
      read[i] = logOffset(realNodes[i].logFile);
      for (const e of entries) if (e.message === 'wireguard-go') last = Math.max(last, e.at);
    }
    const now = Date.now();
    if (now - last >= quietMs || now - t0 >= capMs) return now - t0;
    await sleep(1000);
  }
}

// ---------------------------------------------------------------- one phase

interface Write {
  change: Change;
  /** Date.now() just before the request was sent. */
  sentAt: number;
  /** Date.now() when the API server's response arrived: t0. */
  acceptedAt: number;
}

type Landing = 'key' | 'replace' | 'pass';

interface PhaseResult {
  mode: Mode;
  changes: number;
  /** Changes seen landed on every real agent. */
  landed: number;
  /** How `landed` was read from the logs. */
  landing: Landing;
  /** Replace mode: whether the agents named the keys each rewrite carries (exact), or not (a lower bound). */
  exactReplace: boolean;
  latency: Summary;
  /** API write round trip (sent → response), for context. */
  apiMs: Summary;
  /** Changes whose line came before the response arrived (latency counted as 0). */
  beforeResponse: number;
  /** Agent CPU seconds over the phase, per agent. */
  agentCpuS: number[];
  wireguardGoCpuS: number[];
  /** Agents' RSS and peak RSS (MiB) at the end of the phase. */
  memoryMiB: Array<{ rss: number; peak: number } | null>;
  phaseS: number;
  /** Time from the last write to every device verified (UAPI reads). */
  verifyS: number;
  /** Every landed change (--json only): its write, kind, latency, and the times (ms since the epoch) it was sent, answered and logged by each agent. */
  samples: Array<{ write: number; kind: ChangeKind; ms: number; sentAt: number; acceptedAt: number; landedAt: number[] }>;
  /** The first changes that never landed on some agent (for the report). */
  missing: string[];
}

/**
 * How landing is read in a mode: our agents log 'applied' {publicKey} per peer; in replace mode
 * they log 'applied' {op: 'replace'} per rewrite; agents without those lines are matched on the
 * pass's 'reconciled' line.
 */
function landingOf(mode: Mode, entries: LogEntry[][]): Landing {
  const applied = entries.flat().filter((e) => e.message === 'applied');
  if (mode === 'replace') {
    if (applied.some((e) => e.fields.op === 'replace')) return 'replace';
    if (applied.length) throw new Error("replace mode: the agents logged per-peer 'applied' lines and no rewrite: --apply-mode replace did not reach the reconciler (MemberOptions.applyMode)");
    return 'pass';
  }
  return applied.some((e) => typeof e.fields.publicKey === 'string') ? 'key' : 'pass';
}

/** The message a replace-mode agent logs before each rewrite, with the keys of the peers the rewrite changes. */
const REPLACE_CARRIES = 'replace carries';

/**
 * When a change landed on one agent: the first matching line at or after the write was sent. In
 * replace mode, when the agent says which keys a rewrite carries (REPLACE_CARRIES {publicKeys}), the
 * rewrite after the first such line naming the key (exact); otherwise the first rewrite at all (a
 * lower bound).
 */
function landedAt(entries: LogEntry[], landing: Landing, w: Write, exactReplace: boolean): number | undefined {
  let carried = false;
  for (const e of entries) {
    if (e.at < w.sentAt) continue;
    if (landing === 'key') {
      if (e.message === 'applied' && typeof e.fields.publicKey === 'string' && base64Key(e.fields.publicKey) === w.change.publicKey) return e.at;
    } else if (landing === 'replace') {
      if (exactReplace && e.message === REPLACE_CARRIES && Array.isArray(e.fields.publicKeys)) {
        carried ||= e.fields.publicKeys.some((k) => typeof k === 'string' && base64Key(k) === w.change.publicKey);
      }
      if (e.message === 'applied' && e.fields.op === 'replace' && (carried || !exactReplace)) return e.at;
    } else if (e.message === 'reconciled') return e.at;
  }
  return undefined;
}

async function runPhase(
  cluster: MeshCluster,
  mode: Mode,
  realNodes: ClusterNode[],
  nodes: SimNode[],
  changes: Change[],
  state: Map<string, SimPeer | null>,
  opts: Options,
  log: (line: string) => void,
): Promise<PhaseResult> {
  const api = customApi(cluster.kubeConfig());
  const offsets = realNodes.map((n) => logOffset(n.logFile));
  const agentPids = realNodes.map((n) => cluster.agentPid(n.name) as number);
  const wgPids = realNodes.map((n) => cluster.wireguardGoPid(n.name));
  const cpu0 = agentPids.map((p) => cpuSeconds(p) ?? NaN);
  const wg0 = wgPids.map((p) => (p === undefined ? NaN : (cpuSeconds(p) ?? NaN)));
  const start = Date.now();
  const writes: Write[] = [];
  const inflight: Array<Promise<void>> = [];
  const failures: string[] = [];
  log(`${mode}: ${changes.length} writes at ${opts.rate}/s`);
  for (const change of changes) {
    const due = start + (change.index * 1000) / opts.rate;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const sentAt = Date.now();
    inflight.push(
      writeChange(api, change).then(
        () => void writes.push({ change, sentAt, acceptedAt: Date.now() }),
        (err: unknown) => void failures.push(`write ${change.index} (${change.kind} Peer ${change.node.name}): ${(err as Error).message}`),
      ),
    );
    state.set(change.node.name, change.after);
  }
  await Promise.all(inflight);
  if (failures.length) throw new Error(`${failures.length} API writes failed: ${failures.slice(0, 3).join('; ')}`);
  const verifyMs = await waitConverged(cluster, realNodes, nodes, state, opts.convergeTimeoutMs, `every device to hold the desired peers after the ${mode} changes`);
  // Settle: a pass may still be logging its last lines.
  await sleep(300);
  const phaseS = (Date.now() - start) / 1000;
  const agentCpuS = agentPids.map((p, i) => round3((cpuSeconds(p) ?? NaN) - cpu0[i]));
  const wireguardGoCpuS = wgPids.map((p, i) => (p === undefined ? NaN : round3((cpuSeconds(p) ?? NaN) - wg0[i])));
  const memory = agentPids.map((p) => memoryMiB(p));

  const entries = realNodes.map((n, i) => readLogEntries(n.logFile, offsets[i]));
  const landing = landingOf(mode, entries);
  const exactReplace = entries.some((list) => list.some((e) => e.message === REPLACE_CARRIES));
  writes.sort((a, b) => a.change.index - b.change.index);
  const latencies: number[] = [];
  const samples: PhaseResult['samples'] = [];
  const missing: string[] = [];
  let beforeResponse = 0;
  for (const w of writes) {
    const landed: number[] = [];
    let lost = '';
    for (let a = 0; a < realNodes.length; a++) {
      const at = landedAt(entries[a], landing, w, exactReplace);
      if (at === undefined) lost ||= realNodes[a].name;
      else landed.push(at);
    }
    if (lost) {
      if (missing.length < 5) missing.push(`write ${w.change.index} (${w.change.kind} Peer ${w.change.node.name}) not logged by ${lost}`);
      continue;
    }
    const latency = Math.max(...landed) - w.acceptedAt;
    if (latency < 0) beforeResponse++;
    latencies.push(Math.max(0, latency));
    samples.push({ write: w.change.index, kind: w.change.kind, ms: Math.max(0, latency), sentAt: w.sentAt, acceptedAt: w.acceptedAt, landedAt: landed });
  }
  return {
    mode,
    changes: changes.length,
    landed: latencies.length,
    landing,
    exactReplace,
    latency: summarize(latencies),
    apiMs: summarize(writes.map((w) => w.acceptedAt - w.sentAt)),
    beforeResponse,
    agentCpuS,
    wireguardGoCpuS,
    memoryMiB: memory,
    phaseS: round3(phaseS),
    verifyS: round3(verifyMs / 1000),
    samples,
    missing,
  };
}

// ---------------------------------------------------------------- main

function applyModeSupported(): boolean {
  // Part of the agent's contract (cli/commands/member.ts): older agents refuse an unknown flag.
  return readFileSync(join(REPO_ROOT, 'cli', 'commands', 'member.ts'), 'utf8').includes("'apply-mode'");
}

function agentFlags(mode: Mode, opts: Options, withApplyMode: boolean): Record<string, string> {
  return {
    '--log-format': 'json',
    '--log-level': 'debug',
    '--resync': String(opts.resync),
    ...(withApplyMode ? { '--apply-mode': mode } : {}),
  };
}

async function main(): Promise<number> {
  let opts: Options | null;
  try {
    opts = readOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!opts) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const o = opts;
  const unavailable = networkTestsUnavailable() ?? kubeTestsUnavailable();
  if (unavailable) {
    process.stderr.write(`bench/convergence.ts cannot run here: ${unavailable}\n`);
    return 1;
  }
  const withApplyMode = applyModeSupported();
  let modes = o.modes;
  if (!withApplyMode && modes.includes('replace')) {
    process.stderr.write('the agent has no --apply-mode flag yet (cli/commands/member.ts): the replace reference is skipped\n');
    modes = modes.filter((m) => m !== 'replace');
    if (modes.length === 0) return 1;
  }
  const log = (line: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${line}\n`);
  const simulated = o.nodes - o.agents;
  const nodes = Array.from({ length: simulated }, (_, j) => simNode(j));
  const start = new Map<string, SimPeer | null>(nodes.map((n) => [n.name, { publicKey: randomKey(), endpoint: `${n.internalIP}:${SIM_PORT}`, allowedIPs: [n.podCIDR] }]));
  const changes = changeSequence(nodes, start, o.changes, o.seed, Math.min(o.cooldown, Math.max(0, Math.floor(simulated / 2) - 1)));

  const cluster = await MeshCluster.start({ nodes: o.agents, resyncSeconds: o.resync, keepLogs: o.keepLogs, spareNodes: 0, log });
  const results: PhaseResult[] = [];
  const loadS: Partial<Record<Mode, number>> = {};
  const failed: string[] = [];
  try {
    const admin = cluster.kubeConfig();
    const api = customApi(admin);
    const realNodes = cluster.nodes;
    const none = new Map<string, SimPeer | null>(nodes.map((n) => [n.name, null]));
    const state = new Map(none);
    let t = performance.now();
    await pool(nodes, o.concurrency, (n) => createNode(admin, n.name, [n.podCIDR], n.internalIP), (done) => log(`simulated Nodes: ${done}/${nodes.length}`));
    log(`${nodes.length} simulated Nodes written in ${Math.round(performance.now() - t)} ms`);
    for (const [i, mode] of modes.entries()) {
      // The agents start while no simulated Peer exists: a starting agent prompts a handshake with
      // every peer its device holds, and towards simulated peers (which never answer) wireguard-go
      // would retry and log a failure every 5 s for 90 s, load a real cluster does not have.
      if (i > 0) {
        await pool(nodes, o.concurrency, (n) => putBack(api, n, state.get(n.name) ?? null, null));
        for (const n of nodes) state.set(n.name, null);
        await waitConverged(cluster, realNodes, nodes, state, o.convergeTimeoutMs, 'every device to drop the simulated peers');
      }
      const offsets = realNodes.map((n) => logOffset(n.logFile));
      t = performance.now();
      if (i === 0) for (const n of realNodes) await cluster.startAgent(n.name, { flags: agentFlags(mode, o, withApplyMode) });
      else await Promise.all(realNodes.map((n) => cluster.restartAgent(n.name, { flags: agentFlags(mode, o, withApplyMode) })));
      await waitConverged(cluster, realNodes, nodes, state, o.convergeTimeoutMs, `every real agent's device to hold the other ${o.agents - 1} real nodes (${mode})`);
      log(`${mode}: agents started and meshed in ${Math.round(performance.now() - t)} ms`);
      if (i === 0) assignMeshIPs(nodes, await realMeshIPs(api, realNodes));
      t = performance.now();
      await pool(nodes, o.concurrency, (n) => putBack(api, n, null, start.get(n.name) ?? null), (done) => log(`simulated Peers: ${done}/${nodes.length}`));
      for (const n of nodes) state.set(n.name, start.get(n.name) ?? null);
      await waitConverged(cluster, realNodes, nodes, state, o.convergeTimeoutMs, `every real agent's device to hold all ${o.nodes - 1} peers (${mode})`);
      const ms = performance.now() - t;
      loadS[mode] = round3(ms / 1000);
      log(`${mode}: ${nodes.length} simulated Peers written and on every device in ${Math.round(ms)} ms`);
      // Safety net: if wireguard-go is still logging (retries towards an unanswering peer), wait for quiet.
      const quietMs = await waitQuiet(realNodes, offsets, o.quietSeconds * 1000, 120_000);
      if (quietMs > 1000) log(`${mode}: waited ${Math.round(quietMs / 1000)} s for wireguard-go to go quiet`);
      try {
        results.push(await runPhase(cluster, mode, realNodes, nodes, changes, state, o, log));
      } catch (err) {
        // The other modes' numbers are still worth printing; the run fails at the end.
        failed.push(`${mode}: ${(err as Error).message}`);
        log(`${mode} failed: ${(err as Error).message.split('\n')[0]}`);
        if (!/did not reach the reconciler/.test((err as Error).message)) break;
      }
    }
    if (results.length) print(o, results, loadS);
    if (failed.length) {
      process.stderr.write(`${failed.join('\n')}\n`);
      return 1;
    }
    const broken = results.find((r) => r.landed < r.changes);
    if (broken) {
      process.stderr.write(`${broken.mode}: ${broken.changes - broken.landed} changes never logged as landed: ${broken.missing.join('; ')}\n`);
      return 1;
    }
    return 0;
  } finally {
    if (o.keepLogs) log(`logs kept in ${cluster.dir}`);
    await cluster.stop();
  }
}

// ---------------------------------------------------------------- output

function print(o: Options, results: PhaseResult[], loadS: Partial<Record<Mode, number>>): void {
  const machine = `${cpus().length} vCPU ${cpus()[0]?.model.trim() ?? '?'}, Linux ${release()}, Node ${process.versions.node}, wireguard-go ${wireguardGoVersion(findWireguardGo())}`;
  if (o.json) {
    // The table goes to stderr then, so a run's JSON still shows it to a person.
    printTable(o, results, loadS, machine, process.stderr);
    process.stdout.write(`${JSON.stringify({ options: o, machine, loadS, results }, null, 2)}\n`);
    return;
  }
  printTable(o, results, loadS, machine, process.stdout);
}

function printTable(o: Options, results: PhaseResult[], loadS: Partial<Record<Mode, number>>, machine: string, out: NodeJS.WritableStream): void {
  const ours = results.find((r) => r.mode === 'incremental');
  const ref = results.find((r) => r.mode === 'replace');
  const rows: Array<Array<string | number>> = [['mode', 'changes', 'landed', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'agent CPU s (mean/max)', 'wireguard-go CPU s (mean)', 'CPU ms per change (agent + wg-go)', 'agent RSS MiB (max)']];
  for (const r of results) {
    rows.push([
      r.mode === 'replace' ? 'replace (reference)' : r.mode,
      r.changes,
      r.landed,
      r.latency.p50,
      r.latency.p95,
      r.latency.p99,
      r.latency.max,
      `${mean(r.agentCpuS)} / ${Math.max(...r.agentCpuS)}`,
      mean(r.wireguardGoCpuS),
      perChange(r),
      Math.max(...r.memoryMiB.map((m) => m?.rss ?? NaN)),
    ]);
  }
  if (ours && ref) {
    rows.push([
      'reference / ours',
      '',
      '',
      ratio(ref.latency.p50, ours.latency.p50),
      ratio(ref.latency.p95, ours.latency.p95),
      ratio(ref.latency.p99, ours.latency.p99),
      ratio(ref.latency.max, ours.latency.max),
      String(ratio(mean(ref.agentCpuS), mean(ours.agentCpuS))),
      ratio(mean(ref.wireguardGoCpuS), mean(ours.wireguardGoCpuS)),
      ratio(perChange(ref), perChange(ours)),
      '',
    ]);
  }
  const lines = [
    `Convergence at scale: ${o.nodes} nodes and Peers (${o.agents} real agents, ${o.nodes - o.agents} simulated), ${o.changes} Peer writes per mode at ${o.rate}/s, seed ${o.seed}`,
    `latency = from the API server's response to the write until the last of the ${o.agents} agents logged the set for that peer`,
    '',
    table(rows),
    '',
    `loading: ${o.nodes - o.agents} simulated Peers written (${o.concurrency} at a time) until every device held all ${o.nodes - 1} peers: ${Object.entries(loadS)
      .map(([m, v]) => `${m} ${v} s`)
      .join(', ')}`,
    ...results.map(
      (r) =>
        `${r.mode}: API write round trip (sent to answered) p50 ${r.apiMs.p50} ms, p99 ${r.apiMs.p99} ms`,
    ),
    ...results.map(
      (r) =>
        `${r.mode}: landed read from ${
          r.landing === 'key' ? "each agent's 'applied' {publicKey} line" : r.landing === 'replace'
            ? r.exactReplace
              ? `the first 'applied' {op: replace} line after the agent's '${REPLACE_CARRIES}' line naming the key`
              : "the first 'applied' {op: replace} line after the write (a lower bound: the agents do not say which keys a rewrite carries)" : "the first 'reconciled' line after the write (approximate: the agents log no 'applied' lines)"
        }; CPU over ${r.phaseS} s; ${r.beforeResponse} set(s) logged before the API response arrived (counted as 0 ms)`,
    ),
    `machine: ${machine}`,
  ];
  out.write(`${lines.join('\n')}\n`);
}

/** One agent's and its wireguard-go's CPU per change, in ms (the means over the agents). */
function perChange(r: PhaseResult): number {
  return Math.round(((mean(r.agentCpuS) + mean(r.wireguardGoCpuS)) / r.changes) * 1000 * 100) / 100;
}

function mean(xs: number[]): number {
  const ok = xs.filter(Number.isFinite);
  return ok.length ? round3(ok.reduce((a, b) => a + b, 0) / ok.length) : NaN;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

process.exitCode = await main().catch((err: unknown) => {
  process.stderr.write(`bench/convergence.ts failed: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
});
