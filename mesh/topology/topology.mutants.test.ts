/**
 * The desired-state function (topology.ts), pinned verdict by verdict: for every refusal the exact
 * sentence a user reads in the object's condition (it names the object, the field, the value and
 * who won), the settings' problems, and every field of an accepted peer. Written for the mutation
 * run (stryker.config.mjs): each case is a change to topology.ts that no other test noticed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { NodeInfo } from '../crd/types.ts';
import { checkSettings, computeTopology, MIN_PREFIX_LENGTH, RESERVED_RANGES } from './topology.ts';
import type { Topology } from './topology.ts';

// Fixed keys (from RFC 7748 and a captured wireguard-go device): verdicts below name them.
const K = [
  'ln1Gl4iJD0uJ8qtXV5hE0X0EcmPIKwskW6bZKjHVgmg=',
  'Zh6HWMsY9yMPxnFTZX5UgaV8G86QgHcqZrHdqiCAt0A=',
  '1OB6MAVVqDoDTIAR/kG33sXSz28BZudCVGmoxsjBohQ=',
  'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=',
  'cAdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LGo=',
];
const PSK = '43mDQJ/iVsOSXwlTfxxnhNd09HFp90i9hdBIxAY7QUU=';
const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-02T00:00:00Z';
const OLD = '2020-01-01T00:00:00Z';
const MESH = '100.96.0.0/16';
const NODES: NodeInfo[] = [
  { name: 'node-a', podCIDRs: ['10.244.0.0/24'], internalIPs: ['10.224.0.4'] },
  { name: 'node-b', podCIDRs: ['10.244.1.0/24'], internalIPs: ['10.224.0.5'] },
  { name: 'node-c', podCIDRs: ['10.244.2.0/24', 'fd00:244:2::/64'], internalIPs: ['10.224.0.6'] },
];

const nodePeer = (name: string, allowedIPs: string[], meshIP: string | undefined, key: string, created = T0): unknown => ({
  metadata: { name, creationTimestamp: created },
  spec: { publicKey: key, allowedIPs, ...(meshIP ? { meshIP } : {}), nodeName: name, endpoint: '198.18.0.1:51820' },
});
const external = (name: string, allowedIPs: string[], key: string, created = T0, extra: Record<string, unknown> = {}): unknown => ({
  metadata: { name, creationTimestamp: created },
  spec: { publicKey: key, allowedIPs, ...extra },
});
const gateway = (name: string, meshIP: string, key: string, created = T0): unknown => ({
  metadata: { name, creationTimestamp: created },
  spec: { publicKey: key, meshIP, podCIDRs: ['192.168.0.0/24'] },
});
const A = (): unknown => nodePeer('node-a', ['10.244.0.0/24'], '100.96.0.1', K[0]);
const B = (): unknown => nodePeer('node-b', ['10.244.1.0/24'], '100.96.0.2', K[1]);

function topo(peers: unknown[], gateways: unknown[] = [], settings: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Topology {
  return computeTopology({ self: { role: 'node', name: 'node-a' }, peers, gateways, nodes: NODES, settings: { meshCIDR: MESH, ...settings }, ...extra } as never);
}
const refusals = (t: Topology): string[] => t.refused.map((r) => `${r.kind} ${r.name} | ${r.reason} | ${r.field} | ${r.message}`);

/** [what, peers, gateways, settings, the refusals as "kind name | reason | field | message"] */
const CASES: Array<[string, unknown[], unknown[], Record<string, unknown>, string[]]> = [
  [
    'a mesh IP outside the mesh CIDR',
    [nodePeer('node-b', ['10.244.1.0/24'], '100.97.0.2', K[1])],
    [],
    {},
    ['Peer node-b | MeshIPOutsideMeshCIDR | spec.meshIP | Peer node-b: spec.meshIP 100.97.0.2 is not inside the mesh CIDR 100.96.0.0/16'],
  ],
  [
    "a node's Peer not named after its node",
    [{ metadata: { name: 'node-b' }, spec: { publicKey: K[1], allowedIPs: ['10.244.1.0/24'], nodeName: 'node-c' } }],
    [],
    {},
    ["Peer node-b | NodeNameMismatch | spec.nodeName | Peer node-b: spec.nodeName node-c differs from the Peer's name: a node's Peer is named after its node"],
  ],
  [
    'a Peer of a Node that does not exist',
    [nodePeer('node-x', ['10.244.9.0/24'], undefined, K[1])],
    [],
    {},
    ['Peer node-x | NodeNotFound | spec.nodeName | Peer node-x: spec.nodeName: Node node-x does not exist'],
  ],
  [
    "a node's Peer claiming outside its pod CIDRs (and its meshIP named as allowed)",
    [nodePeer('node-b', ['10.244.5.0/24'], '100.96.0.2', K[1]), nodePeer('node-c', ['10.244.2.0/24', '10.244.7.0/24'], undefined, K[2])],
    [],
    {},
    [
      "Peer node-b | AllowedIPsOutsidePodCIDRs | spec.allowedIPs[0] | Peer node-b: spec.allowedIPs[0] 10.244.5.0/24 is not inside Node node-b's podCIDRs [10.244.1.0/24] nor its meshIP 100.96.0.2/32",
      "Peer node-c | AllowedIPsOutsidePodCIDRs | spec.allowedIPs[1] | Peer node-c: spec.allowedIPs[1] 10.244.7.0/24 is not inside Node node-c's podCIDRs [10.244.2.0/24, fd00:244:2::/64]",
    ],
  ],
  [
    'default-route space, for a node and an external Peer',
    [nodePeer('node-b', ['0.0.0.0/1'], '100.96.0.2', K[1]), external('e', ['::/0'], K[2]), external('f', ['10.0.0.0/7'], K[3])],
    [],
    {},
    [
      `Peer e | AllowedIPsTooBroad | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] ::/0 is default-route space (a prefix shorter than /${MIN_PREFIX_LENGTH})`,
      'Peer f | AllowedIPsTooBroad | spec.allowedIPs[0] | Peer f: spec.allowedIPs[0] 10.0.0.0/7 is default-route space (a prefix shorter than /8)',
      'Peer node-b | AllowedIPsTooBroad | spec.allowedIPs[0] | Peer node-b: spec.allowedIPs[0] 0.0.0.0/1 is default-route space (a prefix shorter than /8)',
    ],
  ],
  [
    'reserved space',
    [external('e', ['169.254.169.254/32'], K[2]), external('f', ['fe80::/64'], K[3])],
    [],
    {},
    [
      'Peer e | AllowedIPsReserved | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 169.254.169.254/32 overlaps link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)',
      'Peer f | AllowedIPsReserved | spec.allowedIPs[0] | Peer f: spec.allowedIPs[0] fe80::/64 overlaps link-local fe80::/10',
    ],
  ],
  [
    "an external Peer in a Node's pod CIDR",
    [external('e', ['10.244.1.128/25'], K[2])],
    [],
    {},
    ["Peer e | OverlapsPodCIDR | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 10.244.1.128/25 overlaps Node node-b's podCIDR 10.244.1.0/24"],
  ],
  [
    "an external Peer in the cluster's pod CIDR",
    [external('e', ['10.244.200.0/24'], K[2])],
    [],
    {},
    ["Peer e | OverlapsClusterCIDR | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 10.244.200.0/24 overlaps the cluster's pod CIDR 10.244.0.0/16"],
  ],
  [
    'an external Peer in the service CIDR',
    [external('e', ['10.0.5.0/24'], K[2])],
    [],
    {},
    ['Peer e | OverlapsServiceCIDR | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 10.0.5.0/24 overlaps the service CIDR 10.0.0.0/16'],
  ],
  [
    'an external Peer in the mesh CIDR',
    [external('e', ['100.96.5.0/24'], K[2])],
    [],
    {},
    ['Peer e | OverlapsMeshCIDR | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 100.96.5.0/24 overlaps the mesh CIDR 100.96.0.0/16 (only its own meshIP/32 may)'],
  ],
  [
    "an external Peer containing a node's address (node subnets set elsewhere)",
    [external('e', ['10.224.0.0/28'], K[2])],
    [],
    { nodeSubnets: ['172.16.0.0/16'] },
    ["Peer e | OverlapsNodeAddress | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 10.224.0.0/28 contains Node node-a's address 10.224.0.4"],
  ],
  [
    'an external Peer in the node subnet',
    [external('e', ['10.224.3.0/24'], K[2])],
    [],
    {},
    ['Peer e | OverlapsNodeSubnet | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 10.224.3.0/24 overlaps the node subnet 10.224.0.0/12'],
  ],
  [
    "an older external Peer with a node's key",
    [A(), B(), external('e', ['192.168.5.0/24'], K[1], OLD)],
    [],
    {},
    ["Peer e | DuplicatePublicKey | spec.publicKey | Peer e: spec.publicKey is the key of Node node-b's Peer: a node's Peer always wins its own key"],
  ],
  [
    "an older Gateway with a node's key",
    [A(), B()],
    [gateway('g1', '100.96.0.9', K[1], OLD)],
    {},
    ["Gateway g1 | DuplicatePublicKey | spec.publicKey | Gateway g1: spec.publicKey is the key of Node node-b's Peer: a node's Peer always wins its own key"],
  ],
  [
    "an older external Peer with a Gateway's key",
    [external('e', ['192.168.5.0/24'], K[3], OLD)],
    [gateway('gw1', '100.96.0.9', K[3])],
    {},
    ["Peer e | DuplicatePublicKey | spec.publicKey | Peer e: spec.publicKey is the key of Gateway gw1: only a node's Peer may share a Gateway's key"],
  ],
  [
    'external Peers sharing a key: the oldest, then the smaller name',
    [external('e', ['192.168.5.0/24'], K[2], T0), external('f', ['192.168.6.0/24'], K[2], T1), external('d', ['192.168.7.0/24'], K[2], T0)],
    [],
    {},
    [
      'Peer e | DuplicatePublicKey | spec.publicKey | Peer e: spec.publicKey is already used by Peer d, which is as old and sorts first by name',
      'Peer f | DuplicatePublicKey | spec.publicKey | Peer f: spec.publicKey is already used by Peer d, which is older',
    ],
  ],
  [
    'Gateways sharing a key',
    [],
    [gateway('g2', '100.96.0.10', K[3], T0), gateway('g1', '100.96.0.9', K[3], T0)],
    {},
    ['Gateway g2 | DuplicatePublicKey | spec.publicKey | Gateway g2: spec.publicKey is already used by Gateway g1, which is as old and sorts first by name'],
  ],
  [
    'a Secret reference without its Secret',
    [external('e', ['192.168.5.0/24'], K[2], T0, { presharedKeySecretRef: { namespace: 'ns', name: 'n', key: 'k' } })],
    [],
    {},
    ['Peer e | PresharedKeyMissing | spec.presharedKeySecretRef | Peer e: spec.presharedKeySecretRef: Secret ns/n has no usable key k'],
  ],
  [
    "a younger external Peer with a node's mesh IP",
    [A(), B(), external('e', ['192.168.5.0/24'], K[2], T1, { meshIP: '100.96.0.2' })],
    [],
    {},
    ["Peer e | DuplicateMeshIP | spec.meshIP | Peer e: spec.meshIP 100.96.0.2 is already used by Peer node-b, which is older"],
  ],
  [
    "a Gateway as old as a node's Peer with its mesh IP: the node's Peer keeps it (ages tie)",
    [A(), B()],
    [gateway('g1', '100.96.0.2', K[3], T0)],
    {},
    ["Gateway g1 | DuplicateMeshIP | spec.meshIP | Gateway g1: spec.meshIP 100.96.0.2 is already used by Peer node-b, which is as old and a node's Peer"],
  ],
  [
    "a younger node's Peer with an older external Peer's mesh IP: the older keeps it",
    [A(), nodePeer('node-b', ['10.244.1.0/24'], '100.96.0.9', K[1], T1), external('e', ['192.168.9.0/24'], K[2], T0, { meshIP: '100.96.0.9' })],
    [],
    {},
    ['Peer node-b | DuplicateMeshIP | spec.meshIP | Peer node-b: spec.meshIP 100.96.0.9 is already used by Peer e, which is older'],
  ],
  [
    "a younger Gateway with an older external Peer's mesh IP: the older keeps it",
    [external('e', ['192.168.9.0/24'], K[2], OLD, { meshIP: '100.96.0.9' })],
    [gateway('g1', '100.96.0.9', K[3], T1)],
    {},
    ['Gateway g1 | DuplicateMeshIP | spec.meshIP | Gateway g1: spec.meshIP 100.96.0.9 is already used by Peer e, which is older'],
  ],
  [
    'overlapping external Peers: the oldest wins, then the smaller name; the entry and the winner named',
    [external('e', ['192.168.5.0/24'], K[2], T0), external('f', ['172.20.9.0/24', '192.168.5.128/25'], K[3], T1), external('d', ['192.168.0.0/16', '172.31.0.0/24'], K[4], T0)],
    [],
    {},
    [
      'Peer e | OverlapsPeer | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 192.168.5.0/24 overlaps 192.168.0.0/16 of Peer d, which is as old and sorts first by name',
      'Peer f | OverlapsPeer | spec.allowedIPs[1] | Peer f: spec.allowedIPs[1] 192.168.5.128/25 overlaps 192.168.0.0/16 of Peer d, which is older',
    ],
  ],
  [
    'an overlap is named as an overlap even when the loser also has a mesh IP',
    [external('f', ['192.168.5.0/24'], K[3], T1, { meshIP: '100.96.0.7' }), external('d', ['192.168.0.0/16'], K[4], T0)],
    [],
    {},
    ['Peer f | OverlapsPeer | spec.allowedIPs[0] | Peer f: spec.allowedIPs[0] 192.168.5.0/24 overlaps 192.168.0.0/16 of Peer d, which is older'],
  ],
  [
    'a Peer of a missing Node, or not named after its node, does not take a key from an external Peer',
    [nodePeer('node-x', ['10.244.9.0/24'], undefined, K[2], OLD), external('e', ['192.168.5.0/24'], K[2], T1), { metadata: { name: 'node-b', creationTimestamp: OLD }, spec: { publicKey: K[3], allowedIPs: ['10.244.1.0/24'], nodeName: 'node-c' } }, external('f', ['192.168.6.0/24'], K[3], T1)],
    [],
    {},
    [
      "Peer node-b | NodeNameMismatch | spec.nodeName | Peer node-b: spec.nodeName node-c differs from the Peer's name: a node's Peer is named after its node",
      'Peer node-x | NodeNotFound | spec.nodeName | Peer node-x: spec.nodeName: Node node-x does not exist',
    ],
  ],
  [
    'refusals sorted by kind, then name',
    [external('a', ['x'], K[2])],
    [{ metadata: { name: 'z' }, spec: {} }],
    {},
    [
      'Gateway z | InvalidSpec | spec.publicKey | Gateway z: spec.publicKey: required; spec.meshIP: required; spec.podCIDRs: required, at least one CIDR',
      'Peer a | InvalidSpec | spec.allowedIPs[0] | Peer a: spec.allowedIPs[0]: "x" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (the prefix length is missing)',
    ],
  ],
  [
    'an object that refers to itself is refused, never thrown on',
    [(() => {
      const circular: Record<string, unknown> = { metadata: { name: 'c' } };
      circular.spec = circular;
      return circular;
    })(), external('e', ['192.168.5.0/24'], K[2])],
    [],
    {},
    ['Peer c | InvalidSpec | spec.publicKey | Peer c: spec.publicKey: required; spec.allowedIPs: required, at least one CIDR'],
  ],
  [
    'a malformed object and a second one of the same name',
    [external('e', ['x'], K[2]), { metadata: { name: 'e' }, spec: {} }],
    [],
    {},
    [
      'Peer e | InvalidSpec | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0]: "x" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (the prefix length is missing)',
      'Peer e | DuplicateName | metadata.name | Peer e: metadata.name: another Peer has the same name',
    ],
  ],
  [
    'several problems in one object: all in the message, the first field named',
    [external('e', ['x'], 'nope', T0, { persistentKeepalive: -1 })],
    [],
    {},
    [
      'Peer e | InvalidSpec | spec.publicKey | Peer e: spec.publicKey: not a WireGuard public key (4 characters; expected 44 characters of base64 encoding 32 bytes, as "wg pubkey" prints it); spec.allowedIPs[0]: "x" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (the prefix length is missing); spec.persistentKeepalive: -1 is not a whole number of seconds from 0 to 65535',
    ],
  ],
  [
    'objects without a name are each refused, not as duplicates of each other',
    [{ spec: {} }, { spec: { a: 1 } }],
    [],
    {},
    ['Peer (unnamed) | InvalidSpec | metadata.name | Peer (unnamed): metadata.name: required', 'Peer (unnamed) | InvalidSpec | metadata.name | Peer (unnamed): metadata.name: required'],
  ],
];

