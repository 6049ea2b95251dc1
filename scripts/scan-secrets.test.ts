/**
 * scan-secrets on a tree laid out like a kept e2e cluster dir (keys/, logs, a capture) plus a run's
 * output file: every leak found with its file and line, the key itself never printed, the public
 * key and all-zero keys never flagged.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { clamp, generatePresharedKey, generatePrivateKey, keyToHex, publicKeyOf, writePrivateKeyFile } from '../native/keys/keys.ts';
import { KeyIndex, findLabelledKeys, scan } from './scan-secrets.ts';

const SCRIPT = join(import.meta.dirname, 'scan-secrets.ts');

function runScan(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('scan-secrets on a kept cluster dir', () => {
  const root = mkdtempSync(join(tmpdir(), 'aks-mesh-scan-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const cluster = join(root, 'aks-mesh-cluster-abc123');
  const node0 = generatePrivateKey();
  const node1 = generatePrivateKey();
  const unknown = generatePrivateKey();
  writePrivateKeyFile(join(cluster, 'keys', 'node-0.key'), node0);
  writePrivateKeyFile(join(cluster, 'keys', 'node-1.key'), node1);
  // A file holding node-0's public key alone is a public key, not a private one.
  writeFileSync(join(cluster, 'node-0.pub'), `${publicKeyOf(node0)}\n`);
  writeFileSync(
    join(cluster, 'node-0.log'),
    [
      `info starting publicKey="${publicKeyOf(node0)}"`, // 1: public: fine
      `info peer ${publicKeyOf(node1)} allowed 10.244.1.0/24`, // 2: public: fine
      `warn UAPI set refused error="... private_key=(redacted) ..."`, // 3: redacted: fine
      `debug device ${keyToHex(node0)}`, // 4: leak, hex
      `info preshared_key=${'0'.repeat(64)}`, // 5: the zero key: fine
      `error key file is ${keyToHex(node1).slice(0, 57)}...`, // 6: leak, most of a key in hex
      `info ${node1.slice(0, 43)}`, // 7: leak, base64 without "="
      `warn {"privateKey":"${unknown}"}`, // 8: a key no file holds, labelled
    ].join('\n'),
  );
  const clamped0 = Buffer.from(clamp(new Uint8Array(Buffer.from(node0, 'base64')))).toString('base64');
  mkdirSync(join(cluster, 'sub'));
  writeFileSync(join(cluster, 'sub', 'capture-1.pcap'), Buffer.concat([Buffer.from([0xd4, 0xc3, 0xb2, 0xa1, 0, 0]), Buffer.from(`..${clamped0}..`), Buffer.alloc(100)]));
  const output = join(root, 'test-output.log');
  writeFileSync(output, `ok 1 - a test\n# ${keyToHex(node1).toUpperCase()}\n`);
  // A link is not followed: its target is outside the tree and holds a key.
  const outside = mkdtempSync(join(tmpdir(), 'aks-mesh-scan-outside-'));
  after(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'leak.txt'), `${keyToHex(node0)}\n`);
  symlinkSync(join(outside, 'leak.txt'), join(cluster, 'link.txt'));

  test('finds both key files (not the public key file) and every leak, by file and line', () => {
    const result = scan([cluster, output]);
    assert.deepEqual(result.keyFiles.sort(), [join(cluster, 'keys', 'node-0.key'), join(cluster, 'keys', 'node-1.key')]);
    const k0 = join(cluster, 'keys', 'node-0.key');
    const k1 = join(cluster, 'keys', 'node-1.key');
    assert.deepEqual(
      result.findings.map((f) => `${f.file}:${f.line}: ${f.what}`),
      [
        `${join(cluster, 'node-0.log')}:4: private key of ${k0} (hex)`,
        `${join(cluster, 'node-0.log')}:6: private key of ${k1} (hex)`,
        `${join(cluster, 'node-0.log')}:7: private key of ${k1} (base64)`,
        `${join(cluster, 'node-0.log')}:8: a value labelled as a private or preshared key`,
        `${join(cluster, 'sub', 'capture-1.pcap')}:1: private key of ${k0} (base64)`,
        `${output}:2: private key of ${k1} (hex)`,
      ],
    );
  });

  test('the command prints file:line without the key, and exits 1', () => {
    const r = runScan([cluster, output]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 6, r.stdout);
    assert.match(r.stdout, /node-0\.log:4: private key of .*node-0\.key \(hex\)/);
    const index = new KeyIndex([node0, node1, unknown].map((key, i) => ({ key, source: String(i) })));
    assert.deepEqual(index.find(r.stdout + r.stderr), [], 'the report itself leaks nothing');
    assert.match(r.stderr, /2 private key file\(s\), \d+ other file\(s\) searched, 6 finding\(s\)/);
  });

  test('a clean tree exits 0; with --expect-keys, a tree without key files exits 1; bad usage exits 2', () => {
    const clean = join(root, 'clean');
    writePrivateKeyFile(join(clean, 'keys', 'a.key'), generatePrivateKey());
    writeFileSync(join(clean, 'a.log'), `publicKey=${publicKeyOf(generatePrivateKey())}\nprivate_key=(redacted)\n`);
    assert.equal(runScan([clean]).code, 0);
    assert.equal(runScan(['--expect-keys', clean]).code, 0);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'x.log'), 'nothing\n');
    assert.equal(runScan([empty]).code, 0);
    const expect = runScan(['--expect-keys', empty]);
    assert.equal(expect.code, 1);
    assert.match(expect.stderr, /no private key file found/);
    assert.equal(runScan([]).code, 2);
    assert.equal(runScan([join(root, 'missing')]).code, 2);
  });
});

describe('pieces of keys and labelled values', () => {
  test('a piece of 20 base64 characters or 24 hex digits is found; shorter pieces and other keys are not', () => {
    const key = generatePrivateKey();
    const index = new KeyIndex([{ key, source: 'k' }]);
    const hex = keyToHex(key);
    assert.equal(index.find(`x ${key.slice(10, 30)} y`).length, 1);
    assert.equal(index.find(`x ${key.slice(10, 29)} y`).length, 0);
    assert.equal(index.find(`x ${hex.slice(30, 54)} y`).length, 1);
    assert.equal(index.find(`x ${hex.slice(30, 53)} y`).length, 0);
    assert.equal(index.find(`${publicKeyOf(key)} ${keyToHex(publicKeyOf(key))} ${generatePresharedKey()}`).length, 0);
  });

  test('labelled values: UAPI, JSON, inspect and text forms; zero keys and redacted values are not', () => {
    const key = generatePresharedKey();
    const hex = keyToHex(key);
    for (const text of [`private_key=${hex}`, `preshared_key=${hex}`, `"privateKey":"${key}"`, `presharedKey: '${key}'`, `private key: ${key}`, `{\\"privateKey\\":\\"${key}\\"}`]) {
      assert.equal(findLabelledKeys(text).length, 1, text);
    }
    for (const text of [`preshared_key=${'0'.repeat(64)}`, `"presharedKey":"${'A'.repeat(43)}="`, 'private_key=(redacted)', `"privateKey":"(hidden)"`, `public_key=${hex}`]) {
      assert.equal(findLabelledKeys(text).length, 0, text);
    }
  });
});
