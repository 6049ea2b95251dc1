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
import { watch as fsWatch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import type { FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeError, isNativeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { UapiClient, socketPathFor } from '../uapi/index.ts';
import type { DeviceState, UapiClientOptions } from '../uapi/index.ts';
import { findWireguardGo } from './binary.ts';
import { promptHandshakes } from './prompt.ts';
import type { PromptOptions } from './prompt.ts';

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
  /** After onReady on a fresh or reset device: how long a handshake prompt may wait for its initiations to leave (prompt.ts). */
  promptWaitMs?: number;
}

export interface SpawnOptions extends WireguardGoOptions {
  binary?: string;
  /** Run inside this named network namespace (`ip netns exec`); for tests and the demo. */
  netns?: string;
  /** How long a start may take until the socket answers. */
  startTimeoutMs?: number;
  /** Restart backoff: first delay (default 200 ms), doubling to the maximum (30 s); reset after a run of `stableMs` (STABLE_MS). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  stableMs?: number;
  /** wireguard-go's LOG_LEVEL: error (default), verbose or silent. */
  logLevel?: 'error' | 'verbose' | 'silent';
}

/**
 * starting: the first start is under way; running: the socket answers and the config is applied;
 * restarting (spawn): the process ended and a new one is on its way, or failed to come up;
 * waiting (attach): the sidecar's socket is gone; stopped: not started, stopped, or the first start failed.
 */
export type WireguardState = 'starting' | 'running' | 'restarting' | 'waiting' | 'stopped';

/** What the supervision is doing, for /healthz, metrics and logs. */
export interface WireguardStatus {
  mode: WireguardMode;
  state: WireguardState;
  /** The running process (spawn mode). */
  pid?: number;
  /** Spawn: restart attempts after the process died; attach: device resets seen and re-applied. */
  restarts: number;
  /** Failed restart attempts in a row (0 once one succeeds). */
  failures: number;
  /** Why the last attempt failed; null after a success. */
  lastError: string | null;
  /** When `state` was entered. */
  since: Date;
  /** False while wireguard-go is down and this process cannot bring it back: /healthz fails. */
  healthy: boolean;
}

/** What both modes offer their owner. */
export interface WireguardGo extends EventEmitter {
  readonly mode: WireguardMode;
  readonly interfaceName: string;
  readonly client: UapiClient;
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): WireguardStatus;
}

/**
 * The step after onReady: prompt the peers' handshakes (prompt.ts). A failure is logged, never
 * fatal: the config is applied, and the peers' own timers still recover the sessions, only later.
 */
async function prompt(client: UapiClient, log: Logger, interfaceName: string, options: PromptOptions, reason: string): Promise<void> {
  try {
    const r = await promptHandshakes(client, options);
    if (r.prompted > 0 || r.noEndpoint > 0) {
      log.info('prompted handshakes', { interface: interfaceName, reason, peers: r.prompted, sent: r.sent, withoutEndpoint: r.noEndpoint });
    }
  } catch (err) {
    log.warn('could not prompt handshakes; the peers will rekey on their own timers', { interface: interfaceName, error: (err as Error).message });
  }
}

/**
 * A process that served this long before it died was not crash-looping: the next restart comes
 * after the first backoff again. Shorter runs double the backoff (a crash loop must not spin).
 */
export const STABLE_MS = 10_000;

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

/**
 * Spawn mode: we own the wireguard-go process. Events: `ready` (ReadyContext), `exit` ({code,
 * signal}), `restart-failed` (Error). After the first start succeeded, the process is supervised
 * for good: whatever ends it (an exit, a signal, a failed exec that only ever shows as `error` and
 * `close`), a new one is started after a backoff with jitter, and a failed attempt (ENOENT or
 * EACCES of the binary, an exit before the socket answers, a failed onReady) schedules the next
 * one. It never gives up: status() says what it is doing, and /healthz fails while it cannot.
 */
export class SpawnedWireguardGo extends EventEmitter implements WireguardGo {
  readonly mode = 'spawn' as const;
  readonly interfaceName: string;
  readonly client: UapiClient;
  readonly binary: string;
  /** How many times a new process was started after one died (each attempt counts). */
  restarts = 0;
  private readonly opts: SpawnOptions;
  private readonly log: Logger;
  private child: ChildProcess | null = null;
  private stopping = false;
  /** True once the first start succeeded: from then on every end of the process is followed by a restart. */
  private supervising = false;
  /** A restart attempt is under way (its own failure schedules the next one). */
  private attempting = false;
  private startedAt = 0;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly recentLog: string[] = [];
  private logSeq = 0;
  private state: WireguardState = 'stopped';
  private since = new Date();
  private failures = 0;
  private lastError: string | null = null;

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

