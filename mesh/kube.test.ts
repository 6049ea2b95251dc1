/** Who last wrote a spec, from managedFields: the newest writer of spec fields, status writers aside. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sameSpec, specWriters } from './kube.ts';

test('spec writers newest first; status-only writers are not spec writers', () => {
  const writers = specWriters([
    { manager: 'aks-mesh-agent/node-1', operation: 'Update', time: '2026-11-30T22:00:00Z', fieldsV1: { 'f:spec': {}, 'f:metadata': {} } },
    { manager: 'aks-mesh-agent/node-0', operation: 'Update', time: '2026-11-30T22:05:00Z', fieldsV1: { 'f:status': {} } },
    { manager: 'tamper-tool', operation: 'Update', time: new Date('2026-11-30T22:03:00.000Z') as unknown as string, fieldsV1: { 'f:spec': { 'f:allowedIPs': {} } } },
  ]);
  assert.deepEqual(writers, [
    { manager: 'tamper-tool', operation: 'Update', time: '2026-11-30T22:03:00Z' },
    { manager: 'aks-mesh-agent/node-1', operation: 'Update', time: '2026-11-30T22:00:00Z' },
  ]);
});

test('no managedFields: no writers', () => {
  assert.deepEqual(specWriters(undefined), []);
});

test('sameSpec ignores key order and null fields, not values', () => {
  assert.ok(sameSpec({ a: 1, b: null, c: [1, 2] }, { c: [1, 2], a: 1 }));
  assert.ok(!sameSpec({ a: 1 }, { a: 2 }));
});
