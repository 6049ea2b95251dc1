/**
 * What a node looks like from the outside, read with the kernel's own tools (`ip -json`, `ping`) in
 * the node's network namespace, never through the agent's code: whether a node is clean (nothing of
 * the mesh left after `aks-mesh agent --cleanup` or `helm uninstall`), which path a packet takes,
 * how many pings an operation loses, and which captured packets carry a pod address in clear.
 * Used by the real-node e2e test (e2e/realnode.test.ts) and by the namespace cluster's tests; it
 * works for any network namespace: a named one (`ip netns`), a process's, or a bind-mounted file.
 *
 *   const settings = chartMeshSettings({ interfaceName: 'wg-mesh' });
 *   const report = await checkNodeClean({ pid: kubeletPid }, settings, { socketDir: '/run/node-0/wireguard' });
 *   assert.deepEqual(report.problems, []);
 *
 *   const { loss } = await measurePingLoss(podA, podB.ip, () => helmUpgrade());
 *   console.log(formatPingLoss(loss));
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { FALLBACK_METRIC, cidrContains, cidrFamily } from '../native/index.ts';
import type { CapturedPacket } from './pcap.ts';
import { signalPid } from './proc.ts';

/**
 * A network namespace: a name from `ip netns` (/run/netns/<name>), a process whose namespace it is,
 * or the path of a namespace file (a CNI's /var/run/netns/cni-…, /proc/<pid>/ns/net).
 */
export type NetnsRef = string | { pid: number } | { file: string };

/** The file that names the namespace (what `nsenter --net=` takes). */
export function netnsFile(ref: NetnsRef): string {
  if (typeof ref === 'string') {
    if (!/^[A-Za-z0-9_.-]+$/.test(ref)) throw new Error(`network namespace ${JSON.stringify(ref)} is not an ip-netns name`);
    return join('/run/netns', ref);
  }
  if ('pid' in ref) {
    if (!Number.isInteger(ref.pid) || ref.pid <= 0) throw new Error(`network namespace of pid ${ref.pid}: not a process id`);
    return `/proc/${ref.pid}/ns/net`;
  }
  return ref.file;
}

/** A readable name for messages. */
export function describeNetns(ref: NetnsRef): string {
  return typeof ref === 'string' ? `netns ${ref}` : 'pid' in ref ? `the network namespace of pid ${ref.pid}` : `netns ${ref.file}`;
}

/**
 * argv that runs `argv` inside the namespace. nsenter --net enters only the network namespace:
 * unlike `ip netns exec` it does not remount /sys, which a kubelet in the same mount namespace would see.
 */
export function inNetns(ref: NetnsRef, argv: readonly string[]): string[] {
  return ['nsenter', `--net=${netnsFile(ref)}`, '--', ...argv];
}

/** Run a command to completion in a namespace; rejects with its stderr in the message. */
export function runIn(ref: NetnsRef, argv: readonly string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const full = inNetns(ref, argv);
  return new Promise((resolve, reject) => {
    execFile(full[0], full.slice(1), { encoding: 'utf8', timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')} in ${describeNetns(ref)} failed: ${(stderr || err.message).trim().split('\n').slice(0, 3).join('; ')}`));
      else resolve(stdout);
    });
  });
}

async function ipJson<T>(ref: NetnsRef, args: string[]): Promise<T[]> {
  const out = await runIn(ref, ['ip', '-json', ...args]);
  return out.trim() ? (JSON.parse(out) as T[]) : [];
}

// ---------------------------------------------------------------- what the mesh puts on a node

/** The names and numbers by which the mesh's traces on a node are recognised. */
export interface MeshSettings {
  /** The WireGuard interface (the chart's mesh.interface; the agent's --interface). */
  interfaceName: string;
  /** The routing table of the mesh routes and fallbacks (mesh.table, --table). */
  table: number;
  /** wireguard-go's mark, one bit (mesh.fwmark, --fwmark). */
  fwmark: number;
  /** Priority of the `not fwmark … lookup <table>` rule (mesh.rulePriority, --rule-priority). */
  rulePriority: number;
  /** Where mesh IPs come from (mesh.cidr, --mesh-cidr): no address of it may stay on a node. */
  meshCIDR: string;
}

