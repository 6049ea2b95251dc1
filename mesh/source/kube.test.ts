/**
 * KubeSource against an API server that never answers: stop() aborts the lists in flight at once
 * and nothing starts again afterwards. Fake: a TCP server that accepts connections and never
 * answers (a hung API server), which a real kube-apiserver will not do on demand. (A connection
 * still in its TLS handshake is closed by undici's own connect timeout, not by the abort: the
 * process-level bound is the agent's exit, see e2e/stop.test.ts.) A listener that throws does not
 * keep the others from hearing about changes.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { TestCluster, kubeTestsUnavailable } from '../../sandbox/apiserver.ts';
import { createNode, createPeer, installCrds, updatePeerSpec, waitFor } from '../../sandbox/kube.ts';
import { KubeSource } from './kube.ts';

let server: Server;
const sockets = new Set<Socket>();
let port = 0;
let accepted = 0;

before(async () => {
  server = createServer((s) => {
    sockets.add(s);
    accepted++;
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

function kubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'hung', server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'not-a-real-token' }],
    contexts: [{ name: 'c', cluster: 'hung', user: 'u' }],
    currentContext: 'c',
  });
  return kc;
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), what);
}

test('stop() aborts the lists in flight against an API server that never answers; nothing restarts after it', async () => {
  const errors: string[] = [];
  const log = { error: () => undefined, warn: (m: string, meta?: Record<string, unknown>) => void errors.push(`${m} ${JSON.stringify(meta)}`), info: () => undefined, debug: () => undefined };
  // A short backoff: were the aborted lists taken for failures, restarts would come within 100 ms.
  const source = new KubeSource(kubeConfig(), { backoffMs: 100, maxBackoffMs: 100, log });
  await source.start();
  await until('the three lists connected', () => accepted >= 3);
  const before = accepted;
  await source.stop();
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(source.synced(), false);
  assert.equal(accepted, before, 'no list or watch started after stop()');
  assert.deepEqual(errors, [], 'an abort at stop is not reported as an API server failure');
});

test('a listener that throws is logged, and the next listener still hears the change', async () => {
  const errors: string[] = [];
  const log = { error: (m: string, meta?: Record<string, unknown>) => void errors.push(`${m} ${JSON.stringify(meta)}`), warn: () => undefined, info: () => undefined, debug: () => undefined };
  const source = new KubeSource(kubeConfig(), { log });
  let heard = 0;
  source.onChange(() => {
    throw new Error('listener bug');
  });
  source.onChange(() => heard++);
  (source as unknown as { emit(): void }).emit();
  assert.equal(heard, 1);
  assert.match(errors[0] ?? '', /a change listener failed.*listener bug/);
  await source.stop();
});

// ---------------------------------------------------------------- against a real kube-apiserver

const why = kubeTestsUnavailable();

test('against a real API server: paged lists, slim objects, and a snapshot that changes only with what the mesh reads', { skip: why ?? false, timeout: 120_000 }, async () => {
  const cluster = await TestCluster.start();
  const source = new KubeSource(cluster.kubeConfig(), { listPage: 2 });
  try {
    await installCrds(cluster);
    const kc = cluster.kubeConfig();
    const core = kc.makeApiClient(k8s.CoreV1Api);
    for (let i = 0; i < 5; i++) await createNode(kc, `node-${i}`, [`10.244.${i}.0/24`], `198.18.0.${i + 1}`);
    const key = (i: number): string => Buffer.alloc(32, i + 1).toString('base64');
    for (let i = 0; i < 3; i++) await createPeer(kc, `node-${i}`, { publicKey: key(i), allowedIPs: [`10.244.${i}.0/24`], nodeName: `node-${i}` });
    // A Node as a kubelet writes it: images and conditions the mesh never reads.
    const images = Array.from({ length: 50 }, (_, i) => ({ names: [`registry.example/image-${i}@sha256:${'0'.repeat(64)}`], sizeBytes: 1e6 }));
    const n0 = await core.readNode({ name: 'node-0' });
    await core.replaceNodeStatus({ name: 'node-0', body: { ...n0, status: { ...n0.status, images, conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ok', lastHeartbeatTime: new Date() }] } } });

    let changes = 0;
    source.onChange(() => changes++);
    await source.start();
    await until('synced', () => source.synced());
    await waitFor('every object listed (in pages of 2)', () => source.snapshot().nodes.length === 5 && source.snapshot().peers.length === 3);
    assert.ok(source.lists >= 3, 'one list per kind');
    const first = source.snapshot();
    assert.equal(source.snapshot(), first, 'nothing changed: the same Snapshot');
    assert.deepEqual(first.nodes.find((n) => n.name === 'node-0'), { name: 'node-0', podCIDRs: ['10.244.0.0/24'], internalIPs: ['198.18.0.1'], creationTimestamp: first.nodes.find((n) => n.name === 'node-0')?.creationTimestamp });
    const cached = (source as unknown as { watched: Array<{ informer: k8s.ObjectCache<k8s.V1Node> }> }).watched[2].informer.get('node-0');
    assert.equal(cached?.status?.images, undefined, 'the informer caches no images');
    assert.equal(cached?.status?.conditions, undefined, 'nor conditions');
    const peer0 = first.peers.find((p) => p.metadata.name === 'node-0');
    assert.equal((peer0?.metadata as { managedFields?: unknown }).managedFields, undefined, 'no managedFields kept');

    // A heartbeat: the Node changes, nothing the mesh reads does.
    const before = changes;
    const n0b = await core.readNode({ name: 'node-0' });
    await core.replaceNodeStatus({ name: 'node-0', body: { ...n0b, status: { ...n0b.status, conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ok', lastHeartbeatTime: new Date(Date.now() + 10_000) }] } } });
    // A change that matters, after it, so that when it is seen the heartbeat was seen too.
    await updatePeerSpec(kc, 'node-1', (spec) => ({ ...spec, endpoint: '198.18.0.2:51820' }));
    await waitFor('the Peer change seen', () => source.snapshot().peers.find((p) => p.metadata.name === 'node-1')?.spec.endpoint === '198.18.0.2:51820');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(changes, before + 1, 'one change: the Peer; the heartbeat woke nobody');
    const second = source.snapshot();
    assert.notEqual(second, first);
    assert.equal(second.nodes, first.nodes, 'the Nodes array is the same array: no NodeInfo changed');
    assert.equal(second.peers.find((p) => p.metadata.name === 'node-0'), peer0, 'an unchanged Peer keeps its identity');
    assert.equal(second.gateways, first.gateways);

    // A label is not a change to the mesh (the NodeInfo stays); a deleted Node is.
    await core.patchNode({ name: 'node-4', body: { metadata: { labels: { x: 'y' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await core.deleteNode({ name: 'node-3' });
    await waitFor('the deleted Node gone', () => source.snapshot().nodes.length === 4);
    const third = source.snapshot();
    assert.equal(third.nodes.find((n) => n.name === 'node-4'), second.nodes.find((n) => n.name === 'node-4'), 'a label change keeps the NodeInfo');
    assert.equal(third.peers, second.peers, 'Peers untouched: the same array');

    // A Node deleted and recreated under its name (a reimage) while this source could not watch: the
    // relist brings it back as an update with a new uid, and the snapshot holds the new one alone.
    await cluster.stopApiServer({ graceMs: 0 });
    const second2 = await cluster.startSecondApiServer();
    try {
      const core2 = second2.kubeConfig().makeApiClient(k8s.CoreV1Api);
      await core2.deleteNode({ name: 'node-2' });
      await createNode(second2.kubeConfig(), 'node-2', ['10.244.9.0/24'], '198.18.0.9');
    } finally {
      await second2.stop();
    }
    await cluster.startApiServer();
    await waitFor('the recreated Node seen after the relist', () => source.snapshot().nodes.some((n) => n.name === 'node-2' && n.podCIDRs[0] === '10.244.9.0/24'), 60_000);
    assert.deepEqual(
      source.snapshot().nodes.filter((n) => n.name === 'node-2').map((n) => n.podCIDRs),
      [['10.244.9.0/24']],
      'one node-2, the new one: the old object does not linger beside it',
    );
  } finally {
    await source.stop();
    await cluster.stop();
  }
});
