/**
 * The member's live stream (issue 12, contract (2)): a WebSocket at ws://<address>/stream that
 * `aks-mesh inspect --url` and the dashboard read. One JSON object per text frame:
 *   hello    once, on connect: who this member is;
 *   device   on connect, then whenever the live device changed (read at most every intervalMs, and
 *            at most a fifth of the time; one read shared by every client, none while no client is
 *            connected);
 *   desired  on connect and after each pass whose topology changed;
 *   change   after each pass that added, removed or refused something;
 *   pass     after each pass.
 *
 * Never open to the network unless asked: a non-loopback address needs a token, and with a token
 * every request without `Authorization: Bearer <token>` is answered 401 before the upgrade. Never
 * open to a web page: WebSockets are not covered by CORS, so any request carrying an Origin header
 * (browsers always send one; `ws` clients such as inspect --url and the dashboard's relay never do)
 * is answered 403, and without a token the Host header must be an IP literal or localhost (a
 * DNS-rebinding name is refused, 403). A refused connection is destroyed shortly after its answer.
 * Bounded: at most maxClients connections (then 503), and a client whose unsent data passes
 * max(maxBufferedBytes, twice the largest message sent) (it reads too slowly) is dropped with close
 * code 1008, never buffered without limit. What the messages carry is the caller's (cli/member-stream.ts): this module only serves them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../native/index.ts';
import { OPEN, WebSocketServer } from './ws.ts';
import type { WebSocketLike, WebSocketServerLike } from './ws.ts';

export const STREAM_PATH = '/stream';
export const DEFAULT_STREAM_INTERVAL_MS = 250;
export const DEFAULT_STREAM_MAX_CLIENTS = 16;
export const DEFAULT_STREAM_MAX_BUFFERED_BYTES = 1024 * 1024;
/** Close code and reason a slow client gets (1008: policy violation). */
export const SLOW_CLIENT_CLOSE = { code: 1008, reason: 'too slow: dropped' } as const;
/** Tokens shorter than this are refused: the token is all that guards a stream on the network. */
export const MIN_TOKEN_LENGTH = 16;

export interface StreamServerOptions {
  /** host:port or [v6]:port; port 0 picks a free one (see address()). */
  address: string;
  /** Required on a non-loopback address. */
  token?: string;
  /** The hello message's member (contract (2)). */
  member: Record<string, unknown>;
  /**
   * One read of the live device as the `device` message's payload (JSON-able). Its serialisation is
   * what "changed" means: a read equal to the last one sends nothing. Throwing sends the error once.
   */
  readDevice: () => Promise<unknown>;
  intervalMs?: number;
  maxClients?: number;
  maxBufferedBytes?: number;
  /** Called when the last client leaves (reads stop): what the reads kept (rate history) is stale. */
  onIdle?: () => void;
  log?: Logger;
}

/** A listen that failed (address in use, not this machine's): `code` is the errno code. */
export class StreamListenError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined) {
    super(message);
    this.code = code;
  }
}

/** The host of a Host header ("127.0.0.1:9587", "[::1]:9587", "localhost"), lower case; null when malformed. */
export function hostOfHeader(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^\[([0-9a-fA-F:.]+)\](?::\d{1,5})?$/.exec(header) ?? /^([^:[\]]+)(?::\d{1,5})?$/.exec(header);
  return m ? m[1].toLowerCase() : null;
}

/** A Host a DNS-rebinding page cannot produce: an IP literal or localhost. */
export function isLiteralHost(header: string | undefined): boolean {
  const host = hostOfHeader(header);
  return host !== null && (host === 'localhost' || isIP(host) !== 0);
}

/** host and port of "host:port" / "[v6]:port"; throws naming `what` when it is neither. */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535 || (isIP(m[1]) === 0 && m[1] !== 'localhost')) {
    throw new Error(`${what} ${JSON.stringify(text)}: expected IP:port or [IPv6]:port (such as 127.0.0.1:9587)`);
  }
  return { host: m[1], port };
}

