import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { cidrContains, cidrOverlaps } from '../../native/index.ts';
import { TakenSpace, contains, overlaps } from './ranges.ts';

const v4 = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 10, 128, 255), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 32 })).map(([a, b, c, len]) => `${a}.${b}.${c}.${(a * 7) % 256}/${len}`);
const v6 = fc.tuple(fc.constantFrom('fd00', '2001', '0', 'ffff', '64'), fc.constantFrom('0', '1', 'ff9b', 'db8'), fc.integer({ min: 0, max: 128 })).map(([a, b, len]) => `${a}:${b}::1/${len}`);
const mapped = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 96, max: 128 })).map(([a, len]) => `::ffff:${a}.1.2.3/${len}`);
const cidr = fc.oneof(v4, v6, mapped);

test('contains and overlaps agree with the native parser on any two CIDRs (both families, host bits, IPv4-mapped)', () => {
  fc.assert(
    fc.property(cidr, cidr, (a, b) => {
      assert.equal(contains(a, b), cidrContains(a, b), `contains(${a}, ${b})`);
      assert.equal(overlaps(a, b), cidrOverlaps(a, b), `overlaps(${a}, ${b})`);
    }),
    { numRuns: 2000 },
  );
  assert.equal(contains('10.0.0.0/8', '10.255.255.255/32'), true);
  assert.equal(contains('10.0.0.0/8', '11.0.0.0/32'), false);
  assert.equal(overlaps('0.0.0.0/0', '::/0'), false, 'families never overlap');
  assert.equal(overlaps('::ffff:0:0/96', '::ffff:10.1.2.3/128'), true);
  assert.throws(() => contains('10.0.0.0/33', '10.0.0.0/8'), /prefix length/);
});

test('TakenSpace finds exactly the owners holding any part of a CIDR (owners disjoint, an owner\'s own CIDRs may nest)', () => {
  fc.assert(
    fc.property(fc.array(fc.array(cidr, { minLength: 1, maxLength: 3 }), { maxLength: 12 }), fc.array(cidr, { minLength: 1, maxLength: 5 }), (groups, queries) => {
      const taken = new TakenSpace();
      const owners: string[][] = [];
      for (const g of groups) {
        // As the desired state does: an owner is added only when it overlaps no earlier owner.
        if (owners.some((o) => o.some((a) => g.some((b) => overlaps(a, b))))) continue;
        taken.add(owners.length, g);
        owners.push(g);
      }
      for (const q of queries) {
        const naive = owners.flatMap((o, i) => (o.some((a) => overlaps(a, q)) ? [i] : []));
        assert.deepEqual([...new Set(taken.holders(q))].sort((x, y) => x - y), naive, q);
      }
    }),
    { numRuns: 1000 },
  );
  const t = new TakenSpace();
  t.add(0, ['10.0.0.0/24', '10.0.0.0/25', 'fd00::/64']);
  t.add(1, ['10.0.2.0/24']);
  assert.deepEqual(t.holders('10.0.0.0/16'), [0, 1]);
  assert.deepEqual(t.holders('10.0.1.0/24'), []);
  assert.deepEqual(t.holders('fd00::1/128'), [0]);
  assert.deepEqual(t.holders('0.0.0.0/0'), [0, 1]);
});
