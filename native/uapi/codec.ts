/**
 * The UAPI text protocol of wireguard-go (device/uapi.go): encode `set` requests from the typed
 * model, parse `get` answers into it, and tell which line of a refused `set` wireguard-go stopped at.
 * Pure: no sockets here.
 */
import { canonicalCidr, canonicalEndpoint } from '../addr.ts';
import { NativeError } from '../errors.ts';
import { hexToKey, keyToHex, publicKeyOf, redactUapiLine } from '../keys/index.ts';
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

// ---- parseGet ----
//
// A `get` of 5,000 peers is 50,000 lines and 1.67 MB, read on every full pass. Decoding it into one
// string, splitting that into line strings, slicing every key and value, testing each with a
// regular expression and decoding each key with a Buffer of its own took 10-25 ms: as long as the
// socket round trip. The parser below reads the answer's bytes once, where they arrived: it knows a
// key by comparing 4 bytes at a time (no key string is made), reads numbers and hex keys digit by
// digit, makes a string only of the values that stay one (endpoints, allowed IPs), and writes the
// base64 of every key into one byte buffer that is decoded once at the end.

/** The keys of a `get` answer the parser acts on; it dispatches on these numbers. */
const K_UNKNOWN = 0;
const K_ERRNO = 1;
const K_PUBLIC_KEY = 2;
const K_PRIVATE_KEY = 3;
const K_LISTEN_PORT = 4;
const K_FWMARK = 5;
const K_PRESHARED_KEY = 6;
const K_PROTOCOL_VERSION = 7;
const K_ENDPOINT = 8;
const K_HANDSHAKE_SEC = 9;
const K_HANDSHAKE_NSEC = 10;
const K_TX_BYTES = 11;
const K_RX_BYTES = 12;
const K_KEEPALIVE = 13;
const K_ALLOWED_IP = 14;

/** Each key as it starts a line, '=' included (so "public_keys=" is not public_key): indexed by K_*. */
const KEY_TEXT = [
  '',
  'errno=',
  'public_key=',
  'private_key=',
  'listen_port=',
  'fwmark=',
  'preshared_key=',
  'protocol_version=',
  'endpoint=',
  'last_handshake_time_sec=',
  'last_handshake_time_nsec=',
  'tx_bytes=',
  'rx_bytes=',
  'persistent_keepalive_interval=',
  'allowed_ip=',
];
/**
 * Each key's length, and its text as little-endian 32-bit words at byte offsets 0, 4, 8, ... and
 * length - 4 (overlapping the word before; every key is 6 bytes or more), flat in typed arrays:
 * key k's words are WORD_AT/WORD[WORD_FROM[k], WORD_FROM[k + 1]).
 */
const KEY_LENGTH = new Int32Array(KEY_TEXT.map((k) => k.length));
const WORD_FROM = new Int32Array(KEY_TEXT.length + 1);
const WORD_AT: number[] = [];
const WORD: number[] = [];
KEY_TEXT.forEach((k, i) => {
  const text = Buffer.from(k, 'latin1');
  for (let o = 0; o + 4 <= k.length; o += 4) WORD_AT.push(o);
  if (k.length % 4 !== 0) WORD_AT.push(k.length - 4);
  while (WORD.length < WORD_AT.length) WORD.push(text.readUInt32LE(WORD_AT[WORD.length]));
  WORD_FROM[i + 1] = WORD_AT.length;
});
const WORD_AT_FLAT = new Int32Array(WORD_AT);
const WORD_FLAT = new Uint32Array(WORD);

/** Whether the line at `start` begins with KEY_TEXT[key]. */
function isKey(view: DataView, start: number, key: number): boolean {
  if (start + KEY_LENGTH[key] > view.byteLength) return false;
  for (let w = WORD_FROM[key], to = WORD_FROM[key + 1]; w < to; w++) {
    if (view.getUint32(start + WORD_AT_FLAT[w], true) !== WORD_FLAT[w]) return false;
  }
  return true;
}

