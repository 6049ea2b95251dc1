/**
 * The O(N log N) desired state and its incremental engine against the function they replace
 * (bench/reference/topology.ts, frozen): the same verdicts, peers, routes and messages on random
 * inputs built to collide (shared keys, overlapping CIDRs, shared mesh IPs, Nodes that overlap,
 * duplicates, malformed objects), and after every step of random sequences of changes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { referenceTopology } from '../../bench/reference/topology.ts';
import { TopologyEngine } from './engine.ts';
import { computeTopology } from './topology.ts';
import type { Topology, TopologyInput } from './topology.ts';

// Valid public keys (44 characters of base64), few, so objects share them.
const KEYS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((c) => `${c.repeat(42)}E=`);
const T = ['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', '2026-01-03T00:00:00Z'];
const NODE_NAMES = ['node-a', 'node-b', 'node-c', 'node-d'];
/** Each node's own pod CIDR; a few Nodes say something that overlaps another's. */
const OWN_POD = ['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24'];
const EXTERNAL_CIDRS = ['192.168.0.0/24', '192.168.0.0/16', '192.168.1.0/24', '192.168.1.1/32', 'fd00:99::/64', 'fd00:99::/48'];
const HOSTILE_CIDRS = ['100.96.0.5/32', '100.96.0.0/24', '10.0.0.0/24', '172.16.0.0/12', '0.0.0.0/0', '169.254.0.0/16', '198.18.0.0/24', '10.244.0.0/25', '10.0.0.0/8', 'fd00:244::/64'];
const MESH_IPS = ['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4', '100.96.0.5', '100.96.0.6', '100.96.0.1', '100.96.0.2', '100.97.0.1', 'fd00:96::1'];

const json = fc.jsonValue({ maxDepth: 2 });
const created = fc.option(fc.constantFrom(...T), { nil: undefined, freq: 3 });
const pick = <X>(often: readonly X[], rarely: readonly X[]): fc.Arbitrary<X> => fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...often) }, { weight: 1, arbitrary: fc.constantFrom(...rarely) });

const nodeArb = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.tuple(fc.nat(3), fc.nat(9)).map(([i, v]) => ({
      name: NODE_NAMES[i],
      podCIDRs: v === 0 ? ['10.244.0.0/16'] : v === 1 ? [OWN_POD[i], 'fd00:244::/64'] : v === 2 ? [] : [OWN_POD[i]],
      internalIPs: v === 3 ? ['10.244.0.5'] : v === 4 ? ['192.168.1.1', `198.18.0.${i + 1}`] : [`198.18.0.${i + 1}`],
    })),
  },
  { weight: 1, arbitrary: fc.record({ name: fc.constantFrom(...NODE_NAMES), podCIDRs: fc.constant(['10.244.3.5/24', 'nonsense']), internalIPs: fc.constant(['198.18.0.09']) }) },
  { weight: 1, arbitrary: json },
);

const extras = fc.record(
  {
    meshIP: fc.constantFrom(...MESH_IPS),
    endpoint: fc.constantFrom('198.18.0.7:51820', '[fd00::7]:51820'),
    persistentKeepalive: fc.constantFrom(0, 25),
    presharedKeySecretRef: fc.constantFrom({ namespace: 'mesh', name: 'psk', key: 'a' }, { namespace: 'mesh', name: 'psk', key: 'missing' }),
  },
  { requiredKeys: [] },
);
const publicKey = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...KEYS) }, { weight: 1, arbitrary: fc.constant('not-a-key') });
const noPsk = <X extends { presharedKeySecretRef?: unknown }>(x: X, keep: boolean): X => (keep ? x : { ...x, presharedKeySecretRef: undefined });

