/**
 * The stream's flags and messages (cli/member-stream.ts) and `inspect --url`'s usage errors, through
 * the real CLI where a user would meet them. The served stream itself: mesh/stream.test.ts (server)
 * and e2e/stream.test.ts (a real agent).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { UsageError } from './format.ts';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { STREAM_TOKEN_ENV, changeOf, desiredOf, deviceReader, readStreamToken, readTokenFile, startStream } from './member-stream.ts';
import type { StreamArgs } from './member-stream.ts';
import { ratesSince } from './inspect-watch.ts';
import { WebSocket } from '../mesh/ws.ts';
import type { ServiceContext } from './member-services.ts';
import type { DeviceState } from '../native/index.ts';
import type { Topology } from '../mesh/topology/index.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, [STREAM_TOKEN_ENV]: '', ...env } });
  return { code: r.status, stderr: r.stderr };
}

const peer = (name: string, key: string, endpoint: string | null = null) =>
  ({ kind: 'Peer', name, publicKey: key, endpoint, allowedIPs: [`10.244.${name.length}.0/24`], nodeName: name, meshIP: null }) as Topology['peers'][number];

describe('the stream messages', () => {
  test('desired: peers with kind, name, key, endpoint when known and allowed IPs; refusals with reason, field and message', () => {
    const topology: Topology = {
      peers: [peer('node-b', 'kB', '198.18.0.2:51820'), peer('roamer', 'kR')],
      routes: [],
      refused: [{ kind: 'Peer', name: 'thief', reason: 'AllowedIPsOutsidePodCIDRs', field: 'spec.allowedIPs[0]', message: 'Peer thief: spec.allowedIPs[0] …' }],
    };
    assert.deepEqual(desiredOf(topology), {
      peers: [
        { kind: 'Peer', name: 'node-b', publicKey: 'kB', endpoint: '198.18.0.2:51820', allowedIPs: ['10.244.6.0/24'] },
        { kind: 'Peer', name: 'roamer', publicKey: 'kR', allowedIPs: ['10.244.6.0/24'] },
      ],
      refused: [{ kind: 'Peer', name: 'thief', reason: 'AllowedIPsOutsidePodCIDRs', field: 'spec.allowedIPs[0]', message: 'Peer thief: spec.allowedIPs[0] …' }],
    });
  });

  test('change: added and removed peers (a new key is a removal and an addition), and only newly refused objects', () => {
    const before = desiredOf({ peers: [peer('a', 'kA'), peer('b', 'kB')], routes: [], refused: [{ kind: 'Peer', name: 'x', reason: 'R', field: 'f', message: 'm' }] });
    const after = desiredOf({
      peers: [peer('a', 'kA2'), peer('c', 'kC')],
      routes: [],
      refused: [
        { kind: 'Peer', name: 'x', reason: 'R', field: 'f', message: 'm' },
        { kind: 'Gateway', name: 'y', reason: 'S', field: 'g', message: 'n' },
      ],
    });
    assert.deepEqual(changeOf(before, after), {
      added: [
        { kind: 'Peer', name: 'a', publicKey: 'kA2' },
        { kind: 'Peer', name: 'c', publicKey: 'kC' },
      ],
      removed: [
        { kind: 'Peer', name: 'a', publicKey: 'kA' },
        { kind: 'Peer', name: 'b', publicKey: 'kB' },
      ],
      refused: [{ kind: 'Gateway', name: 'y', reason: 'S', message: 'n' }],
    });
    assert.deepEqual(changeOf(after, after), { added: [], removed: [], refused: [] });
  });
});

describe('the stream token', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-stream-token-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('from a file (trimmed) or the environment, which is then cleared so children do not inherit it', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'abcdefghijklmnop-123\n', { mode: 0o600 });
    assert.equal(readStreamToken(file), 'abcdefghijklmnop-123');
    process.env[STREAM_TOKEN_ENV] = 'from-the-environment-42';
    assert.equal(readStreamToken(undefined), 'from-the-environment-42');
    assert.equal(process.env[STREAM_TOKEN_ENV], undefined);
    assert.equal(readStreamToken(undefined), undefined);
  });

  test('through a symlink, as a mounted Secret holds it (token -> ..data/token)', () => {
    mkdirSync(join(dir, '..data'));
    writeFileSync(join(dir, '..data', 'token'), 'from-a-secret-volume-0123\n', { mode: 0o400 });
    symlinkSync('..data/token', join(dir, 'mounted'));
    assert.equal(readStreamToken(join(dir, 'mounted')), 'from-a-secret-volume-0123');
    symlinkSync('..data', join(dir, 'to-a-folder'));
    assert.throws(() => readStreamToken(join(dir, 'to-a-folder')), /--stream-token-file .*to-a-folder: not a regular file/);
  });

  test('refused, naming where it came from: too short, spaces, a missing file', () => {
    const short = join(dir, 'short');
    writeFileSync(short, 'tiny');
    assert.throws(() => readStreamToken(short), (e: Error) => e instanceof UsageError && /--stream-token-file .*short: the stream token has 4 characters, at least 16/.test(e.message));
    process.env[STREAM_TOKEN_ENV] = 'has a space in the middle';
    assert.throws(() => readStreamToken(undefined), /AKS_MESH_STREAM_TOKEN: the stream token must be printable ASCII without spaces/);
    assert.throws(() => readStreamToken(join(dir, 'missing')), /--stream-token-file .*missing: no such file$/);
  });

  test('a file others may change is refused; one others may read is taken with a warning naming who and the chmod (audit12 #8)', () => {
    const file = (name: string, mode: number) => {
      const f = join(dir, name);
      writeFileSync(f, 'a-token-of-enough-length-01\n');
      chmodSync(f, mode);
      return f;
    };
    for (const mode of [0o666, 0o620, 0o602]) {
      const f = file(`writable-${mode.toString(8)}`, mode);
      assert.throws(() => readStreamToken(f), new RegExp(`--stream-token-file .*writable-${mode.toString(8)}: mode 0${mode.toString(8)}, so other users can change the stream token .*run "chmod 600 `));
    }
    const warnings: string[] = [];
    const warn = (m: string) => warnings.push(m);
    assert.equal(readStreamToken(file('world', 0o644), warn), 'a-token-of-enough-length-01');
    assert.equal(readStreamToken(file('group', 0o440), warn), 'a-token-of-enough-length-01', 'a Secret volume under an fsGroup');
    assert.equal(readStreamToken(file('own', 0o600), warn), 'a-token-of-enough-length-01');
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0], /--stream-token-file .*world: mode 0644, so its group and every user can read the stream token; run "chmod 600 .*world"/);
    assert.match(warnings[1], /--stream-token-file .*group: mode 0440, so its group can read the stream token/);
    // The same reader for inspect --token-file, under that flag's name.
    assert.throws(() => readTokenFile(join(dir, 'nope'), '--token-file'), (e: Error) => e instanceof UsageError && /^--token-file .*nope: no such file$/.test(e.message));
  });
});

describe('usage errors (exit 2, naming the flag)', () => {
  for (const [what, args, env, message] of [
    ['a stream open to the network without a token', ['agent', '--node-name', 'a', '--stream-address', '0.0.0.0:9587'], {}, /--stream-address 0\.0\.0\.0:9587: not a loopback address, so the stream would be open to the network; give a token \(--stream-token-file or AKS_MESH_STREAM_TOKEN\)/],
    ['the same from the environment', ['gateway', '--node-name', 'a', '--gateway-endpoint', '10.0.0.1:51821', '--pod-cidr', '10.244.0.0/16'], { AKS_MESH_STREAM_ADDRESS: '10.1.2.3:9588' }, /--stream-address 10\.1\.2\.3:9588: not a loopback address/],
    ['a stream address that is not host:port', ['agent', '--node-name', 'a', '--stream-address', 'anywhere'], {}, /--stream-address "anywhere": expected IP:port, \[IPv6\]:port or off/],
    ['inspect --url with --names', ['inspect', '--url', 'ws://127.0.0.1:9587', '--names'], {}, /--url and --names exclude each other/],
    ['inspect --url with --interface', ['inspect', '--url', 'ws://127.0.0.1:9587', '-i', 'wg0'], {}, /--url and --interface exclude each other/],
    ['inspect --token without --url', ['inspect', '-i', 'wg0', '--token', 'abcdefghijklmnopq'], {}, /--token and --token-file go with --url/],
    ['inspect --url with another scheme', ['inspect', '--url', 'http://127.0.0.1:9587'], {}, /--url http:\/\/127\.0\.0\.1:9587: expected a ws:\/\/ or wss:\/\/ URL/],
  ] as const) {
    test(what, () => {
      const r = cli([...args], env);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }
});

describe('the device message', () => {
  const device = (rx: bigint, tx: bigint): DeviceState => ({
    privateKey: 'cHJpdmF0ZQ==',
    publicKey: 'kA',
    listenPort: 51820,
    fwmark: 0,
    peers: [{ publicKey: 'kB', presharedKey: null, endpoint: '198.18.0.2:51820', allowedIPs: ['10.244.1.0/24'], persistentKeepalive: 25, lastHandshake: { sec: 1700000000n, nsec: 5e8 }, rxBytes: rx, txBytes: tx, protocolVersion: 1 }],
  });

  test('rates between reads however far apart (a large device is read seconds apart), none after the last client left', async () => {
    let time = 0;
    let counters = device(0n, 0n);
    const reader = deviceReader(async () => counters, { interfaceName: 'wg-t', names: () => new Map([['kB', 'Peer/node-b']]), now: () => time }, ratesSince);
    const first = await reader.read();
    assert.equal(first.peers[0].rxRate, null, 'no rate on the first read');
    assert.equal(first.peers[0].name, 'Peer/node-b');
    assert.equal(first.peers[0].latestHandshakeMs, 1700000000500);
    assert.equal(first.privateKey, '(hidden)');
    // 5 s later (a read of a thousand-peer device that took over a second is spaced this far).
    time = 5000;
    counters = device(50_000n, 10_000n);
    const second = await reader.read();
    assert.deepEqual([second.peers[0].rxRate, second.peers[0].txRate], [10_000, 2000]);
    // The last client left: the next read starts over.
    reader.reset();
    time = 6000;
    counters = device(60_000n, 12_000n);
    assert.equal((await reader.read()).peers[0].rxRate, null);
  });
});

describe('names on the device message', () => {
  test("a peer just set is named before its pass ends: names come from the member's computed topology, not the last finished pass", async () => {
    const member = {
      o: { interfaceName: 'wg-t' },
      publicKey: 'kA',
      topology: null as Topology | null,
      wireguard: {
        client: {
          get: async (): Promise<DeviceState> => ({
            privateKey: 'cHJpdmF0ZQ==',
            publicKey: 'kA',
            listenPort: 51820,
            fwmark: 0,
            peers: [{ publicKey: 'kB', presharedKey: null, endpoint: null, allowedIPs: [], persistentKeepalive: 0, lastHandshake: null, rxBytes: 0n, txBytes: 0n, protocolVersion: 1 }],
          }),
        },
      },
    };
    // The member computed its desired state and applied the set; the pass has not ended, so no onSync yet.
    member.topology = { peers: [peer('node-b', 'kB')], routes: [], refused: [] } as unknown as Topology;
    const noop = (): void => undefined;
    let address = '';
    const log = { error: noop, warn: noop, debug: noop, info: (_m: string, meta?: { address?: string }) => (address = meta?.address ?? address) };
    const ctx = { member, log, role: 'node', name: 'node-a', onSync: () => noop } as unknown as ServiceContext;
    const service = await startStream({ 'stream-address': '127.0.0.1:0' } as StreamArgs, ctx);
    assert.ok(service, 'started');
    const ws = new WebSocket(`ws://${address}/stream`);
    try {
      const device = await new Promise<{ peers: Array<{ publicKey: string; name?: string }> }>((resolve, reject) => {
        ws.on('message', (d) => {
          const m = JSON.parse(d.toString()) as { type: string; device?: { peers: Array<{ publicKey: string; name?: string }> } };
          if (m.type === 'device' && m.device) resolve(m.device);
        });
        ws.on('error', reject);
      });
      assert.equal(device.peers.find((p) => p.publicKey === 'kB')?.name, 'Peer/node-b');
    } finally {
      ws.terminate();
      await service.close();
    }
  });
});

describe('a stream that cannot listen', () => {
  let blocker: Server;
  let port = 0;
  const logged: Array<[string, string]> = [];
  const log = { error: (m: string) => logged.push(['error', m]), warn: (m: string) => logged.push(['warn', m]), info: () => undefined, debug: () => undefined };
  // The parts of the running member the stream reads (it fails before reading any).
  const ctx = {
    member: { o: { interfaceName: 'wg-t' }, publicKey: 'kA', wireguard: { client: { get: async () => ({ peers: [] }) } } },
    log,
    role: 'node',
    name: 'node-t',
    onSync: () => () => undefined,
  } as unknown as ServiceContext;
  after(() => blocker?.close());

  test('the default address taken: the member goes on without it and logs an error saying how to get it', async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    port = (blocker.address() as { port: number }).port;
    // What the chart does: the address from its environment, and required false unless agent.stream.required.
    const service = await startStream({ 'stream-address': `127.0.0.1:${port}`, 'stream-required': false } as StreamArgs, ctx);
    assert.equal(service, null);
    assert.equal(logged.length, 1);
    assert.equal(logged[0][0], 'error');
    assert.match(logged[0][1], /^live stream not started: inspect --url and the dashboard cannot read this member/);
  });

  test('a token file others can read: the member starts and logs a warning saying so (audit12 #8)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-stream-warn-'));
    try {
      const file = join(dir, 'token');
      writeFileSync(file, 'a-token-of-enough-length-02\n');
      chmodSync(file, 0o644);
      const before = logged.length;
      const service = await startStream({ 'stream-address': '127.0.0.1:0', 'stream-token-file': file } as StreamArgs, ctx);
      assert.ok(service, 'started');
      await service.close();
      assert.deepEqual(logged.slice(before).map(([level]) => level), ['warn']);
      assert.match(logged[before][1], /^live stream: --stream-token-file .*token: mode 0644, so its group and every user can read the stream token/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an address the operator gave, or --stream-required, stops the start naming the address', async () => {
    await assert.rejects(startStream({ 'stream-address': `127.0.0.1:${port}` } as StreamArgs, ctx), new RegExp(`--stream-address 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
    await assert.rejects(startStream({ 'stream-address': `127.0.0.1:${port}`, 'stream-required': true } as StreamArgs, ctx), /EADDRINUSE/);
  });
});