  status(): WireguardStatus {
    return {
      mode: this.mode,
      state: this.state,
      pid: this.state === 'running' ? this.pid : undefined,
      restarts: this.restarts,
      failures: this.failures,
      lastError: this.lastError,
      since: this.since,
      // Restarting after a failed attempt: wireguard-go is down and we could not bring it back (yet).
      healthy: !(this.state === 'restarting' && this.failures > 0),
    };
  }

  private setState(state: WireguardState): void {
    if (state !== this.state) this.since = new Date();
    this.state = state;
  }

  /** Start wireguard-go and apply (onReady). A first start that fails rejects (the owner reports it); later ones are retried. */
  async start(): Promise<void> {
    this.stopping = false;
    this.setState('starting');
    try {
      await this.launch(false, 'started');
    } catch (err) {
      this.lastError = (err as Error).message;
      await this.killChild();
      this.setState('stopped');
      throw err;
    }
    this.supervising = true;
    // A death between launch() and here reached onEnd while supervision was off: restart it now.
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) this.scheduleRestart('exited during the first start');
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
    // A process that ends without stop() (an uncaught error, process.exit) takes its wireguard-go
    // with it: an orphan would hold the TUN, and the next agent's start would fail on "device or
    // resource busy". kill() is a plain syscall, so it works inside an 'exit' handler. (SIGKILL of
    // the agent still leaves it; in a pod the container's end takes it.)
    const killOnExit = (): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    };
    process.on('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    this.startedAt = Date.now();
    let exited: string | null = null;
    let ended = false;
    // A failed exec (ENOENT) emits `error` and `close` but no `exit`: whichever comes first ends this child.
    const end = (why: string, code: number | null, signal: NodeJS.Signals | null): void => {
      exited ??= `wireguard-go (${this.binary}) for ${this.interfaceName} exited (${why})`;
      if (ended) return;
      ended = true;
      if (this.child === child) this.child = null;
      this.emit('exit', { code, signal });
      this.onEnd(why);
    };
    const how = (code: number | null, signal: NodeJS.Signals | null): string => (signal ? `signal ${signal}` : `code ${code}`);
    child.once('error', (err) => {
      exited = `could not start ${this.binary}: ${err.message}`;
      if (child.pid === undefined) end(exited, null, null);
    });
    child.once('exit', (code, signal) => end(how(code, signal), code, signal));
    child.once('close', (code, signal) => end(how(code, signal), code, signal));
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => this.onLogLine(line));
    }
    this.log.info('wireguard-go starting', { interface: this.interfaceName, binary: this.binary, pid: child.pid });
    const device = await waitForSocket(this.client, {
      timeoutMs: this.opts.startTimeoutMs ?? 10_000,
      abort: () => (exited ? `${exited}; its last words: ${this.recentLog.slice(-3).join(' | ') || '(none)'}` : null),
    });
    this.log.debug('wireguard-go socket answers', { interface: this.interfaceName, peers: device.peers.length });
    const ctx: ReadyContext = { client: this.client, restart, reason };
    if (this.opts.onReady) await this.opts.onReady(ctx);
    const gone = (): boolean => this.child !== child || exited !== null;
    if (gone()) throw new NativeError('process', `wireguard-go for ${this.interfaceName} ended while it was being configured: ${exited ?? 'gone'}`);
    // A new process has no session with anyone: every peer with an endpoint handshakes now.
    await prompt(this.client, this.log, this.interfaceName, { all: true, waitMs: this.opts.promptWaitMs }, reason);
    // The prompt swallows its errors and may poll for up to promptWaitMs: a process that died meanwhile
    // must fail this attempt (its onEnd returned because an attempt was in progress), or nobody restarts it.
    if (gone()) throw new NativeError('process', `wireguard-go for ${this.interfaceName} ended during the handshake prompt: ${exited ?? 'gone'}`);
    this.setState('running');
    this.emit('ready', ctx);
  }

  /** The process ended: unless we are stopping (or still in the first start), a restart follows. */
  private onEnd(why: string): void {
    if (this.stopping || !this.supervising) return;
    this.setState('restarting');
    if (this.attempting) return; // the attempt's own failure schedules the next one
    this.scheduleRestart(why);
  }

  private onLogLine(line: string): void {
    this.recentLog.push(line);
    this.logSeq++;
    if (this.recentLog.length > 20) this.recentLog.shift();
    const level = /^ERROR/.test(line) ? 'warn' : 'debug';
    this.log[level]('wireguard-go', { interface: this.interfaceName, line });
  }

  private scheduleRestart(why: string): void {
    if (this.restartTimer || this.stopping) return;
    if (this.failures === 0 && Date.now() - this.startedAt >= (this.opts.stableMs ?? STABLE_MS)) this.backoffMs = this.opts.backoffInitialMs ?? 200;
    // Equal jitter: between half and all of the backoff, so that many agents do not retry in step.
    const delay = Math.round(this.backoffMs / 2 + (Math.random() * this.backoffMs) / 2);
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.backoffMaxMs ?? 30_000);
    this.setState('restarting');
    this.log.warn(this.failures ? 'wireguard-go restart failed; trying again' : 'wireguard-go died; restarting', {
      interface: this.interfaceName,
      why,
      inMs: delay,
      failures: this.failures,
    });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      void this.attempt(why);
    }, delay);
  }

  private async attempt(why: string): Promise<void> {
    if (this.stopping) return;
    this.attempting = true;
    this.restarts++;
    try {
      await this.launch(true, `restarted after ${why}`);
      this.failures = 0;
      this.lastError = null;
    } catch (err) {
      this.failures++;
      this.lastError = (err as Error).message;
      this.log.error('wireguard-go restart failed', { interface: this.interfaceName, error: this.lastError, failures: this.failures });
      this.emit('restart-failed', err);
      // A process that runs but could not be configured is of no use: replace it too.
      await this.killChild();
    } finally {
      this.attempting = false;
    }
    if (this.failures > 0 && !this.stopping) this.scheduleRestart(this.lastError ?? 'a failed restart');
  }

  /** SIGKILL the current process (if any) and wait briefly for it, so that the next one finds its interface free. */
  private async killChild(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await Promise.race([gone, sleep(2000)]);
  }

  /** SIGTERM (wireguard-go then removes its TUN and socket), SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    this.supervising = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.setState('stopped');
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    this.log.info('wireguard-go stopped', { interface: this.interfaceName });
  }
}

export interface AttachOptions extends WireguardGoOptions {
  /** How often to check the device for a reset or a vanished socket (a change in the socket folder checks sooner; a lost socket every 200 ms). */
  pollMs?: number;
  /**
   * Read the whole device every this many polls (default 15: every 30 s), to notice a device reset
   * in place (a private key wiped by hand). The polls in between only check that the same socket
   * file still accepts a connection: a `get` of 5,000 peers is 1.5 MB that wireguard-go formats under
   * its device lock, too much to repeat every 2 s (issue 10). A new socket file (the sidecar
   * restarted) is always read at once.
   */
  fullCheckEvery?: number;
}