/** A Peer: a node's (named after a Node, or not), an external one, or something malformed. */
const peerArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(fc.nat(3), publicKey, fc.uniqueArray(fc.nat(5), { minLength: 1, maxLength: 2 }), extras, created, fc.nat(9)).map(([i, key, which, extra, at, v]) => ({
      kind: 'Peer',
      metadata: { name: NODE_NAMES[i], ...(at ? { creationTimestamp: at } : {}) },
      spec: {
        publicKey: key,
        allowedIPs: which.map((w) => [OWN_POD[i], OWN_POD[i], OWN_POD[i], '10.244.0.0/16', OWN_POD[(i + 1) % 4], '10.244.0.128/25'][w]),
        nodeName: v === 0 ? 'node-a' : NODE_NAMES[i],
        ...noPsk(extra, v === 1),
        ...(v < 7 ? { meshIP: extra.meshIP ?? MESH_IPS[i] } : {}),
      },
    })),
  },
  {
    weight: 4,
    arbitrary: fc.tuple(fc.constantFrom('ext-1', 'ext-2', 'aa', 'b', 'node-c'), publicKey, fc.uniqueArray(pick(EXTERNAL_CIDRS, HOSTILE_CIDRS), { minLength: 1, maxLength: 3 }), extras, created, fc.nat(3)).map(([name, key, allowedIPs, extra, at, v]) => ({
      kind: 'Peer',
      metadata: { name, ...(at ? { creationTimestamp: at } : {}) },
      spec: { publicKey: key, allowedIPs, ...noPsk(extra, v === 1) },
    })),
  },
  { weight: 1, arbitrary: json },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...NODE_NAMES, 'ext-1', 'Bad_Name'), json).map(([name, spec]) => ({ kind: 'Peer', metadata: { name }, spec })) },
);

const gatewayArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(fc.constantFrom('gw-1', 'gw-2', 'aa'), fc.constantFrom(...KEYS), fc.constantFrom(...MESH_IPS), created).map(([name, key, meshIP, at]) => ({
      kind: 'Gateway',
      metadata: { name, ...(at ? { creationTimestamp: at } : {}) },
      spec: { publicKey: key, meshIP, podCIDRs: ['10.244.0.0/16'] },
    })),
  },
  { weight: 1, arbitrary: json },
);

const settingsArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ meshCIDR: '100.96.0.0/16' }) },
  { weight: 2, arbitrary: fc.constant({ meshCIDR: '100.96.0.0/16', defaultPersistentKeepalive: 15, clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/40'], serviceCIDRs: ['172.16.0.0/16'], nodeSubnets: ['198.18.0.0/16'] }) },
  { weight: 1, arbitrary: fc.constant({ meshCIDR: 'fd00:96::/64' }) },
  { weight: 1, arbitrary: fc.constant({ meshCIDR: '10.244.0.0/16' }) },
);

const pskArb = fc.constantFrom<Map<string, string> | undefined>(undefined, new Map([['mesh/psk/a', 'cHNrcHNrcHNrcHNrcHNrcHNrcHNrcHNrcHNrcHNrcHM=']]), new Map([['mesh/psk/a', '']]));
const selfArb = fc.record({ role: fc.constantFrom('node' as const, 'node' as const, 'gateway' as const), name: fc.constantFrom('node-a', 'node-b', 'gw-1', 'ext-1') });

const inputArb = fc.record({
  self: selfArb,
  peers: fc.array(peerArb, { maxLength: 10 }),
  gateways: fc.array(gatewayArb, { maxLength: 3 }),
  nodes: fc.array(nodeArb, { minLength: 1, maxLength: 6 }),
  settings: settingsArb,
  presharedKeys: pskArb,
}) as fc.Arbitrary<TopologyInput>;

/** Objects listed twice, and the same object twice, happen in a directory: sometimes repeat one. */
function withRepeats(input: TopologyInput, repeat: number): TopologyInput {
  if (repeat === 0 || input.peers.length === 0) return input;
  const again = input.peers[repeat % input.peers.length];
  const copy = repeat % 2 ? structuredClone(again) : again;
  return { ...input, peers: [...input.peers, copy] };
}

/** After an engine pass: what did not change kept its identity. */
function assertKept(before: Topology, after: Topology): void {
  const old = new Map(before.peers.map((p) => [p.publicKey, p]));
  for (const p of after.peers) {
    const was = old.get(p.publicKey);
    if (was && was !== p) assert.notDeepStrictEqual(p, was, `peer ${p.name}: equal values, a new object`);
  }
  // (Unusable settings are a result of their own: empty lists, not the last ones.)
  if (before.settingsProblems || after.settingsProblems) return;
  for (const list of ['peers', 'routes', 'refused'] as const) {
    if (before[list].length === after[list].length && before[list].every((x, i) => x === after[list][i])) assert.equal(after[list], before[list], `${list}: same elements, a new array`);
  }
}

describe('TopologyEngine and computeTopology against the reference (bench/reference/topology.ts)', () => {
  test('property: computeTopology reaches exactly the reference verdicts, peers, routes and messages on 2,500 colliding inputs', () => {
    fc.assert(
      fc.property(inputArb, fc.nat(6), (raw, repeat) => {
        const input = withRepeats(raw, repeat);
        assert.deepStrictEqual(computeTopology(input), referenceTopology(input));
      }),
      { numRuns: 2500 },
    );
  });

  const step = fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('add' as const), object: peerArb }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('change' as const), at: fc.nat(), object: peerArb }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('gateway' as const), at: fc.nat(), object: gatewayArb }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('node' as const), at: fc.nat(), node: fc.option(nodeArb, { nil: undefined }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('psk' as const), keys: pskArb }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('settings' as const), settings: settingsArb }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('self' as const), self: selfArb }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('same' as const) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('copy' as const), at: fc.nat() }) },
  );

  test('property: after every step of 400 random sequences of changes, the engine equals the reference on the whole input; what did not change keeps its identity', () => {
    fc.assert(
      fc.property(inputArb, fc.array(step, { minLength: 1, maxLength: 12 }), (start, steps) => {
        const engine = new TopologyEngine();
        let input: TopologyInput = start;
        let last = engine.compute(input);
        assert.deepStrictEqual(last, referenceTopology(input));
        for (const s of steps) {
          const peers = [...input.peers];
          const gateways = [...input.gateways];
          const nodes = [...input.nodes];
          switch (s.op) {
            case 'add':
              peers.splice(peers.length === 0 ? 0 : s.object === null ? 0 : peers.length >> 1, 0, s.object as never);
              input = { ...input, peers };
              break;
            case 'change':
              if (peers.length > 0) peers[s.at % peers.length] = s.object as never;
              input = { ...input, peers };
              break;
            case 'delete':
              if (peers.length > 0) peers.splice(s.at % peers.length, 1);
              input = { ...input, peers };
              break;
            case 'copy':
              // An equal object in place of one: the same verdicts, and the peer keeps its object.
              if (peers.length > 0) peers[s.at % peers.length] = structuredClone(peers[s.at % peers.length]);
              input = { ...input, peers };
              break;
            case 'gateway':
              if (s.at % 3 === 0 && gateways.length > 0) gateways.splice(s.at % gateways.length, 1);
              else gateways.push(s.object as never);
              input = { ...input, gateways };
              break;
            case 'node':
              if (s.node === undefined) nodes.splice(s.at % Math.max(1, nodes.length), 1);
              else nodes[nodes.length === 0 ? 0 : s.at % (nodes.length + 1)] = s.node as never;
              input = { ...input, nodes };
              break;
            case 'psk':
              input = { ...input, presharedKeys: s.keys };
              break;
            case 'settings':
              input = { ...input, settings: { ...s.settings } };
              break;
            case 'self':
              input = { ...input, self: s.self };
              break;
            case 'same':
              // A new settings object with the same values: nothing changed.
              input = { ...input, settings: { ...input.settings } };
              break;
          }
          const next = engine.compute(input);
          assert.deepStrictEqual(next, referenceTopology(input), `after ${s.op}`);
          if (s.op === 'same') assert.equal(next, last, 'nothing changed: the same Topology object');
          assertKept(last, next);
          last = next;
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('TopologyEngine', () => {
  const key = (i: number): string => `${String.fromCharCode(97 + (i % 26)).repeat(40)}${String(i % 100).padStart(2, '0')}E=`;
  const nodes = Array.from({ length: 40 }, (_, i) => ({ name: `node-${i}`, podCIDRs: [`10.244.${i}.0/24`], internalIPs: [`198.18.0.${i + 1}`] }));
  const peerOf = (i: number, extra: Record<string, unknown> = {}): TopologyInput['peers'][number] => ({
    kind: 'Peer',
    metadata: { name: `node-${i}`, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { publicKey: key(i), endpoint: `198.18.0.${i + 1}:51820`, allowedIPs: [`10.244.${i}.0/24`], meshIP: `100.96.0.${i + 1}`, nodeName: `node-${i}`, ...extra },
  });
  const base = (): TopologyInput => ({ self: { role: 'node', name: 'node-0' }, peers: nodes.map((_, i) => peerOf(i)), gateways: [], nodes, settings: { meshCIDR: '100.96.0.0/16' } });

  test('one Peer changed: that peer alone is new, every other peer keeps its object, and the routes and refusals follow', () => {
    const engine = new TopologyEngine();
    const input = base();
    const before = engine.compute(input);
    assert.equal(before.peers.length, 39);
    const peers = [...input.peers];
    peers[7] = peerOf(7, { endpoint: '198.18.9.9:51820' });
    const after = engine.compute({ ...input, peers });
    const changed = after.peers.filter((p) => !before.peers.includes(p));
    assert.deepEqual(changed.map((p) => [p.name, p.endpoint]), [['node-7', '198.18.9.9:51820']]);
    assert.equal(after.routes, before.routes, 'the routes did not change: the same array');
    assert.equal(after.refused, before.refused);
    assert.notEqual(after.peers, before.peers, 'a changed list is a new array: the old one is never edited');
    assert.equal(before.peers.find((p) => p.name === 'node-7')?.endpoint, '198.18.0.8:51820', 'the previous result is untouched');

    // A Peer that steals node-3's pod CIDR as an external Peer is refused; node-3 stands.
    const thief = { kind: 'Peer', metadata: { name: 'thief' }, spec: { publicKey: key(99), allowedIPs: ['10.244.3.0/24'] } } as TopologyInput['peers'][number];
    const third = engine.compute({ ...input, peers: [...peers, thief] });
    assert.deepEqual(third.refused.map((r) => [r.name, r.reason]), [['thief', 'OverlapsPodCIDR']]);
    assert.equal(third.peers, after.peers);
    // Two node Peers on one pod CIDR (a Node that says so): the older keeps it.
    const clash = [...peers];
    clash[5] = peerOf(5, { allowedIPs: ['10.244.5.0/24'], meshIP: '100.96.0.5' });
    const fourth = engine.compute({ ...input, peers: clash });
    assert.deepEqual(fourth.refused.map((r) => [r.name, r.reason, r.message]), [['node-5', 'DuplicateMeshIP', 'Peer node-5: spec.meshIP 100.96.0.5 is already used by Peer node-4, which is as old and sorts first by name']]);
    assert.deepStrictEqual(fourth, computeTopology({ ...input, peers: clash }));
    // And back: the mesh as before, with the same peer objects.
    const fifth = engine.compute({ ...input, peers });
    assert.deepStrictEqual(fifth, after);
    assert.ok(fifth.peers.every((p, i) => p === after.peers[i] || p.name === 'node-5'));
  });

  test('nothing changed (the same arrays, settings equal by value): the same Topology object', () => {
    const engine = new TopologyEngine();
    const input = base();
    const first = engine.compute(input);
    assert.equal(engine.compute({ ...input, settings: { meshCIDR: '100.96.0.0/16' } }), first);
    assert.equal(engine.compute({ ...input, nodes: [...nodes] }), first, 'a new Node list holding the same Nodes');
  });

  test('a Node going away refuses its Peer everywhere; unusable settings accept nothing, and usable ones bring everything back', () => {
    const engine = new TopologyEngine();
    const input = base();
    const first = engine.compute(input);
    const fewer = engine.compute({ ...input, nodes: nodes.filter((n) => n.name !== 'node-9') });
    assert.deepEqual(fewer.refused.map((r) => [r.name, r.reason]), [['node-9', 'NodeNotFound']]);
    assert.ok(fewer.peers.every((p) => first.peers.includes(p)), 'the other peers keep their objects');
    const bad = engine.compute({ ...input, settings: { meshCIDR: '0.0.0.0/0' } });
    assert.equal(bad.peers.length, 0);
    assert.ok(bad.settingsProblems?.length);
    assert.deepStrictEqual(engine.compute(input), first);
  });
});
