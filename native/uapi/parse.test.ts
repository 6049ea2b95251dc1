/**
 * parseGet against the parser it replaced. The byte parser (keys compared 4 bytes at a time, hex
 * keys turned into base64 in one batch, numbers read digit by digit) must give the same DeviceState
 * and the same protocol errors, naming the same line, on any answer: wireguard-go's own, a hostile
 * socket's (bad keys, numbers, unknown keys, lines without '=', bytes that are not UTF-8), and
 * answers cut anywhere. `referenceParseGet` below is the previous codec.ts parseGet, unchanged
 * except for its name; it is the specification here, not production code.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { NativeError, isNativeError } from '../errors.ts';
import { generatePresharedKey, generatePrivateKey, hexToKey, isZeroHex, keyToHex, publicKeyOf, redactUapiLine } from '../keys/index.ts';
import { blankPeerState, parseGet, parseGetBytes, renderGet } from './codec.ts';
import type { DeviceState, PeerState } from './types.ts';

// ---- the reference: codec.ts parseGet before the byte parser (commit 3c259c8), with publicKeyOf remembered ----

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

function hexOrThrow(value: string, lineNo: number, line: string): string {
  try {
    return hexToKey(value);
  } catch {
    throw protocolError(lineNo, line, 'expected a 64-digit hex key');
  }
}

/** publicKeyOf is pure-JS x25519: remembered here so that thousands of random answers stay fast. */
const publicKeys = new Map<string, string>();
function cachedPublicKeyOf(privateKey: string): string {
  let publicKey = publicKeys.get(privateKey);
  if (publicKey === undefined) publicKeys.set(privateKey, (publicKey = publicKeyOf(privateKey)));
  return publicKey;
}

function referenceParseGet(text: string): DeviceState {
  const device: DeviceState = { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] };
  let peer: PeerState | null = null;
  let handshakeSec = 0n;
  const finishPeer = (): void => {
    if (peer && peer.lastHandshake) {
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
            device.publicKey = cachedPublicKeyOf(device.privateKey);
          }
          break;
        case 'listen_port':
          device.listenPort = parseUint(value, i + 1, line);
          break;
        case 'fwmark':
          device.fwmark = parseUint(value, i + 1, line);
          break;
        default:
          break;
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
      default:
        break;
    }
  }
  finishPeer();
  return device;
}

// ---- comparing the two ----

type Outcome = { device: DeviceState } | { error: string };

function outcome(parse: () => DeviceState): Outcome {
  try {
    return { device: parse() };
  } catch (err) {
    assert.ok(isNativeError(err, 'protocol'), `not a protocol error: ${String(err)}`);
    return { error: err.message };
  }
}

/** The new parser on the text and on its bytes gives exactly what the reference gives. */
function assertSameAsReference(text: string): void {
  const expected = outcome(() => referenceParseGet(text));
  assert.deepEqual(outcome(() => parseGet(text)), expected, JSON.stringify(text.slice(0, 400)));
  // The client parses the bytes it read; they may sit anywhere in a larger buffer.
  const bytes = Buffer.from(text, 'utf8');
  const inside = Buffer.alloc(bytes.length + 16, 'public_key=');
  bytes.copy(inside, 7);
  assert.deepEqual(outcome(() => parseGetBytes(inside.subarray(7, 7 + bytes.length))), expected);
}

/** One device key: each new private key costs an x25519 in both parsers. */
const DEVICE_KEY_HEX = keyToHex(generatePrivateKey());
const hexKey = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
/** 1 to `max` digits, small numbers more often, sometimes with leading zeroes. */
const digits = (max: number): fc.Arbitrary<string> =>
  fc.oneof(fc.nat(99).map(String), fc.bigInt({ min: 0n, max: 10n ** BigInt(max) - 1n }).map(String), fc.constant('007'));
/** A value as a hostile or broken socket may write it: near misses of every rule. */
const badValue = fc.oneof(
  fc.constantFrom('', '-1', '+1', ' 1', '1 ', '1e3', '0x10', '1.5', 'x'.repeat(64), '0'.repeat(63), '0'.repeat(65), 'é', '\u0000', '='),
  digits(25),
  hexKey.map((h) => h.slice(0, 63) + 'g'),
  hexKey.map((h) => h.toUpperCase()),
  hexKey.map((h) => h + '0'),
  fc.string({ maxLength: 12, unit: 'binary' }).filter((s) => !s.includes('\n')),
);
const KEYS = [
  'private_key',
  'listen_port',
  'fwmark',
  'public_key',
  'preshared_key',
  'protocol_version',
  'endpoint',
  'last_handshake_time_sec',
  'last_handshake_time_nsec',
  'tx_bytes',
  'rx_bytes',
  'persistent_keepalive_interval',
  'allowed_ip',
  'errno',
] as const;
/** A key=value line: usually a valid one, sometimes with a bad value, a near-miss key, or no '=' at all. */
const line: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.oneof(...KEYS.map((k) => goodValue(k).map((v) => `${k}=${v}`))) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...KEYS), badValue).map(([k, v]) => `${k}=${v}`) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...KEYS), fc.constantFrom('s', 'X', '_', ''), fc.nat(3)).map(([k, extra, cut]) => `${k.slice(0, k.length - cut)}${extra}=1`),
  },
  { weight: 1, arbitrary: fc.constantFrom('', 'jc=4', 'future_key=x', 'nonsense', '=1', '==', 'public_key', 'errno=0', 'p', 'last_handshake_time_se=1') },
);
function goodValue(key: (typeof KEYS)[number]): fc.Arbitrary<string> {
  switch (key) {
    case 'private_key':
      return fc.constantFrom(DEVICE_KEY_HEX, '0'.repeat(64));
    case 'public_key':
    case 'preshared_key':
      return fc.oneof(hexKey, fc.constant('0'.repeat(64)));
    case 'listen_port':
    case 'fwmark':
    case 'protocol_version':
    case 'last_handshake_time_nsec':
    case 'persistent_keepalive_interval':
      return digits(10);
    case 'last_handshake_time_sec':
    case 'tx_bytes':
    case 'rx_bytes':
      return fc.oneof(digits(20), fc.constant('0'));
    case 'endpoint':
      return fc.constantFrom('1.2.3.4:51820', '[fd00::1]:51820', '[fe80::1%eth0]:1', '198.18.0.1:65535');
    case 'allowed_ip':
      return fc.constantFrom('10.0.0.0/8', 'fd00::/64', '::ffff:1.2.3.4/128', '0.0.0.0/0');
    case 'errno':
      return fc.constantFrom('0', '-22');
  }
}
const answer = fc.tuple(fc.array(line, { maxLength: 30 }), fc.constantFrom('', '\n', '\nerrno=0\n\n')).map(([lines, end]) => lines.join('\n') + end);

