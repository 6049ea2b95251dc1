/**
 * Mesh IP allocation (meship.ts), pinned exactly: the addresses nodes get are part of the mesh's
 * stable state (an upgrade that hashed differently would renumber every node), and the conflict
 * rule must be the one every agent applies. Written for the mutation run (stryker.config.mjs).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { allocateMeshIP, meshIPHolders } from './meship.ts';
import type { MeshIPHolder } from './meship.ts';

const MESH = '100.96.0.0/16';
const KEY = 'ln1Gl4iJD0uJ8qtXV5hE0X0EcmPIKwskW6bZKjHVgmg=';
const holder = (name: string, meshIP: string, created?: number, kind: 'Peer' | 'Gateway' = 'Peer'): MeshIPHolder => ({ kind, name, meshIP, ...(created === undefined ? {} : { created }) });

describe('allocateMeshIP: the first choice', () => {
  test('is FNV-1a of the name (Gateways: "Gateway/<name>") into the mesh CIDR: the same on every version and platform', () => {
    const table: Array<[string, string, string, string]> = [
      // name, Peer in 100.96.0.0/16, Gateway in 100.96.0.0/16, Peer in fd00:96::/64
      ['node-a', '100.96.191.26', '100.96.138.155', 'fd00:96::4c3:b594'],
      ['node-b', '100.96.194.173', '100.96.149.84', 'fd00:96::5c3:b727'],
      ['aks-nodepool1-12345678-vmss000000', '100.96.165.248', '100.96.62.145', 'fd00:96::467c:1900'],
      ['ü', '100.96.247.133', '100.96.173.148', 'fd00:96::119d:d44b'], // UTF-8 bytes, not UTF-16 units
    ];
    for (const [name, v4, gateway, v6] of table) {
      assert.equal(allocateMeshIP({ name }, MESH, []), v4, name);
      assert.equal(allocateMeshIP({ kind: 'Gateway', name }, MESH, []), gateway, `Gateway ${name}`);
      assert.equal(allocateMeshIP({ name }, 'fd00:96::/64', []), v6, `${name} (IPv6)`);
    }
  });

  test('never the network or broadcast address (IPv4), never the subnet-router anycast (IPv6)', () => {
    assert.equal(allocateMeshIP({ name: 'node-a' }, '100.96.0.0/30', []), '100.96.0.2');
    assert.equal(allocateMeshIP({ name: 'node-b' }, '100.96.0.0/30', []), '100.96.0.1');
    assert.equal(allocateMeshIP({ name: 'n' }, 'fd00::/127', []), 'fd00::1');
  });

  test('a mesh CIDR without a usable address, or not a CIDR, is an error naming it', () => {
    for (const [cidr, message] of [
      ['100.96.0.0/31', 'mesh CIDR 100.96.0.0/31 has no usable addresses'],
      ['100.96.0.0/32', 'mesh CIDR 100.96.0.0/32 has no usable addresses'],
      ['fd00::/128', 'mesh CIDR fd00::/128 has no usable addresses'],
      ['x', 'mesh CIDR: "x" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (the prefix length is missing)'],
    ]) {
      assert.throws(() => allocateMeshIP({ name: 'n' }, cidr, []), { message }, cidr);
    }
  });
});

describe('allocateMeshIP: conflicts', () => {
  const first = '100.96.191.26'; // node-a's first choice

  test('an address held by a winner is skipped (the next one is taken); one held by a loser is not', () => {
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, MESH, [holder('x', first, 5)]), '100.96.191.27', 'older holder');
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, MESH, [holder('x', first, 15)]), first, 'younger holder');
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, MESH, [holder('z', first, 10, 'Gateway')]), '100.96.191.27', 'a Gateway of the same age');
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, MESH, [holder('node-0', first, 10)]), '100.96.191.27', 'a smaller name of the same age');
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, MESH, [holder('node-z', first, 10)]), first, 'a larger name of the same age');
    assert.equal(allocateMeshIP({ name: 'node-a' }, MESH, [holder('x', first, 99999999999999)]), '100.96.191.27', 'an object not created yet loses to any dated one');
  });

  test('probing wraps around the end of the usable range; a full CIDR is an error naming the node', () => {
    assert.equal(allocateMeshIP({ name: 'n' }, '100.96.0.0/30', [holder('g', '100.96.0.1', 1, 'Gateway')]), '100.96.0.2');
    assert.equal(allocateMeshIP({ name: 'n' }, '100.96.0.0/30', [holder('g', '100.96.0.2', 1, 'Gateway')]), '100.96.0.1');
    assert.throws(() => allocateMeshIP({ name: 'n' }, '100.96.0.0/30', [holder('g', '100.96.0.1', 1, 'Gateway'), holder('h', '100.96.0.2', 1, 'Gateway')]), {
      message: 'mesh CIDR 100.96.0.0/30 is full: no free mesh IP for node n',
    });
  });

  test('an address the node holds is kept while it is usable and wins; otherwise a new one is chosen', () => {
    const mine = (meshIP: string): string => allocateMeshIP({ name: 'node-a' }, MESH, [holder('node-a', meshIP)]);
    assert.equal(mine('100.96.7.7'), '100.96.7.7');
    assert.equal(mine('100.96.0.1'), '100.96.0.1', 'the first usable address');
    assert.equal(mine('100.96.255.254'), '100.96.255.254', 'the last usable address');
    assert.equal(mine('100.97.7.7'), first, 'outside the mesh CIDR');
    assert.equal(mine('100.96.0.0'), first, 'the network address');
    assert.equal(mine('100.96.255.255'), first, 'the broadcast address');
    assert.equal(mine('fd00::1'), first, 'the other family');
    assert.equal(allocateMeshIP({ name: 'node-a' }, MESH, [holder('node-a', '100.96.7.7', undefined, 'Gateway')]), first, "a Gateway's address of the same name is not the node's");
    assert.equal(allocateMeshIP({ name: 'node-a' }, 'fd00::/120', [holder('node-a', 'fd00::ff')]), 'fd00::ff', 'IPv6: the last address is usable');
    assert.notEqual(allocateMeshIP({ name: 'node-a' }, 'fd00::/120', [holder('node-a', 'fd00::')]), 'fd00::', 'IPv6: not the anycast address');
    assert.equal(allocateMeshIP({ name: 'node-a', created: 10 }, MESH, [holder('node-a', '100.96.7.7', 10), holder('old', '100.96.7.7', 5)]), first, 'held by an older object too');
  });

  test('holders that are not holders hold nothing, and never throw', () => {
    assert.equal(allocateMeshIP({ name: 'node-a' }, MESH, null as unknown as MeshIPHolder[]), first);
    assert.equal(allocateMeshIP({ name: 'node-a' }, MESH, [null, 5, holder('x', '100.96.191.026', 1)] as unknown as MeshIPHolder[]), first);
  });
});

describe('meshIPHolders', () => {
  test('every object that passes the checked path and has a mesh IP, canonical, with its creation time when it has one', () => {
    const holders = meshIPHolders(
      [
        { metadata: { name: 'a', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { publicKey: KEY, allowedIPs: ['10.0.0.0/24'], meshIP: '100.96.0.5' } },
        { metadata: { name: 'b' }, spec: { publicKey: KEY, allowedIPs: ['10.0.0.0/24'] } },
        { metadata: { name: 'c' }, spec: { publicKey: 'x', meshIP: '100.96.0.6' } },
      ],
      [{ metadata: { name: 'g' }, spec: { publicKey: KEY, podCIDRs: ['10.0.0.0/24'], meshIP: 'FD00::0:1' } }],
    );
    assert.deepEqual(holders, [
      { kind: 'Peer', name: 'a', meshIP: '100.96.0.5', created: Date.parse('2026-01-01T00:00:00Z') },
      { kind: 'Gateway', name: 'g', meshIP: 'fd00::1' },
    ]);
    assert.deepEqual(meshIPHolders(null as unknown as unknown[], 5 as unknown as unknown[]), []);
  });
});
