/**
 * The wireguard-go process, in one of two modes:
 * - spawn: we start `wireguard-go -f <if>`, route its log into ours, restart it with backoff when it
 *   dies, and hand every fresh start to `onReady` so the owner re-applies the whole config;
 * - attach: a sidecar container owns wireguard-go and we share /var/run/wireguard; we wait for its
 *   socket and watch for a reset device (no private key, another port or key) to re-apply.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeError, isNativeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { UapiClient, socketPathFor } from '../uapi/index.ts';
import type { DeviceState, UapiClientOptions } from '../uapi/index.ts';
import { findWireguardGo } from './binary.ts';

export type WireguardMode = 'spawn' | 'attach';

export interface ReadyContext {
  client: UapiClient;
  /** False on the first start; true after a crash-restart (spawn) or a device reset (attach). */
  restart: boolean;
  /** What happened, for logs: "started", "restarted after exit code 1", "device reset: no private key". */
  reason: string;
}

export interface WireguardGoOptions {
  interfaceName: string;
  /** Socket folder shared with wireguard-go (default /var/run/wireguard). */
  socketDir?: string;
  logger?: Logger;
  /** Runs after every (re)start, before `ready` is emitted: apply the whole config here. */
  onReady?: (ctx: ReadyContext) => Promise<void>;
  /** UAPI request timeout. */
  timeoutMs?: number;
  /** Passed to the UAPI client: called before every request (count `set`s for metrics and tests). */
  onRequest?: UapiClientOptions['onRequest'];
}

export interface SpawnOptions extends WireguardGoOptions {
  binary?: string;
  /** Run inside this named network namespace (`ip netns exec`); for tests and the demo. */
  netns?: string;
  /** How long a start may take until the socket answers. */
  startTimeoutMs?: number;
  /** Restart backoff: first delay, doubling to the maximum; reset after a run of `stableMs`. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  stableMs?: number;
  /** wireguard-go's LOG_LEVEL: error (default), verbose or silent. */
  logLevel?: 'error' | 'verbose' | 'silent';
}

/** What both modes offer their owner. */
export interface WireguardGo extends EventEmitter {
  readonly mode: WireguardMode;
  readonly interfaceName: string;
  readonly client: UapiClient;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Wait until the UAPI socket answers a `get`; returns the device. */
export async function waitForSocket(
  client: UapiClient,
  opts: { timeoutMs: number; intervalMs?: number; abort?: () => string | null },
): Promise<DeviceState> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    const aborted = opts.abort?.();
    if (aborted) throw new NativeError('process', aborted);
    try {
      return await client.get();
    } catch (err) {
      last = err;
      if (!isNativeError(err, 'socket-missing') && !isNativeError(err, 'socket-stale') && !isNativeError(err, 'timeout')) {
        throw err;
      }
    }
    if (Date.now() >= deadline) {
      throw new NativeError(
        'process',
        `wireguard-go socket ${client.socketPath} did not answer within ${opts.timeoutMs} ms: ${(last as Error).message}`,
      );
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

/** Spawn mode: we own the wireguard-go process. Events: `ready` (ReadyContext), `exit` ({code, signal}). */
export class SpawnedWireguardGo extends EventEmitter implements WireguardGo {
  readonly mode = 'spawn' as const;
  readonly interfaceName: string;
  readonly client: UapiClient;
  readonly binary: string;
  /** How many times the process was restarted after dying. */
  restarts = 0;
  private readonly opts: SpawnOptions;
  private readonly log: Logger;
  private child: ChildProcess | null = null;
  private stopping = false;
  private startedAt = 0;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly recentLog: string[] = [];
  private logSeq = 0;

  constructor(options: SpawnOptions) {
    super();
    this.opts = options;
    this.interfaceName = options.interfaceName;
    this.client = new UapiClient(socketPathFor(options.interfaceName, options.socketDir), {
      timeoutMs: options.timeoutMs,
      onRequest: options.onRequest,
      wireguardLog: () => ({ seq: this.logSeq, lines: this.recentLog }),
    });
    this.binary = options.binary ?? findWireguardGo();
    this.log = options.logger ?? silentLogger;
    this.backoffMs = options.backoffInitialMs ?? 200;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** wireguard-go's last log lines (it says why a UAPI set failed, and why it exited). */
  lastLogLines(): string[] {
    return [...this.recentLog];
  }

  async start(): Promise<void> {
    this.stopping = false;
    await this.launch(false, 'started');
  }

  private async launch(restart: boolean, reason: string): Promise<void> {
    const args = ['-f', this.interfaceName];
    const [command, argv] = this.opts.netns
      ? ['ip', ['netns', 'exec', this.opts.netns, this.binary, ...args]]
      : [this.binary, args];
    const env = {
      ...process.env,
      WG_PROCESS_FOREGROUND: '1',
      LOG_LEVEL: this.opts.logLevel ?? 'error',
    };
    const child = spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = Date.now();
    let exited: string | null = null;
    child.once('error', (err) => {
      exited = `could not start ${this.binary}: ${err.message}`;
    });
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => this.onLogLine(line));
    }
    child.once('exit', (code, signal) => {
      exited = `wireguard-go for ${this.interfaceName} exited (${signal ? `signal ${signal}` : `code ${code}`})`;
      if (this.child === child) this.child = null;
      this.emit('exit', { code, signal });
      if (!this.stopping) this.scheduleRestart(signal ? `signal ${signal}` : `exit code ${code}`);
    });
    this.log.info('wireguard-go starting', { interface: this.interfaceName, binary: this.binary, pid: child.pid });
    const device = await waitForSocket(this.client, {
      timeoutMs: this.opts.startTimeoutMs ?? 10_000,
      abort: () => (exited ? `${exited}; its last words: ${this.recentLog.slice(-3).join(' | ') || '(none)'}` : null),
    });
    this.log.debug('wireguard-go socket answers', { interface: this.interfaceName, peers: device.peers.length });
    const ctx: ReadyContext = { client: this.client, restart, reason };
    if (this.opts.onReady) await this.opts.onReady(ctx);
    this.emit('ready', ctx);
  }

  private onLogLine(line: string): void {
    this.recentLog.push(line);
    this.logSeq++;
    if (this.recentLog.length > 20) this.recentLog.shift();
    const level = /^ERROR/.test(line) ? 'warn' : 'debug';
    this.log[level]('wireguard-go', { interface: this.interfaceName, line });
  }

  private scheduleRestart(why: string): void {
    if (Date.now() - this.startedAt >= (this.opts.stableMs ?? 30_000)) this.backoffMs = this.opts.backoffInitialMs ?? 200;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.backoffMaxMs ?? 30_000);
    this.log.warn('wireguard-go died; restarting', { interface: this.interfaceName, why, inMs: delay });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      this.restarts++;
      this.launch(true, `restarted after ${why}`).catch((err: Error) => {
        this.log.error('wireguard-go restart failed', { interface: this.interfaceName, error: err.message });
        this.emit('restart-failed', err);
        // the exit handler schedules the next try if the process died; if it lives but onReady failed, kill it and retry
        if (this.child && !this.stopping) this.child.kill('SIGKILL');
      });
    }, delay);
  }

  /** SIGTERM (wireguard-go then removes its TUN and socket), SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    this.log.info('wireguard-go stopped', { interface: this.interfaceName });
  }
}

export interface AttachOptions extends WireguardGoOptions {
  /** How often to check the device for a reset or a vanished socket. */
  pollMs?: number;
}

