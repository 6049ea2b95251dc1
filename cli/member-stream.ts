/**
 * The member's live WebSocket stream (issue 12, contract (2)): its flags, and what it serves. The
 * server (connections, token, bounds, shared device reads) is mesh/stream.ts; this file says what
 * the messages hold: the device as `aks-mesh inspect --json` shows it (cli/format.ts) with peer names
 * and rates, the desired state of each pass, what a pass added, removed or refused, and the pass.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Argv } from 'yargs';
import { UsageError, toJson } from './format.ts';
import type { DeviceJson, PeerJson } from './format.ts';
import type { DeviceState } from '../native/index.ts';
import type { MemberService, ServiceContext } from './member-services.ts';
import type { SyncResult } from '../mesh/reconcile/index.ts';
import type { Topology } from '../mesh/topology/index.ts';

export const STREAM_FLAG_NAMES: readonly string[] = ['stream-address', 'stream-token-file', 'stream-required'];
export interface StreamArgs {
  'stream-address'?: string;
  'stream-token-file'?: string;
  'stream-required'?: boolean;
}

export const DEFAULT_STREAM_ADDRESS = { node: '127.0.0.1:9587', gateway: '127.0.0.1:9588' } as const;
/** The environment variable that may hold the token (the chart sets it from its Secret). */
export const STREAM_TOKEN_ENV = 'AKS_MESH_STREAM_TOKEN';
const MAX_TOKEN_FILE_BYTES = 4096;

/** The device message's peers: inspect --json's, with the stream's extras. */
export interface StreamPeerJson extends PeerJson {
  /** Unix milliseconds of the last handshake (the device reports nanoseconds), null if never. */
  latestHandshakeMs: number | null;
  /** Bytes/s since the previous read; null on a peer's first read or after its counters reset. */
  rxRate: number | null;
  txRate: number | null;
}
export interface StreamDeviceJson extends Omit<DeviceJson, 'peers'> {
  peers: StreamPeerJson[];
}

export function streamFlags<T>(y: Argv<T>): Argv<T> {
  return y
    .option('stream-address', {
      type: 'string',
      describe:
        'host:port of the live WebSocket stream at /stream (aks-mesh inspect --url, the dashboard); default 127.0.0.1:9587 for an agent, ' +
        '127.0.0.1:9588 for a gateway; "off" disables it. An address other than loopback needs a token',
    })
    .option('stream-required', {
      type: 'boolean',
      describe:
        'Stop the start when the stream cannot listen (its port taken). Default: only when --stream-address (or AKS_MESH_STREAM_ADDRESS) is given; ' +
        'otherwise the member runs without its stream and logs an error, since a diagnostic aid must not take the data plane down',
    })
    .option('stream-token-file', {
      type: 'string',
      describe: `File holding the token every stream client must send (Authorization: Bearer <token>); or the token itself in $${STREAM_TOKEN_ENV}. At least 16 characters`,
    })
    .check((a) => {
      const address = (a as StreamArgs)['stream-address'];
      if (address === undefined || address === 'off') return true;
      const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(address) ?? /^([^:[\]]+):(\d{1,5})$/.exec(address);
      if (!m || Number(m[2]) > 65535) throw new UsageError(`--stream-address ${JSON.stringify(address)}: expected IP:port, [IPv6]:port or off`);
      const loopback = m[1] === 'localhost' || m[1] === '::1' || /^127\./.test(m[1]);
      if (!loopback && !(a as StreamArgs)['stream-token-file'] && !process.env[STREAM_TOKEN_ENV]) {
        throw new UsageError(
          `--stream-address ${address}: not a loopback address, so the stream would be open to the network; give a token (--stream-token-file or ${STREAM_TOKEN_ENV}) or bind 127.0.0.1`,
        );
      }
      return true;
    }) as unknown as Argv<T>;
}

/** What a failed stat or read of a file the user named means, in words (not a bare errno). */
function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return "permission denied (run as the file's owner or root)";
    case 'ENOTDIR':
      return 'a part of the path is not a folder';
    case 'ELOOP':
      return 'too many levels of symbolic links';
    default:
      return code ?? (err as Error).message;
  }
}

/**
 * A stream token from a file (--stream-token-file for a member, --token-file for `inspect --url`),
 * trimmed. Stat, not lstat: a mounted Secret's file is a symlink into its ..data folder. Refused when
 * other users may write it (they could put in a token of their own and read the stream); only warned
 * about when they may read it, since a Kubernetes Secret volume is 0644 unless told otherwise and
 * 0440 under a pod's fsGroup (and is seen only inside its container), and the stream is a diagnostic
 * aid whose token must not stop a member's start. Key files, which are refused unless 0600, guard the
 * tunnel itself.
 */
