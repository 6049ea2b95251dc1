/**
 * A small client for wireguard-go's UAPI socket: one connection per request (a request pipelined
 * after a `set` is lost), a timeout on every request, errno answers turned into named errors.
 */
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { NativeError } from '../errors.ts';
import { encodeSet, fullPeerChange, locateRefusedLine, parseGet, renderSet, replaceDeviceRequest } from './codec.ts';
import type { RefusedLine } from './codec.ts';
import { errnoName, UAPI_ERRNO } from './errno.ts';
import type { DeviceConfig, DeviceState, PeerConfig, SetRequest } from './types.ts';

export const DEFAULT_SOCKET_DIR = '/var/run/wireguard';
export const DEFAULT_TIMEOUT_MS = 5000;

/** Where wireguard-go puts the socket for an interface (shared across network namespaces). */
export function socketPathFor(interfaceName: string, dir = DEFAULT_SOCKET_DIR): string {
  if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(interfaceName)) {
    throw new NativeError(
      'invalid-config',
      `interface name ${JSON.stringify(interfaceName)} is not a Linux interface name (1 to 15 letters, digits, or _=+.-)`,
    );
  }
  return join(dir, `${interfaceName}.sock`);
}

/** A `set` that wireguard-go refused. Lines before the refused one were applied (UAPI is not transactional). */
export class UapiSetError extends NativeError {
  readonly errno: number;
  readonly errnoName: string;
  readonly lines: readonly string[];
  readonly refused: RefusedLine | null;
  /** The device as re-read right after the failure, or null if it could not be read. */
  readonly deviceAfter: DeviceState | null;
  /** wireguard-go's own log line about the failure, when we own its process. */
  readonly wireguardSaid: string | null;

  constructor(opts: {
    socketPath: string;
    errno: number;
    lines: readonly string[];
    refused: RefusedLine | null;
    deviceAfter: DeviceState | null;
    rereadError?: Error;
    wireguardSaid?: string;
  }) {
    const name = errnoName(opts.errno);
    const where = opts.refused
      ? `line ${opts.refused.index + 1} of ${opts.lines.length} ${JSON.stringify(opts.refused.line)} was refused: ${opts.refused.reason}` +
        (opts.refused.index > 0 ? `; lines 1-${opts.refused.index} before it were applied` : '')
      : `wireguard-go did not say which line (${UAPI_ERRNO[Math.abs(opts.errno)]?.meaning ?? 'unknown errno'}); any line may have been applied`;
    const after = opts.deviceAfter
      ? `; device now has ${opts.deviceAfter.peers.length} peer(s), listen port ${opts.deviceAfter.listenPort}`
      : `; the device could not be re-read${opts.rereadError ? `: ${opts.rereadError.message}` : ''}`;
    const said = opts.wireguardSaid ? `; wireguard-go said: ${opts.wireguardSaid}` : '';
    super('uapi-errno', `UAPI set on ${opts.socketPath} failed with ${name}: ${where}${said}${after}`);
    this.wireguardSaid = opts.wireguardSaid ?? null;
    this.errno = Math.abs(opts.errno);
    this.errnoName = name;
    this.lines = opts.lines;
    this.refused = opts.refused;
    this.deviceAfter = opts.deviceAfter;
  }
}

export interface UapiClientOptions {
  timeoutMs?: number;
  /** Called before every request goes out: lets callers (and tests) count and log `set`s. */
  onRequest?: (op: 'get' | 'set', lines: readonly string[]) => void;
  /**
   * wireguard-go's recent log, when we own its process: `seq` counts every line ever logged, `lines`
   * holds the last few. Lets a refused `set` quote wireguard-go's own reason.
   */
  wireguardLog?: () => { seq: number; lines: readonly string[] };
}

/** The IPC error wireguard-go logged after `seqBefore`, without its "ERROR: (wg0) date time" prefix. */
function loggedIpcError(log: UapiClientOptions['wireguardLog'], seqBefore: number): string | undefined {
  if (!log) return undefined;
  const { seq, lines } = log();
  const fresh = lines.slice(Math.max(0, lines.length - (seq - seqBefore)));
  const hit = fresh.find((l) => /IPC error -?\d+:/.test(l));
  return hit?.replace(/^.*?IPC error -?\d+: /, '');
}

export class UapiClient {
  readonly socketPath: string;
  readonly timeoutMs: number;
  private readonly onRequest?: UapiClientOptions['onRequest'];
  private readonly wireguardLog?: UapiClientOptions['wireguardLog'];

  constructor(socketPath: string, options: UapiClientOptions = {}) {
    this.socketPath = socketPath;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.onRequest = options.onRequest;
    this.wireguardLog = options.wireguardLog;
  }

  static forInterface(interfaceName: string, options: UapiClientOptions & { socketDir?: string } = {}): UapiClient {
    return new UapiClient(socketPathFor(interfaceName, options.socketDir), options);
  }

  /** Read the whole device. */
  async get(): Promise<DeviceState> {
    return parseGet(await this.getRaw());
  }