/**
 * Attach mode: wireguard-go belongs to a sidecar; an agent restart leaves the tunnel up. We wait for
 * the socket, and call `onReady` again when the device comes back reset. Events: `ready`, `lost`.
 */
export class AttachedWireguardGo extends EventEmitter implements WireguardGo {
  readonly mode = 'attach' as const;
  readonly interfaceName: string;
  readonly client: UapiClient;
  private readonly opts: AttachOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** What the device looked like after our last apply: a difference means it was reset. */
  private applied: { publicKey: string | null; listenPort: number } | null = null;
  private lost = false;

  constructor(options: AttachOptions) {
    super();
    this.opts = options;
    this.interfaceName = options.interfaceName;
    this.client = new UapiClient(socketPathFor(options.interfaceName, options.socketDir), { timeoutMs: options.timeoutMs, onRequest: options.onRequest });
    this.log = options.logger ?? silentLogger;
  }

  /** Wait (without limit, logging every 10 s) for the sidecar's socket, then apply. */
  async start(): Promise<void> {
    this.stopped = false;
    for (let waited = 0; ; waited++) {
      if (this.stopped) return;
      try {
        await waitForSocket(this.client, { timeoutMs: 10_000, intervalMs: 200 });
        break;
      } catch (err) {
        if (!isNativeError(err, 'process')) throw err;
        this.log.warn('waiting for the wireguard-go sidecar', { socket: this.client.socketPath, seconds: (waited + 1) * 10 });
      }
    }
    await this.ready(false, 'attached');
    this.schedule();
  }

  private async ready(restart: boolean, reason: string): Promise<void> {
    const ctx: ReadyContext = { client: this.client, restart, reason };
    if (this.opts.onReady) await this.opts.onReady(ctx);
    const device = await this.client.get();
    this.applied = { publicKey: device.publicKey, listenPort: device.listenPort };
    this.emit('ready', ctx);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.check()
        .catch((err: Error) => this.log.warn('wireguard-go check failed', { interface: this.interfaceName, error: err.message }))
        .finally(() => this.schedule());
    }, this.opts.pollMs ?? 2000);
  }

  /** One look at the device: re-apply if it was reset; note when the socket goes away and comes back. */
  async check(): Promise<void> {
    let device: DeviceState;
    try {
      device = await this.client.get();
    } catch (err) {
      if (isNativeError(err, 'socket-missing') || isNativeError(err, 'socket-stale')) {
        if (!this.lost) {
          this.lost = true;
          this.log.warn('wireguard-go sidecar socket is gone; waiting for it', { socket: this.client.socketPath });
          this.emit('lost', err);
        }
        return;
      }
      throw err;
    }
    const why = this.resetReason(device);
    if (this.lost || why) {
      this.lost = false;
      const reason = why ?? 'socket came back';
      this.log.warn('wireguard-go device was reset; re-applying', { interface: this.interfaceName, reason });
      await this.ready(true, `device reset: ${reason}`);
    }
  }

  private resetReason(device: DeviceState): string | null {
    if (!this.applied) return null;
    if (device.privateKey === null && this.applied.publicKey !== null) return 'no private key';
    if (device.publicKey !== this.applied.publicKey) return 'another private key';
    if (device.listenPort !== this.applied.listenPort) return `listen port ${device.listenPort}, not ${this.applied.listenPort}`;
    return null;
  }

  /** Stop watching; the sidecar's wireguard-go keeps running (that is the point of attach mode). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

export function createWireguardGo(mode: WireguardMode, options: SpawnOptions & AttachOptions): WireguardGo {
  return mode === 'spawn' ? new SpawnedWireguardGo(options) : new AttachedWireguardGo(options);
}