export function readTokenFile(file: string, flag: string, warn?: (message: string) => void): string {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${fileProblem(err)}`);
  }
  if (!st.isFile()) throw new UsageError(`${flag} ${file}: not a regular file`);
  if (st.size > MAX_TOKEN_FILE_BYTES) throw new UsageError(`${flag} ${file}: ${st.size} bytes, a token file holds at most ${MAX_TOKEN_FILE_BYTES}`);
  const mode = st.mode & 0o777;
  const octal = mode.toString(8).padStart(4, '0');
  if (mode & 0o022) {
    throw new UsageError(`${flag} ${file}: mode ${octal}, so other users can change the stream token (and read the stream with one of their own); run "chmod 600 ${file}"`);
  }
  if (mode & 0o044) {
    const who = [mode & 0o040 ? 'its group' : '', mode & 0o004 ? 'every user' : ''].filter(Boolean).join(' and ');
    warn?.(`${flag} ${file}: mode ${octal}, so ${who} can read the stream token; run "chmod 600 ${file}" (a Secret volume: defaultMode 0400)`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${fileProblem(err)}`);
  }
  if (!text) throw new UsageError(`${flag} ${file}: empty`);
  return text;
}

/** The token from --stream-token-file or the environment (undefined: none), checked; `warn` hears of a file others can read. */
export function readStreamToken(file: string | undefined, warn?: (message: string) => void): string | undefined {
  let token: string | undefined;
  if (file) {
    token = readTokenFile(file, '--stream-token-file', warn);
  } else if (process.env[STREAM_TOKEN_ENV]) {
    token = process.env[STREAM_TOKEN_ENV].trim();
  }
  // wireguard-go (spawn mode) and anything else we start need not inherit it.
  delete process.env[STREAM_TOKEN_ENV];
  if (token === undefined) return undefined;
  const where = file ? `--stream-token-file ${file}` : STREAM_TOKEN_ENV;
  if (token.length < 16) throw new UsageError(`${where}: the stream token has ${token.length} characters, at least 16 needed`);
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`${where}: the stream token must be printable ASCII without spaces (it goes into an HTTP header)`);
  return token;
}

interface DesiredPeerJson {
  kind: string;
  name: string;
  publicKey: string;
  endpoint?: string;
  allowedIPs: string[];
}
interface RefusedJson {
  kind: string;
  name: string;
  reason: string;
  field?: string;
  message: string;
}

/** The `desired` message's lists of a pass's topology. */
export function desiredOf(topology: Topology): { peers: DesiredPeerJson[]; refused: RefusedJson[] } {
  return {
    peers: topology.peers.map((p) => ({ kind: p.kind, name: p.name, publicKey: p.publicKey, ...(p.endpoint ? { endpoint: p.endpoint } : {}), allowedIPs: [...p.allowedIPs] })),
    refused: topology.refused.map((r) => ({ kind: r.kind, name: r.name, reason: r.reason, ...(r.field ? { field: r.field } : {}), message: r.message })),
  };
}

/** What a pass changed against the one before: peers added and removed (by kind, name and key), objects newly refused. */
export function changeOf(
  before: { peers: DesiredPeerJson[]; refused: RefusedJson[] } | null,
  after: { peers: DesiredPeerJson[]; refused: RefusedJson[] },
): { added: Array<Pick<DesiredPeerJson, 'kind' | 'name' | 'publicKey'>>; removed: Array<Pick<DesiredPeerJson, 'kind' | 'name' | 'publicKey'>>; refused: Array<Omit<RefusedJson, 'field'>> } {
  const id = (p: DesiredPeerJson): string => `${p.kind}/${p.name}/${p.publicKey}`;
  const brief = (p: DesiredPeerJson): Pick<DesiredPeerJson, 'kind' | 'name' | 'publicKey'> => ({ kind: p.kind, name: p.name, publicKey: p.publicKey });
  const had = new Set((before?.peers ?? []).map(id));
  const has = new Set(after.peers.map(id));
  const wasRefused = new Set((before?.refused ?? []).map((r) => `${r.kind}/${r.name}/${r.reason}`));
  return {
    added: after.peers.filter((p) => !had.has(id(p))).map(brief),
    removed: (before?.peers ?? []).filter((p) => !has.has(id(p))).map(brief),
    refused: after.refused.filter((r) => !wasRefused.has(`${r.kind}/${r.name}/${r.reason}`)).map((r) => ({ kind: r.kind, name: r.name, reason: r.reason, message: r.message })),
  };
}

/**
 * The device message's payload from reads of the live device: inspect --json's object with names,
 * handshake times in ms and per-peer rates since the previous read. reset() forgets the previous
 * reads: the stream calls it when its last client leaves, since a rate across that pause would be an
 * average of nothing. (Not by elapsed time: a device of thousands of peers is read seconds apart on
 * purpose, and its rates must still show.)
 */
