/**
 * The directory source on real files: real FIFOs (mkfifo), a real /dev/zero, real symlinks, a
 * real writer that appends to a file while the source reads it. Each test has a timeout, so a
 * source that hangs on a file fails the test instead of the run.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import { shown } from '../crd/validate.ts';
import { computeTopology } from '../topology/index.ts';
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_SETTLE_MS, DirectorySource, RACY_MS, parseObjects, readRegularFile } from './directory.ts';
import type { DirectorySourceOptions } from './directory.ts';

let root: string;
let count = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'aks-mesh-dir-source-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh peers directory for one test. */
async function freshDir(): Promise<string> {
  const dir = join(root, `d${++count}`);
  await mkdir(dir);
  return dir;
}

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
const peer = (endpoint: string, name = 'node-b', cidr = '10.244.1.0/24', mesh = '100.96.0.2', key = KEY): string => `apiVersion: aksmesh.io/v1alpha1
kind: Peer
metadata: {name: ${name}}
spec: {publicKey: "${key}", endpoint: "${endpoint}", allowedIPs: [${cidr}], meshIP: ${mesh}, nodeName: ${name}}
`;

/** A source with a log that keeps every warning as "message {meta}". */
function sourceOf(dir: string, options: DirectorySourceOptions = {}): { source: DirectorySource; warnings: string[] } {
  const warnings: string[] = [];
  const log = { error: () => 0, info: () => 0, debug: () => 0, warn: (m: string, meta?: Record<string, unknown>) => warnings.push(`${m} ${JSON.stringify(meta)}`) };
  return { source: new DirectorySource(dir, { pollMs: 60_000, settleMs: 50, log, ...options }), warnings };
}

