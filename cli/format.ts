/**
 * How `aks-mesh inspect` shows a device: the text `wg show` prints (human units, "1 minute,
 * 3 seconds ago"), or JSON with 64-bit counters as decimal strings.
 */
import type { DeviceState, PeerState } from '../native/index.ts';

const UNITS: Array<[string, number]> = [
  ['year', 365 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
];

/** "1 minute, 3 seconds" as wg prints durations; "Now" for zero. */
export function humanDuration(seconds: number): string {
  if (seconds <= 0) return 'Now';
  const parts: string[] = [];
  let left = Math.floor(seconds);
  for (const [name, size] of UNITS) {
    const n = Math.floor(left / size);
    left -= n * size;
    if (n > 0) parts.push(`${n} ${name}${n === 1 ? '' : 's'}`);
  }
  return parts.join(', ');
}

/** "123 B", "1.21 KiB", "3.40 GiB" as wg prints byte counts. */
export function humanBytes(bytes: bigint): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  if (bytes < 1024n) return `${bytes} B`;
  let unit = -1;
  let scale = 1n;
  while (unit < units.length - 1 && bytes >= scale * 1024n) {
    scale *= 1024n;
    unit++;
  }
  // wg prints (double)bytes / scale with printf("%.2f"), which rounds the exact binary value and
  // breaks ties to even (toFixed breaks them up). Dividing by a power of two is exact, so use bigints.
  const exact = BigInt(Number(bytes)) * 100n;
  let hundredths = exact / scale;
  const twiceRest = (exact % scale) * 2n;
  if (twiceRest > scale || (twiceRest === scale && hundredths % 2n === 1n)) hundredths++;
  return `${hundredths / 100n}.${String(hundredths % 100n).padStart(2, '0')} ${units[unit]}`;
}

function handshakeUnix(peer: PeerState): number | null {
  return peer.lastHandshake ? Number(peer.lastHandshake.sec) : null;
}

/** Most recent handshake first, then never-seen peers by key (as wg sorts them). */
export function sortPeers(peers: readonly PeerState[]): PeerState[] {
  return [...peers].sort((a, b) => {
    const ha = handshakeUnix(a) ?? -1;
    const hb = handshakeUnix(b) ?? -1;
    return hb - ha || (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0);
  });
}

export interface FormatOptions {
  interfaceName: string;
  /** Show private and preshared keys instead of "(hidden)"; only `true` does (never a truthy leftover). */
  showKeys?: boolean;
  /** Unix seconds "now" (for handshake ages). */
  now?: number;
  /** `inspect --watch`: bytes/s per peer public key since the previous read; adds a "rate:" line. */
  rates?: ReadonlyMap<string, PeerRate>;
  /** `inspect --names`: public key → "Peer/<name>" or "Gateway/<name>"; adds a "name:" line (text) or `name` (JSON). */
  names?: ReadonlyMap<string, string>;
}

export interface PeerRate {
  rx: number;
  tx: number;
}

/** "1.21 KiB/s" (the units of humanBytes, per second). */
export function humanRate(bytesPerSecond: number): string {
  return `${humanBytes(BigInt(Math.max(0, Math.round(bytesPerSecond))))}/s`;
}

export function formatText(device: DeviceState, o: FormatOptions): string {
  const now = o.now ?? Math.floor(Date.now() / 1000);
  const out: string[] = [`interface: ${o.interfaceName}`];
  if (device.publicKey) out.push(`  public key: ${device.publicKey}`);
  if (device.privateKey) out.push(`  private key: ${o.showKeys === true ? device.privateKey : '(hidden)'}`);
  if (device.listenPort) out.push(`  listening port: ${device.listenPort}`);
  if (device.fwmark) out.push(`  fwmark: 0x${device.fwmark.toString(16)}`);
  for (const peer of sortPeers(device.peers)) {
    out.push('', `peer: ${peer.publicKey}`);
    const name = o.names?.get(peer.publicKey);
    if (name) out.push(`  name: ${name}`);
    if (peer.presharedKey) out.push(`  preshared key: ${o.showKeys === true ? peer.presharedKey : '(hidden)'}`);
    if (peer.endpoint) out.push(`  endpoint: ${peer.endpoint}`);
    out.push(`  allowed ips: ${peer.allowedIPs.length ? peer.allowedIPs.join(', ') : '(none)'}`);
    const hs = handshakeUnix(peer);
    if (hs !== null) out.push(`  latest handshake: ${hs >= now ? 'Now' : `${humanDuration(now - hs)} ago`}`);
    if (peer.rxBytes > 0n || peer.txBytes > 0n) {
      out.push(`  transfer: ${humanBytes(peer.rxBytes)} received, ${humanBytes(peer.txBytes)} sent`);
    }
    const rate = o.rates?.get(peer.publicKey);
    if (rate) out.push(`  rate: ${humanRate(rate.rx)} received, ${humanRate(rate.tx)} sent`);
    if (peer.persistentKeepalive) out.push(`  persistent keepalive: every ${humanDuration(peer.persistentKeepalive)}`);
  }
  return `${out.join('\n')}\n`;
}

