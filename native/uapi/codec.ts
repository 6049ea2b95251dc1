/**
 * The UAPI text protocol of wireguard-go (device/uapi.go): encode `set` requests from the typed
 * model, parse `get` answers into it, and tell which line of a refused `set` wireguard-go stopped at.
 * Pure: no sockets here.
 */
import { canonicalCidr, canonicalEndpoint } from '../addr.ts';
import { NativeError } from '../errors.ts';
import { hexToKey, isZeroHex, keyToHex, publicKeyOf, redactUapiLine } from '../keys/index.ts';
import type { DeviceConfig, DeviceState, PeerChange, PeerConfig, PeerState, SetRequest } from './types.ts';

const ZERO_HEX = '0'.repeat(64);

function checkInt(value: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new NativeError('invalid-config', `${what}: ${String(value)} is not a whole number from 0 to ${max}`);
  }
  return value;
}

/**
 * The body lines of a `set` request (without `set=1` and the closing blank line), validated first:
 * a bad value is refused here, naming the field, before anything reaches the device.
 */
export function encodeSet(req: SetRequest): string[] {
  const lines: string[] = [];
  if (req.privateKey !== undefined) {
    lines.push(`private_key=${req.privateKey === null ? ZERO_HEX : keyToHex(req.privateKey, 'privateKey')}`);
  }
  if (req.listenPort !== undefined) lines.push(`listen_port=${checkInt(req.listenPort, 65535, 'listenPort')}`);
  if (req.fwmark !== undefined) lines.push(`fwmark=${checkInt(req.fwmark, 0xffffffff, 'fwmark')}`);
  if (req.replacePeers) lines.push('replace_peers=true');
  (req.peers ?? []).forEach((peer, i) => lines.push(...encodePeer(peer, `peers[${i}]`)));
  return lines;
}

function encodePeer(peer: PeerChange, at: string): string[] {
  const lines = [`public_key=${keyToHex(peer.publicKey, `${at}.publicKey`)}`];
  if (peer.remove) {
    lines.push('remove=true');
    return lines;
  }
  if (peer.updateOnly) lines.push('update_only=true');
  if (peer.presharedKey !== undefined) {
    lines.push(
      `preshared_key=${peer.presharedKey === null ? ZERO_HEX : keyToHex(peer.presharedKey, `${at}.presharedKey`)}`,
    );
  }
  if (peer.endpoint !== undefined) lines.push(`endpoint=${canonicalEndpoint(peer.endpoint, `${at}.endpoint`)}`);
  if (peer.persistentKeepalive !== undefined) {
    lines.push(
      `persistent_keepalive_interval=${checkInt(peer.persistentKeepalive, 65535, `${at}.persistentKeepalive`)}`,
    );
  }
  if (peer.replaceAllowedIPs) lines.push('replace_allowed_ips=true');
  (peer.allowedIPs ?? []).forEach((cidr, j) => {
    lines.push(`allowed_ip=${canonicalCidr(cidr, `${at}.allowedIPs[${j}]`)}`);
  });
  return lines;
}

/** The bytes of a `set` request. */
export function renderSet(lines: readonly string[]): string {
  return lines.length === 0 ? 'set=1\n\n' : `set=1\n${lines.join('\n')}\n\n`;
}

/** The change that makes a device exactly `config`: one `set` with replace_peers. */
export function replaceDeviceRequest(config: DeviceConfig): SetRequest {
  return {
    privateKey: config.privateKey,
    listenPort: config.listenPort,
    fwmark: config.fwmark ?? 0,
    replacePeers: true,
    peers: config.peers.map((p) => fullPeerChange(p, false)),
  };
}

/**
 * The change that makes one peer exactly `peer`, leaving every other peer alone. With
 * `updateOnly`, a peer that is not on the device is not created.
 */
export function fullPeerChange(peer: PeerConfig, updateOnly: boolean): PeerChange {
  return {
    publicKey: peer.publicKey,
    updateOnly: updateOnly || undefined,
    presharedKey: peer.presharedKey ?? null,
    // wireguard-go cannot unset an endpoint; a peer without one keeps what it learned by roaming.
    endpoint: peer.endpoint ?? undefined,
    persistentKeepalive: peer.persistentKeepalive ?? 0,
    replaceAllowedIPs: true,
    allowedIPs: peer.allowedIPs,
  };
}

/** Raised for a `get` answer we cannot read; names the line (a key line without its value: even a malformed one is most of a key). */
function protocolError(lineNo: number, line: string, why: string): NativeError {
  return new NativeError('protocol', `UAPI get answer, line ${lineNo} ${JSON.stringify(redactUapiLine(line))}: ${why}`);
}

