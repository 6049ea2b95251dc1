/**
 * A small client for wireguard-go's UAPI socket: one connection per request (a request pipelined
 * after a `set` is lost), a timeout and a size cap on every answer, errno answers turned into named
 * errors, and no key in any error: a `set` carries the device's private key and the peers'
 * preshared keys, and an error object is logged, printed and serialized far from here.
 */
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { NativeError } from '../errors.ts';
import { REDACTED, redactSecrets, redactUapiLine } from '../keys/redact.ts';
import { encodeSet, fullPeerChange, locateRefusedLine, parseGetBytes, renderSet, replaceDeviceRequest } from './codec.ts';
import type { RefusedLine } from './codec.ts';
import { errnoName, UAPI_ERRNO } from './errno.ts';
import type { DeviceConfig, DeviceState, PeerConfig, SetRequest } from './types.ts';

export const DEFAULT_SOCKET_DIR = '/var/run/wireguard';
export const DEFAULT_TIMEOUT_MS = 5000;
/**
 * The biggest answer a client buffers: 16 MiB. A `get` of 5,000 peers is 1.67 MB (about 330 bytes
 * a peer, more with several allowed IPs), so this leaves room for ten times that; a socket that
 * sends more without ending its answer is broken or hostile, and buffering it would take the
 * agent's memory (a flooding socket gave 363 MiB in 5 s before this cap).
 */
export const DEFAULT_MAX_REPLY_BYTES = 16 * 1024 * 1024;

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

/** A device as an error may carry it: its private key and every preshared key replaced by REDACTED. */
function redactDevice(device: DeviceState): DeviceState {
  return {
    ...device,
    privateKey: device.privateKey === null ? null : REDACTED,
    peers: device.peers.map((p) => ({ ...p, allowedIPs: [...p.allowedIPs], presharedKey: p.presharedKey === null ? null : REDACTED })),
  };
}

/**
 * A `set` that wireguard-go refused. Lines before the refused one were applied (UAPI is not
 * transactional). Its message and every property are redacted: `private_key=` and `preshared_key=`
 * values in `lines` and `refused`, the keys of `deviceAfter` (its publicKey says which key is set);
 * JSON.stringify and util.inspect show only these.
 */
export class UapiSetError extends NativeError {
  readonly errno: number;
  readonly errnoName: string;
  /** The request's body lines, keys redacted. */
  readonly lines: readonly string[];
  /** The line wireguard-go stopped at, its key value redacted. */
  readonly refused: RefusedLine | null;
  /** The device as re-read right after the failure (keys redacted), or null if it could not be read. */
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
    const lines = opts.lines.map(redactUapiLine);
    const refused = opts.refused
      ? { index: opts.refused.index, line: redactUapiLine(opts.refused.line), reason: redactSecrets(opts.refused.reason) }
      : null;
    const where = refused
      ? `line ${refused.index + 1} of ${lines.length} ${JSON.stringify(refused.line)} was refused: ${refused.reason}` +
        (refused.index > 0 ? `; lines 1-${refused.index} before it were applied` : '')
      : `wireguard-go did not say which line (${UAPI_ERRNO[Math.abs(opts.errno)]?.meaning ?? 'unknown errno'}); any line may have been applied`;
    const after = opts.deviceAfter
      ? `; device now has ${opts.deviceAfter.peers.length} peer(s), listen port ${opts.deviceAfter.listenPort}`
      : `; the device could not be re-read${opts.rereadError ? `: ${opts.rereadError.message}` : ''}`;
    const wireguardSaid = opts.wireguardSaid ? redactSecrets(opts.wireguardSaid) : null;
    const said = wireguardSaid ? `; wireguard-go said: ${wireguardSaid}` : '';
    super('uapi-errno', `UAPI set on ${opts.socketPath} failed with ${name}: ${where}${said}${after}`);
    this.wireguardSaid = wireguardSaid;
    this.errno = Math.abs(opts.errno);
    this.errnoName = name;
    this.lines = lines;
    this.refused = refused;
    this.deviceAfter = opts.deviceAfter ? redactDevice(opts.deviceAfter) : null;
  }

  /** What JSON.stringify shows (and what a JSON log line carries): counters as decimal strings. */
  toJSON(): Record<string, unknown> {
    return JSON.parse(
      JSON.stringify(
        {
          name: this.name,
          kind: this.kind,
          message: this.message,
          errno: this.errno,
          errnoName: this.errnoName,
          lines: this.lines,
          refused: this.refused,
          wireguardSaid: this.wireguardSaid,
          deviceAfter: this.deviceAfter,
        },
        (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
      ),
    ) as Record<string, unknown>;
  }
}