/**
 * The settings a chart install uses: charts/aks-mesh/values.yaml (or `valuesFile`), then `overrides`
 * (what the install set with --set). A value the file does not have is an error naming it.
 */
export function chartMeshSettings(overrides: Partial<MeshSettings> = {}, valuesFile = join(import.meta.dirname, '..', 'charts', 'aks-mesh', 'values.yaml')): MeshSettings {
  const values = parse(readFileSync(valuesFile, 'utf8')) as { mesh?: Record<string, unknown> } | null;
  const mesh = values?.mesh ?? {};
  const need = (key: string): unknown => {
    if (mesh[key] === undefined || mesh[key] === null) throw new Error(`${valuesFile}: mesh.${key} is not set`);
    return mesh[key];
  };
  const number = (key: string): number => {
    const v = need(key);
    const n = typeof v === 'number' ? v : Number(String(v));
    if (!Number.isInteger(n)) throw new Error(`${valuesFile}: mesh.${key} is ${JSON.stringify(v)}, not an integer`);
    return n;
  };
  return {
    interfaceName: String(need('interface')),
    table: number('table'),
    fwmark: number('fwmark'),
    rulePriority: number('rulePriority'),
    meshCIDR: String(need('cidr')),
    ...overrides,
  };
}

export interface NodeCleanReport {
  clean: boolean;
  /** One line per trace of the mesh, naming it ("ip rule 5280: not fwmark 0x2000/0x2000 lookup 51820"). */
  problems: string[];
}

interface RawLink {
  ifname: string;
  link_type?: string;
}
interface RawAddr {
  ifname: string;
  addr_info?: Array<{ local: string; prefixlen: number; family: string }>;
}
interface RawRule {
  priority: number;
  table?: string;
  fwmark?: string;
  fwmask?: string;
  not?: null | boolean;
  src?: string;
}
interface RawRoute {
  type?: string;
  dst: string;
  dev?: string;
  gateway?: string;
  table?: string;
  metric?: number;
}

/** Route types that refuse traffic: what a fail-closed fallback is. */
const REFUSING = new Set(['unreachable', 'blackhole', 'prohibit']);

/**
 * Every trace of the mesh in a node's network namespace (and its socket folder): the interface, an
 * address from the mesh CIDR on any interface, an `ip rule` of ours (our table, our priority, or a
 * test of our mark's bit; IPv4 and IPv6), any route in our table, any route through our interface in
 * any table, any refusing route (`unreachable`, `blackhole`, `prohibit`: a fallback) in any table, and
 * a UAPI socket of our interface (or, with anySocket, any socket: a node's private socket folder).
 * A fresh namespace has none of these, so every line is something someone left behind.
 */
