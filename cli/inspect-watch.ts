/**
 * `aks-mesh inspect --watch`: reads a device every --interval ms and shows it with per-peer rates.
 *
 * - On a terminal the `wg show` block is redrawn in place (cursor home + clear), the cursor hidden
 *   while watching and shown again on exit.
 * - Not on a terminal (a pipe, a log file) a block is printed only when the device changed (a new
 *   handshake, moved counters, peers added or removed): an idle device prints nothing, never an
 *   endless stream of identical blocks.
 * - With --json: one JSON object per line per read (NDJSON), rates included, for machines.
 * - A device that goes away (wireguard-go restarting, an agent upgrade) is reported once and watched
 *   again until it returns: that moment is when an operator most wants the watch to keep running.
 *   Only Ctrl-C / SIGTERM end the watch, with exit code 0.
 */
import type { DeviceState } from '../native/index.ts';
import { NativeError, UapiClient, redactSecrets } from '../native/index.ts';
import { formatText, toJson } from './format.ts';
import type { DeviceJson, PeerJson, PeerRate } from './format.ts';

export interface WatchOptions {
  socketPath: string;
  interfaceName: string;
  intervalMs: number;
  timeoutMs: number;
  json: boolean;
  showKeys: boolean;
  out?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Redraw in place; default: whether `out` is a TTY. */
  tty?: boolean;
  /** --names: public key → Peer/Gateway name, asked again every NAMES_REFRESH_MS (undefined: could not be read). */
  loadNames?: () => Promise<Map<string, string> | undefined>;
}

/** How often --watch --names reads the Peers and Gateways again (members come and go; the API is not polled hard). */
const NAMES_REFRESH_MS = 30_000;

/** One --json --watch line. */
export interface WatchJson extends Partial<Omit<DeviceJson, 'peers'>> {
  /** Unix milliseconds of this read. */
  time: number;
  interface: string;
  /** Set when the device could not be read (then no device fields). */
  error?: string;
  peers?: WatchPeerJson[];
  /** `inspect --url` only: the objects the member's last pass refused (once its stream said). */
  refused?: StreamRefusal[];
  /** `inspect --url` only: the stream's changes since connecting, newest last (at most MAX_SHOWN_CHANGES). */
  changes?: StreamChange[];
}

export interface WatchPeerJson extends PeerJson {
  /** Unix milliseconds of the last handshake (the device reports nanoseconds), null if never. */
  latestHandshakeMs: number | null;
  /** Seconds since the last handshake at this read, null if never. */
  handshakeAgeSeconds: number | null;
  /** Bytes/s since the previous read; null on the first read of a peer or after its counters reset. */
  rxRate: number | null;
  txRate: number | null;
}

interface Sample {
  time: number;
  rx: bigint;
  tx: bigint;
}

const CLEAR = '\x1b[H\x1b[2J';
const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

function handshakeMs(p: DeviceState['peers'][number]): number | null {
  if (!p.lastHandshake) return null;
  return Number(p.lastHandshake.sec) * 1000 + Math.floor(p.lastHandshake.nsec / 1e6);
}

/** Rates since the previous samples; updates `previous` to this read. Counters that went down (a restarted device) give no rate. */
export function ratesSince(previous: Map<string, Sample>, device: DeviceState, time: number): Map<string, PeerRate | null> {
  const rates = new Map<string, PeerRate | null>();
  const seen = new Set<string>();
  for (const p of device.peers) {
    seen.add(p.publicKey);
    const before = previous.get(p.publicKey);
    const seconds = before ? (time - before.time) / 1000 : 0;
    rates.set(
      p.publicKey,
      before && seconds > 0 && p.rxBytes >= before.rx && p.txBytes >= before.tx
        ? { rx: Number(p.rxBytes - before.rx) / seconds, tx: Number(p.txBytes - before.tx) / seconds }
        : null,
    );
    previous.set(p.publicKey, { time, rx: p.rxBytes, tx: p.txBytes });
  }
  for (const key of previous.keys()) if (!seen.has(key)) previous.delete(key);
  return rates;
}

/** Runs until SIGINT/SIGTERM (or `signal` aborts); resolves then, so the CLI exits 0. */
/**
 * What ends a watch: Ctrl-C, SIGTERM, the caller's `signal`, or a reader that went away
 * (`inspect --watch | head`), quietly, like Ctrl-C. `release()` removes the listeners.
 */