/**
 * Attach mode: wireguard-go belongs to a sidecar; an agent restart leaves the tunnel up. We wait for
 * the socket, and call `onReady` again when the device comes back reset. Events: `ready`, `lost`.
 * A change of the socket file (the sidecar restarted) is noticed through the socket folder at once;
 * the poll is the fallback where inotify says nothing.
 */
export class AttachedWireguardGo extends EventEmitter implements WireguardGo {
  readonly mode = 'attach' as const;
  readonly interfaceName: string;
  readonly client: UapiClient;
  /** Device resets seen and re-applied. */
  restarts = 0;
  private readonly opts: AttachOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** What the device looked like after our last apply: a difference means it was reset. */
  private applied: { publicKey: string | null; listenPort: number } | null = null;
  private lost = false;
  /** The socket file (its identity) the device was last read through, and polls since that read. */
  private socketId: string | null = null;
  private polls = 0;
  private watcher: FSWatcher | null = null;
  private checking = false;
  private kicked = false;
  private state: WireguardState = 'stopped';
  private since = new Date();
  private lastError: string | null = null;

  constructor(options: AttachOptions) {
    super();
    this.opts = options;
    this.interfaceName = options.interfaceName;
    this.client = new UapiClient(socketPathFor(options.interfaceName, options.socketDir), { timeoutMs: options.timeoutMs, onRequest: options.onRequest });
    this.log = options.logger ?? silentLogger;
  }

  status(): WireguardStatus {
    return {
      mode: this.mode,
      state: this.state,
      restarts: this.restarts,
      failures: 0,
      lastError: this.lastError,
      since: this.since,
      // The sidecar is its own container with its own restarts: restarting this agent would not bring it back.
      healthy: true,
    };
  }

  private setState(state: WireguardState): void {
    if (state !== this.state) this.since = new Date();
    this.state = state;
  }

