import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import { DirectorySource } from './directory.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aks-mesh-dir-source-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const KEY = publicKeyOf(generatePrivateKey());
const nodes = `apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDRs: [10.244.0.0/24]}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
spec: {podCIDR: 10.244.1.0/24}
`;
const peer = (endpoint: string): string => `apiVersion: aksmesh.io/v1alpha1
kind: Peer
metadata: {name: node-b}
spec: {publicKey: "${KEY}", endpoint: "${endpoint}", allowedIPs: [10.244.1.0/24], meshIP: 100.96.0.2, nodeName: node-b}
`;

test('reads Nodes and Peers from YAML files, follows changes, keeps a broken file’s last good objects', async () => {
  await writeFile(join(dir, 'nodes.yaml'), nodes);
  await writeFile(join(dir, 'node-b.yaml'), peer('198.18.0.2:51820'));
  await writeFile(join(dir, 'notes.txt'), 'not a manifest');
  const warnings: string[] = [];
  const log = { error: () => 0, info: () => 0, debug: () => 0, warn: (m: string, meta?: Record<string, unknown>) => warnings.push(`${m} ${JSON.stringify(meta)}`) };
  const source = new DirectorySource(dir, { pollMs: 100, log });
  let changes = 0;
  source.onChange(() => changes++);
  assert.equal(source.synced(), false);
  await source.start();
  try {
    assert.equal(source.synced(), true);
    const s = source.snapshot();
    assert.deepEqual(s.nodes.map((n) => [n.name, n.podCIDRs, n.internalIPs]), [
      ['node-a', ['10.244.0.0/24'], ['198.18.0.1']],
      ['node-b', ['10.244.1.0/24'], []],
    ]);
    assert.equal(s.peers[0].spec.endpoint, '198.18.0.2:51820');

    const before = changes;
    await writeFile(join(dir, 'node-b.yaml'), peer('198.18.0.22:51820'));
    await source.reload();
    assert.equal(source.snapshot().peers[0].spec.endpoint, '198.18.0.22:51820');
    assert.ok(changes > before);

    await writeFile(join(dir, 'node-b.yaml'), 'kind: Peer\nmetadata: {name: [unclosed\n');
    await source.reload();
    assert.equal(source.snapshot().peers[0].spec.endpoint, '198.18.0.22:51820', 'the last good objects stay');
    assert.ok(warnings.some((w) => w.includes('node-b.yaml')), 'the broken file is named');

    await writeFile(join(dir, 'node-b.yaml'), 'kind: Pod\nmetadata: {name: x}\n');
    await source.reload();
    assert.ok(warnings.some((w) => /kind \\"Pod\\" is not Peer, Gateway or Node/.test(w)));

    await rm(join(dir, 'node-b.yaml'));
    await source.reload();
    assert.deepEqual(source.snapshot().peers, [], 'a removed file removes its objects');
  } finally {
    await source.stop();
  }
});
