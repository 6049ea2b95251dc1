/**
 * `aks-mesh dashboard`'s server: the page (dashboard/page.ts) over node:http, and one WebSocket
 * (`/ws`) per open page carrying
 *   - the cluster view (dashboard/model.ts) from the API: Peers, Gateways and Nodes through the
 *     mesh's own informers (mesh/source/kube.ts: backoff, relist, the last state kept while the API
 *     server is away), checked twice a second and pushed when what they hold changed, status writes
 *     included (never rebuilt straight from an informer event: a busy mesh sends tens a second);
 *   - the live detail of the member a page selected, relayed from that agent's stream (issue 12,
 *     contract (2)): the server connects to the agent only while some page watches it, with the
 *     token in its own Authorization header. The browser never talks to an agent and never sees the
 *     token.
 *
 * Local by default: requests whose Host is not the loopback address we serve (DNS rebinding) and
 * WebSocket upgrades from another Origin (a page elsewhere driving this one) are refused. Bounded: a
 * page that does not keep up skips live frames, and is dropped once far behind.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { OPEN, WebSocket, WebSocketServer } from '../mesh/ws.ts';
import type { WebSocketLike } from '../mesh/ws.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import { silentLogger } from '../native/index.ts';
import type { Logger } from '../native/index.ts';
import { Backoff } from '../mesh/backoff.ts';
import { KubeSource } from '../mesh/source/kube.ts';
import type { Snapshot } from '../mesh/source/types.ts';
import { clusterView } from './model.ts';
import type { MeshObject } from './model.ts';
import { FAVICON_SVG, PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.ts';

/** A page further behind than this skips live frames until it catches up. */
export const PAGE_SKIP_BYTES = 512 * 1024;
/** A page further behind than this is dropped (it reconnects and starts from the current view). */
export const PAGE_DROP_BYTES = 8 * 1024 * 1024;
/** Open pages at most (each one costs a socket and, while it watches a member, a share of a stream). */
export const MAX_PAGES = 32;
/** The largest frame accepted from an agent's stream (a device of thousands of peers fits). */
export const MAX_STREAM_FRAME = 16 * 1024 * 1024;
/**
 * How often the view is checked for changes (the informers' snapshot is compared by identity), and
 * so the most it is rebuilt: twice a second, however fast the API changes.
 */
export const VIEW_INTERVAL_MS = 500;
/** A refused upgrade's socket is destroyed this long after its answer, if the client has not closed it. */
const REFUSED_LINGER_MS = 1000;
/** How long after the informers' last error the page still says the API is failing. */
const API_ERROR_SHOWN_MS = 15_000;
const FRAME_TYPES = new Set(['hello', 'device', 'desired', 'change', 'pass']);

export interface StreamTarget {
  /** As given: "node-a" (a Peer or Gateway of that name), "Peer/node-a" or "Gateway/gw-1". */
  member: string;
  /** ws://host:port/stream (a bare ws://host:port gets /stream). */
  url: string;
}