  /** Wait (without limit, logging every 10 s) for the sidecar's socket, then apply. */
  async start(): Promise<void> {
    this.stopped = false;
    this.setState('starting');
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
    this.watch();
    this.schedule();
  }

  private async ready(restart: boolean, reason: string): Promise<void> {
    const ctx: ReadyContext = { client: this.client, restart, reason };
    if (this.opts.onReady) await this.opts.onReady(ctx);
    const device = await this.client.get();
    this.applied = { publicKey: device.publicKey, listenPort: device.listenPort };
    this.socketId = await socketIdentity(this.client.socketPath);
    this.polls = 0;
    // After a reset no peer has a session with us; on a first attach only the peers that never
    // completed a handshake here (a sidecar that restarted while no agent ran), the others are left alone.
    await prompt(this.client, this.log, this.interfaceName, { all: restart, waitMs: this.opts.promptWaitMs }, reason);
    this.lastError = null;
    this.setState('running');
    this.emit('ready', ctx);
  }

  /** Watch the socket folder: the sidecar's restart removes or replaces our socket. Best effort. */
  private watch(): void {
    if (this.watcher || this.stopped) return;
    const socket = basename(this.client.socketPath);
    try {
      this.watcher = fsWatch(dirname(this.client.socketPath), (_event, file) => {
        if (file === null || file === socket) this.kick();
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null; // no folder yet, or no inotify: the poll still notices, later
    }
  }

  /** Check soon (the socket changed), instead of at the next poll, with a read of the whole device. */
  private kick(): void {
    if (this.stopped) return;
    // Something happened to the socket file: read the device, whatever the file looks like now.
    this.polls = Number.MAX_SAFE_INTEGER;
    if (this.checking) {
      this.kicked = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.schedule(50);
  }

  private schedule(delayMs?: number): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.checking = true;
      this.check()
        .catch((err: Error) => {
          this.lastError = err.message;
          this.log.warn('wireguard-go check failed', { interface: this.interfaceName, error: err.message });
        })
        .finally(() => {
          this.checking = false;
          this.watch();
          const again = this.kicked;
          this.kicked = false;
          this.schedule(again ? 50 : undefined);
        });
    }, delayMs ?? (this.lost ? Math.min(200, this.opts.pollMs ?? 2000) : (this.opts.pollMs ?? 2000)));
  }

  /** One look at the device: re-apply if it was reset; note when the socket goes away and comes back. */
  async check(): Promise<void> {
    const every = this.opts.fullCheckEvery ?? 15;
    if (!this.lost && this.socketId !== null && ++this.polls < every) {
      // The same socket file as at the last read, and it accepts a connection: the same wireguard-go.
      if ((await socketIdentity(this.client.socketPath)) === this.socketId && (await accepts(this.client.socketPath))) return;
    }
    this.polls = 0;
    let device: DeviceState;
    try {
      device = await this.client.get();
    } catch (err) {
      if (isNativeError(err, 'socket-missing') || isNativeError(err, 'socket-stale')) {
        if (!this.lost) {
          this.lost = true;
          this.setState('waiting');
          this.log.warn('wireguard-go sidecar socket is gone; waiting for it', { socket: this.client.socketPath });
          this.emit('lost', err);
        }
        return;
      }
      throw err;
    }
    this.socketId = await socketIdentity(this.client.socketPath);
    const why = this.resetReason(device);
    if (this.lost || why) {
      this.lost = false;
      const reason = why ?? 'socket came back';
      this.log.warn('wireguard-go device was reset; re-applying', { interface: this.interfaceName, reason });
      this.restarts++;
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
    this.watcher?.close();
    this.watcher = null;
    this.setState('stopped');
  }
}

/**
 * Which socket file is at `path` (device, inode, change and birth times), or null when there is none:
 * a file system may give a new socket the inode number of the one just removed.
 */
async function socketIdentity(path: string): Promise<string | null> {
  try {
    const st = await stat(path, { bigint: true });
    return st.isSocket() ? `${st.dev}:${st.ino}:${st.ctimeNs}:${st.birthtimeNs}` : null;
  } catch {
    return null;
  }
}

/** Whether a Unix socket accepts a connection (closed at once without a request; wireguard-go reads EOF and drops it). */
function accepts(path: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection(path);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      conn.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    conn.once('connect', () => done(true));
    conn.once('error', () => done(false));
  });
}

export function createWireguardGo(mode: WireguardMode, options: SpawnOptions & AttachOptions): WireguardGo {
  return mode === 'spawn' ? new SpawnedWireguardGo(options) : new AttachedWireguardGo(options);
}