  /** The raw `get` answer (for benchmarks and debugging). */
  async getRaw(): Promise<string> {
    this.onRequest?.('get', []);
    const answer = await this.exchange('get=1\n\n', 'get');
    const errno = errnoOf(answer, this.socketPath);
    if (errno !== 0) throw new NativeError('uapi-errno', `UAPI get on ${this.socketPath} failed with ${errnoName(errno)}`);
    return answer;
  }

  /** Apply a typed change in one `set`. */
  async set(request: SetRequest): Promise<void> {
    await this.setLines(encodeSet(request));
  }

  /**
   * Send body lines as one `set`. On an errno answer, the device is re-read so the error reports
   * the state wireguard-go was left in, and the refused line is named where it can be known.
   */
  async setLines(lines: readonly string[]): Promise<void> {
    this.onRequest?.('set', lines);
    const seqBefore = this.wireguardLog?.().seq ?? 0;
    const answer = await this.exchange(renderSet(lines), 'set');
    const errno = errnoOf(answer, this.socketPath);
    if (errno === 0) return;
    let deviceAfter: DeviceState | null = null;
    let rereadError: Error | undefined;
    try {
      deviceAfter = await this.get();
    } catch (err) {
      rereadError = err as Error;
    }
    // wireguard-go logs its reason before it answers; the re-read above gave the log time to arrive.
    const wireguardSaid = loggedIpcError(this.wireguardLog, seqBefore);
    throw new UapiSetError({
      socketPath: this.socketPath,
      errno,
      lines,
      refused: locateRefusedLine(lines, errno, wireguardSaid),
      deviceAfter,
      rereadError,
      wireguardSaid,
    });
  }

  /** Make the device exactly `config` (key, port, fwmark, every peer) in one `set`. */
  async replaceDevice(config: DeviceConfig): Promise<void> {
    await this.set(replaceDeviceRequest(config));
  }

  /**
   * Make one peer exactly `peer` in one small `set`, leaving every other peer (and this peer's
   * session and counters) alone. With `updateOnly`, a peer that is not there is not created.
   */
  async putPeer(peer: PeerConfig, options: { updateOnly?: boolean } = {}): Promise<void> {
    await this.set({ peers: [fullPeerChange(peer, options.updateOnly ?? false)] });
  }

  /** Remove one peer in one `set`. Removing a peer that is not there is not an error. */
  async removePeer(publicKey: string): Promise<void> {
    await this.set({ peers: [{ publicKey, remove: true }] });
  }

  private exchange(request: string, op: 'get' | 'set'): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path: this.socketPath });
      let answer = '';
      let settled = false;
      const finish = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (err) reject(err);
        else resolve(answer);
      };
      const complete = (): boolean => answer.endsWith('\n\n') && /(^|\n)errno=-?\d+\n\n$/.test(answer);
      const timer = setTimeout(() => {
        finish(
          new NativeError(
            'timeout',
            `UAPI ${op} on ${this.socketPath} got no complete answer within ${this.timeoutMs} ms (wireguard-go hung or overloaded?)`,
          ),
        );
      }, this.timeoutMs);
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write(request));
      socket.on('data', (chunk: string) => {
        answer += chunk;
        if (complete()) finish(null);
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        // wireguard-go answers a refused set at once and may close before it has read the rest: the answer wins.
        if (complete()) return finish(null);
        finish(connectError(err, this.socketPath, op));
      });
      socket.on('close', () => {
        if (complete()) return finish(null);
        finish(
          new NativeError(
            'protocol',
            `UAPI ${op} on ${this.socketPath}: wireguard-go closed the connection without a complete answer` +
              (answer ? ` (got ${answer.length} bytes)` : ''),
          ),
        );
      });
    });
  }
}

function errnoOf(answer: string, socketPath: string): number {
  const m = /(?:^|\n)errno=(-?\d+)\n\n$/.exec(answer);
  if (!m) throw new NativeError('protocol', `UAPI answer from ${socketPath} has no errno line`);
  return Math.abs(Number(m[1]));
}

function connectError(err: NodeJS.ErrnoException, socketPath: string, op: string): NativeError {
  switch (err.code) {
    case 'ENOENT':
      return new NativeError(
        'socket-missing',
        `no wireguard-go socket at ${socketPath}: wireguard-go is not running for this interface, or runs with another /var/run/wireguard (not shared with this container?)`,
        { cause: err },
      );
    case 'ECONNREFUSED':
      return new NativeError(
        'socket-stale',
        `${socketPath} exists but nothing listens on it: a stale socket left by a wireguard-go that was killed (SIGKILL); starting wireguard-go again removes it`,
        { cause: err },
      );
    case 'EACCES':
    case 'EPERM':
      return new NativeError('socket-denied', `permission denied on ${socketPath}: run as root (or with access to /var/run/wireguard)`, {
        cause: err,
      });
    case 'ENOTSOCK':
      return new NativeError('socket-stale', `${socketPath} is not a socket`, { cause: err });
    default:
      return new NativeError('protocol', `UAPI ${op} on ${socketPath} failed: ${err.message}`, { cause: err });
  }
}
