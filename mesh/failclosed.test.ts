/** Which pod CIDRs fail closed: every Node's but this one's, whatever its Peer's state; a gateway's own list too. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failClosedCidrs } from './failclosed.ts';
import type { NodeInfo } from './crd/types.ts';

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
