import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import { allocateMeshIP } from './meship.ts';
import { computeTopology } from './topology.ts';
import type { TopologyInput } from './topology.ts';

const key = (): string => publicKeyOf(generatePrivateKey());
const MESH = '100.96.0.0/16';
const nodes: NodeInfo[] = [
  { name: 'node-a', podCIDRs: ['10.244.0.0/24'], internalIPs: ['198.18.0.1'] },
  { name: 'node-b', podCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'], internalIPs: ['198.18.0.2'] },
  { name: 'node-c', podCIDRs: ['10.244.2.0/24'], internalIPs: ['198.18.0.3'] },
];

function nodePeer(name: string, allowedIPs: string[], meshIP: string, created = '2026-01-01T00:00:00Z', extra: Partial<Peer['spec']> = {}): Peer {
  return {
    kind: 'Peer',
    metadata: { name, creationTimestamp: created },
    spec: { publicKey: key(), endpoint: `198.18.0.${1 + (name.length % 200)}:51820`, allowedIPs, meshIP, nodeName: name, ...extra },
  };
}

function input(peers: Peer[], gateways: Gateway[] = [], self = 'node-a'): TopologyInput {
  return { self: { role: 'node', name: self }, peers, gateways, nodes, settings: { meshCIDR: MESH } };
}

const mesh3 = (): Peer[] => [
  nodePeer('node-a', ['10.244.0.0/24'], '100.96.0.1'),
  nodePeer('node-b', ['10.244.1.0/24', 'fd00:244:1::/64'], '100.96.0.2'),
  nodePeer('node-c', ['10.244.2.0/24'], '100.96.0.3'),
];

describe('computeTopology', () => {
  test('node peers form a full mesh: every other node, its pod CIDRs plus its mesh IP', () => {
    const t = computeTopology(input(mesh3()));
    assert.deepEqual(t.refused, []);
    assert.deepEqual(
      t.peers.map((p) => [p.name, p.allowedIPs]).sort(),
      [
        ['node-b', ['10.244.1.0/24', '100.96.0.2/32', 'fd00:244:1::/64']],
        ['node-c', ['10.244.2.0/24', '100.96.0.3/32']],
      ],
    );
    assert.deepEqual(t.routes, ['10.244.1.0/24', '10.244.2.0/24', '100.96.0.2/32', '100.96.0.3/32', 'fd00:244:1::/64']);
  });

  test("a Peer claiming another node's pod CIDR is refused; the victim is untouched", () => {
    const peers = mesh3();
    peers[2].spec.allowedIPs = ['10.244.2.0/24', '10.244.1.0/24'];
    const t = computeTopology(input(peers));
    assert.deepEqual(t.peers.map((p) => p.name), ['node-b'], 'node-c is left out, node-b stays');
    const b = t.peers.find((p) => p.name === 'node-b');
    assert.deepEqual(b?.allowedIPs, ['10.244.1.0/24', '100.96.0.2/32', 'fd00:244:1::/64']);
    assert.equal(t.refused.length, 1);
    assert.equal(t.refused[0].name, 'node-c');
    assert.equal(t.refused[0].reason, 'AllowedIPsOutsidePodCIDRs');
    assert.equal(t.refused[0].field, 'spec.allowedIPs[1]', 'the index in the object as written');
    assert.match(t.refused[0].message, /Peer node-c: allowedIPs 10\.244\.1\.0\/24 is not inside Node node-c's podCIDRs \[10\.244\.2\.0\/24\]/);
  });

  test('node peers must be named after their node and the node must exist', () => {
    const peers = [...mesh3(), nodePeer('evil', ['10.244.1.0/24'], '100.96.0.9')];
    peers[3].spec.nodeName = 'node-b';
    const t = computeTopology(input([...peers, nodePeer('node-z', ['10.9.0.0/24'], '100.96.0.10')]));
    assert.deepEqual(
      t.refused.map((r) => [r.name, r.reason, r.field]),
      [
        ['evil', 'NodeNameMismatch', 'spec.nodeName'],
        ['node-z', 'NodeNotFound', 'spec.nodeName'],
      ],
    );
  });

  test('an external peer is accepted when it overlaps nothing, refused when it overlaps a pod CIDR', () => {
    const ok: Peer = { kind: 'Peer', metadata: { name: 'laptop' }, spec: { publicKey: key(), allowedIPs: ['192.168.50.0/24'], meshIP: '100.96.1.1' } };
    const bad: Peer = { kind: 'Peer', metadata: { name: 'greedy' }, spec: { publicKey: key(), allowedIPs: ['10.244.0.0/16'] } };
    const t = computeTopology(input([...mesh3(), ok, bad]));
    assert.ok(t.peers.some((p) => p.name === 'laptop' && p.allowedIPs.join() === '100.96.1.1/32,192.168.50.0/24'));
    assert.deepEqual(t.refused.map((r) => [r.name, r.reason, r.field]), [['greedy', 'OverlapsPodCIDR', 'spec.allowedIPs[0]']]);
  });

  test("an external peer may not claim the mesh CIDR (beyond its own mesh IP) nor a node's address", () => {
    const ownMesh: Peer = { kind: 'Peer', metadata: { name: 'ok-own' }, spec: { publicKey: key(), allowedIPs: ['100.96.9.9/32', '192.168.60.0/24'], meshIP: '100.96.9.9' } };
    const meshGrab: Peer = { kind: 'Peer', metadata: { name: 'mesh-grab', creationTimestamp: '2020-01-01T00:00:00Z' }, spec: { publicKey: key(), allowedIPs: ['192.168.70.0/24', '100.96.0.0/16'] } };
    const hostGrab: Peer = { kind: 'Peer', metadata: { name: 'host-grab' }, spec: { publicKey: key(), allowedIPs: ['198.18.0.0/30'] } };
    const t = computeTopology(input([...mesh3(), ownMesh, meshGrab, hostGrab]));
    assert.deepEqual(t.refused.map((r) => [r.name, r.reason, r.field]), [
      ['host-grab', 'OverlapsNodeAddress', 'spec.allowedIPs[0]'],
      ['mesh-grab', 'OverlapsMeshCIDR', 'spec.allowedIPs[1]'],
    ]);
    assert.match(t.refused[0].message, /contains Node node-[ab]'s address 198\.18\.0\.[12]/);
    // The older mesh-grab would otherwise have won every overlap: the nodes stay in the mesh.
    assert.deepEqual(t.peers.map((p) => p.name).sort(), ['node-b', 'node-c', 'ok-own']);
  });

  test('overlaps between acceptable objects: the oldest wins, then the name', () => {
    const older: Peer = { kind: 'Peer', metadata: { name: 'zz-old', creationTimestamp: '2025-01-01T00:00:00Z' }, spec: { publicKey: key(), allowedIPs: ['192.168.0.0/16'] } };
    const newer: Peer = { kind: 'Peer', metadata: { name: 'aa-new', creationTimestamp: '2026-06-01T00:00:00Z' }, spec: { publicKey: key(), allowedIPs: ['192.168.7.0/24'] } };
    const t = computeTopology(input([...mesh3(), newer, older]));
    assert.ok(t.peers.some((p) => p.name === 'zz-old'));
    assert.deepEqual(t.refused.map((r) => [r.name, r.reason]), [['aa-new', 'OverlapsPeer']]);
    assert.match(t.refused[0].message, /192\.168\.7\.0\/24 overlaps 192\.168\.0\.0\/16 of Peer zz-old, which is older/);
  });

  test('duplicate public keys and mesh IPs: the younger object loses', () => {
    const peers = mesh3();
    const dupKey: Peer = { kind: 'Peer', metadata: { name: 'copy', creationTimestamp: '2026-02-01T00:00:00Z' }, spec: { publicKey: peers[1].spec.publicKey, allowedIPs: ['192.168.1.0/24'] } };
    const dupMesh: Peer = { kind: 'Peer', metadata: { name: 'twin', creationTimestamp: '2026-02-01T00:00:00Z' }, spec: { publicKey: key(), allowedIPs: ['192.168.2.0/24'], meshIP: '100.96.0.3' } };
    const t = computeTopology(input([...peers, dupKey, dupMesh]));
    assert.deepEqual(t.refused.map((r) => [r.name, r.reason]), [['copy', 'DuplicatePublicKey'], ['twin', 'DuplicateMeshIP']]);
  });

  test('gateways are peers with only their mesh IP; a gateway itself peers with the nodes only', () => {
    const gw: Gateway = { kind: 'Gateway', metadata: { name: 'konnectivity' }, spec: { publicKey: key(), meshIP: '100.96.255.1', podCIDRs: ['10.244.0.0/16'] } };
    const laptop: Peer = { kind: 'Peer', metadata: { name: 'laptop' }, spec: { publicKey: key(), allowedIPs: ['192.168.50.0/24'] } };
    const t = computeTopology(input([...mesh3(), laptop], [gw]));
    assert.deepEqual(t.peers.find((p) => p.name === 'konnectivity')?.allowedIPs, ['100.96.255.1/32']);
    const g = computeTopology({ ...input([...mesh3(), laptop], [gw]), self: { role: 'gateway', name: 'konnectivity' } });
    assert.deepEqual(g.peers.map((p) => p.name).sort(), ['node-a', 'node-b', 'node-c']);
  });

  test('malformed objects (e.g. from a directory) are refused naming the field; mesh IPs outside the mesh CIDR too', () => {
    const bad: Peer = { kind: 'Peer', metadata: { name: 'bad' }, spec: { publicKey: 'not-a-key', allowedIPs: ['10.0.0.0/33'] } };
    const outside: Peer = { kind: 'Peer', metadata: { name: 'outside' }, spec: { publicKey: key(), allowedIPs: ['192.168.9.0/24'], meshIP: '10.1.1.1' } };
    const t = computeTopology(input([...mesh3(), bad, outside]));
    assert.deepEqual(t.refused.map((r) => [r.name, r.reason, r.field]), [
      ['bad', 'InvalidSpec', 'spec.publicKey'],
      ['outside', 'MeshIPOutsideMeshCIDR', 'spec.meshIP'],
    ]);
    assert.match(t.refused[0].message, /spec\.allowedIPs\[0\]/);
  });

  test('a Node with a malformed pod CIDR (from a directory) does not crash; its Peer is refused, the rest stands', () => {
    const broken: NodeInfo[] = [...nodes.filter((n) => n.name !== 'node-c'), { name: 'node-c', podCIDRs: ['10.244.2.0/33'], internalIPs: [] }];
    const t = computeTopology({ ...input(mesh3()), nodes: broken });
    assert.deepEqual(t.peers.map((p) => p.name), ['node-b']);
    assert.deepEqual(t.refused.map((r) => [r.name, r.reason]), [['node-c', 'AllowedIPsOutsidePodCIDRs']]);
  });

  test('property: every agent reaches the same verdicts, and accepted allowed IPs never overlap', () => {
    const cidrs = ['10.244.0.0/24', '10.244.1.0/24', '10.244.0.0/16', '192.168.0.0/24', '192.168.0.0/16', '100.96.0.5/32'];
    const arb = fc.array(
      fc.record({
        name: fc.constantFrom('node-a', 'node-b', 'node-c', 'ext-1', 'ext-2', 'ext-3'),
        cidrs: fc.uniqueArray(fc.constantFrom(...cidrs), { minLength: 1, maxLength: 3 }),
        mesh: fc.integer({ min: 1, max: 6 }),
        day: fc.integer({ min: 1, max: 3 }),
      }),
      { maxLength: 8 },
    );
    fc.assert(
      fc.property(arb, (specs) => {
        const seen = new Set<string>();
        const peers: Peer[] = specs
          .filter((s) => !seen.has(s.name) && seen.add(s.name))
          .map((s) => ({
            kind: 'Peer',
            metadata: { name: s.name, creationTimestamp: `2026-01-0${s.day}T00:00:00Z` },
            spec: { publicKey: key(), allowedIPs: s.cidrs, meshIP: `100.96.0.${s.mesh}`, ...(s.name.startsWith('node') ? { nodeName: s.name } : {}) },
          }));
        const views = ['node-a', 'node-b', 'node-c'].map((self) => computeTopology(input(peers, [], self)));
        for (const v of views) assert.deepEqual(v.refused, views[0].refused);
        for (const v of views) {
          const all = v.peers.flatMap((p) => p.allowedIPs.map((c) => [p.name, c] as const));
          for (const [n1, c1] of all) for (const [n2, c2] of all) if (n1 !== n2) assert.notEqual(c1, c2);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('allocateMeshIP', () => {
  test('deterministic, inside the mesh CIDR, never the network or broadcast address', () => {
    const a = allocateMeshIP({ name: 'node-a' }, MESH, []);
    assert.equal(allocateMeshIP({ name: 'node-a' }, MESH, []), a);
    assert.match(a, /^100\.96\.\d+\.\d+$/);
    for (let i = 0; i < 50; i++) assert.ok(!['192.168.0.0', '192.168.0.3'].includes(allocateMeshIP({ name: `n${i}` }, '192.168.0.0/30', [])));
  });

  test('two nodes that want the same address: the older keeps it, the younger moves, and both agree', () => {
    // A /30 has two usable addresses, so collisions are certain to be found.
    const cidr = '192.168.0.0/30';
    const names = Array.from({ length: 40 }, (_, i) => `node-${i}`);
    const first = new Map(names.map((n) => [n, allocateMeshIP({ name: n }, cidr, [])]));
    const [x, y] = names.filter((n) => first.get(n) === first.get(names[0])).slice(0, 2);
    assert.ok(y, 'found two names that hash to the same address');
    const holders = [
      { kind: 'Peer' as const, name: x, meshIP: first.get(x) as string, created: 1000 },
      { kind: 'Peer' as const, name: y, meshIP: first.get(y) as string, created: 2000 },
    ];
    assert.equal(allocateMeshIP({ name: x, created: 1000 }, cidr, holders), first.get(x), 'older keeps its address');
    const moved = allocateMeshIP({ name: y, created: 2000 }, cidr, holders);
    assert.notEqual(moved, first.get(x), 'younger moves');
    assert.throws(() => allocateMeshIP({ name: 'third', created: 3000 }, cidr, [holders[0], { ...holders[1], meshIP: moved }]), /is full/);
  });

  test('a node keeps the address it holds while it wins', () => {
    assert.equal(allocateMeshIP({ name: 'node-a', created: 5 }, MESH, [{ kind: 'Peer', name: 'node-a', meshIP: '100.96.77.77', created: 5 }]), '100.96.77.77');
  });
});
