/**
 * `aks-mesh inspect --url ws://host:port`: the same views as a local inspect, read from an agent's or
 * gateway's live stream (mesh/stream.ts), typically through `kubectl port-forward`. Without --watch,
 * the first `device` message is printed and the connection closed; with --watch every `device`
 * message is shown as it arrives (the stream sends one only when the device changed). A stream that
 * drops is reported and reconnected until Ctrl-C; a refused token ends the command with an error.
 */
import type { IncomingMessage } from 'node:http';
import { WebSocket } from '../mesh/ws.ts';
import type { WebSocketLike } from '../mesh/ws.ts';
import { UsageError, fromJson, formatText, toJson } from './format.ts';
import type { PeerRate } from './format.ts';
import type { StreamDeviceJson } from './member-stream.ts';
import { MAX_SHOWN_CHANGES, WatchView, watchStopper } from './inspect-watch.ts';
import type { StreamChange, StreamRefusal, StreamView } from './inspect-watch.ts';
import type { DeviceState } from '../native/index.ts';

export interface RemoteOptions {
  url: string;
  token?: string;
  timeoutMs: number;
}

/** Messages are small; a device of thousands of peers stays far below this. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const RECONNECT_MS = 1000;

/** ws://host:port → ws://host:port/stream (the only path the stream serves); refuses other schemes. */
export function streamUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(text)}: not a URL (expected ws://host:port, such as ws://127.0.0.1:9587 after kubectl port-forward)`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError(`--url ${text}: expected a ws:// or wss:// URL, not ${url.protocol}//`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/stream';
  return url.toString();
}

interface Hello {
  member?: { interface?: string; kind?: string; name?: string };
}

/** A failure that retrying will not mend (refused token, wrong path): the command ends with it. */
class FatalStreamError extends Error {}

/** At most this much of a refusal's body is read: the server's reason is one line. */
const MAX_REASON_BYTES = 1024;

function refusal(url: string, res: IncomingMessage, token: string | undefined, body: string): Error {
  // The server's own words (mesh/stream.ts answers each refusal with one line of text saying why).
  const reason = body.replace(/\s+/g, ' ').trim().slice(0, 300);
  if (res.statusCode === 401) {
    return new FatalStreamError(
      token
        ? `${url}: the stream refused the token (401 Unauthorized): wrong token; the chart's is in Secret aks-mesh-stream-token`
        : `${url}: the stream requires a token (401 Unauthorized): pass --token-file <file>, --token <token> or AKS_MESH_STREAM_TOKEN`,
    );
  }
  if (res.statusCode === 404) return new FatalStreamError(`${url}: no stream at this path (404); the stream is at /stream`);
  if (res.statusCode === 503) {
    return new Error(`${url}: the stream is busy (503 Service Unavailable): ${reason || 'no reason given'}${/too many clients/.test(reason) ? '; close another inspect --watch or dashboard on this member, or try again later' : ''}`);
  }
  return new Error(`${url}: the stream answered ${res.statusCode} ${res.statusMessage ?? ''}${reason ? `: ${reason}` : ''}`.replace(/ +:/, ':').trim());
}

/**
 * What a failed connection means and what to do, by its error code: most often nothing listens on
 * the forwarded port (no `kubectl port-forward`, or it ended), or the port-forward is up but nothing
 * listens in the pod.
 */