describe('parseGet matches the parser it replaced', () => {
  test('on 2,000 random answers, valid and malformed: the same device, or the same error on the same line', () => {
    fc.assert(fc.property(answer, assertSameAsReference), { numRuns: 2000 });
  });

  test('an all-zero preshared_key after a key clears it, and a key after a zero sets it (the last line wins)', () => {
    // Found by the property above (CI, seed 1056985212): the zero line used to be applied before
    // the queued key, so the peer kept a preshared key wireguard-go no longer had.
    const peer = `public_key=${'00'.repeat(32)}`;
    const one = `${'00'.repeat(31)}01`;
    const zero = '00'.repeat(32);
    for (const order of [[one, zero], [zero, one], [one, zero, one], [zero, one, zero]]) {
      const text = [peer, ...order.map((k) => `preshared_key=${k}`)].join('\n');
      assertSameAsReference(text);
      const last = order[order.length - 1];
      assert.equal(parseGet(text).peers[0].presharedKey === null, last === zero, `after ${order.length} preshared_key lines`);
    }
  });

  test('on answers that are not UTF-8: bytes are decoded as the whole answer was', () => {
    // A hostile socket's bytes: the reference decoded the whole answer, then split it.
    const valid = renderGet({
      privateKey: null,
      publicKey: null,
      listenPort: 1,
      fwmark: 0,
      peers: [blankPeerState(publicKeyOf(generatePrivateKey()), { endpoint: '1.2.3.4:5', allowedIPs: ['10.0.0.0/8'] })],
    });
    fc.assert(
      fc.property(fc.nat(valid.length), fc.uint8Array({ minLength: 1, maxLength: 6 }), (at, junk) => {
        const bytes = Buffer.concat([Buffer.from(valid.slice(0, at), 'latin1'), Buffer.from(junk), Buffer.from(valid.slice(at), 'latin1')]);
        assert.deepEqual(outcome(() => parseGetBytes(bytes)), outcome(() => referenceParseGet(bytes.toString('utf8'))));
      }),
      { numRuns: 1000 },
    );
  });

  test('on a wireguard-go answer cut after every byte', () => {
    const device: DeviceState = {
      privateKey: generatePrivateKey(),
      publicKey: null,
      listenPort: 51820,
      fwmark: 7,
      peers: [
        blankPeerState(publicKeyOf(generatePrivateKey()), {
          presharedKey: generatePresharedKey(),
          endpoint: '[fd00::1]:51820',
          allowedIPs: ['10.0.0.0/24', 'fd00::/64'],
          lastHandshake: { sec: 18446744073709551615n, nsec: 999999999 },
          rxBytes: 9007199254740993n,
          txBytes: 123456789012345n,
          persistentKeepalive: 25,
        }),
        blankPeerState(publicKeyOf(generatePrivateKey())),
      ],
    };
    device.publicKey = publicKeyOf(device.privateKey as string);
    const text = renderGet(device);
    assert.deepEqual(parseGet(text), device);
    for (let at = 0; at <= text.length; at++) assertSameAsReference(text.slice(0, at));
  });

  test('keys in upper-case hex read as lower-case ones do (the reference accepted both)', () => {
    const key = generatePresharedKey();
    const text = `public_key=${keyToHex(key).toUpperCase()}\npreshared_key=${keyToHex(key).toUpperCase()}\n`;
    assert.deepEqual(parseGet(text).peers, [blankPeerState(key, { presharedKey: key })]);
  });

  test('a device public key is derived again when the private key changes', () => {
    // parseGet remembers the last private key's public key; a new private key must not reuse it.
    const [a, b] = [generatePrivateKey(), generatePrivateKey()];
    for (const k of [a, b, a]) assert.equal(parseGet(`private_key=${keyToHex(k)}\n`).publicKey, publicKeyOf(k));
  });
});