export function watchStopper(out: NodeJS.WritableStream, signal?: AbortSignal): { stop: AbortController; release(): void } {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  signal?.addEventListener('abort', onSignal, { once: true });
  out.on('error', onSignal);
  return {
    stop,
    release() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      signal?.removeEventListener('abort', onSignal);
      out.off('error', onSignal);
    },
  };
}

export async function watchDevice(o: WatchOptions, signal?: AbortSignal): Promise<void> {
  const out = o.out ?? process.stdout;
  const tty = o.tty ?? (out as NodeJS.WriteStream).isTTY === true;
  const client = new UapiClient(o.socketPath, { timeoutMs: o.timeoutMs });
  const { stop, release } = watchStopper(out, signal);
  const previous = new Map<string, Sample>();
  const view = new WatchView({ ...o, out, tty, header: `every ${o.intervalMs} ms` });
  // Without a loader, no names (and the output has no name fields); with one, the last map read.
  // The first read waits for the names; later refreshes run beside the watch so a slow API never stalls it.
  let names: Map<string, string> | undefined = o.loadNames ? ((await o.loadNames()) ?? new Map()) : undefined;
  let namesRead = Date.now();
  let refreshing = false;
  view.begin();
  try {
    while (!stop.signal.aborted) {
      if (o.loadNames && !refreshing && Date.now() - namesRead >= NAMES_REFRESH_MS) {
        namesRead = Date.now();
        refreshing = true;
        void o
          .loadNames()
          .then((m) => {
            if (m) names = m;
          })
          .finally(() => (refreshing = false));
      }
      const time = Date.now();
      let device: DeviceState | null = null;
      let error = '';
      try {
        device = await client.get();
      } catch (err) {
        // NativeErrors are redacted when made; anything else is, here, before it is printed.
        error = err instanceof NativeError ? err.message : redactSecrets(err instanceof Error ? err.message : String(err));
      }
      if (stop.signal.aborted) break;
      if (!device) previous.clear();
      const rates = device ? ratesSince(previous, device, time) : new Map<string, PeerRate | null>();
      view.show(time, device, error, rates, names);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, o.intervalMs);
        stop.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  } finally {
    release();
    view.end();
  }
}

/** A peer as the stream's `change` message names it. */
export interface StreamPeerRef {
  kind: string;
  name: string;
  publicKey: string;
}
/** An object a pass refused, with why (the stream's `desired` and `change` messages). */
export interface StreamRefusal {
  kind: string;
  name: string;
  reason: string;
  field?: string;
  message: string;
}
/** One `change` message: what a pass added, removed or newly refused. */
export interface StreamChange {
  /** Unix milliseconds of the pass. */
  time: number;
  added: StreamPeerRef[];
  removed: StreamPeerRef[];
  refused: StreamRefusal[];
}
/**
 * `inspect --url --watch`: what the member's stream says beside the device (contract (2)): the objects
 * its last pass refused (from `desired`; null until the first arrived) and the changes seen since
 * connecting, newest last.
 */
export interface StreamView {
  refused: StreamRefusal[] | null;
  changes: StreamChange[];
}
/** How many changes a watch keeps (and shows): the recent ones; the member's log has them all. */
export const MAX_SHOWN_CHANGES = 10;

/** "nAPRh0…3Cw=": enough of a key to tell peers apart on a line. */
function shortKey(key: string): string {
  return key.length > 12 ? `${key.slice(0, 6)}…${key.slice(-4)}` : key;
}

/** The stream's refusals and changes as text, under the device block. */
export function formatStreamText(v: StreamView): string {
  const out: string[] = [''];
  if (v.refused !== null) {
    if (v.refused.length === 0) out.push('refused: none');
    else {
      out.push(`refused (${v.refused.length}):`);
      for (const r of v.refused) out.push(`  ${r.kind}/${r.name}: ${r.reason}${r.field ? ` (${r.field})` : ''}: ${r.message}`);
    }
  }
  if (v.changes.length === 0) out.push('changes: none since connected');
  else {
    out.push('changes (since connected, newest last):');
    for (const c of v.changes) {
      const at = new Date(c.time).toISOString().replace(/\.\d+Z$/, 'Z');
      for (const p of c.added) out.push(`  ${at}  added ${p.kind}/${p.name} (${shortKey(p.publicKey)})`);
      for (const p of c.removed) out.push(`  ${at}  removed ${p.kind}/${p.name} (${shortKey(p.publicKey)})`);
      for (const r of c.refused) out.push(`  ${at}  refused ${r.kind}/${r.name}: ${r.reason}: ${r.message}`);
    }
  }
  return `${out.join('\n')}\n`;
}

