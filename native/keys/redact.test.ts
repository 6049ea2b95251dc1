/**
 * Redaction as a table: what is replaced (registered secrets in every form, labelled key values)
 * and what must stay readable (public keys, all-zero "no key" values, everything else).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clamp, generatePresharedKey, generatePrivateKey, keyToHex, publicKeyOf } from './keys.ts';
import { REDACTED, redactSecrets, redactUapiLine, registerSecret, registeredSecretCount } from './redact.ts';

const ZERO_HEX = '0'.repeat(64);
const ZERO_B64 = `${'A'.repeat(43)}=`;

describe('labelled key values (no registration needed)', () => {
  const key = generatePrivateKey();
  const hex = keyToHex(key);
  const replaced: Array<[string, string, string]> = [
    ['UAPI private_key', `private_key=${hex}`, `private_key=${REDACTED}`],
    ['UAPI preshared_key, upper-case hex', `preshared_key=${hex.toUpperCase()}`, `preshared_key=${REDACTED}`],
    ['JSON field', `{"privateKey":"${key}"}`, `{"privateKey":"${REDACTED}"}`],
    ['JSON inside a JSON string', `"{\\"presharedKey\\":\\"${key}\\"}"`, `"{\\"presharedKey\\":\\"${REDACTED}\\"}"`],
    ['util.inspect field', `{ privateKey: '${key}' }`, `{ privateKey: '${REDACTED}' }`],
    ['log metadata k="v"', `privateKey="${key}"`, `privateKey="${REDACTED}"`],
    ['wg show text', `  private key: ${key}`, `  private key: ${REDACTED}`],
    ['a flag', `--private-key=${key}`, `--private-key=${REDACTED}`],
  ];
  for (const [name, input, output] of replaced) {
    test(`replaces a ${name}`, () => assert.equal(redactSecrets(input), output));
  }

  const kept: Array<[string, string]> = [
    ['all-zero hex (no key)', `preshared_key=${ZERO_HEX}`],
    ['all-zero base64 (no key)', `"presharedKey":"${ZERO_B64}"`],
    ['a public key', `public_key=${hex}`],
    ['a public key field', `{"publicKey":"${key}"}`],
    ['a longer hex value (not a key)', `private_key=${hex}00`],
    ['the words without a value', 'private key file /etc/aks-mesh/key has mode 0644'],
    ['a short text', 'private_key='],
  ];
  for (const [name, input] of kept) {
    test(`keeps ${name}`, () => assert.equal(redactSecrets(input), input));
  }
});

describe('registered secrets', () => {
  test('are replaced raw and clamped, base64 (with or without "=") and hex in either case, anywhere in a text', () => {
    const key = generatePrivateKey();
    const raw = Buffer.from(key, 'base64');
    raw[31] |= 0x80; // unclamped twin
    const unclamped = raw.toString('base64');
    const clamped = Buffer.from(clamp(new Uint8Array(raw))).toString('base64');
    const before = registeredSecretCount();
    registerSecret(unclamped);
    assert.equal(registeredSecretCount(), before + 4, 'base64 and hex of the raw and the clamped key');
    registerSecret(unclamped);
    assert.equal(registeredSecretCount(), before + 4, 'idempotent');
    for (const form of [unclamped, clamped, unclamped.slice(0, 43), keyToHex(clamped), keyToHex(unclamped).toUpperCase()]) {
      assert.equal(redactSecrets(`a ${form} b`), `a ${REDACTED} b`, form);
    }
    assert.equal(redactSecrets(`x${publicKeyOf(clamped)}`), `x${publicKeyOf(clamped)}`, 'its public key stays');
  });

  test('registering a hex key works too, and non-keys and the zero key are ignored', () => {
    const psk = generatePresharedKey();
    registerSecret(keyToHex(psk));
    assert.equal(redactSecrets(`psk ${psk}`), `psk ${REDACTED}`);
    const before = registeredSecretCount();
    for (const junk of ['', 'hello', ZERO_HEX, ZERO_B64, `${psk}x`, 42 as unknown as string]) registerSecret(junk);
    assert.equal(registeredSecretCount(), before);
  });
});

describe('redactUapiLine', () => {
  const hex = keyToHex(generatePrivateKey());
  const cases: Array<[string, string]> = [
    [`private_key=${hex}`, 'private_key=(redacted)'],
    [`preshared_key=${hex}`, 'preshared_key=(redacted)'],
    [`private_key=${hex.slice(0, 57)}`, 'private_key=(redacted) (57 characters)'],
    [`private_key=${hex}\nlisten_port=1`, 'private_key=(redacted) (78 characters)'],
    [`preshared_key=${ZERO_HEX}`, `preshared_key=${ZERO_HEX}`],
    [`public_key=${hex}`, `public_key=${hex}`],
    ['allowed_ip=10.0.0.0/8', 'allowed_ip=10.0.0.0/8'],
    ['private_key', 'private_key'],
  ];
  for (const [line, shown] of cases) {
    test(`${JSON.stringify(line.slice(0, 30))}... is shown as ${JSON.stringify(shown.slice(0, 40))}`, () => assert.equal(redactUapiLine(line), shown));
  }
});