export function connectError(url: string, err: NodeJS.ErrnoException): Error {
  const u = new URL(url);
  const where = `${u.hostname.replace(/^\[|\]$/g, '')}:${u.port || (u.protocol === 'wss:' ? '443' : '80')}`;
  const local = /^(127\.|localhost$|::1$)/.test(u.hostname.replace(/^\[|\]$/g, ''));
  switch (err.code) {
    case 'ECONNREFUSED':
      return new Error(
        `${url}: nothing listens on ${where} (connection refused)${local ? ': is `kubectl port-forward` running?' : ''} An agent's stream is on its node's 127.0.0.1:9587 ` +
          "(a gateway's on 127.0.0.1:9588 in its pod), reached with kubectl -n <namespace> port-forward pod/<agent pod> 9587:9587",
      );
    case 'ECONNRESET':
      return new Error(
        `${url}: the connection to ${where} was closed before the stream answered${local ? ': kubectl port-forward accepted it, but nothing may listen on that port in the pod (is the stream on, and on that port? the agent logs "live stream listening")' : ''}`,
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new Error(`${url}: cannot resolve the host ${u.hostname} (${err.code})`);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return new Error(`${url}: ${where} cannot be reached (${err.code}); the stream listens on loopback unless told otherwise: use kubectl port-forward`);
    default:
      return new Error(`${url}: ${err.message}`);
  }
}

/** Opens the stream; resolves once connected, rejects with a message naming the URL. */
function open(o: RemoteOptions, onMessage: (m: Record<string, unknown>) => void): Promise<{ ws: WebSocketLike; closed: Promise<{ code: number; reason: string }> }> {
  const url = streamUrl(o.url);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      handshakeTimeout: o.timeoutMs,
      maxPayload: MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      followRedirects: false,
    });
    let settled = false;
    const closed = new Promise<{ code: number; reason: string }>((done) => ws.once('close', (code, reason) => done({ code, reason: reason.toString() })));
    ws.on('unexpected-response', (_req, res) => {
      settled = true;
      // The reason in the body, bounded; the server closes the connection after it.
      let body = '';
      let finished = false;
      const done = (): void => {
        if (finished) return;
        finished = true;
        ws.terminate();
        reject(refusal(url, res, o.token, body));
      };
      const timer = setTimeout(() => {
        res.destroy();
        done();
      }, 2000);
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < MAX_REASON_BYTES) body += d.slice(0, MAX_REASON_BYTES - body.length);
      });
      res.once('end', () => {
        clearTimeout(timer);
        done();
      });
      res.once('error', () => {
        clearTimeout(timer);
        done();
      });
    });
    ws.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(connectError(url, err as NodeJS.ErrnoException));
    });
    ws.on('message', (data) => {
      let m: unknown;
      try {
        m = JSON.parse(data.toString('utf8'));
      } catch {
        return; // not ours to show
      }
      if (m && typeof m === 'object') onMessage(m as Record<string, unknown>);
    });
    ws.once('open', () => {
      settled = true;
      resolve({ ws, closed });
    });
  });
}

function namesOf(device: StreamDeviceJson): Map<string, string> | undefined {
  const names = new Map<string, string>();
  for (const p of device.peers) if (typeof p.name === 'string') names.set(p.publicKey, p.name);
  return names.size ? names : undefined;
}

function ratesOf(device: StreamDeviceJson): Map<string, PeerRate | null> {
  return new Map(device.peers.map((p) => [p.publicKey, typeof p.rxRate === 'number' && typeof p.txRate === 'number' ? { rx: p.rxRate, tx: p.txRate } : null]));
}

/** The stream's refusals, kept to the fields a watch shows (anything else in the message is ignored). */
function refusalsOf(value: unknown): StreamRefusal[] {
  if (!Array.isArray(value)) return [];
  return value.map((r: Record<string, unknown>) => ({
    kind: String(r?.kind ?? '?'),
    name: String(r?.name ?? '?'),
    reason: String(r?.reason ?? '?'),
    ...(typeof r?.field === 'string' ? { field: r.field } : {}),
    message: String(r?.message ?? ''),
  }));
}

function peerRefsOf(value: unknown): StreamChange['added'] {
  if (!Array.isArray(value)) return [];
  return value.map((p: Record<string, unknown>) => ({ kind: String(p?.kind ?? '?'), name: String(p?.name ?? '?'), publicKey: String(p?.publicKey ?? '') }));
}