export interface ViewOptions {
  interfaceName: string;
  json: boolean;
  showKeys: boolean;
  out: NodeJS.WriteStream | NodeJS.WritableStream;
  tty: boolean;
  /** What the text header says after the time (how often, or where from). */
  header: string;
}

/**
 * How a watch shows each read, wherever the reads come from (the UAPI socket here, an agent's stream
 * for `inspect --url`): redrawn on a terminal, a block per change elsewhere, a JSON line per read.
 */
export class WatchView {
  private readonly o: ViewOptions;
  /** What the last non-TTY block showed (the device, without the read time and derived ages). */
  private lastShown = '';

  constructor(o: ViewOptions) {
    this.o = o;
  }

  begin(): void {
    if (this.o.tty && !this.o.json) this.o.out.write(HIDE_CURSOR);
  }

  end(): void {
    if (this.o.tty && !this.o.json) this.o.out.write(SHOW_CURSOR);
  }

  /**
   * One read: the device (or null and why not), its rates and the names known; with `stream` (a
   * member's stream), its refused objects and recent changes under the device (text) or as the
   * `refused` and `changes` fields (JSON).
   */
  show(time: number, device: DeviceState | null, error: string, rates: ReadonlyMap<string, PeerRate | null>, names: Map<string, string> | undefined, stream?: StreamView): void {
    const { o } = this;
    const out = o.out;
    const extra = stream ? { ...(stream.refused !== null ? { refused: stream.refused } : {}), changes: stream.changes } : {};
    if (o.json) {
      out.write(`${JSON.stringify(device ? { ...watchJson(device, o, time, rates, names), ...extra } : { time, interface: o.interfaceName, error, ...extra })}\n`);
      return;
    }
    const header = `${new Date(time).toISOString()}  ${o.header}  (Ctrl-C to stop)\n`;
    const body = device
      ? formatText(device, {
          interfaceName: o.interfaceName,
          showKeys: o.showKeys,
          now: Math.floor(time / 1000),
          rates: new Map([...rates].filter((e): e is [string, PeerRate] => e[1] !== null)),
          names,
        })
      : `interface: ${o.interfaceName}\n  unavailable: ${error}\n  (watching for it to come back)\n`;
    const streamText = stream ? formatStreamText(stream) : '';
    if (o.tty) {
      out.write(`${CLEAR}${header}${body}${streamText}`);
    } else {
      // A new refusal or change is news too, though the device did not move.
      const state = (device ? JSON.stringify(toJson(device, { interfaceName: o.interfaceName, showKeys: o.showKeys, names })) : error) + (stream ? JSON.stringify(extra) : '');
      if (state !== this.lastShown) out.write(`${header}${body}${streamText}\n`);
      this.lastShown = state;
    }
  }
}

function watchJson(device: DeviceState, o: { interfaceName: string; showKeys: boolean }, time: number, rates: ReadonlyMap<string, PeerRate | null>, names: Map<string, string> | undefined): WatchJson {
  const base = toJson(device, { interfaceName: o.interfaceName, showKeys: o.showKeys, names });
  const byKey = new Map(device.peers.map((p) => [p.publicKey, p]));
  return {
    time,
    ...base,
    peers: base.peers.map((p) => {
      const hs = handshakeMs(byKey.get(p.publicKey) as DeviceState['peers'][number]);
      const rate = rates.get(p.publicKey) ?? null;
      return {
        ...p,
        latestHandshakeMs: hs,
        handshakeAgeSeconds: hs === null ? null : Math.max(0, Math.floor((time - hs) / 1000)),
        rxRate: rate ? Math.round(rate.rx) : null,
        txRate: rate ? Math.round(rate.tx) : null,
      };
    }),
  };
}