export async function checkNodeClean(ref: NetnsRef, s: MeshSettings, options: { socketDir?: string; anySocket?: boolean } = {}): Promise<NodeCleanReport> {
  const problems: string[] = [];
  const [links, addrs, rules4, rules6, routes4, routes6] = await Promise.all([
    ipJson<RawLink>(ref, ['link', 'show']),
    ipJson<RawAddr>(ref, ['addr', 'show']),
    ipJson<RawRule>(ref, ['-4', 'rule', 'show']),
    ipJson<RawRule>(ref, ['-6', 'rule', 'show']),
    ipJson<RawRoute>(ref, ['-4', 'route', 'show', 'table', 'all']),
    ipJson<RawRoute>(ref, ['-6', 'route', 'show', 'table', 'all']),
  ]);
  for (const l of links) if (l.ifname === s.interfaceName) problems.push(`interface ${l.ifname} (${l.link_type ?? 'link'}) exists`);
  const meshFamily = cidrFamily(s.meshCIDR);
  for (const a of addrs) {
    for (const i of a.addr_info ?? []) {
      if ((i.family === 'inet' ? 4 : 6) === meshFamily && cidrContains(s.meshCIDR, `${i.local}/${meshFamily === 4 ? 32 : 128}`)) {
        problems.push(`address ${i.local}/${i.prefixlen} on ${a.ifname} is inside the mesh CIDR ${s.meshCIDR}`);
      }
    }
  }
  for (const [family, rules] of [['IPv4', rules4], ['IPv6', rules6]] as const) {
    for (const r of rules) {
      const mark = r.fwmark === undefined ? 0 : Number(r.fwmark) & Number(r.fwmask ?? 0xffffffff);
      if (r.table === String(s.table) || r.priority === s.rulePriority || (mark & s.fwmark) !== 0) problems.push(`${family} ip rule ${r.priority}: ${formatRule(r)}`);
    }
  }
  for (const [family, routes] of [['IPv4', routes4], ['IPv6', routes6]] as const) {
    for (const r of routes) {
      const line = `${family} route ${formatRoute(r)}`;
      if (r.table === String(s.table)) problems.push(`${line} (in the mesh table ${s.table})`);
      else if (r.dev === s.interfaceName) problems.push(`${line} (through ${s.interfaceName})`);
      else if (r.type && REFUSING.has(r.type)) problems.push(`${line} (a fallback${r.metric === FALLBACK_METRIC ? ' with the mesh metric' : ''})`);
    }
  }
  if (options.socketDir) {
    let entries: string[] = [];
    try {
      entries = readdirSync(options.socketDir);
    } catch {
      /* no socket folder: nothing left in it */
    }
    for (const e of entries) {
      if (e === `${s.interfaceName}.sock` || (options.anySocket && e.endsWith('.sock'))) problems.push(`socket ${join(options.socketDir, e)} is left`);
    }
  }
  return { clean: problems.length === 0, problems };
}

function formatRule(r: RawRule): string {
  const mark = r.fwmark === undefined ? '' : `${'not' in r ? 'not ' : ''}fwmark ${r.fwmark}${r.fwmask ? `/${r.fwmask}` : ''} `;
  return `from ${r.src ?? 'all'} ${mark}lookup ${r.table ?? '?'}`;
}

function formatRoute(r: RawRoute): string {
  const type = r.type && r.type !== 'unicast' ? `${r.type} ` : '';
  return `${type}${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''} table ${r.table ?? 'main'}${r.metric !== undefined ? ` metric ${r.metric}` : ''}`;
}

// ---------------------------------------------------------------- paths and reachability

export interface RouteChoice {
  /** The interface a packet to that address leaves through. */
  dev: string;
  gateway?: string;
  /** False when the kernel refuses it (unreachable, blackhole, prohibit: a fallback). */
  routable: boolean;
  /** `ip route get`'s answer, or its error. */
  text: string;
}

/**
 * Which way the kernel sends a packet to `ip` from this namespace (`ip route get`), optionally with
 * a mark, or as an answer from a given local address (`from`: what the policy rules see for a reply).
 */
export async function routeTo(ref: NetnsRef, ip: string, options: { mark?: number; from?: string } = {}): Promise<RouteChoice> {
  const args = ['route', 'get', ip, ...(options.from === undefined ? [] : ['from', options.from]), ...(options.mark === undefined ? [] : ['mark', String(options.mark)])];
  try {
    const [r] = await ipJson<RawRoute & { type?: string }>(ref, args);
    return { dev: r?.dev ?? '', ...(r?.gateway ? { gateway: r.gateway } : {}), routable: !(r?.type && REFUSING.has(r.type)), text: JSON.stringify(r) };
  } catch (err) {
    return { dev: '', routable: false, text: (err as Error).message };
  }
}

export interface PingResult {
  ok: boolean;
  sent: number;
  received: number;
  output: string;
}

