/** The indexed fallbacks equal failClosedCidrs (the quadratic original) on random inputs, and Fallbacks keeps its answer's identity. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { NodeInfo } from './crd/types.ts';
import { Fallbacks, indexedFailClosedCidrs } from './fallbacks.ts';
import { failClosedCidrs } from './failclosed.ts';
import type { FailClosedInput } from './failclosed.ts';

// Small spaces, so that pod CIDRs, addresses and routes collide, nest and repeat often.
const v4 = fc.tuple(fc.constantFrom(10, 100, 198), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom(8, 16, 23, 24, 25, 32)).map(([a, b, c, len]) => `${a}.${b}.${c}.0/${len}`);
const v6 = fc.tuple(fc.constantFrom('fd00', 'fd00:1', '::ffff:10.0.0.0'), fc.constantFrom(64, 96, 112, 128)).map(([a, len]) => `${a}::/${len}`.replace(':::', '::').replace('::ffff:10.0.0.0::', '::ffff:10.0.0.0'));
const junk = fc.constantFrom('10.0.0.0/33', 'nope', '', '10.0.0.01/24');
const cidr = fc.oneof({ weight: 6, arbitrary: v4 }, { weight: 2, arbitrary: v6 }, { weight: 1, arbitrary: junk });
const ip = fc.oneof(fc.tuple(fc.constantFrom(10, 100, 198), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 })).map((p) => p.join('.')), fc.constantFrom('fd00::1', 'fd00:1::5', 'bad'));
const node = fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd', 'e'), podCIDRs: fc.array(cidr, { maxLength: 3 }), internalIPs: fc.array(ip, { maxLength: 2 }) });
const input: fc.Arbitrary<FailClosedInput> = fc.record({
  role: fc.constantFrom('node' as const, 'gateway' as const),
  nodeName: fc.constantFrom('a', 'b', 'z'),
  nodes: fc.array(node, { maxLength: 8 }),
  routes: fc.array(cidr, { maxLength: 6 }),
  podCIDRs: fc.option(fc.array(cidr, { maxLength: 3 }), { nil: undefined }),
  meshCIDR: fc.option(fc.oneof(cidr, fc.constant('100.96.0.0/16')), { nil: undefined }),
});

test('indexedFailClosedCidrs gives exactly what failClosedCidrs gives (2,000 random inputs)', () => {
  fc.assert(
    fc.property(input, (i) => {
      assert.deepEqual(indexedFailClosedCidrs(i), failClosedCidrs(i));
    }),
    { numRuns: 2000 },
  );
});

test('Fallbacks: the same answer as failClosedCidrs through a sequence of changes, and the same array while nothing changed', () => {
  fc.assert(
    fc.property(input, fc.array(fc.tuple(fc.array(node, { maxLength: 8 }), fc.array(cidr, { maxLength: 6 })), { maxLength: 4 }), (first, steps) => {
      const f = new Fallbacks({ role: first.role, nodeName: first.nodeName, podCIDRs: first.podCIDRs, meshCIDR: first.meshCIDR });
      let nodes: readonly NodeInfo[] = first.nodes;
      let routes: readonly string[] = first.routes;
      let last = f.compute(nodes, routes);
      assert.deepEqual(last, failClosedCidrs({ ...first, nodes, routes }));
      assert.equal(f.compute(nodes, routes), last, 'same inputs: the same array');
      assert.equal(f.compute(nodes, [...routes]), last, 'the same routes in a new array: the same array');
      for (const [n, r] of steps) {
        nodes = n;
        routes = r;
        last = f.compute(nodes, routes);
        assert.deepEqual(last, failClosedCidrs({ ...first, nodes, routes }));
        // Routes the caller vouches for (canonical, sorted, unique, as a Topology's are) give the same.
        const vouched = failClosedCidrs({ role: 'gateway', nodeName: 'none', nodes: [], routes });
        assert.deepEqual(new Fallbacks({ role: first.role, nodeName: first.nodeName, podCIDRs: first.podCIDRs, meshCIDR: first.meshCIDR }).compute(nodes, vouched, true), failClosedCidrs({ ...first, nodes, routes }));
      }
    }),
    { numRuns: 500 },
  );
});
