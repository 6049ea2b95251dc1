/**
 * Network namespaces, veth pairs and processes that one test creates, with names no parallel run
 * can collide with, all torn down by name and pid (never by a broad pattern), even when the test
 * fails or the runner is interrupted.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { findWireguardGo } from '../native/wireguard-go/binary.ts';
import { isRunning, signalPid } from './proc.ts';

const execFileAsync = promisify(execFile);

const live = new Set<Sandbox>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const box of live) box.cleanupSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // Sandboxes whose owner handles signals itself (the demo) are left to that owner.
      const ours = [...live].filter((box) => box.exitOnSignal);
      if (ours.length === 0) return;
      for (const box of ours) box.cleanupSync();
      process.exit(130);
    });
  }
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** A program some tests need besides root and iproute2. */
export type TestTool = 'wireguard-go' | 'wg' | 'tcpdump' | 'kubectl';

/**
 * Why network tests cannot run here, or null when they can: root, iproute2, a wireguard-go (every
 * network test runs one), and the `needs` a test adds (wg, tcpdump, kubectl). Under
 * AKS_MESH_REQUIRE_NETWORK=1 (scripts/test, CI) a missing part throws instead: a failure, never a
 * silent skip; so does a missing kubectl under AKS_MESH_REQUIRE_KUBE=1.
 */
export function networkTestsUnavailable(needs: readonly TestTool[] = []): string | null {
  const why = networkMissing() ?? toolsMissing(['wireguard-go', ...needs]);
  if (why && process.env.AKS_MESH_REQUIRE_NETWORK === '1') throw new Error(`network tests required but unavailable: ${why}`);
  return why;
}

/** Why tests that need these programs cannot run, or null; throws under AKS_MESH_REQUIRE_NETWORK=1 (kubectl: also AKS_MESH_REQUIRE_KUBE=1). */
export function toolsUnavailable(tools: readonly TestTool[]): string | null {
  const why = toolsMissing(tools);
  const required = process.env.AKS_MESH_REQUIRE_NETWORK === '1' || (tools.includes('kubectl') && process.env.AKS_MESH_REQUIRE_KUBE === '1');
  if (why && required) throw new Error(`tests required but a part is missing: ${why}`);
  return why;
}

function toolsMissing(tools: readonly TestTool[]): string | null {
  for (const tool of tools) {
    switch (tool) {
      case 'wireguard-go':
        try {
          findWireguardGo();
        } catch (err) {
          return (err as Error).message;
        }
        break;
      case 'kubectl': {
        const kubectl = process.env.AKS_MESH_KUBECTL ?? '/usr/bin/kubectl';
        if (!runs(kubectl, ['version', '--client'])) return `needs kubectl (${kubectl}; or set AKS_MESH_KUBECTL)`;
        break;
      }
      case 'wg':
        if (!runs('wg', ['--version'])) return 'needs wg (apt-get install wireguard-tools)';
        break;
      case 'tcpdump':
        if (!runs('tcpdump', ['--version'])) return 'needs tcpdump (apt-get install tcpdump)';
        break;
    }
  }
  return null;
}

function runs(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function networkMissing(): string | null {
  if (!isRoot()) return 'needs root (network namespaces, TUN devices)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 (ip)';
  }
  return null;
}

export class Sandbox {
  /** 6 hex characters shared by every name this sandbox makes. */
  readonly tag: string;
  private readonly namespaces: string[] = [];
  private readonly processes = new Set<ChildProcess>();
  private readonly pidSources: Array<() => number | undefined> = [];

  /** Whether Ctrl-C / SIGTERM should clean this sandbox up and exit (false: the owner does it). */
  readonly exitOnSignal: boolean;

  constructor(options: { exitOnSignal?: boolean } = {}) {
    this.exitOnSignal = options.exitOnSignal ?? true;
    this.tag = randomBytes(3).toString('hex');
    live.add(this);
    hookExit();
  }

  /** A namespace name unique to this run: am-<tag>-<suffix>. */
  nsName(suffix: string): string {
    return `am-${this.tag}-${suffix}`;
  }

  /** An interface name unique to this run, at most 15 characters: <prefix><tag><suffix>. */
  ifName(prefix: string, suffix: string): string {
    const name = `${prefix}${this.tag}${suffix}`;
    if (name.length > 15) throw new Error(`interface name ${name} is longer than 15 characters`);
    return name;
  }

  async addNamespace(suffix: string): Promise<string> {
    const name = this.nsName(suffix);
    await execFileAsync('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await this.ip(name, 'link', 'set', 'lo', 'up');
    return name;
  }

  /** `ip -n <ns> ...` */
  async ip(ns: string, ...args: string[]): Promise<string> {
    const { stdout } = await execFileAsync('ip', ['-n', ns, ...args]);
    return stdout;
  }

  /** Run a command to completion inside a namespace. */
  async exec(ns: string, command: string, args: string[], options: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
    return execFileAsync('ip', ['netns', 'exec', ns, command, ...args], {
      encoding: 'utf8',
      timeout: options.timeoutMs ?? 30_000,
      maxBuffer: 64 * 1024 * 1024,
    });
  }

  /** Start a long-running command inside a namespace; it is killed by pid at cleanup. */
  spawn(ns: string, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: 'ignore', ...options });
    this.track(child);
    return child;
  }

  /** Have cleanup kill this process (by its pid) if it still runs. */
  track(child: ChildProcess): void {
    this.processes.add(child);
    child.once('exit', () => this.processes.delete(child));
  }

  /**
   * A veth pair between two namespaces with an address on each end:
   * veth(a, '10.1.0.1/24', b, '10.1.0.2/24').
   */
  async veth(nsA: string, addrA: string, nsB: string, addrB: string, suffix = 'v'): Promise<{ ifA: string; ifB: string }> {
    const ifA = this.ifName('am', `${suffix}a`);
    const ifB = this.ifName('am', `${suffix}b`);
    await execFileAsync('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    await this.ip(nsA, 'addr', 'add', addrA, 'dev', ifA);
    await this.ip(nsB, 'addr', 'add', addrB, 'dev', ifB);
    await this.ip(nsA, 'link', 'set', ifA, 'up');
    await this.ip(nsB, 'link', 'set', ifB, 'up');
    return { ifA, ifB };
  }

  /**
   * Have cleanup stop a process that something else spawned (e.g. a SpawnedWireguardGo, whose pid
   * changes on restart): SIGTERM, then SIGKILL after 2 s.
   */
  trackPid(pid: () => number | undefined): void {
    this.pidSources.push(pid);
  }

  /** Kill our processes (SIGTERM, then SIGKILL), then delete our namespaces (their veths go with them). */
  async cleanup(): Promise<void> {
    const waits = [...this.processes].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    );
    await Promise.all(waits);
    this.cleanupSync();
  }

  cleanupSync(): void {
    const pids = this.pidSources.map((get) => get()).filter((pid): pid is number => pid !== undefined);
    this.pidSources.length = 0;
    for (const pid of pids) signalPid(pid, 'SIGTERM');
    const deadline = Date.now() + 2000;
    while (pids.some(isRunning) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    for (const pid of pids.filter(isRunning)) signalPid(pid, 'SIGKILL');
    for (const child of this.processes) {
      if (child.pid && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    this.processes.clear();
    while (this.namespaces.length) {
      const ns = this.namespaces.pop() as string;
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
    live.delete(this);
  }
}

