/**
 * The UAPI client against the real wireguard-go, plus the protocol edge cases wireguard-go will not
 * produce on demand (a hung server, a socket nobody listens on), which use a fake socket and say so.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../e2e/sandbox.ts';
import { availableWireguardGoBinaries } from '../../e2e/tunnel.ts';
import { isNativeError } from '../errors.ts';
import { generatePrivateKey, keyToHex, publicKeyOf } from '../keys/index.ts';
import { SpawnedWireguardGo, wireguardGoVersion } from '../wireguard-go/index.ts';
import { UapiClient, UapiSetError } from './client.ts';

const skip = networkTestsUnavailable();

function dumpPeers(interfaceName: string): string[][] {
  return execFileSync('wg', ['show', interfaceName, 'dump'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => l.split('\t'));
}

for (const binary of skip ? [] : availableWireguardGoBinaries()) {
  describe(`UAPI client on wireguard-go ${wireguardGoVersion(binary)}`, () => {
    const box = new Sandbox();
    let wg: SpawnedWireguardGo;
    let blocker: SpawnedWireguardGo;
    let ns: string;

    before(async () => {
      ns = await box.addNamespace('uapi');
      wg = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 'u'), netns: ns, binary });
      blocker = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 'x'), netns: ns, binary });
      await wg.start();
      await blocker.start();
      await blocker.client.set({ privateKey: generatePrivateKey(), listenPort: 51999 });
    });
    after(async () => {
      await Promise.all([wg?.stop(), blocker?.stop()]);
      await box.cleanup();
    });

    test('a set refused on its fifth line names that line and reports the state wireguard-go was left in', async () => {
      const peer = publicKeyOf(generatePrivateKey());
      const lines = [
        `private_key=${keyToHex(generatePrivateKey())}`,
        'listen_port=51821',
        `public_key=${keyToHex(peer)}`,
        'allowed_ip=10.9.0.0/24',
        'allowed_ip=10.9.0.300/32',
        'allowed_ip=10.9.1.0/24',
      ];
      const err = await wg.client.setLines(lines).then(
        () => assert.fail('wireguard-go accepted 10.9.0.300/32'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UapiSetError, String(err));
      assert.equal(err.errnoName, 'EINVAL');
      assert.equal(err.refused?.index, 4);
      assert.match(err.message, /line 5 of 6 "allowed_ip=10\.9\.0\.300\/32" was refused/);
      assert.match(err.message, /lines 1-4 before it were applied/);
      // Re-read, not guessed: the error's device matches what wg (an independent reader) sees.
      assert.ok(err.deviceAfter);
      assert.equal(err.deviceAfter.listenPort, 51821);
      assert.deepEqual(
        err.deviceAfter.peers.map((p) => [p.publicKey, p.allowedIPs.join(',')]),
        dumpPeers(wg.interfaceName).map((f) => [f[0], f[3]]),
      );
      assert.deepEqual(err.deviceAfter.peers[0].allowedIPs, ['10.9.0.0/24']);
    });

    test('a listen port already in use is EADDRINUSE on the listen_port line', async () => {
      const lines = [
        `private_key=${keyToHex(generatePrivateKey())}`,
        'fwmark=4660',
        'replace_peers=true',
        'fwmark=4661',
        'listen_port=51999',
      ];
      const err = await wg.client.setLines(lines).then(
        () => assert.fail('port 51999 is held by another wireguard-go in this namespace'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UapiSetError, String(err));
      assert.equal(err.errnoName, 'EADDRINUSE');
      assert.equal(err.refused?.line, 'listen_port=51999');
      assert.equal(err.refused?.index, 4);
      assert.equal(err.deviceAfter?.fwmark, 4661);
      assert.match(err.message, /wireguard-go said: failed to set listen_port: .*address already in use/);
    });

    test('one peer changes with one small set; other peers keep their config', async () => {
      const keys = Array.from({ length: 3 }, () => publicKeyOf(generatePrivateKey()));
      const privateKey = generatePrivateKey();
      await wg.client.replaceDevice({
        privateKey,
        listenPort: 51822,
        peers: keys.map((k, i) => ({ publicKey: k, endpoint: `198.18.1.${i + 1}:51820`, allowedIPs: [`10.20.${i}.0/24`] })),
      });
      const sent: string[][] = [];
      const counting = new UapiClient(wg.client.socketPath, { onRequest: (op, l) => op === 'set' && sent.push([...l]) });
      await counting.putPeer({ publicKey: keys[1], endpoint: '198.18.1.9:51820', allowedIPs: ['10.21.0.0/24'] }, { updateOnly: true });
      assert.equal(sent.length, 1);
      assert.ok(sent[0].every((l) => !l.startsWith('public_key=') || l === `public_key=${keyToHex(keys[1])}`));
      await counting.putPeer({ publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.22.0.0/24'] }, { updateOnly: true });
      await counting.removePeer(keys[2]);
      const byKey = new Map(dumpPeers(wg.interfaceName).map((f) => [f[0], f]));
      assert.deepEqual([...byKey.keys()].sort(), [keys[0], keys[1]].sort(), 'update_only must not create; remove must remove');
      assert.equal(byKey.get(keys[1])?.[2], '198.18.1.9:51820');
      assert.equal(byKey.get(keys[1])?.[3], '10.21.0.0/24');
      assert.equal(byKey.get(keys[0])?.[3], '10.20.0.0/24');
      const device = await wg.client.get();
      assert.equal(device.publicKey, publicKeyOf(privateKey));
    });
  });
}

describe('UAPI client errors a person can act on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-uapi-'));
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a missing socket names the path and the likely cause', async () => {
    const path = join(dir, 'wg-none.sock');
    await assert.rejects(new UapiClient(path).get(), (err: Error) => {
      assert.ok(isNativeError(err, 'socket-missing'));
      assert.match(err.message, new RegExp(`no wireguard-go socket at ${path}: wireguard-go is not running`));
      return true;
    });
  });

  test('a stale socket (left by a SIGKILLed wireguard-go) is named as such', async () => {
    // Fake: a socket file nobody listens on, which is exactly what SIGKILL leaves behind.
    const path = join(dir, 'wg-stale.sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(path, r));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    assert.ok(fd >= 0);
    // Closing a Node server unlinks its socket file; re-create the file as a dead socket instead.
    await new Promise<void>((r) => server.close(() => r()));
    execFileSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path)})`]);
    await assert.rejects(new UapiClient(path).get(), (err: Error) => {
      assert.ok(isNativeError(err, 'socket-stale'), err.message);
      assert.match(err.message, /stale socket/);
      return true;
    });
  });

  test('a server that never answers times out with the socket and operation named', async () => {
    // Fake: wireguard-go never hangs on demand; a silent listener stands in for a wedged one.
    const path = join(dir, 'wg-hung.sock');
    const server = createServer(() => {});
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await assert.rejects(new UapiClient(path, { timeoutMs: 200 }).get(), (err: Error) => {
      assert.ok(isNativeError(err, 'timeout'));
      assert.match(err.message, new RegExp(`UAPI get on ${path} got no complete answer within 200 ms`));
      return true;
    });
  });

  test('a connection closed without an errno line is a protocol error, not a hang', async () => {
    // Fake: wireguard-go closes like this only on an unknown operation, which our client never sends.
    const path = join(dir, 'wg-close.sock');
    const server = createServer((s) => s.end('private_key=00\n'));
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await assert.rejects(new UapiClient(path).get(), (err: Error) => isNativeError(err, 'protocol'));
  });
});