/** The key of the line at `start`, or K_UNKNOWN (a key we skip, or no key=value at all). */
function keyAt(bytes: Buffer, view: DataView, start: number): number {
  switch (bytes[start]) {
    case 112: // p: in the order wireguard-go writes a peer
      if (isKey(view, start, K_PUBLIC_KEY)) return K_PUBLIC_KEY;
      if (isKey(view, start, K_PRESHARED_KEY)) return K_PRESHARED_KEY;
      if (isKey(view, start, K_PROTOCOL_VERSION)) return K_PROTOCOL_VERSION;
      if (isKey(view, start, K_KEEPALIVE)) return K_KEEPALIVE;
      return isKey(view, start, K_PRIVATE_KEY) ? K_PRIVATE_KEY : K_UNKNOWN;
    case 108: // l
      if (isKey(view, start, K_HANDSHAKE_SEC)) return K_HANDSHAKE_SEC;
      if (isKey(view, start, K_HANDSHAKE_NSEC)) return K_HANDSHAKE_NSEC;
      return isKey(view, start, K_LISTEN_PORT) ? K_LISTEN_PORT : K_UNKNOWN;
    case 97: // a
      return isKey(view, start, K_ALLOWED_IP) ? K_ALLOWED_IP : K_UNKNOWN;
    case 101: // e
      if (isKey(view, start, K_ENDPOINT)) return K_ENDPOINT;
      return isKey(view, start, K_ERRNO) ? K_ERRNO : K_UNKNOWN;
    case 116: // t
      return isKey(view, start, K_TX_BYTES) ? K_TX_BYTES : K_UNKNOWN;
    case 114: // r
      return isKey(view, start, K_RX_BYTES) ? K_RX_BYTES : K_UNKNOWN;
    case 102: // f
      return isKey(view, start, K_FWMARK) ? K_FWMARK : K_UNKNOWN;
    default:
      return K_UNKNOWN;
  }
}

/** Where the line holding `i` ends: its '\n', or the end of the answer. Lines are short: a loop beats a native call. */
function lineEnd(bytes: Buffer, i: number): number {
  const length = bytes.length;
  while (i < length && bytes[i] !== 10) i++;
  return i;
}

/** Whether a line ends at `i`. */
function endsLine(bytes: Buffer, i: number): boolean {
  return i === bytes.length || bytes[i] === 10;
}

/** The first index at or after `i` that is not an ASCII digit. */
function digitsEnd(bytes: Buffer, i: number): number {
  const length = bytes.length;
  while (i < length) {
    const c = bytes[i];
    if (c < 48 || c > 57) break;
    i++;
  }
  return i;
}

/** The value of the digits in bytes[start, end): exact up to 15 digits. */
function digitsValue(bytes: Buffer, start: number, end: number): number {
  let value = 0;
  for (let i = start; i < end; i++) value = value * 10 + (bytes[i] - 48);
  return value;
}

/** The whole number in bytes[start, end) when it is 1 to 10 digits that end their line, else -1. */
function wholeNumber(bytes: Buffer, start: number, end: number): number {
  return end > start && end - start <= 10 && endsLine(bytes, end) ? digitsValue(bytes, start, end) : -1;
}

/** A 64-bit counter: 1 to 20 digits that end their line (null otherwise), exact. */
function counter(bytes: Buffer, start: number, end: number): bigint | null {
  if (end <= start || end - start > 20 || !endsLine(bytes, end)) return null;
  if (end - start > 15) return BigInt(bytes.toString('latin1', start, end)); // a Number would not be exact
  const n = digitsValue(bytes, start, end);
  return n === 0 ? 0n : BigInt(n);
}

/** Hex digit values by byte; -1 for anything else. */
const HEX_DIGIT = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX_DIGIT[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_DIGIT[65 + i] = 10 + i; // A-F: wireguard-go writes lowercase, but hexToKey takes either
  HEX_DIGIT[97 + i] = 10 + i;
}
const BASE64_ALPHABET = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'latin1');
/** A key is 64 hex digits on the wire and 44 base64 characters here: 43 for its 32 bytes, and '='. */
const HEX_KEY = 64;
const B64_KEY = 44;
/** "0000" as a little-endian word: an all-zero key is 16 of them. */
const ZERO_WORD = 0x30303030;

