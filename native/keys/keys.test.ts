/**
 * Keys: X25519 against RFC 7748, the base64 wg accepts, hex for the wire, and private key files that
 * never become readable by others.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, lstatSync } from 'node:fs';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { KeyIndex } from '../../scripts/scan-secrets.ts';
import { isNativeError } from '../errors.ts';
import {
  KEY_FILE_MAX_BYTES,
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

/** Fails if any piece of `key` (base64 or hex, raw or clamped: see scripts/scan-secrets.ts) is in `text`. */
function assertNoKeyMaterial(text: string, key: string): void {
  assert.deepEqual(new KeyIndex([{ key, source: 'the key' }]).find(text), [], `key material in: ${text}`);
}

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

describe('no key material in any message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-keyleak-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Write `content` as a 0600 file and return the error reading it gives. */
  function refusal(name: string, content: string | Buffer, mode = 0o600): Error {
    const path = join(dir, name);
    writeFileSync(path, content, { mode });
    chmodSync(path, mode);
    try {
      readPrivateKeyFile(path);
    } catch (err) {
      assert.ok(isNativeError(err), String(err));
      assert.ok(err.message.startsWith(`private key file ${path}`), err.message);
      return err;
    }
    return assert.fail(`${name} was accepted`);
  }

  const key = generatePrivateKey();
  const hex = keyToHex(key);
  const cases: Array<[string, string, RegExp]> = [
    ['a key with a trailing comment', `${key} # node-a, made 2026-11-30\n`, /contains a comment/],
    ['a comment line above the key', `# node-a\n${key}\n`, /spans 2 lines/],
    ['57 hex digits', `${hex.slice(0, 57)}\n`, /has 57 characters/],
    ['64 hex digits (the UAPI form)', `${hex}\n`, /64 hex digits \(the UAPI wire form\), not base64/],
    ['a key missing its last character', `${key.slice(0, 43)}\n`, /has 43 characters/],
    ['a key with a stray character inside', `${key.slice(0, 20)}!${key.slice(21)}\n`, /character 21 is not base64/],
    ['two keys', `${key}\n${generatePrivateKey()}\n`, /spans 2 lines/],
    ['a key and white space inside', `${key.slice(0, 22)} ${key.slice(22)}\n`, /white space/],
  ];
  for (const [name, content, rule] of cases) {
    test(`${name}: refused with its length and the rule it breaks, never its content`, () => {
      const err = refusal(name.replace(/\W+/g, '-'), content);
      assert.ok(isNativeError(err, 'invalid-key'));
      assert.match(err.message, rule);
      assert.match(err.message, /not shown/);
      assertNoKeyMaterial(err.message, key);
      assertNoKeyMaterial(String(err.stack), key);
      assertNoKeyMaterial(inspect(err), key);
    });
  }

  test('a 0600 file reached through a symbolic link is refused without being read', () => {
    const target = join(dir, 'real.key');
    writeFileSync(target, `${key} trailing words\n`, { mode: 0o600 });
    const link = join(dir, 'link.key');
    symlinkSync(target, link);
    assert.throws(
      () => readPrivateKeyFile(link),
      (err: unknown) => {
        assert.ok(isNativeError(err, 'key-file'));
        assert.match(err.message, /is a symbolic link; key files are opened without following links/);
        assertNoKeyMaterial(err.message, key);
        return true;
      },
    );
    // A link to a good key file is refused as well: the path is the contract, not where it points.
    const good = join(dir, 'good.key');
    writePrivateKeyFile(good, key);
    const goodLink = join(dir, 'good-link.key');
    symlinkSync(good, goodLink);
    assert.throws(() => readPrivateKeyFile(goodLink), /symbolic link/);
    assert.throws(() => loadOrCreatePrivateKey(goodLink), /symbolic link/, 'a link is not "missing": nothing is created');
  });

  test('a FIFO at the key path is refused at once instead of hanging the agent', () => {
    const path = join(dir, 'fifo.key');
    execFileSync('mkfifo', ['-m', '600', path]);
    // In a child with a deadline: without O_NONBLOCK the open itself blocks forever (no writer),
    // and a blocked synchronous open here would hang the whole test run instead of failing it.
    const script = `import { loadOrCreatePrivateKey, readPrivateKeyFile } from ${JSON.stringify(join(import.meta.dirname, 'keys.ts'))};
      for (const f of [readPrivateKeyFile, loadOrCreatePrivateKey]) { try { f(${JSON.stringify(path)}); } catch (e) { console.log(e.kind + ': ' + e.message); } }`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.deepEqual(out.trim().split('\n'), [
      `key-file: private key file ${path} is a FIFO, not a regular file`,
      `key-file: private key file ${path} is a FIFO, not a regular file`,
    ]);
  });

  test('a directory, a device and a socket are not key files', () => {
    const folder = join(dir, 'folder.key');
    mkdirSync(folder, { mode: 0o700 });
    assert.throws(() => readPrivateKeyFile(folder), /is a directory, not a regular file/);
    const zero = join(dir, 'zero.key');
    symlinkSync('/dev/zero', zero);
    assert.throws(() => readPrivateKeyFile(zero), /symbolic link/);
    assert.throws(() => readPrivateKeyFile('/dev/zero'), /is a character device, not a regular file/);
    const sock = join(dir, 'sock.key');
    execFileSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(sock)})`]);
    chmodSync(sock, 0o600);
    assert.throws(() => readPrivateKeyFile(sock), /is a socket, not a regular file/);
  });

  test('a 0604 file (others can read, group cannot) is refused', () => {
    const err = refusal('other-readable.key', `${key}\n`, 0o604);
    assert.ok(isNativeError(err, 'key-file'));
    assert.match(err.message, /has mode 0604, so others can read it; run "chmod 600 /);
    assertNoKeyMaterial(err.message, key);
  });

  test('a 0620 file (group can write) is refused too', () => {
    assert.match(refusal('group-writable.key', `${key}\n`, 0o620).message, /has mode 0620, so others can change it/);
  });

  test('a file owned by another uid is refused, naming both uids', { skip: process.geteuid?.() !== 0 ? 'needs root to chown' : false }, () => {
    const path = join(dir, 'foreign.key');
    writeFileSync(path, `${key}\n`, { mode: 0o600 });
    chownSync(path, 65534, 65534);
    assert.throws(
      () => readPrivateKeyFile(path),
      (err: unknown) => {
        assert.ok(isNativeError(err, 'key-file'));
        assert.match(err.message, /is owned by uid 65534, not by this process's uid 0/);
        assertNoKeyMaterial(err.message, key);
        return true;
      },
    );
  });

  test('a big file is refused by its size, without being read', () => {
    const err = refusal('big.key', Buffer.alloc(KEY_FILE_MAX_BYTES + 1, 'A'));
    assert.match(err.message, new RegExp(`is ${KEY_FILE_MAX_BYTES + 1} bytes; a key file holds one 44-character key \\(at most ${KEY_FILE_MAX_BYTES} bytes\\)`));
  });

  test('a key with surrounding white space and a CRLF is still read (as before)', () => {
    const path = join(dir, 'crlf.key');
    writeFileSync(path, ` ${key}\r\n`, { mode: 0o600 });
    assert.equal(readPrivateKeyFile(path), key);
  });

  test('decodeKey and hexToKey never quote a private or preshared key, but still quote a public key', () => {
    for (const what of ['privateKey', 'peers[0].presharedKey', 'stdin (private key)']) {
      const message = keyProblem(`${key} x`, what) ?? '';
      assert.match(message, /a value of 46 characters \(not shown/);
      assertNoKeyMaterial(message, key);
      assert.throws(() => hexToKey(hex.slice(0, 63), what), (err: Error) => !err.message.includes(hex.slice(0, 20)));
    }
    assert.throws(() => publicKeyOf(`${key}\n`, 'stdin'), (err: Error) => /spans 2 lines/.test(err.message) && !err.message.includes(key.slice(0, 20)));
    assert.throws(() => keyToHex(`${key}=`, 'peers[1].presharedKey'), (err: Error) => !err.message.includes(key.slice(0, 20)));
    // A public key is not a secret, and the quoted typo is what lets an operator find it (a fresh
    // key: `key` was registered as a secret by the file tests above, and would be redacted anyway).
    const publicKey = publicKeyOf(generatePrivateKey());
    assert.match(keyProblem(`${publicKey}x`, 'spec.publicKey') ?? '', new RegExp(`"${publicKey.slice(0, 10).replace(/[+/]/g, '\\$&')}`));
    assert.match(keyProblem(`${key}x`, 'spec.publicKey') ?? '', /"\(redacted\)x"/, 'a registered secret is redacted wherever it appears');
  });
});

