/**
 * Keys: X25519 against RFC 7748, the base64 wg accepts, hex for the wire, and private key files that
 * never become readable by others.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { isNativeError } from '../errors.ts';
import {
  KEY_PATTERN,
  clamp,
  decodeKey,
  generatePresharedKey,
  generatePrivateKey,
  hexToKey,
  isZeroHex,
  keyProblem,
  keyToHex,
  loadOrCreatePrivateKey,
  publicKeyOf,
  readPrivateKeyFile,
  writePrivateKeyFile,
} from './keys.ts';

// RFC 7748 section 6.1 (also checked with `wg pubkey`).
const ALICE_PRIVATE_HEX = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a';
const ALICE_PUBLIC_HEX = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIVATE_HEX = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb';
const BOB_PUBLIC_HEX = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const ALICE_PRIVATE_B64 = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=';
const ALICE_PUBLIC_B64 = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';

function isClamped(bytes: Uint8Array): boolean {
  return (bytes[0] & 7) === 0 && (bytes[31] & 0x80) === 0 && (bytes[31] & 0x40) !== 0;
}

describe('X25519 (RFC 7748 section 6.1)', () => {
  test("Alice's private key gives Alice's public key, through hex and base64", () => {
    const privateKey = hexToKey(ALICE_PRIVATE_HEX);
    assert.equal(privateKey, ALICE_PRIVATE_B64);
    assert.equal(publicKeyOf(privateKey), ALICE_PUBLIC_B64);
    assert.equal(keyToHex(publicKeyOf(privateKey)), ALICE_PUBLIC_HEX);
  });

  test("Bob's private key gives Bob's public key", () => {
    assert.equal(keyToHex(publicKeyOf(hexToKey(BOB_PRIVATE_HEX))), BOB_PUBLIC_HEX);
  });

  test('publicKeyOf clamps first: the RFC key (not clamped) and its clamped form share a public key', () => {
    const raw = decodeKey(ALICE_PRIVATE_B64);
    assert.ok(!isClamped(raw), 'the RFC vector is not clamped, so this test means something');
    const clamped = Buffer.from(clamp(new Uint8Array(raw))).toString('base64');
    assert.equal(clamped, 'cAdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LGo='); // as wireguard-go stores it
    assert.equal(publicKeyOf(clamped), ALICE_PUBLIC_B64);
  });
});

describe('generated keys', () => {
  test('private keys are clamped, wg-shaped and distinct', () => {
    const keys = Array.from({ length: 200 }, () => generatePrivateKey());
    for (const k of keys) {
      assert.match(k, KEY_PATTERN);
      assert.ok(isClamped(decodeKey(k)), `${k} is not clamped`);
    }
    assert.equal(new Set(keys).size, keys.length);
  });

  test('preshared keys are not clamped (all 256 bits random)', () => {
    const keys = Array.from({ length: 200 }, () => decodeKey(generatePresharedKey()));
    // A clamped generator would never set these bits; 200 random keys all missing them has odds 2^-600.
    assert.ok(keys.some((k) => (k[0] & 7) !== 0));
    assert.ok(keys.some((k) => (k[31] & 0x80) !== 0));
  });
});

describe('decodeKey', () => {
  // Every string refused here is also refused by `wg pubkey` ("Key is not the correct length or format").
  const refused: Array<[string, string, RegExp]> = [
    ['an empty string', '', /an empty string/],
    ['a key without its "="', ALICE_PRIVATE_B64.slice(0, 43), /\(43 characters\)/],
    ['a key with a character too many', `${ALICE_PRIVATE_B64}A`, /\(45 characters\)/],
    ['a key ending "=="', `${ALICE_PRIVATE_B64.slice(0, 42)}==`, /\(44 characters\)/],
    ['a key with "!"', `${ALICE_PRIVATE_B64.slice(0, 41)}!o=`, /"dwdt/],
    ['URL-safe base64', `${ALICE_PRIVATE_B64.slice(0, 41)}-o=`, /"dwdt/],
    // Same 32 bytes when decoded leniently, but the two padding bits are not zero: wg refuses it.
    ['non-canonical base64 (padding bits set)', `${ALICE_PRIVATE_B64.slice(0, 42)}p=`, /"dwdt/],
  ];
  for (const [name, text, detail] of refused) {
    test(`refuses ${name}, naming what was being read`, () => {
      assert.throws(
        () => decodeKey(text, 'peers[3].publicKey'),
        (err: unknown) => {
          assert.ok(isNativeError(err, 'invalid-key'));
          assert.ok(err.message.startsWith('peers[3].publicKey: '), err.message);
          assert.match(err.message, /is not a WireGuard key/);
          assert.match(err.message, detail);
          return true;
        },
      );
      assert.match(keyProblem(text, 'the key') ?? '', /^the key: /);
    });
  }

  test('refuses a value that is not a string', () => {
    assert.throws(() => decodeKey(42 as unknown as string, 'k'), /^NativeError: k: number is not a WireGuard key/);
  });

  test('a very long value is shortened in the message', () => {
    const message = keyProblem('A'.repeat(500)) ?? '';
    assert.match(message, /\.\.\." \(500 characters\)/);
    assert.ok(message.length < 250, message);
  });

  test('accepts canonical keys and decodes them to their 32 bytes', () => {
    assert.equal(keyProblem(ALICE_PRIVATE_B64), null);
    assert.equal(Buffer.from(decodeKey(ALICE_PRIVATE_B64)).toString('hex'), ALICE_PRIVATE_HEX);
  });

  test('property: any 32 bytes in standard base64 are accepted and decode back to the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64');
        assert.deepEqual(decodeKey(text), new Uint8Array(bytes));
      }),
    );
  });
});

describe('hex keys', () => {
  test('property: keyToHex and hexToKey are inverse, and hex is the bytes in lower case', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const b64 = Buffer.from(bytes).toString('base64');
        const hex = keyToHex(b64);
        assert.equal(hex, Buffer.from(bytes).toString('hex'));
        assert.equal(hexToKey(hex), b64);
        assert.equal(hexToKey(hex.toUpperCase()), b64);
      }),
    );
  });

  test('hexToKey refuses anything but 64 hex digits, naming what', () => {
    for (const bad of ['', 'ab'.repeat(31), `${'ab'.repeat(32)}0`, `${'ab'.repeat(31)}zz`]) {
      assert.throws(
        () => hexToKey(bad, 'public_key'),
        (err: unknown) => isNativeError(err, 'invalid-key') && /^public_key: .* is not a 64-digit hex key$/.test(err.message),
        JSON.stringify(bad),
      );
    }
  });

  test('isZeroHex: only 64 zero digits', () => {
    assert.equal(isZeroHex('0'.repeat(64)), true);
    assert.equal(isZeroHex(`${'0'.repeat(63)}1`), false);
    assert.equal(isZeroHex('0'.repeat(63)), false);
  });
});

describe('private key files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-keys-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('written with mode 0600 in a new 0700 folder, one key and a newline', () => {
    const path = join(dir, 'new', 'private.key');
    const key = generatePrivateKey();
    writePrivateKeyFile(path, key);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'new')).mode & 0o077, 0);
    assert.equal(readFileSync(path, 'utf8'), `${key}\n`);
    assert.equal(readPrivateKeyFile(path), key);
  });

  test('an existing file is never overwritten', () => {
    const path = join(dir, 'existing.key');
    const first = generatePrivateKey();
    writePrivateKeyFile(path, first);
    assert.throws(
      () => writePrivateKeyFile(path, generatePrivateKey()),
      (err: unknown) => isNativeError(err, 'key-file') && err.message.includes(path),
    );
    assert.equal(readPrivateKeyFile(path), first);
  });

  test('an invalid key is refused before any file is created', () => {
    const path = join(dir, 'invalid.key');
    assert.throws(() => writePrivateKeyFile(path, 'nope'), (err: unknown) => isNativeError(err, 'invalid-key'));
    assert.throws(() => statSync(path), { code: 'ENOENT' });
  });

  test('a file others can read is refused, with the chmod 600 that fixes it', () => {
    const path = join(dir, 'readable.key');
    writeFileSync(path, `${generatePrivateKey()}\n`);
    chmodSync(path, 0o644);
    assert.throws(
      () => readPrivateKeyFile(path),
      (err: unknown) => {
        assert.ok(isNativeError(err, 'key-file'));
        assert.match(err.message, /has mode 0644/);
        assert.ok(err.message.includes(`chmod 600 ${path}`), err.message);
        return true;
      },
    );
  });

  test('a missing file says how to create one', () => {
    const path = join(dir, 'missing.key');
    assert.throws(
      () => readPrivateKeyFile(path),
      (err: unknown) => isNativeError(err, 'key-file') && /does not exist/.test(err.message) && err.message.includes(path),
    );
  });

  test('a 0600 file that holds no key is refused, naming the file', () => {
    const path = join(dir, 'garbage.key');
    writeFileSync(path, 'hello\n', { mode: 0o600 });
    assert.throws(
      () => readPrivateKeyFile(path),
      (err: unknown) => isNativeError(err, 'invalid-key') && err.message.startsWith(`private key file ${path}: `),
    );
  });

  test('loadOrCreatePrivateKey creates the key once, then returns the same key', () => {
    const path = join(dir, 'node', 'wg.key');
    const first = loadOrCreatePrivateKey(path);
    assert.equal(first.created, true);
    assert.match(first.privateKey, KEY_PATTERN);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const second = loadOrCreatePrivateKey(path);
    assert.deepEqual(second, { privateKey: first.privateKey, created: false });
  });

  test('loadOrCreatePrivateKey does not replace a key others could read', () => {
    const path = join(dir, 'exposed.key');
    const key = generatePrivateKey();
    writeFileSync(path, `${key}\n`);
    chmodSync(path, 0o640);
    assert.throws(() => loadOrCreatePrivateKey(path), /chmod 600/);
    assert.equal(readFileSync(path, 'utf8'), `${key}\n`);
  });
});