/** `count` pings (200 ms apart) from a namespace to `ip`, within timeoutMs (default 3 s); ok when at least one answers. Never throws. */
export async function ping(ref: NetnsRef, ip: string, options: { count?: number; timeoutMs?: number } = {}): Promise<PingResult> {
  const count = options.count ?? 3;
  const seconds = Math.max(1, Math.ceil((options.timeoutMs ?? 3000) / 1000));
  let output: string;
  try {
    output = await runIn(ref, ['ping', '-n', '-c', String(count), '-i', '0.2', '-w', String(seconds), ip], { timeoutMs: seconds * 1000 + 5000 });
  } catch (err) {
    output = (err as Error).message;
  }
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  const sent = m ? Number(m[1]) : 0;
  const received = m ? Number(m[2]) : 0;
  return { ok: received > 0, sent, received, output: output.trim() };
}

// ---------------------------------------------------------------- lost pings across an operation

export interface PingLoss {
  /** Echo requests sent. */
  sent: number;
  /** Distinct echo replies received. */
  received: number;
  lost: number;
  /** The longest run of consecutive unanswered pings. */
  longestLossRun: number;
  /** The longest time without a reply (ms, from ping's own timestamps, the start and the stop included). */
  longestGapMs: number;
  /** From the first ping to the stop (ms). */
  durationMs: number;
  intervalMs: number;
  /** Echo requests that failed to send (ping's "errors", e.g. no route: a refusing fallback). */
  errors: number;
  /** ping's output (for a failure message). */
  output: string;
}

export interface PingLossMeter {
  /** Stop pinging and count (idempotent). */
  stop(): Promise<PingLoss>;
}

/**
 * Ping `ip` from a namespace every intervalMs (default 200: 5/s) until stop(). Resolves once ping
 * runs. `track` receives the process, for a harness that kills what a failed test leaves (Sandbox.track);
 * stop() also kills it by pid.
 */
export async function startPingLoss(ref: NetnsRef, ip: string, options: { intervalMs?: number; track?: (child: ChildProcess) => void } = {}): Promise<PingLossMeter> {
  const intervalMs = options.intervalMs ?? 200;
  if (intervalMs < 200) throw new Error(`intervalMs: ${intervalMs} is below ping's 200 ms minimum for a steady count`);
  const argv = inNetns(ref, ['ping', '-n', '-D', '-O', '-i', String(intervalMs / 1000), ip]);
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  options.track?.(child);
  const started = Date.now();
  let output = '';
  let lastReplySeq = 0;
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    output += d;
    const seqs = [...d.matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
    if (seqs.length) {
      lastReplySeq = Math.max(lastReplySeq, ...seqs);
      for (const w of waiters) w();
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const earlyExit = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 300))]);
  if (earlyExit) throw new Error(`ping ${ip} in ${describeNetns(ref)} exited at once: ${output.trim()}`);
  let result: Promise<PingLoss> | undefined;
  return {
    stop: () =>
      (result ??= (async () => {
        // Stop just after a reply (or after 1 s without one): the next request then goes out only
        // intervalMs later, so no request is in flight when ping stops and counts it as lost.
        const seen = lastReplySeq;
        await new Promise<void>((resolve) => {
          const done = () => {
            if (lastReplySeq > seen) finish();
          };
          const timer = setTimeout(() => finish(), 1000);
          function finish(): void {
            clearTimeout(timer);
            waiters.delete(done);
            resolve();
          }
          waiters.add(done);
        });
        const stopped = Date.now();
        if (child.pid !== undefined) signalPid(child.pid, 'SIGINT');
        const timer = setTimeout(() => child.pid !== undefined && signalPid(child.pid, 'SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
        return parsePingLoss(output, { intervalMs, startedMs: started, stoppedMs: stopped });
      })()),
  };
}

/**
 * Count the pings of a `ping -n -D -O -i <interval>` run from its output (summary line and reply
 * lines). A pure function, for the meter and its tests.
 */
export function parsePingLoss(output: string, o: { intervalMs: number; startedMs: number; stoppedMs: number }): PingLoss {
  const summary = /(\d+) packets transmitted, (\d+) (?:packets )?received(?:, \+(\d+) duplicates)?(?:, \+(\d+) errors)?/.exec(output);
  const replies = new Map<number, number>();
  for (const m of output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+)/gm)) {
    const seq = Number(m[2]);
    if (!replies.has(seq)) replies.set(seq, Number(m[1]) * 1000);
  }
  const sent = summary ? Number(summary[1]) : Math.max(0, ...replies.keys());
  const received = [...replies.keys()].filter((s) => s >= 1 && s <= sent).length;
  let longestLossRun = 0;
  let run = 0;
  for (let seq = 1; seq <= sent; seq++) {
    if (replies.has(seq)) run = 0;
    else longestLossRun = Math.max(longestLossRun, ++run);
  }
  const times = [o.startedMs, ...[...replies.values()].sort((a, b) => a - b), o.stoppedMs];
  let longestGapMs = 0;
  for (let i = 1; i < times.length; i++) longestGapMs = Math.max(longestGapMs, times[i] - times[i - 1]);
  return {
    sent,
    received,
    lost: sent - received,
    longestLossRun,
    longestGapMs: Math.round(longestGapMs),
    durationMs: o.stoppedMs - o.startedMs,
    intervalMs: o.intervalMs,
    errors: summary?.[4] ? Number(summary[4]) : 0,
    output,
  };
}