export function deviceReader(
  get: () => Promise<DeviceState>,
  o: { interfaceName: string; names: () => Map<string, string>; now?: () => number },
  ratesSince: (previous: Map<string, { time: number; rx: bigint; tx: bigint }>, device: DeviceState, time: number) => Map<string, { rx: number; tx: number } | null>,
): { read: () => Promise<StreamDeviceJson>; reset: () => void } {
  const previous = new Map<string, { time: number; rx: bigint; tx: bigint }>();
  const now = o.now ?? Date.now;
  return {
    reset: () => previous.clear(),
    read: async () => {
      const device = await get();
      const rates = ratesSince(previous, device, now());
      const json = toJson(device, { interfaceName: o.interfaceName, names: o.names() });
      const byKey = new Map(device.peers.map((p) => [p.publicKey, p]));
      return {
        ...json,
        peers: json.peers.map((p) => {
          const hs = byKey.get(p.publicKey)?.lastHandshake;
          const rate = rates.get(p.publicKey) ?? null;
          return {
            ...p,
            latestHandshakeMs: hs ? Number(hs.sec) * 1000 + Math.floor(hs.nsec / 1e6) : null,
            rxRate: rate ? Math.round(rate.rx) : null,
            txRate: rate ? Math.round(rate.tx) : null,
          };
        }),
      };
    },
  };
}

export async function startStream(a: StreamArgs, ctx: ServiceContext): Promise<MemberService | null> {
  const address = a['stream-address'] ?? DEFAULT_STREAM_ADDRESS[ctx.role];
  if (address === 'off') return null;
  // Asked for (an address given, or --stream-required): a stream that cannot listen stops the start.
  const required = a['stream-required'] ?? a['stream-address'] !== undefined;
  const token = readStreamToken(a['stream-token-file'], (message) => ctx.log.warn(`live stream: ${message}`));
  // Loaded only when a member runs: the small commands import this file for its flags alone.
  const [{ StreamServer, StreamListenError }, { ratesSince }] = await Promise.all([import('../mesh/stream.ts'), import('./inspect-watch.ts')]);
  const interfaceName = ctx.member.o.interfaceName;
  // Names from the topology the member computed, not from the last finished pass: the desired state is
  // set before its `set` is applied, so a device read between the set and the pass's end (a handshake
  // comes within milliseconds) already names the new peer.
  let named: { topology: Topology | null; names: Map<string, string> } = { topology: null, names: new Map() };
  const names = (): Map<string, string> => {
    const topology = ctx.member.topology;
    if (topology !== named.topology) named = { topology, names: new Map((topology?.peers ?? []).map((p) => [p.publicKey, `${p.kind}/${p.name}`])) };
    return named.names;
  };
  const reader = deviceReader(() => ctx.member.wireguard.client.get(), { interfaceName, names }, ratesSince);
  let server: Awaited<ReturnType<typeof StreamServer.start>>;
  try {
    server = await StreamServer.start({
      address,
      token,
      log: ctx.log,
      member: { role: ctx.role, kind: ctx.role === 'node' ? 'Peer' : 'Gateway', name: ctx.name, interface: interfaceName, publicKey: ctx.member.publicKey },
      readDevice: reader.read,
      onIdle: reader.reset,
    });
  } catch (err) {
    // Only a failed listen degrades (a port another process holds): a bad token or an address open
    // to the network without one is a configuration error and stops the start whatever is asked.
    if (required || !(err instanceof StreamListenError)) throw err;
    ctx.log.error('live stream not started: inspect --url and the dashboard cannot read this member (free the port, or set --stream-address / AKS_MESH_STREAM_ADDRESS to another; --stream-required makes this stop the start)', {
      error: err.message,
    });
    return null;
  }
  let shown: { peers: DesiredPeerJson[]; refused: RefusedJson[] } | null = null;
  let shownText = '';
  let lastTopology: Topology | null = null;
  const unsubscribe = ctx.onSync((result: SyncResult, topology: Topology) => {
    const time = Date.now();
    if (topology !== lastTopology) {
      lastTopology = topology;
      const desired = desiredOf(topology);
      const text = JSON.stringify(desired);
      if (text !== shownText) {
        const change = changeOf(shown, desired);
        shown = desired;
        shownText = text;
        server.setDesired({ type: 'desired', time, ...desired });
        if (change.added.length || change.removed.length || change.refused.length) server.broadcast({ type: 'change', time, ...change });
      }
    }
    server.broadcast({ type: 'pass', time, full: result.full, sets: result.sets, ...(result.error ? { error: result.error.message } : {}) });
  });
  const where = server.address();
  ctx.log.info('live stream listening', { address: `${where.host.includes(':') ? `[${where.host}]` : where.host}:${where.port}`, path: '/stream', token: token ? 'required' : 'none (loopback only)' });
  return {
    close: async () => {
      unsubscribe();
      await server.close();
    },
  };
}