export interface UapiClientOptions {
  timeoutMs?: number;
  /** The biggest answer to buffer (default DEFAULT_MAX_REPLY_BYTES); a bigger one fails with kind 'reply-too-large'. */
  maxReplyBytes?: number;
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

/** Told how long one UAPI exchange took and whether an answer came (UapiClient.observe). */
export type UapiObserver = (op: 'get' | 'set', seconds: number, answered: boolean) => void;

export class UapiClient {
  readonly socketPath: string;
  readonly timeoutMs: number;
  readonly maxReplyBytes: number;
  private readonly onRequest?: UapiClientOptions['onRequest'];
  private readonly wireguardLog?: UapiClientOptions['wireguardLog'];
  /** How big the next `get` answer is likely to be: the last one and an eighth (devices grow slowly). */
  private getSizeHint = MIN_GET_BUFFER_BYTES;
  private readonly observers = new Set<UapiObserver>();

  constructor(socketPath: string, options: UapiClientOptions = {}) {
    this.socketPath = socketPath;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxReplyBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
    if (!Number.isSafeInteger(this.maxReplyBytes) || this.maxReplyBytes < 1) {
      throw new NativeError('invalid-config', `maxReplyBytes: ${String(options.maxReplyBytes)} is not a positive whole number of bytes`);
    }
    this.onRequest = options.onRequest;
    this.wireguardLog = options.wireguardLog;
  }

  static forInterface(interfaceName: string, options: UapiClientOptions & { socketDir?: string } = {}): UapiClient {
    return new UapiClient(socketPathFor(interfaceName, options.socketDir), options);
  }

  /**
   * Be told, after each exchange with wireguard-go, how long it took (connect to the last byte of
   * the answer, or to the failure) and whether an answer came (an errno answer is an answer): the
   * UAPI latency metric. A `set`'s re-read after a refusal is a `get` of its own. A listener that
   * throws is ignored. Returns the unsubscribe.
   */
  observe(listener: UapiObserver): () => void {
    this.observers.add(listener);
    return () => this.observers.delete(listener);
  }

  /** Read the whole device. */
  async get(): Promise<DeviceState> {
    return parseGetBytes(await this.getBytes());
  }

  /** The raw `get` answer (for benchmarks and debugging). */
  async getRaw(): Promise<string> {
    return (await this.getBytes()).toString('utf8');
  }

