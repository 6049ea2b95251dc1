/**
 * The exporter-compatible per-peer series follow real traffic through two real wireguard-go
 * devices: a TCP transfer of N bytes moves wireguard_sent_bytes_total / _received_bytes_total by
 * at least N at the two ends, and a dead device leaves them out without breaking the scrape.
 *
 * /readyz compares the live device (read at probe time) with what the last pass wanted: a peer
 * removed by hand with `wg set … remove` makes it 503, naming the peer, and putting it back makes it
 * 200 again; a pass in progress is no verdict. aksmesh_uapi_request_duration_seconds counts the
 * real exchanges by op.
 *
 * /healthz and aksmesh_wireguard_restarts_total follow the real wireguard-go supervision: a quick
 * restart after kill -9 keeps the member healthy and is counted; a wireguard-go that cannot be
 * brought back (its binary gone) makes /healthz fail, naming why, until it runs again.
 *
 * /healthz also fails when no pass comes at all: none within the start grace after serving began
 * (a member stuck at its start, its source never synced), naming that; a pass makes it healthy. An
 * attach-mode member still waiting for its sidecar's wireguard-go is not failed for it (a restart
 * of the agent would not bring the sidecar back).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { AttachedWireguardGo, SpawnedWireguardGo, findWireguardGo, generatePrivateKey } from '../native/index.ts';
import { MemberMetrics } from './metrics.ts';
import { startTunnel, stopTunnel, waitForPing } from '../e2e/tunnel.ts';
import type { TunnelNode } from '../e2e/tunnel.ts';
import { tcpTransfer } from '../sandbox/tcp.ts';
import type { SyncResult } from './reconcile/index.ts';
import type { Topology } from './topology/index.ts';

const skip = networkTestsUnavailable() ?? false;

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the process series', () => {
  test("under prom-client's standard names (process_*, nodejs_*) that process and Node.js dashboards query, with the member's labels; never aksmesh_process_process_*", async () => {
    const metrics = new MemberMetrics({ role: 'gateway', name: 'gw-p', interface: 'wg-p' });
    const text = await metrics.registry.metrics();
    const types = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      assert.ok(types.includes(name), `${name} is exported (got ${types.filter((t) => /process|nodejs/.test(t)).join(', ')})`);
    }
    assert.deepEqual(types.filter((t) => /^aksmesh_.*(process|nodejs)_/.test(t)), [], 'no process series under the aksmesh_ prefix');
    assert.match(text, /^process_cpu_seconds_total\{role="gateway",name="gw-p",interface="wg-p"\} \d/m);
  });
});

describe('aksmesh_peers{state="handshake_within_3m"}', () => {
  test('follows the last full read, and reads 0 while the member cannot read its own device (as its status says DeviceUnreadable)', async () => {
    const metrics = new MemberMetrics({ role: 'node', name: 'node-u', interface: 'wg-u' });
    const key = Buffer.alloc(32, 7).toString('base64');
    const topology = { peers: [{ kind: 'Peer', name: 'node-v', publicKey: key }], refused: [] } as unknown as Topology;
    const now = BigInt(Math.floor(Date.now() / 1000));
    const live = { peers: [{ publicKey: key, lastHandshake: { sec: now - 10n, nsec: 0 }, rxBytes: 1n, txBytes: 1n }] };
    const pass = { at: new Date(), full: true, applied: [], sets: 0, routesAdded: [], routesRemoved: [], live, desired: { routes: [] } } as unknown as SyncResult;
    const recent = async (): Promise<string | undefined> => /^aksmesh_peers\{[^}]*state="handshake_within_3m"[^}]*\} (\d+)/m.exec(await metrics.registry.metrics())?.[1];
    metrics.record(pass, topology);
    assert.equal(await recent(), '1');
    // The same last read, but the pass could not read the device: its handshakes are not news.
    metrics.record({ ...pass, at: new Date(), error: new Error('UAPI get: no complete answer within 5000 ms') }, topology, true);
    assert.equal(await recent(), '0');
    metrics.record({ ...pass, at: new Date() }, topology);
    assert.equal(await recent(), '1');
  });
});

describe('health and restarts of wireguard-go in /healthz and /metrics', { skip }, () => {
  const box = new Sandbox();
  let dir: string;
  let binary: string;
  let wg: SpawnedWireguardGo;
  let server: Server;
  let base: string;

  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const r = await fetch(`${base}${path}`);
    return { status: r.status, body: await r.text() };
  };
  const restartsMetric = async (): Promise<number> => {
    const m = /^aksmesh_wireguard_restarts_total\{[^}]*\} (\d+)$/m.exec((await get('/metrics')).body);
    assert.ok(m, 'aksmesh_wireguard_restarts_total is exported');
    return Number(m[1]);
  };

  before(async () => {
    const ns = await box.addNamespace('met');
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-metrics-'));
    // A wrapper that runs the real wireguard-go in our namespace, so the test can take the binary away.
    binary = join(dir, 'wireguard-go');
    writeFileSync(binary, `#!/bin/sh\nexec ip netns exec ${ns} ${findWireguardGo()} "$@"\n`, { mode: 0o755 });
    const privateKey = generatePrivateKey();
    const interfaceName = box.ifName('wg', 'm');
    wg = new SpawnedWireguardGo({ interfaceName, binary, backoffInitialMs: 100, backoffMaxMs: 400, onReady: async ({ client }) => client.replaceDevice({ privateKey, peers: [] }) });
    box.trackPid(() => wg.pid);
    await wg.start();
    const metrics = new MemberMetrics({ role: 'node', name: 'node-m', interface: interfaceName });
    // Loopback of this test process only; no packet leaves it.
    // No pass is recorded here (this is about wireguard-go): a start grace the tests never reach.
    server = await metrics.serve('127.0.0.1:0', { synced: () => true, maxSilenceMs: 60_000, startGraceMs: 3_600_000, wireguard: () => wg.status() });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    await wg?.stop();
    await box.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('running: healthy, no restarts', async () => {
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    assert.equal(await restartsMetric(), 0);
  });

  test('kill -9 with a working binary: a restart, counted, and still healthy', async () => {
    const ready = once(wg, 'ready');
    process.kill(wg.pid as number, 'SIGKILL');
    await ready;
    assert.equal((await get('/healthz')).status, 200);
    assert.equal(await restartsMetric(), 1);
  });

  test('kill -9 with the binary gone: /healthz fails and says why, restarts keep being counted; back to 200 once it runs', async () => {
    renameSync(binary, `${binary}.away`);
    process.kill(wg.pid as number, 'SIGKILL');
    let last = { status: 0, body: '' };
    await waitUntil('/healthz to fail', async () => (last = await get('/healthz')).status === 503);
    assert.match(last.body, /^wireguard-go is not running \(restarting for \d+ s, \d+ failed restarts\): could not start .*wireguard-go.*ENOENT/);
    const during = await restartsMetric();
    assert.ok(during >= 2, `restarts counted while failing: ${during}`);
    const ready = once(wg, 'ready');
    renameSync(`${binary}.away`, binary);
    await ready;
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    assert.ok((await restartsMetric()) > during);
  });
});

describe('/healthz when no pass comes after the start', () => {
  const servers: Server[] = [];
  let dir: string;
  let attached: AttachedWireguardGo | null = null;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-metrics-start-'));
  });
  after(async () => {
    for (const s of servers) s.close();
    await attached?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const serve = async (metrics: MemberMetrics, options: Parameters<MemberMetrics['serve']>[1]): Promise<(path: string) => Promise<{ status: number; body: string }>> => {
    // Loopback of this test process only.
    const server = await metrics.serve('127.0.0.1:0', options);
    servers.push(server);
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return async (path) => {
      const r = await fetch(`${base}${path}`);
      return { status: r.status, body: await r.text() };
    };
  };
  // Only what record() reads: the test has no source or reconciler.
  const pass = { at: new Date(), full: true, applied: [], sets: 0, routesAdded: [], routesRemoved: [], live: null, desired: { routes: [] } } as unknown as SyncResult;
  const topology = { peers: [], refused: [] } as unknown as Topology;

  test('healthy at first; failing once the grace passed without a pass, naming the source that has not synced; healthy after a pass', async () => {
    const metrics = new MemberMetrics({ role: 'node', name: 'node-s', interface: 'wgs' });
    const get = await serve(metrics, { synced: () => false, maxSilenceMs: 60_000, startGraceMs: 1000 });
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    let last = { status: 0, body: '' };
    await waitUntil('/healthz to fail', async () => (last = await get('/healthz')).status === 503);
    assert.match(last.body, /^no reconcile pass in \d+ s since start: the source has not synced \(Peers and Gateways not read yet\)\n$/);
    metrics.record({ ...pass, at: new Date() }, topology);
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
  });

  test("attach mode: the wait for the sidecar's wireguard-go does not count against the grace", async () => {
    // A real attach-mode supervisor whose sidecar never comes: it waits, as an agent whose sidecar is not up.
    attached = new AttachedWireguardGo({ interfaceName: 'wgs0', socketDir: dir });
    void attached.start();
    const wg = attached;
    const metrics = new MemberMetrics({ role: 'node', name: 'node-t', interface: 'wgs0' });
    const get = await serve(metrics, { synced: () => false, maxSilenceMs: 60_000, startGraceMs: 200, wireguard: () => wg.status() });
    assert.equal(wg.status().state, 'starting');
    // Well past the grace, still waiting: healthy.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(wg.status().state, 'starting');
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
  });
});

/** Samples of one series in an exposition: their labels and value. */
function samples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

