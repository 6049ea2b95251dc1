/** Which pod CIDRs fail closed: every Node's but this one's, whatever its Peer's state; a gateway's own list too. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalCidr, cidrOverlaps } from '../native/index.ts';
import { Fallbacks, failClosedCidrs } from './failclosed.ts';
import type { FailClosedInput } from './failclosed.ts';
import type { NodeInfo } from './crd/types.ts';
import { compareText } from './topology/order.ts';

const node = (name: string, podCIDRs: string[], ip: string): NodeInfo => ({ name, podCIDRs, internalIPs: [ip] });
const nodes = [node('a', ['10.244.0.0/24'], '198.18.0.1'), node('b', ['10.244.1.0/24'], '198.18.0.2'), node('c', ['10.244.2.0/24', 'fd00:1::/64'], '198.18.0.3')];

test('a node: every other Node\'s pod CIDRs (routed or not) plus its routes; never its own pods', () => {
  // Only c is routed (b's Peer is refused or missing): b still fails closed.
  const routes = ['10.244.2.0/24', '100.96.0.3/32'];
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes, routes }), ['10.244.1.0/24', '10.244.2.0/24', '100.96.0.3/32', 'fd00:1::/64']);
});

test('a Node that goes away takes its fallback with it', () => {
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes: nodes.slice(0, 2), routes: [] }), ['10.244.1.0/24']);
});

test('a gateway: every Node\'s pod CIDRs and its whole --pod-cidr list', () => {
  assert.deepEqual(failClosedCidrs({ role: 'gateway', nodeName: 'a', nodes, routes: [], podCIDRs: ['10.244.0.0/16'] }), [
    '10.244.0.0/16',
    '10.244.0.0/24',
    '10.244.1.0/24',
    '10.244.2.0/24',
    'fd00:1::/64',
  ]);
});

test("a Node whose pod CIDR covers this node's pods or a node address gets no fallback (it would cut them off)", () => {
  const hostile = [...nodes, node('x', ['10.244.0.0/16'], '198.18.0.9'), node('y', ['198.18.0.0/24'], '198.18.0.10')];
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes: hostile, routes: [] }), ['10.244.1.0/24', '10.244.2.0/24', 'fd00:1::/64']);
});

test('malformed pod CIDRs (a directory\'s Node) are skipped, never thrown', () => {
  const bad = [node('a', ['10.244.0.0/24'], '198.18.0.1'), { name: 'z', podCIDRs: ['10.300.0.0/24', 7, null] as unknown as string[], internalIPs: 'x' as unknown as string[] }];
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes: bad, routes: ['not a cidr'] }), []);
});

test("the mesh CIDR fails closed: a refused or missing member's mesh IP is refused, not sent by the default route", () => {
  // b's Peer is refused: no 100.96.0.2/32 through the tunnel; the /16 catches it (c's /32 stays more specific).
  const routes = ['10.244.2.0/24', '100.96.0.3/32'];
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes, routes, meshCIDR: '100.96.0.0/16' }), ['10.244.1.0/24', '10.244.2.0/24', '100.96.0.0/16', '100.96.0.3/32', 'fd00:1::/64']);
  assert.deepEqual(failClosedCidrs({ role: 'gateway', nodeName: 'g', nodes: [], routes: [], meshCIDR: '100.96.0.1/16' }), ['100.96.0.0/16']);
});

test('a mesh CIDR covering a node address or this node\'s pods gets no fallback (it would cut them off)', () => {
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes, routes: [], meshCIDR: '198.18.0.0/16' }), ['10.244.1.0/24', '10.244.2.0/24', 'fd00:1::/64']);
  assert.deepEqual(failClosedCidrs({ role: 'node', nodeName: 'a', nodes, routes: [], meshCIDR: 'not a cidr' }), ['10.244.1.0/24', '10.244.2.0/24', 'fd00:1::/64']);
});

/** The list as first written (every pod CIDR against every address, with the native parser): the oracle for the indexed one. */
function quadratic(input: FailClosedInput): string[] {
  const parse = (c: unknown): string[] => {
    if (typeof c !== 'string') return [];
    try {
      return [canonicalCidr(c)];
    } catch {
      return [];
    }
  };
  const podsOf = (n: NodeInfo): string[] => (Array.isArray(n.podCIDRs) ? n.podCIDRs.flatMap(parse) : []);
  const own = input.role === 'node' ? input.nodes.filter((n) => n.name === input.nodeName).flatMap(podsOf) : [];
  const addresses = input.nodes.flatMap((n) => (Array.isArray(n.internalIPs) ? n.internalIPs : [])).flatMap((ip) => parse(`${ip}/${String(ip).includes(':') ? 128 : 32}`));
  const free = (c: string): boolean => !own.some((o) => cidrOverlaps(o, c)) && !addresses.some((a) => cidrOverlaps(a, c));
  const others = input.nodes.filter((n) => input.role !== 'node' || n.name !== input.nodeName).flatMap(podsOf).filter(free);
  const mesh = parse(input.meshCIDR).filter(free);
  const all = [...input.routes.flatMap(parse), ...others, ...(input.podCIDRs ?? []).flatMap(parse), ...mesh];
  return [...new Set(all)].sort(compareText);
}