  /** The bytes of a `get` answer whose errno is 0, as they came from the socket (parseGetBytes reads them). */
  async getBytes(): Promise<Buffer> {
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

  /**
   * Send one request and collect its answer, which ends with "errno=N" and a blank line. The answer
   * is read straight into one buffer (socket `onread`), grown by doubling up to the cap, so a 1.67 MB
   * `get` is neither 26 chunk Buffers nor a concat; its first buffer is sized from the last `get`.
   * Resolves with a view of exactly the answer's bytes.
   */
  private exchange(request: string, op: 'get' | 'set'): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      // Never read past the cap: one byte over it is enough to know the answer is too large.
      const limit = this.maxReplyBytes + 1;
      let buffer = Buffer.allocUnsafe(Math.min(limit, op === 'get' ? this.getSizeHint : SET_ANSWER_BYTES));
      let received = 0;
      let settled = false;
      const started = this.observers.size ? performance.now() : 0;
      const finish = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (this.observers.size) {
          const seconds = (performance.now() - started) / 1000;
          for (const o of this.observers) {
            try {
              o(op, seconds, err === null);
            } catch {
              // A metric must never break a request.
            }
          }
        }
        if (err) return reject(err);
        if (op === 'get') this.getSizeHint = Math.max(MIN_GET_BUFFER_BYTES, received + (received >> 3));
        resolve(buffer.subarray(0, received));
      };
      // Whether the answer is complete is decided on its last bytes alone, not by re-reading it all.
      const complete = (): boolean => answerErrnoStart(buffer, received) >= 0;
      const onData = (nread: number): boolean => {
        if (settled) return false;
        received += nread;
        if (received > this.maxReplyBytes) {
          finish(
            new NativeError(
              'reply-too-large',
              `UAPI ${op} on ${this.socketPath}: the answer passed the cap of ${this.maxReplyBytes} bytes (maxReplyBytes) without ending; ` +
                'stopped reading (is something other than wireguard-go on this socket, or is it flooding?)',
            ),
          );
          return false;
        }
        if (complete()) finish(null);
        return !settled;
      };
      // Where the next read lands: the free end of the buffer, grown when full (never to 0 bytes: received < limit here).
      const nextRead = (): Buffer => {
        if (received === buffer.length && buffer.length < limit) {
          const bigger = Buffer.allocUnsafe(Math.min(limit, buffer.length * 2));
          buffer.copy(bigger, 0, 0, received);
          buffer = bigger;
        }
        return buffer.subarray(received);
      };
      const socket = createConnection({ path: this.socketPath, onread: { buffer: nextRead, callback: onData } });
      const timer = setTimeout(() => {
        finish(
          new NativeError(
            'timeout',
            `UAPI ${op} on ${this.socketPath} got no complete answer within ${this.timeoutMs} ms (wireguard-go hung or overloaded?)`,
          ),
        );
      }, this.timeoutMs);
      socket.on('connect', () => socket.write(request));
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
              (received ? ` (got ${received} bytes)` : ''),
          ),
        );
      });
    });
  }
}

/** A `set` answer is "errno=N\n\n": its buffer starts small and grows only for a socket that says more. */
const SET_ANSWER_BYTES = 256;
/** The first buffer of a first `get` (later ones are sized from the last answer). */
const MIN_GET_BUFFER_BYTES = 64 * 1024;
/** The longest errno value read: an int64 in wireguard-go (19 digits and a sign). */
const MAX_ERRNO_DIGITS = 19;

/**
 * Where the "errno=N" line that ends an answer (bytes[0, end)) starts, or -1 if the answer does not
 * end with one: "errno=", an optional '-', 1 to 19 digits, "\n\n", at the start or after a '\n'.
 */
export function answerErrnoStart(bytes: Uint8Array, end: number): number {
  if (end < 9 || bytes[end - 1] !== 10 || bytes[end - 2] !== 10) return -1;
  let i = end - 3;
  while (i >= 0 && bytes[i] >= 48 && bytes[i] <= 57 && end - 3 - i < MAX_ERRNO_DIGITS) i--;
  if (i === end - 3) return -1; // no digit
  if (bytes[i] === 45) i--; // '-'
  const at = i - 5;
  if (at < 0 || bytes[at] !== 101 || bytes[at + 1] !== 114 || bytes[at + 2] !== 114 || bytes[at + 3] !== 110 || bytes[at + 4] !== 111 || bytes[at + 5] !== 61) {
    return -1; // not "errno="
  }
  return at === 0 || bytes[at - 1] === 10 ? at : -1;
}

function errnoOf(answer: Buffer, socketPath: string): number {
  const at = answerErrnoStart(answer, answer.length);
  if (at < 0) throw new NativeError('protocol', `UAPI answer from ${socketPath} has no errno line`);
  return Math.abs(Number(answer.toString('latin1', at + 6, answer.length - 2)));
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
