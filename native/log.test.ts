/**
 * The logger never prints a private or preshared key: a registered secret in any form (base64, hex,
 * clamped) and any value labelled as a key are replaced, in the message and in metadata, in text and
 * JSON. Each case runs createLogger in a child process and reads its real stderr.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { KeyIndex } from '../scripts/scan-secrets.ts';
import { clamp, generatePresharedKey, generatePrivateKey, keyToHex, publicKeyOf } from './keys/index.ts';

const NATIVE = join(import.meta.dirname, 'index.ts');

/** Run `body` (module code with `createLogger`, `registerSecret` and `log` in scope) in a child; its stderr. */
function run(format: 'text' | 'json', body: string): string {
  const script = `import { createLogger, registerSecret } from ${JSON.stringify(NATIVE)};
    const log = createLogger({ format: ${JSON.stringify(format)}, component: 'agent', level: 'debug' });
    ${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '', 'logs go to stderr only');
  return r.stderr;
}

function assertNoKeys(text: string, keys: Record<string, string>): void {
  const index = new KeyIndex(Object.entries(keys).map(([source, key]) => ({ key, source })));
  assert.deepEqual(index.find(text).map((h) => `${h.source} (${h.form})`), [], text);
}

for (const format of ['text', 'json'] as const) {
  describe(`${format} logs`, () => {
    test('a registered private key is replaced in every form, in the message and in nested metadata', () => {
      const key = generatePrivateKey();
      const raw = new Uint8Array(Buffer.from(key, 'base64'));
      raw[0] |= 7; // an unclamped twin: the device reports the clamped one; both must go
      const unclamped = Buffer.from(raw).toString('base64');
      const out = run(
        format,
        `registerSecret(${JSON.stringify(unclamped)});
        log.info('key is ${key} and in hex ${keyToHex(key)}');
        log.warn('nested', { deep: { list: ['${keyToHex(key).toUpperCase()}', '${unclamped}'] }, noPadding: '${key.slice(0, 43)}' });
        log.error('as an error', { error: new Error('bad ${key}').message });
        log.debug('public key stays', { publicKey: '${publicKeyOf(key)}' });`,
      );
      assert.equal(out.trim().split('\n').length, 4, out);
      assertNoKeys(out, { key, unclamped });
      assert.ok(out.includes('(redacted)'), out);
      // The public key is what tells peers apart in a log: never hidden.
      assert.ok(out.includes(publicKeyOf(key)), out);
      if (format === 'json') for (const line of out.trim().split('\n')) JSON.parse(line);
    });

    test('a key never registered is still replaced where it is labelled as one', () => {
      const privateKey = generatePrivateKey();
      const presharedKey = generatePresharedKey();
      const out = run(
        format,
        `log.info('set', { lines: ['private_key=${keyToHex(privateKey)}', 'preshared_key=${keyToHex(presharedKey)}', 'preshared_key=${'0'.repeat(64)}'] });
        log.info('device', { device: { privateKey: '${privateKey}', peers: [{ presharedKey: '${presharedKey}' }] } });
        log.info('as JSON text', { body: JSON.stringify({ privateKey: '${privateKey}' }) });
        log.info('private key: ${privateKey}');`,
      );
      assertNoKeys(out, { privateKey, presharedKey });
      assert.ok(out.includes(`preshared_key=${'0'.repeat(64)}`), 'the all-zero "no key" stays readable');
    });
  });
}

test('registerSecret ignores what is not a key, and a clamped key is found from its raw form', () => {
  const key = generatePrivateKey();
  const clamped = Buffer.from(clamp(new Uint8Array(Buffer.from(key, 'base64')))).toString('base64');
  const out = run('text', `registerSecret('not a key'); registerSecret(''); registerSecret(${JSON.stringify(key)}); log.info('c ${clamped} ok');`);
  assert.match(out, / c \(redacted\) ok/);
});

test('a stderr that was closed (agent 2>&1 | head -1) loses lines but never ends the process', () => {
  // The child's stderr is a pipe whose reader (this shell's `head -c 1`) exits after one byte: every
  // later write fails with EPIPE. The child keeps logging, then says on stdout that it is still there.
  const script = `import { createLogger } from ${JSON.stringify(NATIVE)};
    const log = createLogger({ format: 'text', component: 'agent' });
    for (let i = 0; i < 200; i++) { log.info('line ' + i + ' ' + 'x'.repeat(2000)); await new Promise((r) => setTimeout(r, 2)); }
    process.stdout.write('still running\\n');`;
  const r = spawnSync('sh', ['-c', `"$0" --input-type=module -e "$1" 2>&1 >"$2" | head -c 1 >/dev/null; cat "$2"; rm -f "$2"`, process.execPath, script, join(tmpdir(), `aks-mesh-epipe-${process.pid}.out`)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /still running/, `the process ended early: ${r.stdout}${r.stderr}`);
});
