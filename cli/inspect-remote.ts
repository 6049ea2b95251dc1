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
import { WatchView } from './inspect-watch.ts';

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

function refusal(url: string, res: IncomingMessage, token: string | undefined): Error {
  if (res.statusCode === 401) {
    return new FatalStreamError(
      token
        ? `${url}: the stream refused the token (401 Unauthorized): wrong token; the chart's is in Secret aks-mesh-stream-token`
        : `${url}: the stream requires a token (401 Unauthorized): pass --token-file <file>, --token <token> or AKS_MESH_STREAM_TOKEN`,
    );
  }
  if (res.statusCode === 404) return new FatalStreamError(`${url}: no stream at this path (404); the stream is at /stream`);
  return new Error(`${url}: the stream answered ${res.statusCode} ${res.statusMessage ?? ''}`.trim());
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
      res.resume();
      ws.terminate();
      reject(refusal(url, res, o.token));
    });
    ws.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(new Error(`${url}: ${err.message}`));
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
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  signal?.addEventListener('abort', onSignal, { once: true });
  out.on('error', onSignal);
  let view: WatchView | null = null;
  let interfaceName = '?';
  const viewFor = (): WatchView => {
    if (!view) {
      view = new WatchView({ interfaceName, json: o.json, showKeys: false, out, tty, header: `live from ${url}` });
      view.begin();
    }
    return view;
  };
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  let connectedOnce = false;
  try {
    while (!stop.signal.aborted) {
      let why: string;
      try {
        const { ws, closed } = await open(o, (m) => {
          if (m.type === 'hello') interfaceName = (m as Hello).member?.interface ?? interfaceName;
          if (m.type !== 'device') return;
          const time = typeof m.time === 'number' ? m.time : Date.now();
          const device = m.device as StreamDeviceJson | null;
          if (device?.interface) interfaceName = device.interface;
          const v = viewFor();
          if (device) v.show(time, fromJson(device), '', ratesOf(device), namesOf(device));
          else v.show(time, null, `the member could not read its device: ${String(m.error ?? 'unknown error')}`, new Map(), undefined);
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
      viewFor().show(Date.now(), null, `${why}; reconnecting`, new Map(), undefined);
      await Promise.race([new Promise((r) => setTimeout(r, RECONNECT_MS)), stopped]);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    signal?.removeEventListener('abort', onSignal);
    out.off('error', onSignal);
    (view as WatchView | null)?.end();
  }
}