export interface PeerJson {
  publicKey: string;
  /** The key with --show-keys, "(hidden)" without, null when the peer has none. */
  presharedKey: string | null;
  endpoint: string | null;
  allowedIPs: string[];
  /** Unix seconds of the last handshake, null if never. */
  latestHandshake: number | null;
  /** 64-bit counters as decimal strings (JSON numbers would lose precision past 2^53). */
  rxBytes: string;
  txBytes: string;
  /** Seconds; 0 is off. */
  persistentKeepalive: number;
  /** Only with --names: the Peer or Gateway holding this public key ("Peer/node-a"), null if none does. */
  name?: string | null;
}

export interface DeviceJson {
  interface: string;
  publicKey: string | null;
  /** The key with --show-keys, "(hidden)" without, null when the device has none. */
  privateKey: string | null;
  listenPort: number;
  fwmark: number;
  peers: PeerJson[];
}

export function toJson(device: DeviceState, o: FormatOptions): DeviceJson {
  const hide = (key: string | null): string | null => (key === null ? null : o.showKeys === true ? key : '(hidden)');
  return {
    interface: o.interfaceName,
    publicKey: device.publicKey,
    privateKey: hide(device.privateKey),
    listenPort: device.listenPort,
    fwmark: device.fwmark,
    peers: sortPeers(device.peers).map((p) => ({
      publicKey: p.publicKey,
      presharedKey: hide(p.presharedKey),
      endpoint: p.endpoint,
      allowedIPs: p.allowedIPs,
      latestHandshake: handshakeUnix(p),
      rxBytes: p.rxBytes.toString(),
      txBytes: p.txBytes.toString(),
      persistentKeepalive: p.persistentKeepalive,
      ...(o.names ? { name: o.names.get(p.publicKey) ?? null } : {}),
    })),
  };
}

/** Bad flags or arguments: the CLI prints the message and exits 2, like yargs' own usage errors. */
export class UsageError extends Error {}

/**
 * The device back from its JSON (`inspect --json`, or a `device` message of an agent's stream), so
 * `inspect --url` prints exactly what `inspect` prints locally. Hidden keys stay "(hidden)";
 * `latestHandshakeMs`, when the JSON has it, restores the handshake's milliseconds.
 */
export function fromJson(json: Omit<DeviceJson, 'peers'> & { peers: ReadonlyArray<PeerJson & { latestHandshakeMs?: number | null }> }): DeviceState {
  return {
    privateKey: json.privateKey,
    publicKey: json.publicKey,
    listenPort: json.listenPort,
    fwmark: json.fwmark,
    peers: json.peers.map((p) => {
      const ms = typeof p.latestHandshakeMs === 'number' ? p.latestHandshakeMs : p.latestHandshake === null ? null : p.latestHandshake * 1000;
      return {
        publicKey: p.publicKey,
        presharedKey: p.presharedKey,
        endpoint: p.endpoint,
        allowedIPs: p.allowedIPs,
        persistentKeepalive: p.persistentKeepalive,
        lastHandshake: ms === null ? null : { sec: BigInt(Math.floor(ms / 1000)), nsec: (ms % 1000) * 1e6 },
        rxBytes: BigInt(p.rxBytes),
        txBytes: BigInt(p.txBytes),
        protocolVersion: 1,
      };
    }),
  };
}