describe('DirectorySource', { timeout: 30_000 }, () => {
  test('reads Nodes and Peers from YAML files, follows changes, keeps a broken file’s last good objects', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'nodes.yaml'), nodes);
    await writeFile(join(dir, 'node-b.yaml'), peer('198.18.0.2:51820'));
    await writeFile(join(dir, 'notes.txt'), 'not a manifest');
    const { source, warnings } = sourceOf(dir, { pollMs: 100 });
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
      assert.ok(warnings.some((w) => w.startsWith('ignoring a file that does not parse') && w.includes('node-b.yaml')), 'the broken file is named');
      // The poller keeps finding the same broken bytes: said once, and reload() still resolves.
      await source.reload();
      assert.equal(warnings.filter((w) => w.startsWith('ignoring a file that does not parse')).length, 1);

      await writeFile(join(dir, 'node-b.yaml'), `kind: Pod\nmetadata: {name: x}\n---\n${peer('198.18.0.23:51820')}`);
      await source.reload();
      assert.ok(warnings.some((w) => w.startsWith('document 1: left out: kind "Pod" is not Peer, Gateway or Node')), warnings.join('\n'));
      assert.equal(source.snapshot().peers[0].spec.endpoint, '198.18.0.23:51820', 'the Peer beside the Pod is read');

      await rm(join(dir, 'node-b.yaml'));
      await source.reload();
      assert.deepEqual(source.snapshot().peers, [], 'a removed file removes its objects');
    } finally {
      await source.stop();
    }
  });

  test('a FIFO neither hangs start nor stop; it is refused by name and the other files are read', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'nodes.yaml'), nodes);
    execFileSync('mkfifo', [join(dir, 'fifo.yaml')]);
    const { source, warnings } = sourceOf(dir);
    await source.start();
    try {
      assert.deepEqual(source.snapshot().nodes.map((n) => n.name), ['node-a', 'node-b']);
      assert.deepEqual(warnings.filter((w) => w.includes('fifo.yaml')).map((w) => w.split(' {')[0]), ['ignoring a peer file: not a regular file (a FIFO)']);
      await source.reload();
      assert.equal(warnings.filter((w) => w.includes('fifo.yaml')).length, 1, 'said once, not at every read');
    } finally {
      await source.stop();
    }
  });

  test('symlinks: to /dev/zero, to a directory, or out of the directory are refused by name; a ConfigMap volume\'s links are followed', async () => {
    const dir = await freshDir();
    // A ConfigMap volume: peers.yaml -> ..data/peers.yaml, ..data -> ..2026_01_01 (a hidden directory).
    await mkdir(join(dir, '..2026_01_01'));
    await writeFile(join(dir, '..2026_01_01', 'peers.yaml'), nodes);
    await symlink('..2026_01_01', join(dir, '..data'));
    await symlink('..data/peers.yaml', join(dir, 'peers.yaml'));
    await symlink('/dev/zero', join(dir, 'zero.yaml'));
    await mkdir(join(dir, 'sub'));
    await symlink('sub', join(dir, 'sub.yaml'));
    await mkdir(join(dir, 'dir.yaml'));
    await writeFile(join(root, `outside-${count}.yaml`), peer('198.18.0.2:51820'));
    await symlink(join(root, `outside-${count}.yaml`), join(dir, 'outside.yaml'));
    const { source, warnings } = sourceOf(dir);
    await source.start();
    try {
      assert.deepEqual(source.snapshot().nodes.map((n) => n.name), ['node-a', 'node-b'], "the ConfigMap's file is read");
      assert.deepEqual(source.snapshot().peers, [], 'the file outside the directory is not');
      const said = (file: string): string[] => warnings.filter((w) => w.includes(`/${file}"`)).map((w) => w.split(' {')[0]);
      assert.deepEqual(said('zero.yaml'), ['ignoring a peer file: a symlink to "/dev/zero", outside the directory']);
      assert.deepEqual(said('sub.yaml'), ['ignoring a peer file: not a regular file (a directory)']);
      assert.deepEqual(said('dir.yaml'), ['ignoring a peer file: not a regular file (a directory)']);
      assert.deepEqual(said('outside.yaml'), [`ignoring a peer file: a symlink to ${shown(join(root, `outside-${count}.yaml`))}, outside the directory`]);
    } finally {
      await source.stop();
    }
    // The reader itself, on a FIFO and a character device inside the directory (as if bind-mounted there).
    const realDir = (await import('node:fs/promises')).realpath(dir);
    execFileSync('mkfifo', [join(dir, 'p')]);
    assert.deepEqual(await readRegularFile(join(dir, 'p'), await realDir, 100), { problem: 'not a regular file (a FIFO)' });
    assert.deepEqual(await readRegularFile('/dev/zero', '/dev', 100), { problem: 'not a regular file (a character device)' });
    assert.deepEqual(await readRegularFile(join(dir, 'gone.yaml'), await realDir, 100), { gone: true });
  });

  test(`a file over the size cap (default ${DEFAULT_MAX_FILE_BYTES} bytes) is refused by name; the others are read`, async () => {
    assert.equal(DEFAULT_MAX_FILE_BYTES, 1024 * 1024);
    const dir = await freshDir();
    await writeFile(join(dir, 'nodes.yaml'), nodes);
    // Valid YAML (a comment), one byte over the default cap.
    await writeFile(join(dir, 'big.yaml'), `#${'x'.repeat(DEFAULT_MAX_FILE_BYTES)}`);
    const { source, warnings } = sourceOf(dir, { maxFileBytes: undefined });
    await source.start();
    try {
      assert.deepEqual(source.snapshot().nodes.map((n) => n.name), ['node-a', 'node-b']);
      assert.deepEqual(warnings.filter((w) => w.includes('big.yaml')).map((w) => w.split(' {')[0]), [`ignoring a peer file: ${DEFAULT_MAX_FILE_BYTES + 1} bytes, more than the limit of ${DEFAULT_MAX_FILE_BYTES}`]);
    } finally {
      await source.stop();
    }
    // A smaller cap, exactly at the limit and one byte over.
    const realDir = await (await import('node:fs/promises')).realpath(dir);
    await writeFile(join(dir, 'ten.yaml'), '#123456789');
    assert.deepEqual(await readRegularFile(join(dir, 'ten.yaml'), realDir, 10), { text: '#123456789' });
    assert.deepEqual(await readRegularFile(join(dir, 'ten.yaml'), realDir, 9), { problem: '10 bytes, more than the limit of 9' });
    await writeFile(join(dir, 'latin1.yaml'), Buffer.from([0x23, 0xe9, 0x0a]));
    assert.deepEqual(await readRegularFile(join(dir, 'latin1.yaml'), realDir, 10), { problem: 'not UTF-8 text' });
  });

  test('a file being written is not applied half-way: only once two reads agree', async () => {
    assert.equal(DEFAULT_SETTLE_MS, 250);
    const dir = await freshDir();
    await writeFile(join(dir, 'nodes.yaml'), nodes);
    const { source } = sourceOf(dir, { settleMs: 400 });
    await source.start();
    const seen: string[][] = [];
    source.onChange(() => seen.push(source.snapshot().peers.map((p) => `${p.metadata.name} ${p.spec.endpoint}`)));
    try {
      // A writer in two steps: the first half is valid YAML on its own (one of the two Peers).
      const half = peer('198.18.0.2:51820');
      const file = join(dir, 'peers.yaml');
      await writeFile(file, `${half}---\n`);
      const reading = source.reload();
      await new Promise((r) => setTimeout(r, 100));
      await appendFile(file, peer('198.18.0.1:51820', 'node-a', '10.244.0.0/24', '100.96.0.1'));
      await reading;
      // Once the bytes stay the same, the whole file is applied (the source looks again on its own).
      for (let i = 0; i < 100 && source.snapshot().peers.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(source.snapshot().peers.map((p) => p.metadata.name), ['node-b', 'node-a']);
      assert.deepEqual(seen, [['node-b 198.18.0.2:51820', 'node-a 198.18.0.1:51820']], 'never the half');
    } finally {
      await source.stop();
    }
  });

  test('stop() while a changed file is settling returns at once', async () => {
    const dir = await freshDir();
    const { source } = sourceOf(dir, { settleMs: 60_000 });
    await source.start();
    await writeFile(join(dir, 'nodes.yaml'), nodes);
    void source.reload();
    await new Promise((r) => setTimeout(r, 50));
    await source.stop();
    assert.deepEqual(source.snapshot().nodes, [], 'not applied: it never settled');
  });

  test('one bad Node (podCIDRs a string, numbers, null) neither throws nor freezes updates; its bad fields are named', async () => {
    const dir = await freshDir();
    await writeFile(
      join(dir, 'nodes.yaml'),
      `${nodes}---
kind: Node
metadata: {name: node-x}
spec: {podCIDRs: "10.244.5.0/24"}
---
kind: Node
metadata: {name: node-y}
spec: {podCIDRs: [5, null, 10.244.6.0/24, 10.244.07.0/24]}
status: {addresses: "198.18.0.9"}
---
kind: Node
metadata: {name: node-z}
spec: {podCIDRs: null, podCIDR: 10.244.8.0/24}
status: {addresses: [{type: InternalIP, address: [1]}, {type: InternalIP, address: 198.18.0.10}]}
`,
    );
    await writeFile(join(dir, 'node-b.yaml'), peer('198.18.0.2:51820'));
    await writeFile(join(dir, 'node-x.yaml'), peer('198.18.0.5:51820', 'node-x', '10.244.5.0/24', '100.96.0.5', publicKeyOf(generatePrivateKey())));
    const { source, warnings } = sourceOf(dir);
    await source.start();
    try {
      assert.deepEqual(source.snapshot().nodes.map((n) => [n.name, n.podCIDRs, n.internalIPs]), [
        ['node-a', ['10.244.0.0/24'], ['198.18.0.1']],
        ['node-b', ['10.244.1.0/24'], []],
        ['node-x', [], []],
        ['node-y', ['10.244.6.0/24'], []],
        ['node-z', ['10.244.8.0/24'], ['198.18.0.10']],
      ]);
      const said = warnings.map((w) => w.split(' {')[0]);
      for (const line of [
        'document 3: Node node-x: left out spec.podCIDRs: expected a list of CIDRs, got a string',
        'document 4: Node node-y: left out spec.podCIDRs[0]: expected a string, got a number',
        'document 4: Node node-y: left out spec.podCIDRs[1]: expected a string, got null',
        'document 4: Node node-y: left out spec.podCIDRs[3]: "10.244.07.0" is not an IPv4 or IPv6 address',
        'document 4: Node node-y: left out status.addresses: expected a list, got a string',
        'document 5: Node node-z: left out status.addresses[0].address: expected a string, got a list',
      ]) {
        assert.ok(said.includes(line), `${line}\nnot in:\n${said.join('\n')}`);
      }
      // The desired state over this snapshot: node-x's Peer is refused, node-b's accepted.
      const s = source.snapshot();
      const t = computeTopology({ self: { role: 'node', name: 'node-a' }, ...s, settings: { meshCIDR: '100.96.0.0/16' } });
      assert.deepEqual(t.refused.map((r) => [r.name, r.reason, r.field]), [['node-x', 'AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[0]']]);
      assert.deepEqual(t.peers.map((p) => p.name), ['node-b']);
      // Not frozen: a later change to another file comes through.
      await writeFile(join(dir, 'node-b.yaml'), peer('198.18.0.22:51820'));
      await source.reload();
      assert.equal(source.snapshot().peers.find((p) => p.metadata.name === 'node-b')?.spec.endpoint, '198.18.0.22:51820');
    } finally {
      await source.stop();
    }
  });

  test('per object: one bad object in a file never drops the good ones; a name given in two files keeps the first', async () => {
    const dir = await freshDir();
    await writeFile(
      join(dir, 'a.yaml'),
      `${peer('198.18.0.2:51820')}---
- a list
---
kind: Peer
metadata: {name: Bad_Name}
spec: {}
---
kind: Peer
spec: {}
---
kind: Gateway
metadata: {name: gw}
spec: {publicKey: "${KEY}", meshIP: 100.96.0.08, podCIDRs: [10.244.0.0/16]}
---
kind: Peer
metadata: {name: null-spec}
spec: null
---
kind: Peer
metadata: {name: future}
spec: {publicKey: "${publicKeyOf(generatePrivateKey())}", allowedIPs: [192.168.9.0/24], someNewField: 1}
`,
    );
    await writeFile(join(dir, 'b.yaml'), peer('198.18.0.99:51820'));
    const { source, warnings } = sourceOf(dir);
    await source.start();
    try {
      const s = source.snapshot();
      assert.deepEqual(s.peers.map((p) => [p.metadata.name, p.spec?.endpoint ?? null]), [
        ['node-b', '198.18.0.2:51820'],
        ['null-spec', null],
        ['future', null],
      ]);
      assert.deepEqual(s.gateways.map((g) => g.metadata.name), ['gw'], 'a bad Gateway goes on, to be refused by field');
      const said = warnings.map((w) => w.split(' {')[0]);
      assert.deepEqual(said.filter((w) => w.startsWith('document') || w.startsWith('leaving out')), [
        'document 2: left out: expected an object with kind and metadata.name, got ["a list"]',
        'document 3: left out: Peer metadata.name: "Bad_Name" is not an object name',
        'document 4: left out: Peer metadata.name: undefined is not an object name',
        'document 5: Gateway gw will be refused: spec.meshIP: "100.96.0.08" is not an IPv4 or IPv6 address',
        'document 6: Peer null-spec will be refused: spec: expected an object, got null',
        'document 7: Peer future: ignoring spec.someNewField: no such field',
        'leaving out Peer node-b: a.yaml has one of that name already',
      ]);
      const t = computeTopology({ self: { role: 'node', name: 'node-a' }, ...s, nodes: [{ name: 'node-b', podCIDRs: ['10.244.1.0/24'], internalIPs: [] }], settings: { meshCIDR: '100.96.0.0/16' } });
      assert.deepEqual(t.refused.map((r) => [r.kind, r.name, r.reason, r.field]), [
        ['Gateway', 'gw', 'InvalidSpec', 'spec.meshIP'],
        ['Peer', 'null-spec', 'InvalidSpec', 'spec'],
      ]);
    } finally {
      await source.stop();
    }
  });

  test('one file changed out of 1,000 reads that file only; unchanged objects and lists keep their identity', async () => {
    const dir = await freshDir();
    const N = 1000;
    const fileOf = (i: number): string => `node-${i}.yaml`;
    const content = (i: number, endpoint = `198.18.${i >> 8}.${i & 255}:51820`): string =>
      `kind: Node\nmetadata: {name: node-${i}}\nspec: {podCIDRs: [10.${10 + (i >> 8)}.${i & 255}.0/24]}\n---\n` +
      peer(endpoint, `node-${i}`, `10.${10 + (i >> 8)}.${i & 255}.0/24`, `100.96.${i >> 8}.${(i & 255) + 1}`);
    const texts = Array.from({ length: N }, (_, i) => content(i));
    await Promise.all(texts.map((t, i) => writeFile(join(dir, fileOf(i)), t)));
    // Older than RACY_MS (a real directory's files are): fresh files are read again until they are
    // that old, by the later of mtime and ctime (setting mtime back, as cp -p does, does not count).
    await new Promise((r) => setTimeout(r, RACY_MS + 100));
    const reads: string[] = [];
    const { source } = sourceOf(dir, { onRead: (f) => reads.push(f) });
    let changes = 0;
    source.onChange(() => changes++);
    await source.start();
    try {
      assert.equal(source.snapshot().peers.length, N);
      assert.equal(reads.length, 2 * N, 'at start every file is read (and settled) once');
      const before = source.snapshot();

      // Nothing changed: a full look reads nothing, says nothing, and the snapshot is the same object.
      reads.length = 0;
      changes = 0;
      await source.reload();
      assert.deepEqual(reads, []);
      assert.equal(changes, 0);
      assert.equal(source.snapshot(), before);

      // One Peer's endpoint changes: that file alone is read (here, and when the watch event names it).
      await writeFile(join(dir, fileOf(500)), content(500, '198.18.99.1:51820'));
      await source.reload();
      assert.deepEqual([...new Set(reads)], [fileOf(500)], 'only the changed file is read');
      assert.equal(changes, 1);
      const after = source.snapshot();
      const at = (name: string): number => after.peers.findIndex((p) => p.metadata.name === name);
      assert.notEqual(after, before);
      assert.equal(after.peers[at('node-500')].spec.endpoint, '198.18.99.1:51820');
      assert.notEqual(after.peers[at('node-500')], before.peers[at('node-500')], 'the changed Peer is a new object');
      assert.ok(after.peers.every((p, i) => i === at('node-500') || p === before.peers[i]), 'every other Peer is the same object');
      assert.equal(after.nodes, before.nodes, 'no Node changed: the same list');
      assert.equal(after.gateways, before.gateways);

      // Through the watcher alone: a writer renames a temporary file into place; only that file is read.
      reads.length = 0;
      const changed = new Promise<void>((resolve) => source.onChange(resolve));
      await writeFile(join(dir, '.node-7.tmp'), content(7, '198.18.99.7:51820'));
      await rename(join(dir, '.node-7.tmp'), join(dir, fileOf(7)));
      await changed;
      assert.equal(source.snapshot().peers[at('node-7')].spec.endpoint, '198.18.99.7:51820');
      assert.deepEqual([...new Set(reads)], [fileOf(7)], 'the watch event names the file: no other is read');
      assert.equal(source.snapshot().peers[at('node-8')], before.peers[at('node-8')]);
    } finally {
      await source.stop();
    }
  });

  test('a same-size rewrite right after a read is not missed (file times are coarser than writes)', async () => {
    const dir = await freshDir();
    const file = join(dir, 'node-b.yaml');
    const { source } = sourceOf(dir);
    await writeFile(file, peer('198.18.0.2:51820'));
    await source.start();
    try {
      for (const last of ['3', '4', '5']) {
        // Same length, same inode, written within the same timestamp tick as the last read, as often as not.
        await writeFile(file, peer(`198.18.0.${last}:51820`));
        await source.reload();
        assert.equal(source.snapshot().peers[0].spec.endpoint, `198.18.0.${last}:51820`);
      }
    } finally {
      await source.stop();
    }
  });

  test('a same-size rewrite that keeps an old mtime (cp -p, rsync -t) right after a read is not missed', async () => {
    const dir = await freshDir();
    const file = join(dir, 'node-b.yaml');
    const old = new Date(Date.now() - 10 * RACY_MS);
    const { source } = sourceOf(dir);
    await writeFile(file, peer('198.18.0.2:51820'));
    await utimes(file, old, old);
    await source.start();
    try {
      for (const last of ['3', '4', '5']) {
        // Same length, same inode, the same old mtime every time: only ctime says it is fresh.
        await writeFile(file, peer(`198.18.0.${last}:51820`));
        await utimes(file, old, old);
        await source.reload();
        assert.equal(source.snapshot().peers[0].spec.endpoint, `198.18.0.${last}:51820`);
      }
    } finally {
      await source.stop();
    }
  });

  test('a changed duplicate stays left out; a changed winner takes its place, in order', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'a.yaml'), `${peer('198.18.0.2:51820')}---\n${peer('198.18.0.3:51820', 'node-c', '10.244.2.0/24', '100.96.0.3')}`);
    await writeFile(join(dir, 'b.yaml'), peer('198.18.0.99:51820'));
    const { source } = sourceOf(dir);
    await source.start();
    try {
      const shown = (): string[] => source.snapshot().peers.map((p) => `${p.metadata.name} ${p.spec.endpoint}`);
      assert.deepEqual(shown(), ['node-b 198.18.0.2:51820', 'node-c 198.18.0.3:51820']);
      await writeFile(join(dir, 'b.yaml'), peer('198.18.0.98:51820'));
      await source.reload();
      assert.deepEqual(shown(), ['node-b 198.18.0.2:51820', 'node-c 198.18.0.3:51820'], 'the duplicate in b.yaml is still left out');
      const before = source.snapshot();
      await writeFile(join(dir, 'a.yaml'), `${peer('198.18.0.22:51820')}---\n${peer('198.18.0.3:51820', 'node-c', '10.244.2.0/24', '100.96.0.3')}`);
      await source.reload();
      assert.deepEqual(shown(), ['node-b 198.18.0.22:51820', 'node-c 198.18.0.3:51820']);
      assert.equal(source.snapshot().peers[1], before.peers[1], 'node-c is the same object');
      await rm(join(dir, 'a.yaml'));
      await source.reload();
      assert.deepEqual(shown(), ['node-b 198.18.0.98:51820'], 'with a.yaml gone, b.yaml\'s node-b is the one');
    } finally {
      await source.stop();
    }
  });

  test('parseObjects: not YAML at all throws naming the file and document; aliases cannot blow up', () => {
    assert.throws(() => parseObjects('a: [1\n', 'x.yaml'), /^Error: x\.yaml: document 1: /);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`)].join('\n');
    assert.throws(() => parseObjects(bomb, 'bomb.yaml'), /^Error: bomb\.yaml: document 1: /);
  });
});