/** One snapshot: the first device message, printed as `inspect` (text or --json) prints a local device. */
export async function inspectRemote(o: RemoteOptions & { json: boolean }, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  let hello: Hello = {};
  let resolveDevice: (m: Record<string, unknown>) => void = () => undefined;
  const first = new Promise<Record<string, unknown>>((resolve) => (resolveDevice = resolve));
  const { ws, closed } = await open(o, (m) => {
    if (m.type === 'hello') hello = m as Hello;
    if (m.type === 'device') resolveDevice(m);
  });
  const url = streamUrl(o.url);
  let timer: NodeJS.Timeout | undefined;
  try {
    const m = await Promise.race([
      first,
      closed.then(({ code, reason }) => {
        throw new Error(`${url}: the stream closed before sending the device (${code}${reason ? `: ${reason}` : ''})`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${url}: no device from the stream within ${o.timeoutMs} ms`)), o.timeoutMs);
      }),
    ]);
    const device = m.device as StreamDeviceJson | null;
    if (!device) throw new Error(`${url}: the member could not read its device: ${String(m.error ?? 'unknown error')}`);
    const interfaceName = device.interface || hello.member?.interface || '?';
    const state = fromJson(device);
    const options = { interfaceName, names: namesOf(device) };
    out.write(o.json ? `${JSON.stringify(toJson(state, options), null, 2)}\n` : formatText(state, options));
  } finally {
    clearTimeout(timer);
    ws.close(1000, 'done');
    setTimeout(() => ws.terminate(), 500).unref();
  }
}

/** --watch on a stream: runs until SIGINT/SIGTERM (or `signal`); resolves then (exit 0). Rejects on a refused token. */
export async function watchRemote(
  o: RemoteOptions & { json: boolean; out?: NodeJS.WriteStream | NodeJS.WritableStream; tty?: boolean },
  signal?: AbortSignal,
): Promise<void> {
  const out = o.out ?? process.stdout;
  const tty = o.tty ?? (out as NodeJS.WriteStream).isTTY === true;
  const url = streamUrl(o.url);
  const { stop, release } = watchStopper(out, signal);
  let view: WatchView | null = null;
  let interfaceName = '?';
  const viewFor = (): WatchView => {
    if (!view) {
      view = new WatchView({ interfaceName, json: o.json, showKeys: false, out, tty, header: `live from ${url}` });
      view.begin();
    }
    return view;
  };
  // What the stream says beside the device: refusals (each `desired`), changes (each `change`).
  const stream: StreamView = { refused: null, changes: [] };
  // The last device shown, shown again with the news when a refusal or change arrives.
  let last: { device: DeviceState | null; error: string; rates: Map<string, PeerRate | null>; names: Map<string, string> | undefined } | null = null;
  const show = (time: number): void => {
    if (last) viewFor().show(time, last.device, last.error, last.rates, last.names, stream);
  };
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  let connectedOnce = false;
  try {
    while (!stop.signal.aborted) {
      let why: string;
      try {
        const { ws, closed } = await open(o, (m) => {
          if (m.type === 'hello') interfaceName = (m as Hello).member?.interface ?? interfaceName;
          const time = typeof m.time === 'number' ? m.time : Date.now();
          if (m.type === 'desired') {
            stream.refused = refusalsOf(m.refused);
            show(time);
            return;
          }
          if (m.type === 'change') {
            stream.changes.push({ time, added: peerRefsOf(m.added), removed: peerRefsOf(m.removed), refused: refusalsOf(m.refused) });
            stream.changes.splice(0, Math.max(0, stream.changes.length - MAX_SHOWN_CHANGES));
            show(time);
            return;
          }
          if (m.type !== 'device') return;
          const device = m.device as StreamDeviceJson | null;
          if (device?.interface) interfaceName = device.interface;
          last = device
            ? { device: fromJson(device), error: '', rates: ratesOf(device), names: namesOf(device) }
            : { device: null, error: `the member could not read its device: ${String(m.error ?? 'unknown error')}`, rates: new Map(), names: undefined };
          show(time);
        });
        connectedOnce = true;
        const ended = await Promise.race([closed, stopped.then(() => null)]);
        if (!ended) {
          ws.close(1000, 'done');
          setTimeout(() => ws.terminate(), 500).unref();
          break;
        }
        why = `${url}: the stream closed (${ended.code}${ended.reason ? `: ${ended.reason}` : ''})`;
      } catch (err) {
        if (err instanceof FatalStreamError || !connectedOnce) throw err;
        why = (err as Error).message;
      }
      // Gone (the agent restarting, the port-forward dropped): said once per attempt, then tried again.
      last = { device: null, error: `${why}; reconnecting`, rates: new Map(), names: undefined };
      viewFor().show(Date.now(), null, last.error, last.rates, last.names, stream);
      await Promise.race([new Promise((r) => setTimeout(r, RECONNECT_MS)), stopped]);
    }
  } finally {
    release();
    (view as WatchView | null)?.end();
  }
}