/** Whether bytes[start, start + 64) are all '0' (wireguard-go's "no key"); the caller checked they exist. */
function zeroKeyAt(view: DataView, start: number): boolean {
  for (let o = 0; o < HEX_KEY; o += 4) if (view.getUint32(start + o, true) !== ZERO_WORD) return false;
  return true;
}

/** What a queued key entry sets on its owner. */
const KeyKind = { Public: 0, Preshared: 1, NoPreshared: 2 } as const;
type KeyKind = (typeof KeyKind)[keyof typeof KeyKind];

/**
 * The base64 forms of the keys one parse reads, written as ASCII into one buffer and made strings
 * by one decode at the end: a Buffer and a decode per key cost more than the rest of the scan.
 */
class KeyBatch {
  private out: Buffer;
  private readonly owners: PeerState[] = [];
  /**
   * Per entry: its owner's public key, its preshared key, or no preshared key (an all-zero
   * `preshared_key=` line, which must undo an earlier key of the same peer, so it keeps its place).
   */
  private readonly kinds: KeyKind[] = [];

  /** Room for the keys of a usual answer of `answerBytes` (a peer with a preshared key has 2 in about 330 bytes); it grows if needed. */
  constructor(answerBytes: number) {
    this.out = Buffer.allocUnsafe((Math.ceil(answerBytes / 150) + 1) * B64_KEY);
  }

  /** Queue the key in bytes[start, start + 64) for `owner`; false if those are not 64 hex digits. */
  add(bytes: Buffer, start: number, owner: PeerState, preshared: boolean): boolean {
    const n = this.owners.length;
    this.reserve(n);
    const out = this.out;
    let o = n * B64_KEY;
    let i = start;
    // 30 bytes in ten groups of 3: 6 hex digits are 24 bits, which are 4 base64 characters.
    for (let g = 0; g < 10; g++, i += 6) {
      const d0 = HEX_DIGIT[bytes[i]];
      const d1 = HEX_DIGIT[bytes[i + 1]];
      const d2 = HEX_DIGIT[bytes[i + 2]];
      const d3 = HEX_DIGIT[bytes[i + 3]];
      const d4 = HEX_DIGIT[bytes[i + 4]];
      const d5 = HEX_DIGIT[bytes[i + 5]];
      if ((d0 | d1 | d2 | d3 | d4 | d5) < 0) return false;
      out[o++] = BASE64_ALPHABET[(d0 << 2) | (d1 >> 2)];
      out[o++] = BASE64_ALPHABET[((d1 & 3) << 4) | d2];
      out[o++] = BASE64_ALPHABET[(d3 << 2) | (d4 >> 2)];
      out[o++] = BASE64_ALPHABET[((d4 & 3) << 4) | d5];
    }
    // The last 2 bytes (4 hex digits, 16 bits): 3 characters, the last one padded with 2 zero bits, then '='.
    const d0 = HEX_DIGIT[bytes[i]];
    const d1 = HEX_DIGIT[bytes[i + 1]];
    const d2 = HEX_DIGIT[bytes[i + 2]];
    const d3 = HEX_DIGIT[bytes[i + 3]];
    if ((d0 | d1 | d2 | d3) < 0) return false;
    out[o++] = BASE64_ALPHABET[(d0 << 2) | (d1 >> 2)];
    out[o++] = BASE64_ALPHABET[((d1 & 3) << 4) | d2];
    out[o++] = BASE64_ALPHABET[d3 << 2];
    out[o] = 61; // '='
    this.owners.push(owner);
    this.kinds.push(preshared ? KeyKind.Preshared : KeyKind.Public);
    return true;
  }