/**
 * Ping `ip` from a namespace (5/s by default) for the length of `operation`, then settleMs more
 * (default 2000: what the operation breaks just before it returns is counted too).
 */
export async function measurePingLoss<T>(
  ref: NetnsRef,
  ip: string,
  operation: () => Promise<T>,
  options: { intervalMs?: number; settleMs?: number; track?: (child: ChildProcess) => void } = {},
): Promise<{ result: T; loss: PingLoss }> {
  const meter = await startPingLoss(ref, ip, options);
  let result: T;
  try {
    result = await operation();
    await new Promise((r) => setTimeout(r, options.settleMs ?? 2000));
  } catch (err) {
    // Stopped when the operation failed too: no ping is left running.
    await meter.stop();
    throw err;
  }
  return { result, loss: await meter.stop() };
}

/** One line for a report: "sent 150, received 148, lost 2 (longest run 2, longest gap 612 ms) in 30.1 s". */
export function formatPingLoss(l: PingLoss): string {
  return `sent ${l.sent}, received ${l.received}, lost ${l.lost} (longest run ${l.longestLossRun}, longest gap ${l.longestGapMs} ms${l.errors ? `, ${l.errors} send errors` : ''}) in ${(l.durationMs / 1000).toFixed(1)} s at ${Math.round(1000 / l.intervalMs)}/s`;
}

// ---------------------------------------------------------------- captures

/**
 * Captured packets whose IP header carries a pod address (inside one of `podCIDRs`) as source or
 * destination: pod traffic in clear on the underlay. WireGuard packets carry only the members'
 * underlay addresses outside, so on an encrypted path this is empty; control-plane traffic between
 * node addresses never matches.
 */
export function clearPodPackets(packets: readonly CapturedPacket[], podCIDRs: readonly string[]): CapturedPacket[] {
  const inPods = (ip: string, version: 4 | 6): boolean => podCIDRs.some((c) => cidrFamily(c) === version && cidrContains(c, `${ip}/${version === 4 ? 32 : 128}`));
  return packets.filter((p) => p.ipVersion !== undefined && p.src !== '' && (inPods(p.src, p.ipVersion) || inPods(p.dst, p.ipVersion)));
}

/** WireGuard transport packets between two underlay addresses (either direction): proof that traffic took the tunnel. */
export function wireguardBetween(packets: readonly CapturedPacket[], a: string, b: string): number {
  return packets.filter((p) => p.wireguard === 'transport-data' && ((p.src === a && p.dst === b) || (p.src === b && p.dst === a))).length;
}
