/**
 * One real `aks-mesh agent` process for a benchmark: started through the CLI inside a network
 * namespace of the benchmark's own (spawn mode: it starts its own wireguard-go), its JSON log kept
 * in memory, its CPU time and memory read from /proc, and a peers directory of N Nodes with a Peer
 * each to feed it. Used by bench/resync.ts (benchmark 3) and bench/start.ts (benchmark 5).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CLI, NODE_BINARY } from '../../sandbox/cluster.ts';
import type { Sandbox } from '../../sandbox/sandbox.ts';
import { isRunning } from '../../sandbox/proc.ts';
import { cpuSeconds, memoryMiB } from './procstat.ts';

export const LOADED_MODULES_HOOK = join(import.meta.dirname, 'loaded-modules.ts');

/** Node i of a simulated cluster: pod CIDR 10.(1+i/256).(i%256).0/24, InternalIP in 10.224.0.0/12, mesh IP 100.96.x.y. */
export function simulatedNode(i: number): { name: string; podCIDR: string; internalIP: string; meshIP: string } {
  const k = i + 2; // 100.96.0.0 and .1 stay free
  return {
    name: `node-${i}`,
    podCIDR: `10.${1 + (i >> 8)}.${i & 255}.0/24`,
    internalIP: `10.${224 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`,
    meshIP: `100.96.${k >> 8}.${k & 255}`,
  };
}

/** A random 32-byte public key (any 32 bytes do for wireguard-go; no scalar multiplication for 5,000 keys). */
export function randomPublicKey(): string {
  return randomBytes(32).toString('base64');
}

/** The Node and Peer manifests of `count` simulated nodes. */
export function simulatedObjects(count: number, offset = 0): Array<{ node: object; peer: object }> {
  return Array.from({ length: count }, (_, j) => {
    const n = simulatedNode(offset + j);
    return {
      node: { apiVersion: 'v1', kind: 'Node', metadata: { name: n.name }, spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] }, status: { addresses: [{ type: 'InternalIP', address: n.internalIP }] } },
      peer: {
        apiVersion: 'aksmesh.io/v1alpha1',
        kind: 'Peer',
        metadata: { name: n.name },
        spec: { publicKey: randomPublicKey(), endpoint: `${n.internalIP}:51820`, allowedIPs: [n.podCIDR], meshIP: n.meshIP, nodeName: n.name },
      },
    };
  });
}

/** Write `count` Nodes with a Peer each into `dir`, 250 pairs per YAML file (the directory source reads at most 1 MiB per file). */
export function writePeersDir(dir: string, count: number, extra: object[] = []): void {
  mkdirSync(dir, { recursive: true });
  const objects = simulatedObjects(count);
  for (let f = 0; f * 250 < count; f++) {
    const docs = objects.slice(f * 250, (f + 1) * 250).flatMap((o) => [o.node, o.peer]);
    writeFileSync(join(dir, `nodes-${String(f).padStart(3, '0')}.yaml`), docs.map((d) => stringify(d)).join('---\n'));
  }
  if (extra.length) writeFileSync(join(dir, 'self.yaml'), extra.map((d) => stringify(d)).join('---\n'));
}

export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** performance.now() when it was spawned. */
  startedAt: number;
  /** Date.now() when it was spawned (log timestamps are wall clock). */
  startedWall: number;
  /** Every JSON log line so far, parsed, with the time it arrived. */
  logs: Array<{ at: number; message: string; fields: Record<string, unknown> }>;
  /** Lines that were not JSON (wireguard-go's own output in spawn mode, a crash). */
  other: string[];
  exited: Promise<number | null>;
}

/**
 * Start `aks-mesh agent <args>` in `ns` (`ip netns exec` execs node itself, so the pid is the
 * agent's). With `modulesFile`, the process records the modules it loads there at exit.
 */
export function startAgent(box: Sandbox, ns: string, args: string[], options: { nodeFlags?: string[]; modulesFile?: string; env?: Record<string, string>; program?: string } = {}): AgentProcess {
  const hook = options.modulesFile ? ['--import', LOADED_MODULES_HOOK] : [];
  const env = { ...process.env, ...options.env, ...(options.modulesFile ? { AKS_MESH_LOADED_MODULES: options.modulesFile } : {}) };
  const startedAt = performance.now();
  const startedWall = Date.now();
  const child = spawn('ip', ['netns', 'exec', ns, NODE_BINARY, ...(options.nodeFlags ?? []), ...hook, options.program ?? CLI, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  box.track(child);
  if (child.pid === undefined) throw new Error(`could not start the agent in ${ns}`);
  const p: AgentProcess = {
    child,
    pid: child.pid,
    startedAt,
    startedWall,
    logs: [],
    other: [],
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) {
          if (line.trim()) p.other.push(line);
          continue;
        }
        try {
          const { timestamp, message, ...fields } = JSON.parse(line) as Record<string, unknown>;
          p.logs.push({ at: typeof timestamp === 'string' ? Date.parse(timestamp) : Date.now(), message: String(message), fields });
        } catch {
          p.other.push(line);
        }
      }
    });
  }
  return p;
}

/** SIGTERM the agent (it stops its wireguard-go), SIGKILL after `graceMs`. */
export async function stopAgent(p: AgentProcess, graceMs = 10_000): Promise<void> {
  if (!isRunning(p.pid)) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}

/** CPU seconds (utime + stime) and memory of the agent now; throws if it is gone (a broken run must not print numbers). */
export function sample(p: AgentProcess): { cpu: number; rss: number; peak: number } {
  const cpu = cpuSeconds(p.pid);
  const mem = memoryMiB(p.pid);
  if (cpu === null || mem === null) throw new Error(`the agent (pid ${p.pid}) is gone:\n${p.other.slice(-20).join('\n')}`);
  return { cpu, rss: mem.rss, peak: mem.peak };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A Node's status as a kubelet writes it (conditions with heartbeats, capacity, nodeInfo, ~40
 * images): about 9 KB of JSON of which the mesh reads one address. Real AKS Nodes are 10-20 KB.
 */
export function kubeletStatus(internalIP: string, name: string): Record<string, unknown> {
  const now = new Date().toISOString();
  const condition = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: now });
  return {
    addresses: [{ type: 'InternalIP', address: internalIP }, { type: 'Hostname', address: name }],
    conditions: [
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
      condition('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status. AppArmor enabled'),
    ],
    capacity: { cpu: '4', 'ephemeral-storage': '129886128Ki', memory: '16375892Ki', pods: '110' },
    allocatable: { cpu: '3860m', 'ephemeral-storage': '119703055367', memory: '12899412Ki', pods: '110' },
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    nodeInfo: {
      architecture: 'amd64', bootID: randomBytes(16).toString('hex'), containerRuntimeVersion: 'containerd://1.7.27-1', kernelVersion: '5.15.0-1089-azure',
      kubeProxyVersion: 'v1.31.8', kubeletVersion: 'v1.31.8', machineID: randomBytes(16).toString('hex'), operatingSystem: 'linux', osImage: 'Ubuntu 22.04.5 LTS', systemUUID: randomBytes(16).toString('hex'),
    },
    images: Array.from({ length: 40 }, (_, i) => ({
      names: [`mcr.microsoft.com/oss/kubernetes/component-${i}@sha256:${randomBytes(32).toString('hex')}`, `mcr.microsoft.com/oss/kubernetes/component-${i}:v1.${i}.0`],
      sizeBytes: 10_000_000 + i * 1_000_000,
    })),
  };
}

/** Run `task` over `items` with at most `concurrency` at a time. */
export async function inParallel<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await task(items[next++]);
    }),
  );
}