export interface DashboardOptions {
  kubeConfig: KubeConfig;
  host: string;
  /** 0 picks a free port (see Dashboard.url). */
  port: number;
  /** Whether requests for any Host are served (--allow-remote); otherwise only loopback names. */
  allowRemote?: boolean;
  streams?: StreamTarget[];
  /** Sent to the agents as `Authorization: Bearer <token>`; never to a page. */
  streamToken?: string;
  log?: Logger;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

interface Page {
  ws: WebSocketLike;
  selected: string | null;
  /** The view changed while this page was behind: send it once it catches up. */
  viewPending: boolean;
}

/** One agent's stream, open while at least one page watches its member. */
interface Upstream {
  key: string;
  url: string;
  pages: Set<Page>;
  ws: WebSocketLike | null;
  state: 'connecting' | 'open' | 'closed' | 'error';
  error: string | null;
  /** The latest frame of each snapshot kind, replayed to a page that starts watching. */
  last: Map<string, string>;
  backoff: Backoff;
  retry?: NodeJS.Timeout;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function normalizeStreamUrl(member: string, url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--stream ${member}=${url}: not a URL (expected ws://host:port)`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`--stream ${member}=${url}: the scheme must be ws: or wss:, not ${u.protocol}`);
  if (u.username || u.password) throw new Error(`--stream ${member}=${url}: no credentials in the URL; use --stream-token-file`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/stream';
  return u.toString();
}

export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const log = o.log ?? silentLogger;
  const source = new KubeSource(o.kubeConfig, { log });
  const pages = new Set<Page>();
  const upstreams = new Map<string, Upstream>();
  const streamByKey = new Map<string, string>();
  const streamByName = new Map<string, string>();
  for (const s of o.streams ?? []) {
    const url = normalizeStreamUrl(s.member, s.url);
    if (/^(Peer|Gateway)\//.test(s.member)) streamByKey.set(s.member, url);
    else streamByName.set(s.member, url);
  }
  let closed = false;
  let lastSnapshot: Snapshot | null = null;
  let lastApi = '';
  let viewMessage = '';
  let streamKeys: string[] = [];
  let errorsSeen = 0;
  let lastErrorAt = 0;

  const streamUrlFor = (key: string): string | undefined => streamByKey.get(key) ?? streamByName.get(key.slice(key.indexOf('/') + 1));

  /** Send to a page unless it is far behind; `droppable` frames are skipped while it is somewhat behind. */
  const deliver = (page: Page, data: string, droppable: boolean): boolean => {
    if (page.ws.readyState !== OPEN) return false;
    if (page.ws.bufferedAmount > PAGE_DROP_BYTES) {
      log.warn('a page is too slow: dropped', { behindBytes: page.ws.bufferedAmount });
      page.ws.close(1013, 'too slow: dropped');
      return false;
    }
    if (droppable && page.ws.bufferedAmount > PAGE_SKIP_BYTES) return false;
    page.ws.send(data);
    return true;
  };

  // ------------------------------------------------------------ the cluster view
  const refreshView = (): void => {
    if (closed) return;
    const snap = source.snapshot();
    // The informers keep the last state through an outage: say so while errors keep coming (one in
    // the last 15 s: the informers retry at least every 10 s), so nobody mistakes a frozen view for a
    // quiet mesh.
    if (source.errors !== errorsSeen) {
      errorsSeen = source.errors;
      lastErrorAt = Date.now();
    }
    const failing = source.errors > 0 && (!source.synced() || Date.now() - lastErrorAt < API_ERROR_SHOWN_MS);
    const api = JSON.stringify({ synced: source.synced(), error: failing ? `${source.lastError ?? 'unreachable'} (showing the last state read)` : null });
    if (snap === lastSnapshot && api === lastApi && viewMessage) {
      for (const p of pages) if (p.viewPending && deliver(p, viewMessage, true)) p.viewPending = false;
      return;
    }
    lastSnapshot = snap;
    lastApi = api;
    const view = clusterView(snap.peers as unknown as MeshObject[], snap.gateways as unknown as MeshObject[], snap.nodes);
    streamKeys = view.members.map((m) => m.key).filter((k) => streamUrlFor(k) !== undefined);
    viewMessage = JSON.stringify({ type: 'cluster', time: Date.now(), api: JSON.parse(api) as unknown, view, streams: streamKeys });
    for (const p of pages) p.viewPending = !deliver(p, viewMessage, true);
  };
  // Only the timer rebuilds, never an informer event: events come one per watch event (KubeSource
  // groups only within one turn of the event loop, so a mesh of thousands whose specs or Nodes change
  // sends tens a second), and each rebuild is clusterView plus the whole view's JSON for every page
  // (38 ms and 2 MiB at 5,000 members). Status writes already only replaced the snapshot quietly.
  const viewTimer = setInterval(refreshView, VIEW_INTERVAL_MS);

  // ------------------------------------------------------------ agents' streams
  const tellPages = (u: Upstream): void => {
    const msg = JSON.stringify({ type: 'stream', member: u.key, state: u.state, ...(u.error ? { error: u.error } : {}) });
    for (const p of u.pages) deliver(p, msg, false);
  };
  const connectUpstream = (u: Upstream): void => {
    if (closed || u.pages.size === 0) return;
    u.state = 'connecting';
    tellPages(u);
    const ws = new WebSocket(u.url, {
      headers: o.streamToken ? { authorization: `Bearer ${o.streamToken}` } : {},
      handshakeTimeout: 10_000,
      maxPayload: MAX_STREAM_FRAME,
      perMessageDeflate: false,
    });
    u.ws = ws;
    const fail = (message: string): void => {
      if (u.ws !== ws) return;
      u.ws = null;
      u.state = 'error';
      u.error = message;
      u.last.clear();
      tellPages(u);
      ws.terminate();
      if (closed || u.pages.size === 0) return;
      const delay = u.backoff.next();
      log.warn('agent stream failed; retrying', { member: u.key, url: u.url, error: message, retryInMs: delay });
      u.retry = setTimeout(() => connectUpstream(u), delay);
    };
    ws.on('unexpected-response', (_req, res) => {
      const code = res.statusCode ?? 0;
      res.resume();
      fail(code === 401 ? 'refused (HTTP 401): the stream token is missing or wrong (--stream-token-file, AKS_MESH_STREAM_TOKEN)' : `refused: HTTP ${code}`);
    });
    ws.on('error', (err) => fail(err.message.split('\n')[0]));
    ws.on('open', () => {
      if (u.ws !== ws) return;
      u.state = 'open';
      u.error = null;
      u.backoff.reset();
      log.info('watching an agent stream', { member: u.key, url: u.url });
      tellPages(u);
    });
    ws.on('message', (data, isBinary) => {
      if (u.ws !== ws || isBinary) return;
      let frame: unknown;
      try {
        frame = JSON.parse(data.toString());
      } catch {
        return; // not one JSON object: not contract (2); skipped
      }
      const type = (frame as { type?: unknown } | null)?.type;
      if (typeof type !== 'string' || !FRAME_TYPES.has(type)) return;
      const msg = JSON.stringify({ type: 'frame', member: u.key, frame });
      if (type === 'hello' || type === 'device' || type === 'desired') u.last.set(type, msg);
      // A device frame is a whole snapshot: a page that is behind loses nothing by skipping one.
      for (const p of u.pages) deliver(p, msg, type === 'device');
    });
    ws.on('close', (code, reason) => {
      if (u.ws !== ws) return;
      fail(`closed by the agent (${code}${reason.length ? `: ${reason.toString()}` : ''})`);
    });
  };
  const unwatch = (page: Page): void => {
    if (!page.selected) return;
    const u = upstreams.get(page.selected);
    page.selected = null;
    if (!u) return;
    u.pages.delete(page);
    if (u.pages.size > 0) return;
    // Nobody watches this member any more: the agent does no work for us.
    clearTimeout(u.retry);
    u.ws?.close(1000, 'no page watches this member');
    u.ws = null;
    upstreams.delete(u.key);
  };
  const watch = (page: Page, key: string | null): void => {
    unwatch(page);
    if (key === null) return;
    page.selected = key;
    const url = streamUrlFor(key);
    if (!url) return;
    let u = upstreams.get(key);
    if (!u) {
      u = { key, url, pages: new Set(), ws: null, state: 'connecting', error: null, last: new Map(), backoff: new Backoff({ initialMs: 1000, maxMs: 15_000 }) };
      upstreams.set(key, u);
      u.pages.add(page);
      connectUpstream(u);
      return;
    }
    u.pages.add(page);
    deliver(page, JSON.stringify({ type: 'stream', member: key, state: u.state, ...(u.error ? { error: u.error } : {}) }), false);
    for (const msg of u.last.values()) deliver(page, msg, false);
  };

  // ------------------------------------------------------------ HTTP and the pages' socket
  let boundPort = o.port;
  const hostAllowed = (req: IncomingMessage): boolean => {
    if (o.allowRemote) return true;
    const host = req.headers.host ?? '';
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
    if (!m) return false;
    const name = m[1].replace(/^\[|\]$/g, '');
    return isLoopback(name) && Number(m[2] ?? 80) === boundPort;
  };
  const assets: Record<string, [string, string]> = {
    '/': ['text/html; charset=utf-8', PAGE_HTML],
    '/index.html': ['text/html; charset=utf-8', PAGE_HTML],
    '/dashboard.js': ['text/javascript; charset=utf-8', PAGE_JS],
    '/dashboard.css': ['text/css; charset=utf-8', PAGE_CSS],
    '/favicon.svg': ['image/svg+xml', FAVICON_SVG],
  };
  const SECURITY_HEADERS = {
    // Only our own script and style; the socket to ourselves. Nothing inline, nothing from elsewhere.
    'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (!hostAllowed(req)) {
      res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' }).end('aks-mesh dashboard: Host not allowed (served on loopback only)\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    // Asked for by browsers (and by old pages) whatever the page links: an empty answer, not a 404 error.
    if (path === '/favicon.ico' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(204, SECURITY_HEADERS).end();
      return;
    }
    const asset = assets[path];
    if (!asset || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(asset ? 405 : 404, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end(asset ? 'method not allowed\n' : 'not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': asset[0], 'content-length': Buffer.byteLength(asset[1]), ...SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : asset[1]);
  };
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, perMessageDeflate: false });
  const refuse = (socket: Duplex, code: number, text: string): void => {
    socket.end(`HTTP/1.1 ${code} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    // end() only half-closes, and after 'upgrade' no HTTP timeout applies any more: a client that
    // never closes its side would keep each refused socket (not counted in MAX_PAGES) for good.
    setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
  };
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/ws') return refuse(socket, 404, 'Not Found');
    if (!hostAllowed(req)) return refuse(socket, 403, 'Forbidden');
    // A browser always sends Origin: only our own page may open the socket.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}`) return refuse(socket, 403, 'Forbidden');
    if (pages.size >= MAX_PAGES) return refuse(socket, 503, 'Service Unavailable');
    wss.handleUpgrade(req, socket, head, (ws) => {
      const page: Page = { ws, selected: null, viewPending: false };
      pages.add(page);
      if (viewMessage) deliver(page, viewMessage, false);
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        let msg: { type?: unknown; member?: unknown };
        try {
          msg = JSON.parse(data.toString()) as typeof msg;
        } catch {
          return;
        }
        if (msg?.type === 'select') watch(page, typeof msg.member === 'string' && msg.member.length <= 300 ? msg.member : null);
      });
      ws.on('close', () => {
        unwatch(page);
        pages.delete(page);
      });
      ws.on('error', () => ws.terminate());
    });
  };

  const server: Server = createServer(handle);
  server.on('upgrade', upgrade);
  await source.start();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    clearInterval(viewTimer);
    await source.stop();
    throw err;
  }
  boundPort = (server.address() as AddressInfo).port;
  refreshView();
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${hostForUrl}:${boundPort}/`,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      clearInterval(viewTimer);
      for (const u of upstreams.values()) {
        clearTimeout(u.retry);
        u.ws?.terminate();
      }
      upstreams.clear();
      for (const p of pages) p.ws.terminate();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await source.stop();
    },
  };
}