describe('computeTopology: the exact verdicts', () => {
  for (const [what, peers, gateways, settings, expected] of CASES) {
    test(what, () => assert.deepEqual(refusals(topo(peers, gateways, settings)), expected));
  }
});

describe('computeTopology: the verdicts do not depend on the input order', () => {
  test("an external Peer overlapping two Nodes' pod CIDRs names the first Node by name, whatever the Nodes' order", () => {
    for (const nodes of [NODES, [...NODES].reverse()]) {
      const t = computeTopology({ self: { role: 'node', name: 'node-a' }, peers: [external('e', ['10.244.0.0/23'], K[2])], gateways: [], nodes, settings: { meshCIDR: MESH } } as never);
      assert.deepEqual(refusals(t), ["Peer e | OverlapsPodCIDR | spec.allowedIPs[0] | Peer e: spec.allowedIPs[0] 10.244.0.0/23 overlaps Node node-a's podCIDR 10.244.0.0/24"]);
    }
  });

  test('a Node listed twice: the same one is used whatever the order', () => {
    const twice = [{ name: 'node-b', podCIDRs: ['10.244.9.0/24'] }, { name: 'node-b', podCIDRs: ['10.244.1.0/24'] }];
    for (const nodes of [twice, [...twice].reverse()]) {
      const t = computeTopology({ self: { role: 'node', name: 'node-a' }, peers: [nodePeer('node-b', ['10.244.1.0/24'], undefined, K[1])], gateways: [], nodes, settings: { meshCIDR: MESH } } as never);
      assert.deepEqual(t.refused, []);
      assert.deepEqual(t.routes, ['10.244.1.0/24']);
    }
  });

  test('two Peers of one name: the same one is kept whatever the order', () => {
    const two = [external('e', ['192.168.5.0/24'], K[2]), external('e', ['192.168.6.0/24'], K[3])];
    for (const peers of [two, [...two].reverse()]) {
      const t = topo(peers);
      assert.deepEqual(refusals(t), ['Peer e | DuplicateName | metadata.name | Peer e: metadata.name: another Peer has the same name']);
      assert.deepEqual(t.routes, ['192.168.5.0/24']);
    }
  });
});