describe('wireguard_* per-peer series read from the live device at scrape time', { skip }, () => {
  const box = new Sandbox();
  let a: TunnelNode;
  let b: TunnelNode;
  const servers: Server[] = [];
  const base = new Map<string, string>();
  const startedAt = Math.floor(Date.now() / 1000);

  const scrape = async (node: TunnelNode): Promise<{ status: number; body: string }> => {
    const r = await fetch(`${base.get(node.name)}/metrics`);
    return { status: r.status, body: await r.text() };
  };
  const one = (body: string, name: string, other: TunnelNode): { labels: Record<string, string>; value: number } | undefined =>
    samples(body, name).find((s) => s.labels.public_key === other.publicKey);

  before(async () => {
    ({ a, b } = await startTunnel(box));
    for (const [self, other] of [
      [a, b],
      [b, a],
    ]) {
      const metrics = new MemberMetrics({ role: 'node', name: `node-${self.name}`, interface: self.interfaceName });
      // Only what record() reads for the names and counts: the test has no source or reconciler.
      const topology = { peers: [{ kind: 'Peer', name: `node-${other.name}`, publicKey: other.publicKey }], routes: [], refused: [] } as unknown as Topology;
      metrics.record({ at: new Date(), full: true, live: null, desired: { routes: [] } } as unknown as SyncResult, topology);
      // Loopback of this test process only.
      const server = await metrics.serve('127.0.0.1:0', { synced: () => true, maxSilenceMs: 60_000, device: () => self.wg.client.get() });
      servers.push(server);
      base.set(self.name, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }
  });
  after(async () => {
    for (const s of servers) s.close();
    if (a && b) await stopTunnel({ a, b });
    await box.cleanup();
  });

  test('a transfer of N bytes moves sent/received by at least N at the two ends; the handshake is a recent Unix time', async () => {
    assert.ok(await waitForPing(box, a.ns, b.meshIp), 'no ping reply through the tunnel');
    const first = await scrape(a);
    assert.equal(first.status, 200);
    for (const name of ['wireguard_sent_bytes_total', 'wireguard_received_bytes_total']) assert.match(first.body, new RegExp(`^# TYPE ${name} counter$`, 'm'));
    assert.match(first.body, /^# TYPE wireguard_latest_handshake_seconds gauge$/m);
    const sentBefore = one(first.body, 'wireguard_sent_bytes_total', b)?.value ?? NaN;
    const receivedBefore = one((await scrape(b)).body, 'wireguard_received_bytes_total', a)?.value ?? NaN;
    assert.ok(Number.isFinite(sentBefore) && Number.isFinite(receivedBefore), 'a per-peer sample on both ends');

    const bytes = 4 * 1024 * 1024;
    const transfer = await tcpTransfer(box, a, { ns: b.ns, ip: b.meshIp }, bytes);
    assert.equal(transfer.received, bytes);

    // A scrape within a second of the last one answers from the same device read: poll until a fresh read.
    let sent = sentBefore;
    let received = receivedBefore;
    await waitUntil('the counters to follow the transfer', async () => {
      sent = one((await scrape(a)).body, 'wireguard_sent_bytes_total', b)?.value ?? NaN;
      received = one((await scrape(b)).body, 'wireguard_received_bytes_total', a)?.value ?? NaN;
      return sent - sentBefore >= bytes && received - receivedBefore >= bytes;
    });
    assert.ok(sent - sentBefore >= bytes, `a sent ${sent - sentBefore} bytes to b by its metrics`);
    assert.ok(received - receivedBefore >= bytes, `b received ${received - receivedBefore} bytes from a by its metrics`);

    const body = (await scrape(a)).body;
    const handshake = one(body, 'wireguard_latest_handshake_seconds', b);
    assert.ok(handshake, 'wireguard_latest_handshake_seconds for b');
    const now = Math.floor(Date.now() / 1000);
    assert.ok(handshake.value >= startedAt - 1 && handshake.value <= now + 1, `handshake at ${handshake.value}, test ran ${startedAt}..${now}`);
    assert.deepEqual(handshake.labels, { interface: a.interfaceName, public_key: b.publicKey, allowed_ips: `${b.meshIp}/32`, peer: 'Peer/node-b', role: 'node', name: 'node-a' });
    // The device's private key is in every UAPI get; it must never reach the exposition.
    assert.ok(!body.includes(a.privateKey), 'private key in /metrics');
  });

  test('a device that cannot be read: the per-peer series are left out, an error is counted, the scrape still answers', async () => {
    await b.wg.stop();
    let last = { status: 0, body: '' };
    await waitUntil('a failed read to be counted', async () => {
      last = await scrape(b);
      return (samples(last.body, 'aksmesh_device_read_errors_total')[0]?.value ?? 0) >= 1;
    });
    assert.equal(last.status, 200);
    assert.equal(samples(last.body, 'wireguard_sent_bytes_total').length, 0);
    assert.ok(samples(last.body, 'aksmesh_reconcile_total').length > 0, 'the other series are still there');
  });
});

describe('/readyz against the live device, and UAPI latency', { skip }, () => {
  const box = new Sandbox();
  let a: TunnelNode;
  let b: TunnelNode;
  let server: Server;
  let base: string;
  let busy = false;
  let metrics: MemberMetrics;

  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const r = await fetch(`${base}${path}`);
    return { status: r.status, body: await r.text() };
  };

  before(async () => {
    ({ a, b } = await startTunnel(box));
    metrics = new MemberMetrics({ role: 'node', name: 'node-a', interface: a.interfaceName });
    a.wg.client.observe((op, seconds, answered) => metrics.onResponse(op, seconds, answered));
    // The desired device is what a holds now (its peer b, as startTunnel configured it), named as the topology names it.
    const live = await a.wg.client.get();
    const peers = live.peers.map((p) => ({ kind: 'Peer', name: 'node-b', publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: p.allowedIPs, persistentKeepalive: p.persistentKeepalive }));
    const topology = { peers, routes: [], refused: [] } as unknown as Topology;
    const desired = { device: { privateKey: a.privateKey, listenPort: live.listenPort, fwmark: live.fwmark, peers }, routes: [] };
    metrics.record({ at: new Date(), full: true, applied: [], sets: 0, routesAdded: [], routesRemoved: [], live, desired } as SyncResult, topology);
    server = await metrics.serve('127.0.0.1:0', { synced: () => true, maxSilenceMs: 60_000, device: () => a.wg.client.get(), busy: () => busy });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    if (a && b) await stopTunnel({ a, b });
    await box.cleanup();
  });

  test('a peer removed by hand makes /readyz 503 naming it; put back, 200 again', async () => {
    assert.equal((await get('/readyz')).status, 200);
    const peer = (await a.wg.client.get()).peers[0];
    await box.exec(a.ns, 'wg', ['set', a.interfaceName, 'peer', b.publicKey, 'remove']);
    let last = { status: 0, body: '' };
    // Probes within a second share one read: poll until a read after the removal.
    await waitUntil('/readyz to see the missing peer', async () => (last = await get('/readyz')).status === 503);
    assert.equal(last.body, 'device differs from the desired state: 1 peer missing (Peer/node-b)\n');
    // While a pass runs the device may be half-way: no verdict.
    busy = true;
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await get('/readyz')).status, 200, 'a pass in progress is not drift');
    busy = false;
    await a.wg.client.set({ peers: [{ publicKey: peer.publicKey, endpoint: peer.endpoint ?? undefined, allowedIPs: peer.allowedIPs, persistentKeepalive: peer.persistentKeepalive }] });
    await waitUntil('/readyz to recover', async () => (last = await get('/readyz')).status === 200);
    assert.equal(last.body, 'ok\n');
  });

  test('an allowed IP changed by hand is drift too, named with the field', async () => {
    await box.exec(a.ns, 'wg', ['set', a.interfaceName, 'peer', b.publicKey, 'allowed-ips', '10.99.0.0/24']);
    let last = { status: 0, body: '' };
    await waitUntil('/readyz to see the changed peer', async () => (last = await get('/readyz')).status === 503);
    assert.equal(last.body, 'device differs from the desired state: 1 peer configured differently (Peer/node-b: allowedIPs)\n');
    await box.exec(a.ns, 'wg', ['set', a.interfaceName, 'peer', b.publicKey, 'allowed-ips', `${b.meshIp}/32`]);
    await waitUntil('/readyz to recover', async () => (await get('/readyz')).status === 200);
  });

  test('aksmesh_uapi_request_duration_seconds counts the real gets by op and result', async () => {
    const body = (await get('/metrics')).body;
    assert.match(body, /^# TYPE aksmesh_uapi_request_duration_seconds histogram$/m);
    const count = samples(body, 'aksmesh_uapi_request_duration_seconds_count').find((s) => s.labels.op === 'get' && s.labels.result === 'ok');
    assert.ok(count && count.value >= 2, `gets observed: ${count?.value}`);
  });
});
