import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import { allocateMeshIP, meshIPHolders } from './meship.ts';
import { checkSettings, computeTopology, DEFAULT_CLUSTER_CIDRS, DEFAULT_NODE_SUBNETS, DEFAULT_SERVICE_CIDRS } from './topology.ts';
import type { MeshSettings, Topology, TopologyInput } from './topology.ts';

// Keys made once: generating one per object makes the property tests slow.
const KEYS = Array.from({ length: 64 }, () => publicKeyOf(generatePrivateKey()));
let nextKey = 0;
const key = (): string => KEYS[nextKey++ % KEYS.length];
const MESH = '100.96.0.0/16';
const T0 = '2026-01-01T00:00:00Z';
const nodes: NodeInfo[] = [
  { name: 'node-a', podCIDRs: ['10.244.0.0/24'], internalIPs: ['198.18.0.1'] },
  { name: 'node-b', podCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'], internalIPs: ['198.18.0.2'] },
  { name: 'node-c', podCIDRs: ['10.244.2.0/24'], internalIPs: ['198.18.0.3'] },
];

function nodePeer(name: string, allowedIPs: string[], meshIP: string, created = T0, extra: Partial<Peer['spec']> = {}): Peer {
  return {
    kind: 'Peer',
    metadata: { name, creationTimestamp: created },
    spec: { publicKey: key(), endpoint: `198.18.0.${1 + (name.length % 200)}:51820`, allowedIPs, meshIP, nodeName: name, ...extra },
  };
}

function external(name: string, allowedIPs: string[], extra: Partial<Peer['spec']> = {}, created?: string): Peer {
  return { kind: 'Peer', metadata: { name, ...(created ? { creationTimestamp: created } : {}) }, spec: { publicKey: key(), allowedIPs, ...extra } };
}

function gateway(name: string, meshIP: string, extra: Partial<Gateway['spec']> = {}, created?: string): Gateway {
  return { kind: 'Gateway', metadata: { name, ...(created ? { creationTimestamp: created } : {}) }, spec: { publicKey: key(), meshIP, podCIDRs: ['10.244.0.0/16'], ...extra } };
}

function input(peers: Peer[], gateways: Gateway[] = [], self = 'node-a', settings: Partial<MeshSettings> = {}): TopologyInput {
  return { self: { role: 'node', name: self }, peers, gateways, nodes, settings: { meshCIDR: MESH, ...settings } };
}

const mesh3 = (): Peer[] => [
  nodePeer('node-a', ['10.244.0.0/24'], '100.96.0.1'),
  nodePeer('node-b', ['10.244.1.0/24', 'fd00:244:1::/64'], '100.96.0.2'),
  nodePeer('node-c', ['10.244.2.0/24'], '100.96.0.3'),
];

const verdicts = (t: Topology): string[][] => t.refused.map((r) => [r.name, r.reason, r.field]);
const names = (t: Topology): string[] => t.peers.map((p) => p.name).sort();

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
    assert.equal(t.settingsProblems, undefined);
  });

  test("a Peer claiming another node's pod CIDR is refused; the victim is untouched", () => {
    const peers = mesh3();
    peers[2].spec.allowedIPs = ['10.244.2.0/24', '10.244.1.0/24'];
    const t = computeTopology(input(peers));
    assert.deepEqual(t.peers.map((p) => p.name), ['node-b'], 'node-c is left out, node-b stays');
    const b = t.peers.find((p) => p.name === 'node-b');
    assert.deepEqual(b?.allowedIPs, ['10.244.1.0/24', '100.96.0.2/32', 'fd00:244:1::/64']);
    assert.deepEqual(t.refused, [
      {
        kind: 'Peer',
        name: 'node-c',
        reason: 'AllowedIPsOutsidePodCIDRs',
        field: 'spec.allowedIPs[1]',
        message: "Peer node-c: spec.allowedIPs[1] 10.244.1.0/24 is not inside Node node-c's podCIDRs [10.244.2.0/24] nor its meshIP 100.96.0.3/32",
      },
    ]);
  });

  test('a node Peer claiming a supernet of its own pod CIDR is refused, naming the entry', () => {
    const peers = mesh3();
    peers[1].spec.allowedIPs = ['fd00:244:1::/64', '10.244.0.0/16'];
    const t = computeTopology(input(peers));
    assert.deepEqual(verdicts(t), [['node-b', 'AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[1]']]);
    assert.equal(t.refused[0].message, "Peer node-b: spec.allowedIPs[1] 10.244.0.0/16 is not inside Node node-b's podCIDRs [10.244.1.0/24, fd00:244:1::/64] nor its meshIP 100.96.0.2/32");
    assert.deepEqual(names(t), ['node-c']);
    // A subnet of its own pod CIDR, and its own mesh IP written out, are fine.
    peers[1].spec.allowedIPs = ['10.244.1.128/25', '100.96.0.2/32'];
    assert.deepEqual(computeTopology(input(peers)).peers.find((p) => p.name === 'node-b')?.allowedIPs, ['10.244.1.128/25', '100.96.0.2/32']);
  });

  test('node peers must be named after their node and the node must exist', () => {
    const peers = [...mesh3(), nodePeer('evil', ['10.244.1.0/24'], '100.96.0.9')];
    peers[3].spec.nodeName = 'node-b';
    const t = computeTopology(input([...peers, nodePeer('node-z', ['10.9.0.0/24'], '100.96.0.10')]));
    assert.deepEqual(verdicts(t), [
      ['evil', 'NodeNameMismatch', 'spec.nodeName'],
      ['node-z', 'NodeNotFound', 'spec.nodeName'],
    ]);
    assert.equal(t.refused[0].message, "Peer evil: spec.nodeName node-b differs from the Peer's name: a node's Peer is named after its node");
    assert.equal(t.refused[1].message, 'Peer node-z: spec.nodeName: Node node-z does not exist');
  });

  test('an external peer is accepted when it overlaps nothing, refused when it overlaps a pod CIDR', () => {
    const ok = external('laptop', ['192.168.50.0/24'], { meshIP: '100.96.1.1' });
    const bad = external('greedy', ['10.244.0.0/16']);
    const t = computeTopology(input([...mesh3(), ok, bad]));
    assert.ok(t.peers.some((p) => p.name === 'laptop' && p.allowedIPs.join() === '100.96.1.1/32,192.168.50.0/24'));
    assert.deepEqual(verdicts(t), [['greedy', 'OverlapsPodCIDR', 'spec.allowedIPs[0]']]);
    assert.equal(t.refused[0].message, "Peer greedy: spec.allowedIPs[0] 10.244.0.0/16 overlaps Node node-a's podCIDR 10.244.0.0/24");
  });

  test("an external peer may not claim the mesh CIDR (beyond its own mesh IP) nor a node's address", () => {
    const ownMesh = external('ok-own', ['100.96.9.9/32', '192.168.60.0/24'], { meshIP: '100.96.9.9' });
    const meshGrab = external('mesh-grab', ['192.168.70.0/24', '100.96.0.0/16'], {}, '2020-01-01T00:00:00Z');
    const hostGrab = external('host-grab', ['198.18.0.0/30']);
    const t = computeTopology(input([...mesh3(), ownMesh, meshGrab, hostGrab]));
    assert.deepEqual(verdicts(t), [
      ['host-grab', 'OverlapsNodeAddress', 'spec.allowedIPs[0]'],
      ['mesh-grab', 'OverlapsMeshCIDR', 'spec.allowedIPs[1]'],
    ]);
    assert.equal(t.refused[0].message, "Peer host-grab: spec.allowedIPs[0] 198.18.0.0/30 contains Node node-a's address 198.18.0.1");
    assert.equal(t.refused[1].message, 'Peer mesh-grab: spec.allowedIPs[1] 100.96.0.0/16 overlaps the mesh CIDR 100.96.0.0/16 (only its own meshIP/32 may)');
    // The older mesh-grab would otherwise have won every overlap: the nodes stay in the mesh.
    assert.deepEqual(names(t), ['node-b', 'node-c', 'ok-own']);
  });

  // [allowedIPs entry, reason, message tail]: each one put at index 1 of an otherwise fine external Peer.
  const HOSTILE: Array<[string, string, string]> = [
    ['0.0.0.0/0', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['::/0', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['0.0.0.0/1', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['128.0.0.0/1', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['::/1', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['8000::/1', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['64.0.0.0/7', 'AllowedIPsTooBroad', 'is default-route space (a prefix shorter than /8)'],
    ['169.254.169.254/32', 'AllowedIPsReserved', 'overlaps link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)'],
    ['169.254.0.0/16', 'AllowedIPsReserved', 'overlaps link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)'],
    ['168.63.129.16/32', 'AllowedIPsReserved', "overlaps Azure's platform address 168.63.129.16 (DNS, DHCP, health probes)"],
    ['168.63.0.0/16', 'AllowedIPsReserved', "overlaps Azure's platform address 168.63.129.16 (DNS, DHCP, health probes)"],
    ['127.0.0.1/32', 'AllowedIPsReserved', 'overlaps loopback 127.0.0.0/8'],
    ['0.0.0.0/32', 'AllowedIPsReserved', 'overlaps the unspecified range 0.0.0.0/8'],
    ['224.0.0.0/24', 'AllowedIPsReserved', 'overlaps multicast 224.0.0.0/4'],
    ['255.255.255.255/32', 'AllowedIPsReserved', 'overlaps reserved 240.0.0.0/4 (with the broadcast address 255.255.255.255)'],
    ['::/128', 'AllowedIPsReserved', 'overlaps the unspecified address ::'],
    ['::1/128', 'AllowedIPsReserved', 'overlaps loopback ::1'],
    ['::ffff:10.1.2.3/128', 'AllowedIPsReserved', 'overlaps IPv4-mapped ::ffff:0:0/96 (all of IPv4)'],
    ['64:ff9b::/96', 'AllowedIPsReserved', 'overlaps NAT64 64:ff9b::/96 (all of IPv4)'],
    ['64:ff9b:1:2::/64', 'AllowedIPsReserved', 'overlaps local NAT64 64:ff9b:1::/48'],
    ['fe80::/64', 'AllowedIPsReserved', 'overlaps link-local fe80::/10'],
    ['ff02::1/128', 'AllowedIPsReserved', 'overlaps multicast ff00::/8'],
    ['fd00:ec2::254/128', 'AllowedIPsReserved', 'overlaps cloud metadata fd00:ec2::254 (AWS)'],
    ['fd00:ec2::/64', 'AllowedIPsReserved', 'overlaps cloud metadata fd00:ec2::254 (AWS)'],
    ['fd00:ec2::253/128', 'AllowedIPsReserved', 'overlaps cloud DNS fd00:ec2::253 (AWS)'],
    ['fd20:ce::254/128', 'AllowedIPsReserved', 'overlaps cloud metadata fd20:ce::254 (Google Cloud)'],
    ['10.244.2.0/23', 'OverlapsPodCIDR', "overlaps Node node-c's podCIDR 10.244.2.0/24"],
    ['fd00:244:1:0:1::/80', 'OverlapsPodCIDR', "overlaps Node node-b's podCIDR fd00:244:1::/64"],
    ['10.244.200.0/24', 'OverlapsClusterCIDR', "overlaps the cluster's pod CIDR 10.244.0.0/16"],
    ['10.0.0.10/32', 'OverlapsServiceCIDR', 'overlaps the service CIDR 10.0.0.0/16'],
    ['10.0.0.0/8', 'OverlapsPodCIDR', "overlaps Node node-a's podCIDR 10.244.0.0/24"],
    ['10.0.0.0/9', 'OverlapsServiceCIDR', 'overlaps the service CIDR 10.0.0.0/16'],
    ['100.96.0.2/32', 'OverlapsMeshCIDR', 'overlaps the mesh CIDR 100.96.0.0/16 (only its own meshIP/32 may)'],
    ['100.64.0.0/10', 'OverlapsMeshCIDR', 'overlaps the mesh CIDR 100.96.0.0/16 (only its own meshIP/32 may)'],
    ['198.18.0.2/32', 'OverlapsNodeAddress', "contains Node node-b's address 198.18.0.2"],
    ['198.18.0.0/16', 'OverlapsNodeAddress', "contains Node node-a's address 198.18.0.1"],
    ['10.224.5.0/24', 'OverlapsNodeSubnet', 'overlaps the node subnet 10.224.0.0/12'],
  ];

  test(`${HOSTILE.length} claims no external Peer may make are each refused, naming the entry; the mesh stands`, () => {
    const wrong: string[] = [];
    for (const [cidr, reason, tail] of HOSTILE) {
      const t = computeTopology(input([...mesh3(), external('hostile', ['192.168.1.0/24', cidr])]));
      const r = t.refused[0];
      const want = `Peer hostile: spec.allowedIPs[1] ${cidr} ${tail}`;
      if (t.refused.length !== 1 || r.reason !== reason || r.field !== 'spec.allowedIPs[1]' || r.message !== want) wrong.push(`${cidr}: ${JSON.stringify(t.refused)}`);
      if (names(t).join() !== 'node-b,node-c') wrong.push(`${cidr}: the mesh changed: ${names(t).join()}`);
    }
    assert.deepEqual(wrong, []);
    // The first bad entry is named, in the object's order.
    const t = computeTopology(input([...mesh3(), external('two', ['10.0.0.10/32', '0.0.0.0/0'])]));
    assert.deepEqual(verdicts(t), [['two', 'OverlapsServiceCIDR', 'spec.allowedIPs[0]']]);
  });

  test("no Peer routes default-route or reserved space, not even a node's own Peer whose Node says so", () => {
    const wide: NodeInfo[] = [...nodes, { name: 'node-w', podCIDRs: ['0.0.0.0/0', '169.254.0.0/16'], internalIPs: [] }];
    const t = computeTopology({
      ...input([...mesh3(), nodePeer('node-w', ['0.0.0.0/0'], '100.96.0.9'), nodePeer('node-v', ['169.254.169.254/32'], '100.96.0.10')]),
      nodes: [...wide, { name: 'node-v', podCIDRs: ['169.254.0.0/16'], internalIPs: [] }],
    });
    assert.deepEqual(verdicts(t), [
      ['node-v', 'AllowedIPsReserved', 'spec.allowedIPs[0]'],
      ['node-w', 'AllowedIPsTooBroad', 'spec.allowedIPs[0]'],
    ]);
  });

  test('pod space of a Node without podCIDRs yet is covered by the cluster CIDR setting (both families, any number)', () => {
    const bare: NodeInfo[] = [...nodes, { name: 'node-new', podCIDRs: [], internalIPs: ['198.18.0.9'] }];
    const grab = external('grab', ['10.244.9.0/24']);
    const grab6 = external('grab6', ['fd00:244:0:9::/64']);
    const t = computeTopology({ ...input([...mesh3(), grab, grab6], [], 'node-a', { clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/48'] }), nodes: bare });
    assert.deepEqual(verdicts(t), [
      ['grab', 'OverlapsClusterCIDR', 'spec.allowedIPs[0]'],
      ['grab6', 'OverlapsClusterCIDR', 'spec.allowedIPs[0]'],
    ]);
    assert.equal(t.refused[1].message, "Peer grab6: spec.allowedIPs[0] fd00:244:0:9::/64 overlaps the cluster's pod CIDR fd00:244::/48");
  });

  test('service CIDRs, cluster CIDRs and node subnets are settings: given ones replace the defaults', () => {
    assert.deepEqual([DEFAULT_SERVICE_CIDRS, DEFAULT_CLUSTER_CIDRS, DEFAULT_NODE_SUBNETS], [['10.0.0.0/16'], ['10.244.0.0/16'], ['10.224.0.0/12']]);
    const settings = { serviceCIDRs: ['10.96.0.0/12', 'fd00:96::/112'], clusterCIDRs: ['10.200.0.0/16'], nodeSubnets: ['172.16.0.0/16'] };
    const claims = ['10.0.0.0/16', '10.244.200.0/24', '10.224.5.0/24', '10.100.0.1/32', 'fd00:96::a/128', '10.200.1.0/24', '172.16.9.0/24'];
    const t = computeTopology(input([...mesh3(), ...claims.map((c, i) => external(`x${i}`, [c]))], [], 'node-a', settings));
    assert.deepEqual(verdicts(t), [
      ['x3', 'OverlapsServiceCIDR', 'spec.allowedIPs[0]'],
      ['x4', 'OverlapsServiceCIDR', 'spec.allowedIPs[0]'],
      ['x5', 'OverlapsClusterCIDR', 'spec.allowedIPs[0]'],
      ['x6', 'OverlapsNodeSubnet', 'spec.allowedIPs[0]'],
    ]);
    assert.deepEqual(names(t), ['node-b', 'node-c', 'x0', 'x1', 'x2']);
    // Empty lists turn a check off.
    const off = computeTopology(input([...mesh3(), external('svc', ['10.0.0.0/16'])], [], 'node-a', { serviceCIDRs: [] }));
    assert.deepEqual(off.refused, []);
  });

  test('unusable settings: every problem named, nothing accepted and nothing refused; never a throw', () => {
    assert.deepEqual(checkSettings({ meshCIDR: '100.96.0.0/16', serviceCIDRs: ['10.0.0.0/33'], clusterCIDRs: '10.244.0.0/16', defaultPersistentKeepalive: -1 }), {
      problems: [
        'defaultPersistentKeepalive: -1 is not a whole number of seconds from 0 to 65535',
        'serviceCIDRs[0]: "10.0.0.0/33" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (prefix length must be 0 to 32)',
        'clusterCIDRs: expected a list of CIDRs, got "10.244.0.0/16"',
      ],
    });
    const t = computeTopology({ ...input(mesh3()), settings: { meshCIDR: '100.96.0.08/16' } });
    assert.deepEqual(t.peers, []);
    assert.deepEqual(t.refused, []);
    assert.deepEqual(t.settingsProblems, ['meshCIDR: "100.96.0.08" is not an IPv4 or IPv6 address']);
    assert.deepEqual(checkSettings({ meshCIDR: '100.96.0.5/16', nodeSubnets: ['198.18.0.9/24'] }), {
      settings: { meshCIDR: '100.96.0.0/16', defaultPersistentKeepalive: 0, serviceCIDRs: ['10.0.0.0/16'], clusterCIDRs: ['10.244.0.0/16'], nodeSubnets: ['198.18.0.0/24'] },
    });
  });

  test('a mesh CIDR that is default-route space, reserved, or the cluster\'s own space is unusable settings (every meshIP/32 is routed into the tunnel): nothing accepted', () => {
    const problems = (settings: Partial<MeshSettings>): string[] => {
      const r = checkSettings({ meshCIDR: MESH, ...settings });
      return 'problems' in r ? r.problems : [];
    };
    assert.deepEqual(problems({ meshCIDR: '0.0.0.0/0' }), ['meshCIDR: 0.0.0.0/0 is default-route space (a prefix shorter than /8)']);
    assert.deepEqual(problems({ meshCIDR: '64.0.0.0/7' }), ['meshCIDR: 64.0.0.0/7 is default-route space (a prefix shorter than /8)']);
    assert.deepEqual(problems({ meshCIDR: '2000::/3' }), ['meshCIDR: 2000::/3 is default-route space (a prefix shorter than /8)']);
    assert.deepEqual(problems({ meshCIDR: '169.254.0.0/16' }), ['meshCIDR: 169.254.0.0/16 overlaps link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)']);
    assert.deepEqual(problems({ meshCIDR: 'fd00:ec2::/64' }), ['meshCIDR: fd00:ec2::/64 overlaps cloud metadata fd00:ec2::254 (AWS)']);
    assert.deepEqual(problems({ meshCIDR: '10.0.0.0/8' }), [
      'meshCIDR: 10.0.0.0/8 overlaps the service CIDR 10.0.0.0/16',
      "meshCIDR: 10.0.0.0/8 overlaps the cluster's pod CIDR 10.244.0.0/16",
      'meshCIDR: 10.0.0.0/8 overlaps the node subnet 10.224.0.0/12',
    ]);
    assert.deepEqual(problems({ meshCIDR: '192.168.0.0/24', nodeSubnets: ['192.168.0.0/16'] }), ['meshCIDR: 192.168.0.0/24 overlaps the node subnet 192.168.0.0/16']);
    assert.deepEqual(problems({ meshCIDR: 'fd00:96::/64' }), []);
    assert.deepEqual(problems({ meshCIDR: '11.0.0.0/8' }), [], 'a /8 clear of everything is fine');
    // Before: a node's meshIP 169.254.169.254 under a broad mesh CIDR was accepted and routed to it.
    const peers = mesh3();
    peers[1].spec.meshIP = '169.254.169.254';
    const t = computeTopology(input(peers, [], 'node-a', { meshCIDR: '128.0.0.0/1' }));
    assert.deepEqual(t.peers, []);
    assert.deepEqual(t.settingsProblems, ['meshCIDR: 128.0.0.0/1 is default-route space (a prefix shorter than /8)']);
  });

  test('overlaps between acceptable objects: the oldest wins, then the name', () => {
    const older = external('zz-old', ['192.168.0.0/16'], {}, '2025-01-01T00:00:00Z');
    const newer = external('aa-new', ['192.168.7.0/24'], {}, '2026-06-01T00:00:00Z');
    const t = computeTopology(input([...mesh3(), newer, older]));
    assert.ok(t.peers.some((p) => p.name === 'zz-old'));
    assert.deepEqual(verdicts(t), [['aa-new', 'OverlapsPeer', 'spec.allowedIPs[0]']]);
    assert.equal(t.refused[0].message, 'Peer aa-new: spec.allowedIPs[0] 192.168.7.0/24 overlaps 192.168.0.0/16 of Peer zz-old, which is older');
  });

  test('ties at equal creation time: a Gateway before an external Peer, then the smaller name in code units (any locale)', () => {
    const b = external('b-site', ['192.168.0.0/16'], {}, T0);
    const aa = external('aa-site', ['192.168.7.0/24', '192.168.8.0/24'], {}, T0);
    const t = computeTopology(input([...mesh3(), b, aa]));
    assert.deepEqual(verdicts(t), [['b-site', 'OverlapsPeer', 'spec.allowedIPs[0]']]);
    assert.equal(t.refused[0].message, 'Peer b-site: spec.allowedIPs[0] 192.168.0.0/16 overlaps 192.168.7.0/24 of Peer aa-site, which is as old and sorts first by name');
    // A Gateway and a Peer with the same mesh IP, created at once: the Gateway keeps it.
    const gw = gateway('zz-gw', '100.96.5.5', {}, T0);
    const p = external('aa-peer', ['192.168.9.0/24'], { meshIP: '100.96.5.5' }, T0);
    const u = computeTopology(input([...mesh3(), p], [gw]));
    assert.deepEqual(verdicts(u), [['aa-peer', 'DuplicateMeshIP', 'spec.meshIP']]);
    assert.equal(u.refused[0].message, 'Peer aa-peer: spec.meshIP 100.96.5.5 is already used by Gateway zz-gw, which is as old and a Gateway');
    // Two Gateways as old: the smaller name.
    const v = computeTopology(input(mesh3(), [gateway('b-gw', '100.96.5.6', {}, T0), gateway('a-gw', '100.96.5.6', {}, T0)]));
    assert.deepEqual(v.refused.map((r) => r.message), ['Gateway b-gw: spec.meshIP 100.96.5.6 is already used by Gateway a-gw, which is as old and sorts first by name']);
    // Objects without a creation time (a directory) come after every dated one.
    const undated = external('a-undated', ['192.168.0.0/24']);
    assert.deepEqual(verdicts(computeTopology(input([...mesh3(), undated, b]))), [['a-undated', 'OverlapsPeer', 'spec.allowedIPs[0]']]);
  });

  test('the same verdicts under another locale (LANG=da_DK sorts "aa" after "b" with localeCompare)', () => {
    const script = `
      import { computeTopology } from ${JSON.stringify(new URL('./topology.ts', import.meta.url).pathname)};
      const peers = JSON.parse(process.argv[1]);
      process.stdout.write(JSON.stringify(computeTopology({ self: { role: 'node', name: 'node-a' }, peers, gateways: [], nodes: [], settings: { meshCIDR: '100.96.0.0/16' } }).refused));`;
    const peers = [external('aab-site', ['192.168.0.0/16'], {}, T0), external('b-site', ['192.168.1.0/24'], {}, T0)];
    const here = JSON.stringify(computeTopology({ ...input(peers), nodes: [] }).refused);
    const danish = execFileSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(peers)], { env: { ...process.env, LANG: 'da_DK.UTF-8', LC_ALL: 'da_DK.UTF-8' }, encoding: 'utf8' });
    assert.equal(danish, here);
    assert.match(here, /"name":"b-site"/, 'aab-site wins: "a" < "b" in code units');
  });

  test('public keys: one object per key; a node\'s Peer always wins its own key, then a Gateway, then the oldest external Peer', () => {
    const peers = mesh3();
    const aKey = peers[0].spec.publicKey;
    // Older than node-a's Peer, carrying node-a's key: an external Peer, a Gateway, a Peer of no Node.
    const thief = external('thief', ['192.168.1.0/24'], { publicKey: aKey }, '2020-01-01T00:00:00Z');
    const gwThief = gateway('gw-thief', '100.96.9.1', { publicKey: aKey }, '2020-01-01T00:00:00Z');
    const ghost = nodePeer('node-ghost', ['10.9.0.0/24'], '100.96.9.2', '2020-01-01T00:00:00Z', { publicKey: aKey });
    const t = computeTopology(input([...peers, thief, ghost], [gwThief], 'node-b'));
    assert.deepEqual(verdicts(t), [
      ['gw-thief', 'DuplicatePublicKey', 'spec.publicKey'],
      ['node-ghost', 'NodeNotFound', 'spec.nodeName'],
      ['thief', 'DuplicatePublicKey', 'spec.publicKey'],
    ]);
    assert.equal(t.refused[0].message, "Gateway gw-thief: spec.publicKey is the key of Node node-a's Peer: a node's Peer always wins its own key");
    assert.equal(t.refused[2].message, "Peer thief: spec.publicKey is the key of Node node-a's Peer: a node's Peer always wins its own key");
    assert.deepEqual(names(t), ['node-a', 'node-c']);
    assert.equal(t.peers.find((p) => p.name === 'node-a')?.publicKey, aKey);
  });

  test("a node's key stays its own while its Peer is refused for something else", () => {
    const peers = mesh3();
    peers[0].spec.allowedIPs = ['10.244.7.0/24'];
    const thief = external('thief', ['192.168.1.0/24'], { publicKey: peers[0].spec.publicKey }, '2020-01-01T00:00:00Z');
    const t = computeTopology(input([...peers, thief], [], 'node-b'));
    assert.deepEqual(verdicts(t), [
      ['node-a', 'AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[0]'],
      ['thief', 'DuplicatePublicKey', 'spec.publicKey'],
    ]);
  });

  test('two nodes with one key (a cloned image, or a compromised node copying another\'s key): refused for both, so no one gets the other\'s traffic; a Gateway\'s key is the Gateway\'s against external Peers', () => {
    const peers = mesh3();
    peers[2].metadata.creationTimestamp = '2025-01-01T00:00:00Z';
    peers[0].spec.publicKey = peers[2].spec.publicKey;
    const gw = gateway('konnectivity', '100.96.255.1', {}, '2026-06-01T00:00:00Z');
    const copy = external('copy', ['192.168.1.0/24'], { publicKey: gw.spec.publicKey }, '2020-01-01T00:00:00Z');
    const gw2 = gateway('a-second', '100.96.255.2', { publicKey: gw.spec.publicKey }, '2026-07-01T00:00:00Z');
    const t = computeTopology(input([...peers, copy], [gw, gw2], 'node-b'));
    assert.deepEqual(verdicts(t), [
      ['a-second', 'DuplicatePublicKey', 'spec.publicKey'],
      ['copy', 'DuplicatePublicKey', 'spec.publicKey'],
      ['node-a', 'PublicKeyClaimedByNodes', 'spec.publicKey'],
      ['node-c', 'PublicKeyClaimedByNodes', 'spec.publicKey'],
    ]);
    assert.deepEqual(
      t.refused.map((r) => r.message),
      [
        'Gateway a-second: spec.publicKey is already used by Gateway konnectivity, which is older',
        'Peer copy: spec.publicKey is the key of Gateway konnectivity: only a node\'s Peer may share a Gateway\'s key',
        "Peer node-a: spec.publicKey is also the key of Node node-c's Peer: a key more than one node claims is refused for all of them (a cloned image, or a node copying another's key)",
        "Peer node-c: spec.publicKey is also the key of Node node-a's Peer: a key more than one node claims is refused for all of them (a cloned image, or a node copying another's key)",
      ],
    );
    assert.deepEqual(names(t), ['konnectivity'], 'node-b is this node; node-a and node-c are out');
    // The older node copying the newer one's key gains nothing either way, and an external Peer
    // with that key still loses it to the nodes.
    const v = mesh3();
    v[0].metadata.creationTimestamp = '2020-01-01T00:00:00Z';
    v[0].spec.publicKey = v[1].spec.publicKey;
    const ext = external('ext', ['192.168.1.0/24'], { publicKey: v[1].spec.publicKey }, '2019-01-01T00:00:00Z');
    const w = computeTopology(input([...v, ext], [], 'node-c'));
    assert.deepEqual(verdicts(w), [
      ['ext', 'DuplicatePublicKey', 'spec.publicKey'],
      ['node-a', 'PublicKeyClaimedByNodes', 'spec.publicKey'],
      ['node-b', 'PublicKeyClaimedByNodes', 'spec.publicKey'],
    ]);
    assert.ok(!w.peers.some((p) => p.publicKey === v[1].spec.publicKey), 'nobody holds the contested key');
    // Two external Peers with one key: the older keeps it.
    const k = key();
    const u = computeTopology(input([...mesh3(), external('new', ['192.168.2.0/24'], { publicKey: k }, '2026-03-01T00:00:00Z'), external('old', ['192.168.3.0/24'], { publicKey: k }, '2026-02-01T00:00:00Z')]));
    assert.deepEqual(verdicts(u), [['new', 'DuplicatePublicKey', 'spec.publicKey']]);
    assert.equal(u.refused[0].message, 'Peer new: spec.publicKey is already used by Peer old, which is older');
  });

  test("duplicate mesh IPs go to the older object, a node's Peer included (a compromised younger node cannot take an older Gateway's or external Peer's mesh IP); a node's Peer keeps its own against a younger one or (undated, in a directory) a smaller name", () => {
    const twin = external('twin', ['192.168.2.0/24'], { meshIP: '100.96.0.3' }, '2020-02-01T00:00:00Z');
    const gw = gateway('a-gw', '100.96.0.2', {}, '2020-02-01T00:00:00Z');
    const t = computeTopology(input([...mesh3(), twin], [gw]));
    assert.deepEqual(verdicts(t), [
      ['node-b', 'DuplicateMeshIP', 'spec.meshIP'],
      ['node-c', 'DuplicateMeshIP', 'spec.meshIP'],
    ]);
    assert.deepEqual(t.refused.map((r) => r.message), [
      'Peer node-b: spec.meshIP 100.96.0.2 is already used by Gateway a-gw, which is older',
      'Peer node-c: spec.meshIP 100.96.0.3 is already used by Peer twin, which is older',
    ]);
    assert.deepEqual(t.routes.filter((r) => r.startsWith('100.96.0.')), ['100.96.0.2/32', '100.96.0.3/32']);
    assert.deepEqual(names(t), ['a-gw', 'twin']);
    // A gateway account creating a new Gateway with an older external Peer's mesh IP gets nothing.
    const old = external('old-site', ['192.168.6.0/24'], { meshIP: '100.96.8.8' }, '2020-01-01T00:00:00Z');
    const late = computeTopology(input([...mesh3(), old], [gateway('late-gw', '100.96.8.8', {}, '2026-05-01T00:00:00Z')]));
    assert.deepEqual(late.refused.map((r) => r.message), ['Gateway late-gw: spec.meshIP 100.96.8.8 is already used by Peer old-site, which is older']);
    // A younger object with a node's mesh IP loses it.
    const young = computeTopology(input([...mesh3(), external('young', ['192.168.3.0/24'], { meshIP: '100.96.0.2' }, '2026-02-01T00:00:00Z')]));
    assert.deepEqual(young.refused.map((r) => r.message), ['Peer young: spec.meshIP 100.96.0.2 is already used by Peer node-b, which is older']);
    const undated = mesh3().map((p) => ({ ...p, metadata: { name: p.metadata.name } }));
    const squat = computeTopology(input([...undated, external('a-squat', ['192.168.3.0/24'], { meshIP: '100.96.0.2' })]));
    assert.deepEqual(verdicts(squat), [['a-squat', 'DuplicateMeshIP', 'spec.meshIP']]);
    assert.deepEqual(names(squat), ['node-b', 'node-c']);
    // Between external Peers, the older.
    const u = computeTopology(input([...mesh3(), external('new', ['192.168.4.0/24'], { meshIP: '100.96.7.7' }, '2026-03-01T00:00:00Z'), external('old', ['192.168.5.0/24'], { meshIP: '100.96.7.7' }, '2026-02-01T00:00:00Z')]));
    assert.deepEqual(u.refused.map((r) => r.message), ['Peer new: spec.meshIP 100.96.7.7 is already used by Peer old, which is older']);
  });

  test('gateways are peers with only their mesh IP; a gateway itself peers with the nodes only', () => {
    const gw = gateway('konnectivity', '100.96.255.1');
    const laptop = external('laptop', ['192.168.50.0/24']);
    const t = computeTopology(input([...mesh3(), laptop], [gw]));
    assert.deepEqual(t.peers.find((p) => p.name === 'konnectivity')?.allowedIPs, ['100.96.255.1/32']);
    const g = computeTopology({ ...input([...mesh3(), laptop], [gw]), self: { role: 'gateway', name: 'konnectivity' } });
    assert.deepEqual(names(g), ['node-a', 'node-b', 'node-c']);
    // A Gateway whose node does not exist is still just its mesh IP.
    const orphan = gateway('orphan', '100.96.255.9', { nodeName: 'no-such-node' });
    assert.deepEqual(computeTopology(input(mesh3(), [orphan])).peers.find((p) => p.name === 'orphan')?.allowedIPs, ['100.96.255.9/32']);
  });

  test('malformed objects (e.g. from a directory) are refused naming the field; mesh IPs outside the mesh CIDR too', () => {
    const bad = external('bad', ['10.0.0.0/33'], { publicKey: 'not-a-key' });
    const outside = external('outside', ['192.168.9.0/24'], { meshIP: '10.1.1.1' });
    const t = computeTopology(input([...mesh3(), bad, outside]));
    assert.deepEqual(verdicts(t), [
      ['bad', 'InvalidSpec', 'spec.publicKey'],
      ['outside', 'MeshIPOutsideMeshCIDR', 'spec.meshIP'],
    ]);
    assert.match(t.refused[0].message, /spec\.allowedIPs\[0\]/);
    assert.equal(t.refused[1].message, 'Peer outside: spec.meshIP 10.1.1.1 is not inside the mesh CIDR 100.96.0.0/16');
  });

  const GOOD_PEER = (): Peer['spec'] & Record<string, unknown> => ({
    publicKey: key(),
    endpoint: '192.0.2.1:51820',
    allowedIPs: ['192.168.40.0/24'],
    meshIP: '100.96.40.1',
    persistentKeepalive: 25,
    presharedKeySecretRef: { namespace: 'kube-system', name: 'psk', key: 'laptop' },
  });
  const GOOD_GATEWAY = (): Gateway['spec'] & Record<string, unknown> => ({ publicKey: key(), endpoint: '192.0.2.9:51820', meshIP: '100.96.255.1', nodeName: 'node-a', podCIDRs: ['10.244.0.0/16'], persistentKeepalive: 25 });
  const PSK = new Map([['kube-system/psk/laptop', Buffer.alloc(32, 7).toString('base64')]]);
  // [what, patch, field]: each object is good but for exactly this one field.
  const ONE_BAD_PEER: Array<[string, Record<string, unknown>, string]> = [
    ['no publicKey', { publicKey: undefined }, 'spec.publicKey'],
    ['publicKey a number', { publicKey: 7 }, 'spec.publicKey'],
    ['publicKey in hex', { publicKey: 'ab'.repeat(32) }, 'spec.publicKey'],
    ['publicKey 43 characters', { publicKey: KEYS[0].slice(1) }, 'spec.publicKey'],
    ['endpoint without port', { endpoint: '192.0.2.1' }, 'spec.endpoint'],
    ['endpoint port 0', { endpoint: '192.0.2.1:0' }, 'spec.endpoint'],
    ['endpoint host name', { endpoint: 'laptop.example:51820' }, 'spec.endpoint'],
    ['endpoint a number', { endpoint: 51820 }, 'spec.endpoint'],
    ['endpoint too long', { endpoint: `[${'1:'.repeat(30)}:1]:1` }, 'spec.endpoint'],
    ['endpoint with a leading zero', { endpoint: '192.0.2.01:51820' }, 'spec.endpoint'],
    ['no allowedIPs', { allowedIPs: undefined }, 'spec.allowedIPs'],
    ['allowedIPs a string', { allowedIPs: '192.168.40.0/24' }, 'spec.allowedIPs'],
    ['allowedIPs empty', { allowedIPs: [] }, 'spec.allowedIPs'],
    ['allowedIPs with 257 entries', { allowedIPs: Array.from({ length: 257 }, (_, i) => `192.168.${i % 256}.${i < 256 ? 0 : 128}/25`) }, 'spec.allowedIPs'],
    ['allowedIPs /33 second', { allowedIPs: ['192.168.40.0/24', '192.168.41.0/33'] }, 'spec.allowedIPs[1]'],
    ['allowedIPs a number', { allowedIPs: [42] }, 'spec.allowedIPs[0]'],
    ['allowedIPs with a leading zero', { allowedIPs: ['192.168.040.0/24'] }, 'spec.allowedIPs[0]'],
    ['allowedIPs prefix with a leading zero', { allowedIPs: ['192.168.40.0/024'] }, 'spec.allowedIPs[0]'],
    ['meshIP with a leading zero', { meshIP: '100.96.0.08' }, 'spec.meshIP'],
    ['meshIP with a prefix', { meshIP: '100.96.40.1/32' }, 'spec.meshIP'],
    ['meshIP a number', { meshIP: 1684013057 }, 'spec.meshIP'],
    ['meshIP with a zone', { meshIP: 'fe80::1%eth0' }, 'spec.meshIP'],
    ['nodeName with capitals', { nodeName: 'Node_A' }, 'spec.nodeName'],
    ['nodeName a number', { nodeName: 5 }, 'spec.nodeName'],
    ['keepalive -1', { persistentKeepalive: -1 }, 'spec.persistentKeepalive'],
    ['keepalive 1.5', { persistentKeepalive: 1.5 }, 'spec.persistentKeepalive'],
    ['keepalive a string', { persistentKeepalive: '25' }, 'spec.persistentKeepalive'],
    ['keepalive 65536', { persistentKeepalive: 65536 }, 'spec.persistentKeepalive'],
    ['secret ref a string', { presharedKeySecretRef: 'kube-system/psk' }, 'spec.presharedKeySecretRef'],
    ['secret ref without key', { presharedKeySecretRef: { namespace: 'kube-system', name: 'psk' } }, 'spec.presharedKeySecretRef.key'],
    ['secret ref bad namespace', { presharedKeySecretRef: { namespace: 'Kube_System', name: 'psk', key: 'laptop' } }, 'spec.presharedKeySecretRef.namespace'],
    ['secret ref empty name', { presharedKeySecretRef: { namespace: 'kube-system', name: '', key: 'laptop' } }, 'spec.presharedKeySecretRef.name'],
    ['secret ref extra field', { presharedKeySecretRef: { namespace: 'kube-system', name: 'psk', key: 'laptop', value: 'x' } }, 'spec.presharedKeySecretRef.value'],
    ['a misspelled field', { meshIp: '100.96.40.2' }, 'spec.meshIp'],
    ['a field name that is not an identifier', { 'end point': 'x' }, 'spec["end point"]'],
    ['a privateKey field', { privateKey: KEYS[1] }, 'spec.privateKey'],
    ['a presharedKey field', { presharedKey: KEYS[1] }, 'spec.presharedKey'],
    ['a Gateway field', { podCIDRs: ['10.244.0.0/16'] }, 'spec.podCIDRs'],
  ];
  const ONE_BAD_GATEWAY: Array<[string, Record<string, unknown>, string]> = [
    ['no publicKey', { publicKey: undefined }, 'spec.publicKey'],
    ['publicKey short', { publicKey: KEYS[0].slice(4) }, 'spec.publicKey'],
    ['endpoint port 99999', { endpoint: '192.0.2.9:99999' }, 'spec.endpoint'],
    ['no meshIP', { meshIP: undefined }, 'spec.meshIP'],
    ['meshIP null', { meshIP: null }, 'spec.meshIP'],
    ['meshIP with a leading zero', { meshIP: '100.96.255.01' }, 'spec.meshIP'],
    ['nodeName with a slash', { nodeName: 'node/a' }, 'spec.nodeName'],
    ['no podCIDRs', { podCIDRs: undefined }, 'spec.podCIDRs'],
    ['podCIDRs a string', { podCIDRs: '10.244.0.0/16' }, 'spec.podCIDRs'],
    ['podCIDRs with 65 entries', { podCIDRs: Array.from({ length: 65 }, (_, i) => `10.244.${i}.0/24`) }, 'spec.podCIDRs'],
    ['podCIDRs without a prefix', { podCIDRs: ['10.244.0.0/16', '10.245.0.0'] }, 'spec.podCIDRs[1]'],
    ['keepalive a string', { persistentKeepalive: 'often' }, 'spec.persistentKeepalive'],
    ['a Peer field', { allowedIPs: ['10.244.0.0/16'] }, 'spec.allowedIPs'],
    ['a secret ref (Peers only)', { presharedKeySecretRef: { namespace: 'kube-system', name: 'psk', key: 'gw' } }, 'spec.presharedKeySecretRef'],
    ['a privateKey field', { privateKey: KEYS[1] }, 'spec.privateKey'],
  ];
  const patched = <T extends Record<string, unknown>>(base: T, patch: Record<string, unknown>): T => {
    const out: Record<string, unknown> = { ...base, ...patch };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete out[k];
    return out as T;
  };

  test(`exactly one bad field, for each field of Peer (${ONE_BAD_PEER.length} cases) and Gateway (${ONE_BAD_GATEWAY.length}): refused, naming that field; nothing else changes`, () => {
    const base = { ...input(mesh3()), presharedKeys: PSK };
    const good = computeTopology({ ...base, peers: [...base.peers, { kind: 'Peer', metadata: { name: 'laptop' }, spec: GOOD_PEER() }], gateways: [{ kind: 'Gateway', metadata: { name: 'gw' }, spec: GOOD_GATEWAY() }] });
    assert.deepEqual(good.refused, [], 'the unpatched objects are fine');
    assert.deepEqual(names(good), ['gw', 'laptop', 'node-b', 'node-c']);
    const wrong: string[] = [];
    const cases = [...ONE_BAD_PEER.map((c) => ['Peer', ...c] as const), ...ONE_BAD_GATEWAY.map((c) => ['Gateway', ...c] as const)];
    for (const [kind, what, patch, field] of cases) {
      const obj = { kind, metadata: { name: 'one-bad' }, spec: patched(kind === 'Peer' ? GOOD_PEER() : GOOD_GATEWAY(), patch) };
      const t = computeTopology({ ...base, peers: kind === 'Peer' ? [...base.peers, obj as Peer] : base.peers, gateways: kind === 'Gateway' ? [obj as Gateway] : [] });
      const r = t.refused.find((x) => x.name === 'one-bad');
      if (!r || r.reason !== 'InvalidSpec' || r.field !== field || !r.message.startsWith(`${kind} one-bad: ${field}`)) wrong.push(`${kind} ${what}: ${JSON.stringify(t.refused)}`);
      if (t.refused.length !== 1 || names(t).join() !== 'node-b,node-c') wrong.push(`${kind} ${what}: the rest changed`);
      if (r && (r.message.includes(KEYS[1]) || r.message.includes('ab'.repeat(32)))) wrong.push(`${kind} ${what}: key material in the message`);
    }
    assert.deepEqual(wrong, []);
  });

  test('objects without a usable shape or name are refused naming metadata.name or spec; two objects with one name are refused', () => {
    const peers: unknown[] = [
      ...mesh3(),
      null,
      42,
      { kind: 'Peer', metadata: { name: 'No_Caps' }, spec: GOOD_PEER() },
      { kind: 'Peer', spec: GOOD_PEER() },
      { kind: 'Peer', metadata: { name: 'no-spec' } },
      { kind: 'Peer', metadata: { name: 'null-spec' }, spec: null },
      { kind: 'Peer', metadata: { name: 'list-spec' }, spec: [] },
      { kind: 'Peer', metadata: { name: 'twice' }, spec: { ...GOOD_PEER(), meshIP: undefined, presharedKeySecretRef: undefined, allowedIPs: ['192.168.77.0/24'] } },
      { kind: 'Peer', metadata: { name: 'twice' }, spec: { ...GOOD_PEER(), meshIP: undefined, presharedKeySecretRef: undefined, allowedIPs: ['192.168.78.0/24'] } },
    ];
    const t = computeTopology({ ...input([]), peers: peers as Peer[] });
    assert.deepEqual(
      t.refused.map((r) => [r.name, r.reason, r.field, r.message]),
      [
        ['"No_Caps"', 'InvalidSpec', 'metadata.name', `Peer "No_Caps": metadata.name: "No_Caps" is not an object name (lower case letters, digits, '-' and '.', at most 253)`],
        ['(unnamed)', 'InvalidSpec', 'metadata.name', 'Peer (unnamed): metadata.name: required'],
        ['(unnamed)', 'InvalidSpec', 'metadata.name', 'Peer (unnamed): metadata.name: required'],
        ['(unnamed)', 'InvalidSpec', 'metadata.name', 'Peer (unnamed): metadata.name: required'],
        ['list-spec', 'InvalidSpec', 'spec', 'Peer list-spec: spec: expected an object, got a list'],
        ['no-spec', 'InvalidSpec', 'spec', 'Peer no-spec: spec: required'],
        ['null-spec', 'InvalidSpec', 'spec', 'Peer null-spec: spec: expected an object, got null'],
        ['twice', 'DuplicateName', 'metadata.name', 'Peer twice: metadata.name: another Peer has the same name'],
      ],
    );
    // Which "twice" wins does not depend on the input's order.
    const reversed = computeTopology({ ...input([]), peers: [...peers].reverse() as Peer[] });
    assert.deepEqual(reversed.peers.map((p) => p.allowedIPs), t.peers.map((p) => p.allowedIPs));
  });

  test('PresharedKeyMissing: a Secret reference without a usable key is refused; with one, the key reaches the peer', () => {
    const laptop = external('laptop', ['192.168.40.0/24'], { presharedKeySecretRef: { namespace: 'kube-system', name: 'psk', key: 'laptop' } });
    const t = computeTopology(input([...mesh3(), laptop]));
    assert.deepEqual(t.refused, [
      { kind: 'Peer', name: 'laptop', reason: 'PresharedKeyMissing', field: 'spec.presharedKeySecretRef', message: 'Peer laptop: spec.presharedKeySecretRef: Secret kube-system/psk has no usable key laptop' },
    ]);
    const empty = computeTopology({ ...input([...mesh3(), laptop]), presharedKeys: new Map([['kube-system/psk/laptop', '']]) });
    assert.deepEqual(verdicts(empty), [['laptop', 'PresharedKeyMissing', 'spec.presharedKeySecretRef']]);
    const psk = Buffer.alloc(32, 9).toString('base64');
    const ok = computeTopology({ ...input([...mesh3(), laptop]), presharedKeys: new Map([['kube-system/psk/laptop', psk]]) });
    assert.deepEqual(ok.refused, []);
    assert.equal(ok.peers.find((p) => p.name === 'laptop')?.presharedKey, psk);
    assert.equal(ok.peers.find((p) => p.name === 'node-b')?.presharedKey, null);
  });

  test('keepalive: the peer\'s own value (0 included) wins; else the default setting; else off', () => {
    const peers = mesh3();
    peers[1].spec.persistentKeepalive = 0;
    peers.push(external('ten', ['192.168.10.0/24'], { persistentKeepalive: 10 }));
    const keepalives = (t: Topology): Record<string, number | undefined> => Object.fromEntries(t.peers.map((p) => [p.name, p.persistentKeepalive]));
    assert.deepEqual(keepalives(computeTopology(input(peers, [], 'node-a', { defaultPersistentKeepalive: 25 }))), { 'node-b': 0, 'node-c': 25, ten: 10 });
    assert.deepEqual(keepalives(computeTopology(input(peers))), { 'node-b': 0, 'node-c': 0, ten: 10 });
  });

  test("Nodes of any shape (from a directory) never throw: a bad pod CIDR is left out and that node's Peer refused, the rest stands", () => {
    const broken = [
      ...nodes.filter((n) => n.name !== 'node-c'),
      { name: 'node-c', podCIDRs: ['10.244.2.0/33'], internalIPs: [] },
      { name: 'node-d', podCIDRs: '10.244.3.0/24', internalIPs: null },
      { name: 'node-e', podCIDRs: [7, null, {}], internalIPs: ['198.18.0.05'] },
      null,
      'node-f',
      { name: 'Node_G', podCIDRs: ['10.244.6.0/24'] },
    ];
    const t = computeTopology({ ...input([...mesh3(), nodePeer('node-d', ['10.244.3.0/24'], '100.96.0.4'), nodePeer('node-g', ['10.244.6.0/24'], '100.96.0.6')]), nodes: broken as NodeInfo[] });
    assert.deepEqual(names(t), ['node-b']);
    assert.deepEqual(verdicts(t), [
      ['node-c', 'AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[0]'],
      ['node-d', 'AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[0]'],
      ['node-g', 'NodeNotFound', 'spec.nodeName'],
    ]);
  });

  // Arbitrary JSON, and well-formed objects with one field replaced by arbitrary JSON (which reaches deeper).
  const json = fc.jsonValue({ maxDepth: 3 });
  const mutated = <T extends object>(base: () => T) =>
    fc.tuple(fc.constantFrom(...Object.keys(base())), json, fc.constantFrom('spec', 'metadata', 'top')).map(([field, value, where]) => {
      const obj = base() as Record<string, Record<string, unknown>>;
      if (where === 'spec') obj.spec = { ...obj.spec, [field]: value };
      else if (where === 'metadata') obj.metadata = { ...obj.metadata, [field === 'spec' ? 'name' : 'creationTimestamp']: value };
      else obj[field] = value as Record<string, unknown>;
      return obj;
    });
  const anyPeer = fc.oneof(json, mutated(() => ({ kind: 'Peer', metadata: { name: 'p' }, spec: GOOD_PEER() })), mutated(() => nodePeer('node-b', ['10.244.1.0/24'], '100.96.0.2') as unknown as Record<string, unknown>));
  const anyGateway = fc.oneof(json, mutated(() => ({ kind: 'Gateway', metadata: { name: 'g' }, spec: GOOD_GATEWAY() })));
  const anyNode = fc.oneof(json, mutated(() => ({ name: 'node-b', podCIDRs: ['10.244.1.0/24'], internalIPs: ['198.18.0.2'] })));

  test('property: never throws over arbitrary JSON for peers, gateways and nodes; every refusal names its object and field; order does not matter', () => {
    fc.assert(
      fc.property(fc.oneof(json, fc.array(anyPeer, { maxLength: 6 })), fc.oneof(json, fc.array(anyGateway, { maxLength: 3 })), fc.oneof(json, fc.array(anyNode, { maxLength: 4 })), (peers, gateways, nodeList) => {
        const make = (rev: boolean): Topology =>
          computeTopology({
            self: { role: 'node', name: 'node-a' },
            peers: (Array.isArray(peers) && rev ? [...peers].reverse() : peers) as unknown as Peer[],
            gateways: (Array.isArray(gateways) && rev ? [...gateways].reverse() : gateways) as unknown as Gateway[],
            nodes: (Array.isArray(nodeList) && rev ? [...nodeList].reverse() : nodeList) as unknown as NodeInfo[],
            settings: { meshCIDR: MESH },
            presharedKeys: PSK,
          });
        const t = make(false);
        for (const r of t.refused) {
          assert.match(r.reason, /^[A-Z][A-Za-z]+$/);
          assert.match(r.field, /^(spec|metadata\.name)/);
          assert.ok(r.message.startsWith(`${r.kind} ${r.name}: ${r.field}`), `the message names the object, then the field: ${r.message}`);
        }
        assert.deepEqual(make(true), t, 'the same result from the input in reverse');
      }),
      { numRuns: 400 },
    );
    assert.deepEqual(computeTopology(null as unknown as TopologyInput).settingsProblems?.length, 1);
  });

  test('property: every agent reaches the same verdicts, and accepted allowed IPs and keys never overlap', () => {
    const cidrs = ['10.244.0.0/24', '10.244.1.0/24', '10.244.0.0/16', '192.168.0.0/24', '192.168.0.0/16', '100.96.0.5/32', '0.0.0.0/1', '169.254.169.254/32'];
    const arb = fc.array(
      fc.record({
        kind: fc.constantFrom('Peer', 'Peer', 'Gateway'),
        name: fc.constantFrom('node-a', 'node-b', 'node-c', 'ext-1', 'ext-2', 'aa', 'b'),
        cidrs: fc.uniqueArray(fc.constantFrom(...cidrs), { minLength: 1, maxLength: 3 }),
        mesh: fc.integer({ min: 1, max: 6 }),
        key: fc.integer({ min: 0, max: 4 }),
        day: fc.integer({ min: 1, max: 3 }),
      }),
      { maxLength: 9 },
    );
    fc.assert(
      fc.property(arb, (specs) => {
        const seen = new Set<string>();
        const objects = specs.filter((s) => !seen.has(`${s.kind}/${s.name}`) && seen.add(`${s.kind}/${s.name}`));
        const meta = (s: (typeof objects)[number]) => ({ name: s.name, creationTimestamp: `2026-01-0${s.day}T00:00:00Z` });
        const peers: Peer[] = objects
          .filter((s) => s.kind === 'Peer')
          .map((s) => ({ kind: 'Peer', metadata: meta(s), spec: { publicKey: KEYS[s.key], allowedIPs: s.cidrs, meshIP: `100.96.0.${s.mesh}`, ...(s.name.startsWith('node') ? { nodeName: s.name } : {}) } }));
        const gateways: Gateway[] = objects
          .filter((s) => s.kind === 'Gateway')
          .map((s) => ({ kind: 'Gateway', metadata: meta(s), spec: { publicKey: KEYS[s.key], meshIP: `100.96.0.${s.mesh}`, podCIDRs: s.cidrs } }));
        const views = ['node-a', 'node-b', 'node-c'].map((self, i) => computeTopology(input(i % 2 ? [...peers].reverse() : peers, gateways, self)));
        for (const v of views) assert.deepEqual(v.refused, views[0].refused);
        for (const r of views[0].refused) assert.ok(r.message.startsWith(`${r.kind} ${r.name}: ${r.field}`), r.message);
        for (const v of views) {
          const all = v.peers.flatMap((p) => p.allowedIPs.map((c) => [p.name, c] as const));
          for (const [n1, c1] of all) for (const [n2, c2] of all) if (n1 !== n2) assert.notEqual(c1, c2);
          assert.equal(new Set(v.peers.map((p) => p.publicKey)).size, v.peers.length, 'one object per key');
          assert.ok(v.routes.every((r) => Number(r.split('/')[1]) >= 8 && r !== '169.254.169.254/32'));
        }
        // A node's Peer never loses its key to an external Peer or a Gateway (a key nodes share is
        // refused for all of them), and loses address space only to an older object, or as old
        // and no Gateway or external Peer.
        for (const r of views[0].refused.filter((x) => x.kind === 'Peer' && x.name.startsWith('node-'))) {
          if (r.reason === 'DuplicatePublicKey') assert.match(r.message, /already used by Peer node-/);
          if (r.reason === 'DuplicateMeshIP' || r.reason === 'OverlapsPeer') assert.match(r.message, /which is older$|of Peer node-.*which is as old and sorts first by name$|by Peer node-.*which is as old and sorts first by name$/);
        }
        for (const r of views[0].refused.filter((x) => x.reason === 'PublicKeyClaimedByNodes')) assert.ok(!views[0].peers.some((p) => p.publicKey === KEYS[objects.find((o) => o.kind === 'Peer' && o.name === r.name)?.key ?? -1]));
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
    const all = Array.from({ length: 40 }, (_, i) => `node-${i}`);
    const first = new Map(all.map((n) => [n, allocateMeshIP({ name: n }, cidr, [])]));
    const [x, y] = all.filter((n) => first.get(n) === first.get(all[0])).slice(0, 2);
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

  test("other objects' bad mesh IPs are skipped, never thrown on (\"100.96.0.08\" holds nothing, nor does 100.96.0.8)", () => {
    const cidr = '192.168.0.0/30';
    const want = allocateMeshIP({ name: 'node-a', created: 10 }, cidr, []);
    const bad = ['192.168.0.01', '192.168.0.1/32', 'x', '', null, 5, undefined, '::ffff:192.168.0.1'].map((meshIP, i) => ({ kind: 'Peer' as const, name: `bad-${i}`, meshIP: meshIP as string, created: 1 }));
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, cidr, [...bad, null as never]), want);
    // Its own bad address is not kept either.
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, cidr, [{ kind: 'Peer', name: 'node-a', meshIP: '192.168.0.02', created: 10 }]), want);
  });

  test('ties at equal creation time: Gateway before Peer, then the smaller name (code units)', () => {
    const cidr = '192.168.0.0/30';
    const wanted = allocateMeshIP({ name: 'b' }, cidr, []);
    const other = wanted === '192.168.0.1' ? '192.168.0.2' : '192.168.0.1';
    const holder = (kind: 'Peer' | 'Gateway', name: string) => ({ kind, name, meshIP: wanted, created: 7 });
    assert.equal(allocateMeshIP({ name: 'b', created: 7 }, cidr, [holder('Peer', 'aa')]), other, '"aa" < "b": b moves');
    assert.equal(allocateMeshIP({ name: 'b', created: 7 }, cidr, [holder('Peer', 'c')]), wanted, '"c" > "b": b keeps it');
    assert.equal(allocateMeshIP({ name: 'b', created: 7 }, cidr, [holder('Gateway', 'zz')]), other, 'a Gateway as old wins');
  });

  test('meshIPHolders: only objects that pass the checked path hold an address', () => {
    const good = nodePeer('node-a', ['10.244.0.0/24'], '100.96.0.1', '2026-01-01T00:00:05Z');
    const holders = meshIPHolders(
      [good, external('leading-zero', ['192.168.1.0/24'], { meshIP: '100.96.0.08' }), external('none', ['192.168.2.0/24']), null, { metadata: {} }, 'x'],
      [gateway('gw', '100.96.255.1'), { kind: 'Gateway', metadata: { name: 'bad' }, spec: { meshIP: 7 } }],
    );
    assert.deepEqual(holders, [
      { kind: 'Peer', name: 'node-a', meshIP: '100.96.0.1', created: Date.parse('2026-01-01T00:00:05Z') },
      { kind: 'Gateway', name: 'gw', meshIP: '100.96.255.1' },
    ]);
    assert.deepEqual(meshIPHolders(null as never, 'x' as never), []);
  });
});