describe('computeTopology: what an accepted peer is', () => {
  test('every field of each peer, sorted by public key; routes canonical and sorted; keepalive default applied', () => {
    const t = topo([A(), B(), external('site', ['192.168.5.0/24'], K[2], T0, { persistentKeepalive: 0 })], [gateway('gw1', '100.96.0.9', K[3])], { defaultPersistentKeepalive: 25 });
    assert.deepEqual(t.refused, []);
    assert.deepEqual(t.peers, [
      { kind: 'Peer', name: 'site', nodeName: null, meshIP: null, publicKey: K[2], endpoint: null, allowedIPs: ['192.168.5.0/24'], persistentKeepalive: 0, presharedKey: null },
      { kind: 'Peer', name: 'node-b', nodeName: 'node-b', meshIP: '100.96.0.2', publicKey: K[1], endpoint: '198.18.0.1:51820', allowedIPs: ['10.244.1.0/24', '100.96.0.2/32'], persistentKeepalive: 25, presharedKey: null },
      { kind: 'Gateway', name: 'gw1', nodeName: null, meshIP: '100.96.0.9', publicKey: K[3], endpoint: null, allowedIPs: ['100.96.0.9/32'], persistentKeepalive: 25, presharedKey: null },
    ]);
    assert.deepEqual(t.routes, ['10.244.1.0/24', '100.96.0.2/32', '100.96.0.9/32', '192.168.5.0/24']);
  });

  test('a preshared key found by its Secret reference reaches the peer', () => {
    const t = topo([external('e', ['192.168.5.0/24'], K[2], T0, { presharedKeySecretRef: { namespace: 'ns', name: 'n', key: 'k' } })], [], {}, { presharedKeys: new Map([['ns/n/k', PSK]]) });
    assert.deepEqual(t.refused, []);
    assert.equal(t.peers[0].presharedKey, PSK);
    const empty = topo([external('e', ['192.168.5.0/24'], K[2], T0, { presharedKeySecretRef: { namespace: 'ns', name: 'n', key: 'k' } })], [], {}, { presharedKeys: new Map([['ns/n/k', '']]) });
    assert.deepEqual(empty.refused.map((r) => r.reason), ['PresharedKeyMissing']);
  });

  test("an external Peer's own mesh IP is allowed inside the mesh CIDR, once", () => {
    const t = topo([external('e', ['192.168.5.0/24', '100.96.0.7/32'], K[2], T0, { meshIP: '100.96.0.7' })]);
    assert.deepEqual(t.refused, []);
    assert.deepEqual(t.peers[0].allowedIPs, ['100.96.0.7/32', '192.168.5.0/24']);
  });

  test('a gateway peers with the nodes only, never with itself nor with external Peers or other Gateways', () => {
    const t = computeTopology({
      self: { role: 'gateway', name: 'gw1' },
      peers: [A(), B(), external('site', ['192.168.5.0/24'], K[2])],
      gateways: [gateway('gw1', '100.96.0.9', K[3]), gateway('gw2', '100.96.0.10', K[4])],
      nodes: NODES,
      settings: { meshCIDR: MESH },
    } as never);
    assert.deepEqual(
      t.peers.map((p) => p.name),
      ['node-b', 'node-a'],
    );
    assert.deepEqual(t.routes, ['10.244.0.0/24', '10.244.1.0/24', '100.96.0.1/32', '100.96.0.2/32']);
  });

  test("a Gateway named like this node is still this node's peer; a Gateway's mesh IP inside a node's pod CIDR overlaps it", () => {
    const t = topo([A(), B()], [gateway('node-a', '100.96.0.9', K[3])]);
    assert.deepEqual(
      t.peers.map((p) => `${p.kind} ${p.name}`),
      ['Peer node-b', 'Gateway node-a'],
    );
    const inPod = computeTopology({
      self: { role: 'node', name: 'node-a' },
      peers: [nodePeer('node-b', ['100.96.5.0/24'], undefined, K[1])],
      gateways: [gateway('g1', '100.96.5.5', K[3], T1)],
      nodes: [{ name: 'node-b', podCIDRs: ['100.96.5.0/24'] }],
      settings: { meshCIDR: MESH },
    } as never);
    assert.deepEqual(refusals(inPod), ["Gateway g1 | OverlapsPeer | spec.meshIP | Gateway g1: spec.meshIP 100.96.5.5 overlaps 100.96.5.0/24 of Peer node-b, which is older"]);
  });

  test('no usable self, or no lists at all: nothing thrown, every valid object a peer', () => {
    for (const self of [null, { role: 'node', name: 5 }]) {
      const t = computeTopology({ self, peers: [A()], gateways: [], nodes: NODES, settings: { meshCIDR: MESH } } as never);
      assert.deepEqual(
        t.peers.map((p) => p.name),
        ['node-a'],
      );
    }
    assert.deepEqual(computeTopology({ self: { role: 'node', name: 'node-a' }, peers: null, gateways: 5, nodes: null, settings: { meshCIDR: MESH } } as never), { peers: [], routes: [], refused: [] });
  });

  test('a self that is neither node nor gateway is no member: every valid object is a peer', () => {
    const t = computeTopology({ self: { role: 'x', name: 'node-a' }, peers: [A(), B()], gateways: [], nodes: NODES, settings: { meshCIDR: MESH } } as never);
    assert.deepEqual(
      t.peers.map((p) => p.name),
      ['node-b', 'node-a'],
    );
  });
});