test('property: the same list as comparing every pod CIDR with every address, on random Nodes, routes and mesh CIDRs; the same array again for the same inputs', () => {
  const cidr = fc.constantFrom('10.244.0.0/24', '10.244.1.0/24', '10.244.0.0/16', '10.244.0.5/24', '198.18.0.0/24', '198.18.0.1/32', '100.96.0.0/16', '100.96.0.3/32', 'fd00:1::/64', 'fd00::/16', '0.0.0.0/0', 'not a cidr', '10.300.0.0/24');
  const ip = fc.constantFrom('198.18.0.1', '198.18.0.2', '10.244.0.7', '100.96.0.9', 'fd00:1::5', '198.18.0.09', 'x');
  const nodeArb = fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd'), podCIDRs: fc.array(cidr, { maxLength: 3 }), internalIPs: fc.array(ip, { maxLength: 2 }) });
  fc.assert(
    fc.property(
      fc.record({
        role: fc.constantFrom('node' as const, 'gateway' as const),
        nodeName: fc.constantFrom('a', 'b', 'g'),
        nodes: fc.array(nodeArb, { maxLength: 6 }),
        routes: fc.array(cidr, { maxLength: 5 }),
        podCIDRs: fc.option(fc.array(cidr, { maxLength: 3 }), { nil: undefined }),
        meshCIDR: fc.option(cidr, { nil: undefined }),
      }),
      (input) => {
        const got = failClosedCidrs(input);
        assert.deepEqual(got, quadratic(input));
        const routes = [...input.routes, '10.250.0.0/24'];
        assert.deepEqual(failClosedCidrs({ ...input, routes }), quadratic({ ...input, routes }), 'new routes, the same Nodes');
      },
    ),
    { numRuns: 2000 },
  );
});

test('property: Fallbacks gives what failClosedCidrs gives through a sequence of Node and route changes, and the same array while nothing changed', () => {
  const cidr = fc.constantFrom('10.244.0.0/24', '10.244.1.0/24', '10.244.0.0/16', '198.18.0.1/32', '100.96.0.0/16', '100.96.0.3/32', 'fd00:1::/64', 'not a cidr');
  const ip = fc.constantFrom('198.18.0.1', '198.18.0.2', '10.244.0.7', 'fd00:1::5', 'x');
  const nodeArb = fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd'), podCIDRs: fc.array(cidr, { maxLength: 3 }), internalIPs: fc.array(ip, { maxLength: 2 }) });
  const fixedArb = fc.record({
    role: fc.constantFrom('node' as const, 'gateway' as const),
    nodeName: fc.constantFrom('a', 'b', 'g'),
    podCIDRs: fc.option(fc.array(cidr, { maxLength: 3 }), { nil: undefined }),
    meshCIDR: fc.option(cidr, { nil: undefined }),
  });
  const step = fc.tuple(fc.array(nodeArb, { maxLength: 6 }), fc.array(cidr, { maxLength: 5 }));
  fc.assert(
    fc.property(fixedArb, fc.array(step, { minLength: 1, maxLength: 5 }), (fixed, steps) => {
      const f = new Fallbacks(fixed);
      for (const [nodes, routes] of steps) {
        const got = f.compute(nodes, routes);
        assert.deepEqual(got, quadratic({ ...fixed, nodes, routes }));
        assert.equal(f.compute(nodes, routes), got, 'the same inputs: the same array');
        assert.equal(f.compute(nodes, [...routes]), got, 'the same routes in a new array: the same array');
        // Routes the caller vouches for (canonical, sorted, unique, as a Topology's are) give the same.
        const vouched = failClosedCidrs({ role: 'gateway', nodeName: 'none', nodes: [], routes });
        assert.deepEqual(new Fallbacks(fixed).compute(nodes, vouched, true), got);
      }
    }),
    { numRuns: 500 },
  );
});