function parseUint(value: string, lineNo: number, line: string): number {
  if (!/^\d{1,10}$/.test(value)) throw protocolError(lineNo, line, 'expected a whole number');
  return Number(value);
}

function parseCounter(value: string, lineNo: number, line: string): bigint {
  if (!/^\d{1,20}$/.test(value)) throw protocolError(lineNo, line, 'expected a 64-bit counter');
  return BigInt(value);
}

/** A peer as wireguard-go reports one it has just created: nothing set, nothing counted. Fields override. */
export function blankPeerState(publicKey: string, fields: Partial<PeerState> = {}): PeerState {
  return {
    publicKey,
    presharedKey: null,
    endpoint: null,
    allowedIPs: [],
    persistentKeepalive: 0,
    lastHandshake: null,
    rxBytes: 0n,
    txBytes: 0n,
    protocolVersion: 1,
    ...fields,
  };
}

/**
 * Parse the body of a `get` answer (the key=value lines; a trailing `errno=` line and blank lines
 * are allowed). Unknown keys are skipped, so newer wireguard-go versions still parse.
 */
export function parseGet(text: string): DeviceState {
  const device: DeviceState = { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] };
  let peer: PeerState | null = null;
  let handshakeSec = 0n;
  const finishPeer = (): void => {
    if (peer && peer.lastHandshake) {
      // sec and nsec arrive on two lines; 0/0 means "never".
      if (peer.lastHandshake.sec === 0n && peer.lastHandshake.nsec === 0) peer.lastHandshake = null;
    }
  };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw protocolError(i + 1, line, 'expected key=value');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    // Stryker disable next-line ConditionalExpression,StringLiteral: equivalent: without this line, an errno line falls to the skipping default of either switch below
    if (key === 'errno') continue;
    if (key === 'public_key') {
      finishPeer();
      peer = blankPeerState(hexOrThrow(value, i + 1, line));
      device.peers.push(peer);
      handshakeSec = 0n;
      continue;
    }
    if (peer === null) {
      switch (key) {
        case 'private_key':
          if (!isZeroHex(value)) {
            device.privateKey = hexOrThrow(value, i + 1, line);
            device.publicKey = publicKeyOf(device.privateKey);
          }
          break;
        case 'listen_port':
          device.listenPort = parseUint(value, i + 1, line);
          break;
        case 'fwmark':
          device.fwmark = parseUint(value, i + 1, line);
          break;
        // Stryker disable next-line ConditionalExpression: equivalent: dropping the break of the last clause changes nothing
        default:
          break; // e.g. amneziawg's jc/jmin/...: not ours to interpret
      }
      continue;
    }
    switch (key) {
      case 'preshared_key':
        peer.presharedKey = isZeroHex(value) ? null : hexOrThrow(value, i + 1, line);
        break;
      case 'protocol_version':
        peer.protocolVersion = parseUint(value, i + 1, line);
        break;
      case 'endpoint':
        peer.endpoint = value;
        break;
      case 'last_handshake_time_sec':
        handshakeSec = parseCounter(value, i + 1, line);
        peer.lastHandshake = { sec: handshakeSec, nsec: 0 };
        break;
      case 'last_handshake_time_nsec':
        peer.lastHandshake = { sec: handshakeSec, nsec: parseUint(value, i + 1, line) };
        break;
      case 'tx_bytes':
        peer.txBytes = parseCounter(value, i + 1, line);
        break;
      case 'rx_bytes':
        peer.rxBytes = parseCounter(value, i + 1, line);
        break;
      case 'persistent_keepalive_interval':
        peer.persistentKeepalive = parseUint(value, i + 1, line);
        break;
      case 'allowed_ip':
        peer.allowedIPs.push(value);
        break;
      // Stryker disable next-line ConditionalExpression: equivalent: dropping the break of the last clause changes nothing
      default:
        break;
    }
  }
  finishPeer();
  return device;
}

function hexOrThrow(value: string, lineNo: number, line: string): string {
  try {
    return hexToKey(value);
  } catch {
    throw protocolError(lineNo, line, 'expected a 64-digit hex key');
  }
}

