/**
 * Keys (keys.ts), pinned message by message: what a user reads when a key or a key file is refused
 * (the rule it breaks, never the secret itself), the limits of a key file, and no descriptor left
 * open. Written for the mutation run (stryker.config.mjs): each case is a change to keys.ts that no
 * other test noticed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isNativeError } from '../errors.ts';
import { decodeKey, generatePrivateKey, hexToKey, isZeroHex, keyProblem, keyToHex, loadOrCreatePrivateKey, publicKeyOf, readPrivateKeyFile, writePrivateKeyFile } from './keys.ts';

const KEY = 'ln1Gl4iJD0uJ8qtXV5hE0X0EcmPIKwskW6bZKjHVgmg=';
const RULE = 'is not a WireGuard key (expected 44 characters of base64 encoding 32 bytes, as printed by "wg genkey")';
const SECRET = (n: number): string => `private key: a value of ${n} characters (not shown: it may be a secret) ${RULE}`;

function refused(fn: () => unknown, kind: 'invalid-key' | 'key-file', message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isNativeError(err, kind), String(err));
    assert.equal(err.message, message);
    return true;
  });
}

describe('a secret that is not a key: its length and the rule it breaks', () => {
  const cases: Array<[string, string, string]> = [
    ['empty', '', `private key: an empty value ${RULE}`],
    ['one character short', KEY.slice(1), `${SECRET(43)}: it has 43 characters`],
    ['64 hex digits (the wire form)', 'a'.repeat(64), `${SECRET(64)}: it is 64 hex digits (the UAPI wire form), not base64`],
    ['64 hex digits and one more character', `${'a'.repeat(64)}x`, `${SECRET(65)}: it has 65 characters`],
    ['a character and 63 hex digits', `x${'a'.repeat(63)}`, `${SECRET(64)}: it has 64 characters`],
    ['a character and 64 hex digits', `x${'a'.repeat(64)}`, `${SECRET(65)}: it has 65 characters`],
    ['a bad first character', `!${KEY.slice(1)}`, `${SECRET(44)}: character 1 is not base64`],
    ['two "=" at the end', `${KEY.slice(0, 42)}==`, `${SECRET(44)}: its padding is wrong (a key ends with exactly one "=")`],
    ['an "=" at the start', `=${KEY.slice(1)}`, `${SECRET(44)}: its padding is wrong (a key ends with exactly one "=")`],
    ['padding bits set', `${KEY.slice(0, 42)}h=`, `${SECRET(44)}: its last character sets padding bits (not canonical base64)`],
    ['two lines', `${KEY}\n${KEY}`, `${SECRET(89)}: it spans 2 lines`],
    ['a comment', `${KEY}#c`, `${SECRET(46)}: it contains a comment ("#"): only the key may be there`],
    ['white space', `${KEY} `, `${SECRET(45)}: it contains white space`],
  ];
  for (const [what, text, message] of cases) {
    test(what, () => refused(() => decodeKey(text, 'private key'), 'invalid-key', message));
  }

  test('a value that is not a string says its type, secret or not, even a list holding a key', () => {
    refused(() => decodeKey([KEY] as unknown as string), 'invalid-key', `key: object ${RULE}`);
    refused(() => decodeKey(5 as unknown as string, 'private key'), 'invalid-key', `private key: number ${RULE}`);
    refused(() => decodeKey(5 as unknown as string), 'invalid-key', `key: number ${RULE}`);
  });

  test('the caller may say what is secret, whatever the name', () => {
    refused(() => decodeKey('abc', 'key', { secret: true }), 'invalid-key', `key: a value of 3 characters (not shown: it may be a secret) ${RULE}: it has 3 characters`);
    refused(() => decodeKey('abc', 'private key', { secret: false }), 'invalid-key', `private key: "abc" (3 characters) ${RULE}`);
  });
});

describe('a public key that is not a key is quoted (short), to help find the typo', () => {
  test('quoted whole up to 60 characters, shortened beyond', () => {
    refused(() => decodeKey('abc'), 'invalid-key', `key: "abc" (3 characters) ${RULE}`);
    refused(() => decodeKey(''), 'invalid-key', `key: an empty string ${RULE}`);
    refused(() => decodeKey('a'.repeat(60)), 'invalid-key', `key: "${'a'.repeat(60)}" (60 characters) ${RULE}`);
    refused(() => decodeKey('a'.repeat(61)), 'invalid-key', `key: "${'a'.repeat(57)}..." (61 characters) ${RULE}`);
  });

  test('each entry point names what it reads by default', () => {
    assert.equal(keyProblem('abc'), `key: "abc" (3 characters) ${RULE}`);
    assert.equal(keyProblem(KEY), null);
    refused(() => publicKeyOf('abc'), 'invalid-key', `private key: a value of 3 characters (not shown: it may be a secret) ${RULE}: it has 3 characters`);
    refused(() => keyToHex('abc'), 'invalid-key', `key: "abc" (3 characters) ${RULE}`);
    refused(() => hexToKey('abc'), 'invalid-key', 'key: "abc" (3 characters) is not a 64-digit hex key');
    refused(() => hexToKey('abc', 'preshared key'), 'invalid-key', 'preshared key: a value of 3 characters (not shown: it may be a secret) is not a 64-digit hex key');
  });

  test('isZeroHex: exactly 64 zero digits', () => {
    assert.equal(isZeroHex('0'.repeat(64)), true);
    assert.equal(isZeroHex('0'.repeat(65)), false);
    assert.equal(isZeroHex(`1${'0'.repeat(64)}`), false);
    assert.equal(isZeroHex(`${'0'.repeat(64)}1`), false);
  });
});

describe('key files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-keys-mutants-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const key = generatePrivateKey();
  const file = (name: string, content: string, mode = 0o600): string => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode });
    chmodSync(path, mode);
    return path;
  };

  test('the mode message says what others can do: read, change, read and change, or use', () => {
    for (const [mode, can] of [
      [0o640, 'read'],
      [0o604, 'read'],
      [0o620, 'change'],
      [0o602, 'change'],
      [0o660, 'read and change'],
      [0o610, 'use'],
      [0o601, 'use'],
    ] as const) {
      const octal = mode.toString(8).padStart(4, '0');
      const path = file(`m${octal}`, `${key}\n`, mode);
      refused(() => readPrivateKeyFile(path), 'key-file', `private key file ${path} has mode ${octal}, so others can ${can} it; run "chmod 600 ${path}" (and consider the key compromised if others did read it)`);
    }
    assert.equal(readPrivateKeyFile(file('m0700', `${key}\n`, 0o700)), key, 'execute for the owner alone is fine');
  });

  test('a file of another owner: both uids and the chown that fixes it', { skip: process.geteuid?.() !== 0 ? 'needs root to chown' : false }, () => {
    const path = file('owned', `${key}\n`);
    chownSync(path, 1234, 1234);
    refused(
      () => readPrivateKeyFile(path),
      'key-file',
      `private key file ${path} is owned by uid 1234, not by this process's uid 0: another user could have written it; check it, then "chown 0 ${path}"`,
    );
  });

  test('up to 4096 bytes are read (white space around the key included); 4097 are refused by size', () => {
    assert.equal(readPrivateKeyFile(file('big4096', `${' '.repeat(4096 - 44)}${key}`)), key, 'the key in the last 44 of 4096 bytes');
    const big = file('big4097', `${' '.repeat(4097 - 45)}${key}\n`);
    refused(() => readPrivateKeyFile(big), 'key-file', `private key file ${big} is 4097 bytes; a key file holds one 44-character key (at most 4096 bytes): is this the right file?`);
  });

  test('a FIFO at the path is named as one (and never read)', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    refused(() => readPrivateKeyFile(fifo), 'key-file', `private key file ${fifo} is a FIFO, not a regular file`);
  });

  test('a path through a regular file is an open error naming the path and the code, and is not created', () => {
    const through = join(file('plain', `${key}\n`), 'key');
    refused(() => readPrivateKeyFile(through), 'key-file', `cannot open private key file ${through}: ENOTDIR`);
    refused(() => loadOrCreatePrivateKey(through), 'key-file', `cannot open private key file ${through}: ENOTDIR`);
  });

  test('a folder where no file can be created: the temporary file is named as what failed', () => {
    refused(() => writePrivateKeyFile('/proc/self/aks-mesh-key', key), 'key-file', 'cannot create private key file /proc/self/aks-mesh-key: cannot create a temporary file in /proc/self: ENOENT');
  });

  test('writing an invalid key says so without quoting it', () => {
    refused(() => writePrivateKeyFile(join(dir, 'bad'), 'abc'), 'invalid-key', `private key: a value of 3 characters (not shown: it may be a secret) ${RULE}: it has 3 characters`);
  });

  test('no file descriptor is left open by reading, refusing or writing key files', () => {
    const good = file('good', `${key}\n`);
    const open = file('open', `${key}\n`, 0o644);
    const before = readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 20; i++) {
      readPrivateKeyFile(good);
      assert.throws(() => readPrivateKeyFile(open));
      writePrivateKeyFile(join(dir, `written-${i}`), key);
    }
    assert.equal(readdirSync('/proc/self/fd').length, before);
  });
});