/** Only this machine (this network namespace) can connect. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./i.test(host);
}

/** Constant-time comparison of a request's Authorization header against the token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  // Digests make both sides 32 bytes: timingSafeEqual needs equal lengths and the length leaks nothing.
  const given = createHash('sha256')
    .update(m ? m[1] : '\0')
    .digest();
  const wanted = createHash('sha256').update(token).digest();
  return m !== null && timingSafeEqual(given, wanted);
}

interface Client {
  ws: WebSocketLike;
  dropped: boolean;
}

const STATUS_TEXT: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };

export class StreamServer {
  private readonly o: Required<Omit<StreamServerOptions, 'token' | 'log' | 'onIdle'>> & Pick<StreamServerOptions, 'token' | 'log' | 'onIdle'>;
  private readonly http: Server;
  private readonly wss: WebSocketServerLike;
  private readonly clients = new Set<Client>();
  /** The last device message sent (its serialisation), shared by every client; null while no read is running. */
  private lastDevice: string | null = null;
  private lastDeviceKey: string | null = null;
  private desired: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reading = false;
  private closed = false;
  private refusedLoggedAt = 0;
  /** Bytes of the largest message sent so far: a reader keeping up may hold about two of them unsent. */
  private largest = 0;

  private constructor(o: StreamServerOptions) {
    this.o = {
      intervalMs: DEFAULT_STREAM_INTERVAL_MS,
      maxClients: DEFAULT_STREAM_MAX_CLIENTS,
      maxBufferedBytes: DEFAULT_STREAM_MAX_BUFFERED_BYTES,
      ...o,
    };
    // Clients send nothing: a tiny payload limit keeps a hostile one from making us buffer its frames.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false, clientTracking: false });
    this.http = createServer((req, res) => {
      // A plain HTTP request (a browser, curl): the same door as the upgrade, then a hint.
      const refusal = this.refusal(req);
      res.writeHead(refusal?.status ?? 426, { 'content-type': 'text/plain; charset=utf-8', connection: 'close', ...(refusal?.headers ?? {}) });
      res.end(refusal ? `${refusal.text}\n` : `aks-mesh stream: connect with a WebSocket client to ${STREAM_PATH} (aks-mesh inspect --url)\n`);
    });
    this.http.headersTimeout = 10_000;
    this.http.requestTimeout = 10_000;
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
    this.http.on('clientError', (_err, socket: Duplex) => socket.destroy());
  }

  /** Listens on o.address; rejects (naming the address) when it cannot, or when it would be open without a token. */
  static async start(o: StreamServerOptions): Promise<StreamServer> {
    const { host, port } = parseHostPort(o.address, '--stream-address');
    if (o.token !== undefined && o.token.length < MIN_TOKEN_LENGTH) throw new Error(`stream token: ${o.token.length} characters, at least ${MIN_TOKEN_LENGTH} needed`);
    if (!isLoopback(host) && !o.token) {
      throw new Error(`--stream-address ${o.address} is not a loopback address: it needs a token (--stream-token-file or AKS_MESH_STREAM_TOKEN), or bind 127.0.0.1`);
    }
    const server = new StreamServer(o);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(new StreamListenError(`--stream-address ${o.address}: ${err.message}`, err.code));
      server.http.once('error', onError);
      server.http.listen(port, host, () => {
        server.http.off('error', onError);
        resolve();
      });
    });
    server.http.on('error', (err: Error) => o.log?.warn('stream server error', { error: err.message }));
    return server;
  }

  /** Where it listens (the port, when started on port 0). */
  address(): { host: string; port: number } {
    const a = this.http.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Why a request is refused before the upgrade, or null. */
  private refusal(req: IncomingMessage): { status: number; text: string; headers?: Record<string, string> } | null {
    // A browser: any web page open on this machine (or wherever the port is forwarded) could read
    // the stream otherwise; no client of ours sends an Origin.
    if (req.headers.origin !== undefined) return { status: 403, text: 'refused: requests from a web page (with an Origin header) are not served; use aks-mesh inspect --url or the dashboard' };
    // Without a token, a name in Host is a page that rebinds its own name to 127.0.0.1.
    if (this.o.token === undefined && !isLiteralHost(req.headers.host)) {
      return { status: 403, text: `refused: Host ${JSON.stringify(req.headers.host ?? '')} is not an IP address or localhost` };
    }
    if (this.o.token !== undefined && !bearerMatches(req.headers.authorization, this.o.token)) {
      return {
        status: 401,
        text: req.headers.authorization ? 'wrong token' : 'a token is required: Authorization: Bearer <token>',
        headers: { 'www-authenticate': 'Bearer realm="aks-mesh stream"' },
      };
    }
    const path = (req.url ?? '').split('?')[0];
    if (path !== STREAM_PATH) return { status: 404, text: `no such path: the stream is at ${STREAM_PATH}` };
    return null;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const refusal = this.refusal(req) ?? (this.closed ? { status: 503, text: 'stopping' } : null) ?? (this.clients.size >= this.o.maxClients ? { status: 503, text: `too many clients (at most ${this.o.maxClients})` } : null);
    if (refusal) {
      const headers = Object.entries({ 'content-type': 'text/plain; charset=utf-8', connection: 'close', ...(refusal.headers ?? {}) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      const body = `${refusal.text}\n`;
      socket.end(`HTTP/1.1 ${refusal.status} ${STATUS_TEXT[refusal.status] ?? 'Service Unavailable'}\r\n${headers}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      // end() only half-closes, and after an upgrade no HTTP timeout applies: a client that never
      // closes would hold the socket (and a file descriptor, outside maxClients) for ever.
      setTimeout(() => socket.destroy(), 1000).unref();
      // Said at most every 10 s: a client retrying in a loop must not flood the log.
      if ((refusal.status === 401 || refusal.status === 403) && Date.now() - this.refusedLoggedAt >= 10_000) {
        this.refusedLoggedAt = Date.now();
        if (refusal.status === 401) this.o.log?.warn('stream: request refused (no or wrong token)', { from: req.socket.remoteAddress });
        else this.o.log?.warn('stream: request refused (from a web page, or a Host that is a name)', { from: req.socket.remoteAddress, origin: req.headers.origin, host: req.headers.host });
      }
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.connected(ws));
  }

  private connected(ws: WebSocketLike): void {
    const client: Client = { ws, dropped: false };
    this.clients.add(client);
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stopReading();
    });
    // Clients have nothing to say; anything they send is ignored.
    ws.on('message', () => undefined);
    this.sendTo(client, this.sized(JSON.stringify({ type: 'hello', time: Date.now(), member: this.o.member })));
    if (this.lastDevice) this.sendTo(client, this.lastDevice);
    if (this.desired) this.sendTo(client, this.desired);
    // The first client starts the reads; the others share them (and got the last device just above).
    if (!this.timer && !this.reading) void this.readDevice();
  }

  /** Sends `message` (an object, serialised once) to every client. */
  broadcast(message: object): void {
    if (this.clients.size === 0) return;
    const text = this.sized(JSON.stringify(message));
    for (const c of this.clients) this.sendTo(c, text);
  }

  /** The `desired` message: kept for clients that connect later, and sent to the connected ones. */
  setDesired(message: object): void {
    this.desired = this.sized(JSON.stringify(message));
    for (const c of this.clients) this.sendTo(c, this.desired);
  }

  /** Notes a message's size (see `largest`) and returns it. */
  private sized(text: string): string {
    // A string's length is at most its UTF-8 size and these are JSON, nearly all ASCII: close enough
    // for a bound, without encoding megabytes once more.
    if (text.length > this.largest) this.largest = text.length;
    return text;
  }

  private sendTo(c: Client, text: string): void {
    if (c.dropped || c.ws.readyState !== OPEN) return;
    // A fixed limit would drop readers that keep up once one message (a device of thousands of peers)
    // outgrows it: on connect, hello + device + desired go out back to back. Two messages behind is slow.
    if (c.ws.bufferedAmount > Math.max(this.o.maxBufferedBytes, 2 * this.largest)) {
      this.drop(c);
      return;
    }
    c.ws.send(text);
  }

  /**
   * A client that does not read what it is sent: stop sending, say why in a close frame, and cut the
   * connection if the close cannot get through either (its window is full), so nothing stays queued.
   */
  private drop(c: Client): void {
    c.dropped = true;
    this.o.log?.warn('stream: a client read too slowly and was dropped', { limitBytes: Math.max(this.o.maxBufferedBytes, 2 * this.largest), buffered: c.ws.bufferedAmount });
    c.ws.close(SLOW_CLIENT_CLOSE.code, SLOW_CLIENT_CLOSE.reason);
    setTimeout(() => c.ws.terminate(), 1000).unref();
  }

  private async readDevice(): Promise<void> {
    this.timer = null;
    if (this.closed || this.clients.size === 0) return;
    this.reading = true;
    const time = Date.now();
    let payload: object;
    let key: string;
    try {
      const device = await this.o.readDevice();
      key = JSON.stringify(device);
      payload = { type: 'device', time, device };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      key = `error:${error}`;
      payload = { type: 'device', time, device: null, error };
    } finally {
      this.reading = false;
    }
    if (this.closed || this.clients.size === 0) {
      this.stopReading();
      return;
    }
    if (key !== this.lastDeviceKey) {
      this.lastDeviceKey = key;
      this.lastDevice = this.sized(JSON.stringify(payload));
      for (const c of this.clients) this.sendTo(c, this.lastDevice);
    }
    // A device so large that one read takes a while (thousands of peers) is read less often: watching
    // must never cost the agent more than about a fifth of a core.
    const took = Date.now() - time;
    this.timer = setTimeout(() => void this.readDevice(), Math.max(this.o.intervalMs - took, 4 * took));
  }

  /** No client left: no reads, and the next client gets a fresh one rather than a stale copy. */
  private stopReading(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.lastDevice = null;
    this.lastDeviceKey = null;
    try {
      this.o.onIdle?.();
    } catch (err) {
      this.o.log?.warn('stream: the idle hook failed', { error: (err as Error).message });
    }
  }

  /** Closes every connection (1001: going away) and the listening socket; resolves once the port is free. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopReading();
    for (const c of this.clients) {
      c.ws.close(1001, 'member stopping');
      setTimeout(() => c.ws.terminate(), 500).unref();
    }
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      // Idle keep-alive HTTP requests must not hold the port.
      this.http.closeAllConnections();
    });
  }
}