  /** Queue "no preshared key" for `owner`, in order with the keys queued before and after it. */
  clearPreshared(owner: PeerState): void {
    this.reserve(this.owners.length);
    this.owners.push(owner);
    this.kinds.push(KeyKind.NoPreshared);
  }

  /** Room for entry n (every entry keeps its slot, so entry k sits at k * B64_KEY). */
  private reserve(n: number): void {
    if ((n + 1) * B64_KEY <= this.out.length) return;
    const bigger = Buffer.allocUnsafe(this.out.length * 2);
    this.out.copy(bigger, 0, 0, n * B64_KEY);
    this.out = bigger;
  }

  /** Give every queued key to its owner. */
  assign(): void {
    const n = this.owners.length;
    if (n === 0) return;
    const all = this.out.toString('latin1', 0, n * B64_KEY);
    for (let k = 0; k < n; k++) {
      const kind = this.kinds[k];
      if (kind === KeyKind.NoPreshared) this.owners[k].presharedKey = null;
      else if (kind === KeyKind.Preshared) this.owners[k].presharedKey = all.slice(k * B64_KEY, (k + 1) * B64_KEY);
      else this.owners[k].publicKey = all.slice(k * B64_KEY, (k + 1) * B64_KEY);
    }
  }
}

/**
 * The device's public key, derived once per private key: x25519 in pure JavaScript (publicKeyOf)
 * costs about as much as parsing 5,000 peers, and the private key rarely changes between reads.
 */
let derived: { privateKey: string; publicKey: string } | null = null;
function devicePublicKey(privateKey: string): string {
  if (derived?.privateKey !== privateKey) derived = { privateKey, publicKey: publicKeyOf(privateKey) };
  return derived.publicKey;
}

/** The protocol error for the line that starts at `start`, quoting it (redacted). */
function lineError(bytes: Buffer, lineNo: number, start: number, why: string): NativeError {
  return protocolError(lineNo, bytes.toString('utf8', start, lineEnd(bytes, start)), why);
}

/**
 * Parse the body of a `get` answer (the key=value lines; a trailing `errno=` line and blank lines
 * are allowed). Unknown keys are skipped, so newer wireguard-go versions still parse. Endpoints and
 * allowed IPs are kept as wireguard-go wrote them (it prints what it parsed, with netip's String()).
 */
export function parseGet(text: string): DeviceState {
  return parseGetBytes(Buffer.from(text, 'utf8'));
}

