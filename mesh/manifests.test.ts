import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import fc from 'fast-check';
import { driftedManifests } from '../cli/commands/crds.ts';
import { canonicalEndpoint, generatePrivateKey, keyProblem, publicKeyOf } from '../native/index.ts';
import { PATTERNS } from './crd/schema.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

test('config/ and the chart hold exactly what `aks-mesh crds` generates (run it after changing mesh/crd)', async () => {
  assert.deepEqual(await driftedManifests(root), []);
});

test('the schema key pattern accepts exactly what our key parser accepts', () => {
  const re = new RegExp(PATTERNS.key);
  for (let i = 0; i < 200; i++) assert.ok(re.test(publicKeyOf(generatePrivateKey())));
  fc.assert(
    fc.property(fc.string({ minLength: 40, maxLength: 46 }), (s) => {
      assert.equal(re.test(s), keyProblem(s) === null, s);
    }),
  );
});

test('the schema endpoint pattern accepts exactly the endpoints our parser accepts (port 1-65535)', () => {
  const re = new RegExp(PATTERNS.endpoint);
  const octet = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('01', '00', '256'));
  const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
  const v6 = fc.constantFrom('fd00::1', '::1', '::', 'fe80::1:2:3', '2001:db8::8a2e:370:7334', 'fd00:::1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', 'gg::1');
  const port = fc.oneof(fc.integer({ min: 0, max: 70000 }).map(String), fc.constantFrom('051820', '', '-1'));
  const endpoint = fc.oneof(
    fc.tuple(v4, port).map(([h, p]) => `${h}:${p}`),
    fc.tuple(v6, port).map(([h, p]) => `[${h}]:${p}`),
    fc.tuple(v6, port).map(([h, p]) => `${h}:${p}`),
  );
  fc.assert(
    fc.property(endpoint, (e) => {
      let ours: boolean;
      try {
        ours = !canonicalEndpoint(e).endsWith(':0');
      } catch {
        ours = false;
      }
      assert.equal(re.test(e), ours, e);
    }),
    { numRuns: 3000 },
  );
});