describe('settings', () => {
  test('every problem named by its setting; nothing accepted', () => {
    const bad = { meshCIDR: 'x', defaultPersistentKeepalive: -1, serviceCIDRs: 'y', clusterCIDRs: ['10.0.0.0/33'], nodeSubnets: [5] };
    const problems = [
      'meshCIDR: "x" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (the prefix length is missing)',
      'defaultPersistentKeepalive: -1 is not a whole number of seconds from 0 to 65535',
      'serviceCIDRs: expected a list of CIDRs, got "y"',
      'clusterCIDRs[0]: "10.0.0.0/33" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (prefix length must be 0 to 32)',
      'nodeSubnets[0]: "5" is not a CIDR such as 10.244.1.0/24 or fd00::/64',
    ];
    assert.deepEqual(checkSettings(bad), { problems });
    assert.deepEqual(computeTopology({ self: { role: 'node', name: 'node-a' }, peers: [A()], gateways: [], nodes: NODES, settings: bad } as never), { peers: [], routes: [], refused: [], settingsProblems: problems });
    for (const k of [65536, 1.5, '25', -1]) assert.ok('problems' in checkSettings({ meshCIDR: MESH, defaultPersistentKeepalive: k }), String(k));
    for (const k of [0, 65535]) assert.ok('settings' in checkSettings({ meshCIDR: MESH, defaultPersistentKeepalive: k }), String(k));
  });

  test('canonical, with the defaults filled in; nothing at all is a missing mesh CIDR', () => {
    assert.deepEqual(checkSettings({ meshCIDR: '100.96.0.5/16' }), {
      settings: { meshCIDR: '100.96.0.0/16', defaultPersistentKeepalive: 0, serviceCIDRs: ['10.0.0.0/16'], clusterCIDRs: ['10.244.0.0/16'], nodeSubnets: ['10.224.0.0/12'] },
    });
    assert.deepEqual(checkSettings({ meshCIDR: MESH, defaultPersistentKeepalive: 65535, serviceCIDRs: ['10.96.0.5/12'], clusterCIDRs: [], nodeSubnets: ['FD00::/48'] }), {
      settings: { meshCIDR: MESH, defaultPersistentKeepalive: 65535, serviceCIDRs: ['10.96.0.0/12'], clusterCIDRs: [], nodeSubnets: ['fd00::/48'] },
    });
    assert.deepEqual(checkSettings(null), { problems: ['meshCIDR: "undefined" is not a CIDR such as 10.244.1.0/24 or fd00::/64'] });
    assert.deepEqual(computeTopology(null as never), { peers: [], routes: [], refused: [], settingsProblems: ['meshCIDR: "undefined" is not a CIDR such as 10.244.1.0/24 or fd00::/64'] });
  });

  test('the reserved ranges are canonical and each says what it is', () => {
    for (const [cidr, what] of RESERVED_RANGES) {
      assert.match(cidr, /\/\d+$/);
      assert.ok(what.length > 10, cidr);
    }
    assert.ok(RESERVED_RANGES.some(([c]) => c === '::ffff:0.0.0.0/96'), 'IPv4-mapped space, canonical as netip prints it');
  });
});