/** parseGet of the answer's bytes, as they came from the socket (UTF-8, as wireguard-go writes it). */
export function parseGetBytes(bytes: Buffer): DeviceState {
  const device: DeviceState = { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keys = new KeyBatch(bytes.length);
  let peer: PeerState | null = null;
  let handshakeSec = 0n;
  const length = bytes.length;
  let lineNo = 0;
  let start = 0;
  while (start < length) {
    lineNo++;
    if (bytes[start] === 10) {
      start++;
      continue;
    }
    const key = keyAt(bytes, view, start);
    let end: number;
    if (key === K_UNKNOWN) {
      end = lineEnd(bytes, start);
      let eq = start;
      while (eq < end && bytes[eq] !== 61) eq++;
      if (eq === start || eq === end) throw lineError(bytes, lineNo, start, 'expected key=value');
      start = end + 1;
      continue;
    }
    const v = start + KEY_LENGTH[key];
    if (key === K_PUBLIC_KEY) {
      finishPeer(peer);
      // Its publicKey is filled in by keys.assign(), once the whole answer is read.
      peer = {
        publicKey: '',
        presharedKey: null,
        endpoint: null,
        allowedIPs: [],
        persistentKeepalive: 0,
        lastHandshake: null,
        rxBytes: 0n,
        txBytes: 0n,
        protocolVersion: 1,
      };
      end = v + HEX_KEY;
      if (!endsLine(bytes, end) || !keys.add(bytes, v, peer, false)) throw lineError(bytes, lineNo, start, 'expected a 64-digit hex key');
      device.peers.push(peer);
      handshakeSec = 0n;
    } else if (peer === null) {
      let n: number;
      switch (key) {
        case K_PRIVATE_KEY:
          end = lineEnd(bytes, v);
          if (!(end - v === HEX_KEY && zeroKeyAt(view, v))) {
            device.privateKey = hexOrThrow(bytes.toString('utf8', v, end), lineNo, bytes.toString('utf8', start, end));
            device.publicKey = devicePublicKey(device.privateKey);
          }
          break;
        case K_LISTEN_PORT:
          end = digitsEnd(bytes, v);
          if ((n = wholeNumber(bytes, v, end)) < 0) throw lineError(bytes, lineNo, start, 'expected a whole number');
          device.listenPort = n;
          break;
        case K_FWMARK:
          end = digitsEnd(bytes, v);
          if ((n = wholeNumber(bytes, v, end)) < 0) throw lineError(bytes, lineNo, start, 'expected a whole number');
          device.fwmark = n;
          break;
        default:
          end = lineEnd(bytes, v); // errno, peer keys before any peer
      }
    } else {
      let n: number;
      let big: bigint | null;
      switch (key) {
        case K_PRESHARED_KEY:
          end = v + HEX_KEY;
          if (!endsLine(bytes, end)) throw lineError(bytes, lineNo, start, 'expected a 64-digit hex key');
          if (zeroKeyAt(view, v)) keys.clearPreshared(peer);
          else if (!keys.add(bytes, v, peer, true)) throw lineError(bytes, lineNo, start, 'expected a 64-digit hex key');
          break;
        case K_PROTOCOL_VERSION:
          end = digitsEnd(bytes, v);
          if ((n = wholeNumber(bytes, v, end)) < 0) throw lineError(bytes, lineNo, start, 'expected a whole number');
          peer.protocolVersion = n;
          break;
        case K_ENDPOINT:
          end = lineEnd(bytes, v);
          peer.endpoint = bytes.toString('utf8', v, end);
          break;
        case K_HANDSHAKE_SEC:
          end = digitsEnd(bytes, v);
          if ((big = counter(bytes, v, end)) === null) throw lineError(bytes, lineNo, start, 'expected a 64-bit counter');
          handshakeSec = big;
          peer.lastHandshake = { sec: big, nsec: 0 };
          break;
        case K_HANDSHAKE_NSEC:
          end = digitsEnd(bytes, v);
          if ((n = wholeNumber(bytes, v, end)) < 0) throw lineError(bytes, lineNo, start, 'expected a whole number');
          peer.lastHandshake = { sec: handshakeSec, nsec: n };
          break;
        case K_TX_BYTES:
          end = digitsEnd(bytes, v);
          if ((big = counter(bytes, v, end)) === null) throw lineError(bytes, lineNo, start, 'expected a 64-bit counter');
          peer.txBytes = big;
          break;
        case K_RX_BYTES:
          end = digitsEnd(bytes, v);
          if ((big = counter(bytes, v, end)) === null) throw lineError(bytes, lineNo, start, 'expected a 64-bit counter');
          peer.rxBytes = big;
          break;
        case K_KEEPALIVE:
          end = digitsEnd(bytes, v);
          if ((n = wholeNumber(bytes, v, end)) < 0) throw lineError(bytes, lineNo, start, 'expected a whole number');
          peer.persistentKeepalive = n;
          break;
        case K_ALLOWED_IP:
          end = lineEnd(bytes, v);
          peer.allowedIPs.push(bytes.toString('utf8', v, end));
          break;
        default:
          end = lineEnd(bytes, v); // errno, device keys after the first peer
      }
    }
    start = end + 1;
  }
  finishPeer(peer);
  keys.assign();
  return device;
}

/** sec and nsec arrive on two lines; 0/0 means "never". */
function finishPeer(peer: PeerState | null): void {
  if (peer?.lastHandshake && peer.lastHandshake.sec === 0n && peer.lastHandshake.nsec === 0) peer.lastHandshake = null;
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