/** Render a device the way wireguard-go answers `get` (used by the protocol-edge-case fake and tests). */
export function renderGet(device: DeviceState, errno = 0): string {
  const out: string[] = [];
  if (device.privateKey) out.push(`private_key=${keyToHex(device.privateKey)}`);
  if (device.listenPort) out.push(`listen_port=${device.listenPort}`);
  if (device.fwmark) out.push(`fwmark=${device.fwmark}`);
  for (const p of device.peers) {
    out.push(`public_key=${keyToHex(p.publicKey)}`);
    out.push(`preshared_key=${p.presharedKey ? keyToHex(p.presharedKey) : ZERO_HEX}`);
    out.push(`protocol_version=${p.protocolVersion}`);
    if (p.endpoint) out.push(`endpoint=${p.endpoint}`);
    out.push(`last_handshake_time_sec=${p.lastHandshake?.sec ?? 0n}`);
    out.push(`last_handshake_time_nsec=${p.lastHandshake?.nsec ?? 0}`);
    out.push(`tx_bytes=${p.txBytes}`);
    out.push(`rx_bytes=${p.rxBytes}`);
    out.push(`persistent_keepalive_interval=${p.persistentKeepalive}`);
    for (const cidr of p.allowedIPs) out.push(`allowed_ip=${cidr}`);
  }
  out.push(`errno=${errno}`, '', '');
  return out.join('\n');
}

/** Why wireguard-go's parser refuses one line, or null if it accepts its syntax. */
export interface RefusedLine {
  /** 0-based index into the body lines. */
  index: number;
  line: string;
  reason: string;
}

const UINT = /^\d+$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;

function lineProblem(key: string, value: string, inPeer: boolean): string | null {
  const uint = (max: number): string | null =>
    UINT.test(value) && Number(value) <= max ? null : `${key} must be a whole number from 0 to ${max}`;
  const flag = (): string | null => (value === 'true' ? null : `${key} only accepts "true"`);
  if (key === 'public_key') return HEX64.test(value) ? null : 'public_key must be 64 hex digits';
  if (!inPeer) {
    switch (key) {
      case 'private_key':
        return HEX64.test(value) ? null : 'private_key must be 64 hex digits';
      case 'listen_port':
        return uint(65535);
      case 'fwmark':
        return uint(0xffffffff);
      case 'replace_peers':
        return flag();
      default:
        return `"${key}" is not a device key (a peer key before any public_key line?)`;
    }
  }
  switch (key) {
    case 'update_only':
    case 'remove':
    case 'replace_allowed_ips':
      return flag();
    case 'preshared_key':
      return HEX64.test(value) ? null : 'preshared_key must be 64 hex digits';
    case 'persistent_keepalive_interval':
      return uint(65535);
    case 'protocol_version':
      return value === '1' ? null : 'protocol_version must be 1';
    case 'endpoint':
      return attempt(() => canonicalEndpoint(value));
    case 'allowed_ip':
      return attempt(() => canonicalCidr(value));
    default:
      return `"${key}" is not a peer key`;
  }
}

function attempt(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Which line of a refused `set` wireguard-go stopped at. wireguard-go answers only an errno, but its
 * parser is deterministic and stops at the first line it refuses, so we replay its rules:
 * EINVAL/EPROTO is the first line whose syntax it refuses; EADDRINUSE is the first line that binds
 * (listen_port, else fwmark), or the one whose port wireguard-go's log names. Null when no line can be
 * named (the errno came from elsewhere).
 */
export function locateRefusedLine(lines: readonly string[], errno: number, wireguardSaid?: string): RefusedLine | null {
  const code = Math.abs(errno);
  // wireguard-go's own log names the port it could not bind ("listen udp4 :51999: bind: ..."),
  // which tells apart several listen_port lines.
  const port = code === 98 && wireguardSaid ? /listen_port: listen udp\d? :(\d+):/.exec(wireguardSaid)?.[1] : undefined;
  if (port !== undefined) {
    const i = lines.findIndex((l) => l === `listen_port=${port}`);
    if (i >= 0) return { index: i, line: lines[i], reason: wireguardSaid as string };
  }
  let inPeer = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const eq = line.indexOf('=');
    if (eq < 0) {
      if (code === 71 || code === 22) return { index: i, line, reason: 'the line is not key=value' };
      continue;
    }
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    const problem = lineProblem(key, value, inPeer);
    if (key === 'public_key') inPeer = true;
    if (problem && (code === 22 || code === 71)) return { index: i, line, reason: problem };
  }
  if (code === 98) {
    // Binding fails only on listen_port (or, rarely, fwmark) lines; name one only when it is the only candidate.
    const ports = lines.flatMap((l, i) => (l.startsWith('listen_port=') ? [i] : []));
    if (ports.length === 1) {
      const i = ports[0];
      return { index: i, line: lines[i], reason: `port ${lines[i].slice(12)} could not be bound (already in use?)` };
    }
    const marks = lines.flatMap((l, i) => (l.startsWith('fwmark=') ? [i] : []));
    if (ports.length === 0 && marks.length === 1) {
      return { index: marks[0], line: lines[marks[0]], reason: 'the fwmark could not be set on the socket' };
    }
  }
  return null;
}