describe('writing a private key file atomically', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-keywrite-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('leaves exactly the key file: no temporary file behind, whether it succeeds or is refused', () => {
    const path = join(dir, 'one.key');
    writePrivateKeyFile(path, generatePrivateKey());
    assert.throws(() => writePrivateKeyFile(path, generatePrivateKey()), /already exists; refusing to overwrite/);
    assert.deepEqual(readdirSync(dir), ['one.key']);
    assert.equal(lstatSync(path).nlink, 1, 'the temporary name is unlinked');
  });

  test('a symbolic link at the path (even a dangling one) is not replaced nor written through', () => {
    const target = join(dir, 'target-that-does-not-exist');
    const path = join(dir, 'dangling.key');
    symlinkSync(target, path);
    assert.throws(() => writePrivateKeyFile(path, generatePrivateKey()), /already exists/);
    assert.throws(() => loadOrCreatePrivateKey(path), /symbolic link/);
    assert.throws(() => statSync(target), { code: 'ENOENT' });
    assert.ok(lstatSync(path).isSymbolicLink());
  });

  test('a hard link at the path is left alone too', () => {
    const other = join(dir, 'other.txt');
    writeFileSync(other, 'not a key\n', { mode: 0o600 });
    const path = join(dir, 'hard.key');
    linkSync(other, path);
    assert.throws(() => writePrivateKeyFile(path, generatePrivateKey()), /already exists/);
    assert.equal(readFileSync(other, 'utf8'), 'not a key\n');
  });

  test('the file is 0600 even under a permissive umask', () => {
    const old = process.umask(0);
    try {
      const path = join(dir, 'umask.key');
      writePrivateKeyFile(path, generatePrivateKey());
      assert.equal(statSync(path).mode & 0o777, 0o600);
    } finally {
      process.umask(old);
    }
  });

  test('two writers racing for one path: exactly one wins, and loadOrCreate returns the winner\'s key', () => {
    const path = join(dir, 'race', 'wg.key');
    const results = Array.from({ length: 5 }, () => {
      try {
        writePrivateKeyFile(path, generatePrivateKey());
        return 'written';
      } catch {
        return 'refused';
      }
    });
    assert.deepEqual(results.filter((r) => r === 'written').length, 1);
    assert.deepEqual(loadOrCreatePrivateKey(path), { privateKey: readPrivateKeyFile(path), created: false });
    assert.deepEqual(readdirSync(join(dir, 'race')), ['wg.key']);
  });
});
