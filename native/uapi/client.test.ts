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
import { inspect } from 'node:util';
import { KeyIndex } from '../../scripts/scan-secrets.ts';
import { Sandbox, networkTestsUnavailable } from '../../sandbox/sandbox.ts';
import { availableWireguardGoBinaries } from '../../e2e/tunnel.ts';
import { isNativeError } from '../errors.ts';
import { REDACTED, generatePresharedKey, generatePrivateKey, keyToHex, publicKeyOf } from '../keys/index.ts';
import { SpawnedWireguardGo, wireguardGoVersion } from '../wireguard-go/index.ts';
import { DEFAULT_MAX_REPLY_BYTES, UapiClient, UapiSetError } from './client.ts';
import { blankPeerState, renderGet } from './codec.ts';

const skip = networkTestsUnavailable();

/** Every way an error reaches a person or a log: message, stack, JSON, util.inspect (all depths). */
function everyRendering(err: Error): string {
  return [err.message, String(err.stack), JSON.stringify(err), inspect(err, { depth: null }), inspect(err, { depth: null, showHidden: true })].join('\n');
}

/** Fails if any piece of these keys (base64 or hex, raw or clamped) is in `text`. */
function assertNoKeys(text: string, keys: Record<string, string>): void {
  const index = new KeyIndex(Object.entries(keys).map(([source, key]) => ({ key, source })));
  assert.deepEqual(index.find(text).map((h) => `${h.source} (${h.form})`), [], text);
}

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

    test('observe() is told each exchange, its op and whether wireguard-go answered (the UAPI latency metric)', async () => {
      const seen: Array<[string, number, boolean]> = [];
      const client = new UapiClient(wg.client.socketPath);
      const stop = client.observe((op, seconds, answered) => seen.push([op, seconds, answered]));
      await client.get();
      await client.removePeer(publicKeyOf(generatePrivateKey()));
      const gone = new UapiClient(`${wg.client.socketPath}.missing`, { timeoutMs: 500 });
      gone.observe((op, seconds, answered) => seen.push([op, seconds, answered]));
      await gone.get().catch(() => undefined);
      stop();
      await client.get();
      assert.deepEqual(seen.map(([op, , answered]) => [op, answered]), [['get', true], ['set', true], ['get', false]]);
      assert.ok(seen.every(([, s]) => s >= 0 && Number.isFinite(s)));
    });

    test('a refused set leaves no private or preshared key in its error: message, JSON, util.inspect', async () => {
      const privateKey = generatePrivateKey();
      const presharedKey = generatePresharedKey();
      const peer = publicKeyOf(generatePrivateKey());
      const lines = [
        `private_key=${keyToHex(privateKey)}`,
        'listen_port=51823',
        `public_key=${keyToHex(peer)}`,
        `preshared_key=${keyToHex(presharedKey)}`,
        'allowed_ip=10.9.0.300/32',
      ];
      const err = await wg.client.setLines(lines).then(
        () => assert.fail('wireguard-go accepted 10.9.0.300/32'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UapiSetError, String(err));
      // The first lines were applied: the device now holds both keys, and the error re-read it.
      assert.equal(err.deviceAfter?.publicKey, publicKeyOf(privateKey));
      assert.equal(err.deviceAfter?.privateKey, REDACTED);
      assert.equal(err.deviceAfter?.peers.find((p) => p.publicKey === peer)?.presharedKey, REDACTED);
      assert.deepEqual(err.lines, ['private_key=(redacted)', 'listen_port=51823', `public_key=${keyToHex(peer)}`, 'preshared_key=(redacted)', 'allowed_ip=10.9.0.300/32']);
      assert.match(err.message, /line 5 of 5 "allowed_ip=10\.9\.0\.300\/32" was refused/);
      const json = JSON.parse(JSON.stringify(err)) as { deviceAfter: { peers: Array<{ publicKey: string; rxBytes: string }> } };
      assert.equal(json.deviceAfter.peers.find((p) => p.publicKey === peer)?.rxBytes, '0', 'JSON of the error works (64-bit counters as strings)');
      assertNoKeys(everyRendering(err), { privateKey, presharedKey });
      // The peer's public key is no secret and stays, so the error still says which peer.
      assert.ok(JSON.stringify(err).includes(keyToHex(peer)));
    });

    test('a refused private_key line is named without its value, though it is most of a key', async () => {
      const privateKey = generatePrivateKey();
      const err = await wg.client.setLines([`private_key=${keyToHex(privateKey).slice(0, 63)}`]).then(
        () => assert.fail('wireguard-go accepted 63 hex digits'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UapiSetError, String(err));
      assert.equal(err.errnoName, 'EINVAL');
      assert.match(err.message, /line 1 of 1 "private_key=\(redacted\) \(63 characters\)" was refused: private_key must be 64 hex digits/);
      assertNoKeys(everyRendering(err), { privateKey });
    });

    // On the binary we ship only (the first listed): the answer's format is the same on both, and this one costs seconds.
    const bigTest = binary === availableWireguardGoBinaries()[0] ? test : (() => undefined) as unknown as typeof test;
    bigTest("5,000 peers' answer fits the default cap; a cap one byte short of it fails, naming the cap", async (t) => {
      // Random 32 bytes are valid public keys for wireguard-go, and far cheaper than 5,000 scalar multiplications.
      const peers = Array.from({ length: 5000 }, (_, i) => ({
        publicKey: generatePresharedKey(),
        endpoint: `198.18.${i >> 8}.${i & 255}:51820`,
        allowedIPs: [`10.${1 + (i >> 8)}.${i & 255}.0/24`],
        persistentKeepalive: 25,
      }));
      // A generous timeout: 5,000 peers on a loaded machine can take longer than the default 5 s.
      const client = (options: { maxReplyBytes?: number } = {}): UapiClient => new UapiClient(wg.client.socketPath, { timeoutMs: 60_000, ...options });
      await client().replaceDevice({ privateKey: generatePrivateKey(), listenPort: 51824, peers });
      const raw = await client().getRaw();
      t.diagnostic(`get of 5,000 peers: ${raw.length} bytes; default cap ${DEFAULT_MAX_REPLY_BYTES} bytes`);
      assert.ok(raw.length > 1_500_000 && raw.length * 8 < DEFAULT_MAX_REPLY_BYTES, `answer of ${raw.length} bytes`);
      assert.equal((await client().get()).peers.length, 5000);
      const exact = client({ maxReplyBytes: raw.length });
      assert.equal((await exact.get()).peers.length, 5000, 'an answer of exactly the cap is accepted');
      await assert.rejects(client({ maxReplyBytes: raw.length - 1 }).get(), (err: Error) => {
        assert.ok(isNativeError(err, 'reply-too-large'), String(err));
        assert.match(err.message, new RegExp(`UAPI get on .*: the answer passed the cap of ${raw.length - 1} bytes \\(maxReplyBytes\\)`));
        return true;
      });
      // The device is unharmed by a client that gave up: the next request is answered in full.
      assert.equal((await client().get()).peers.length, 5000);
      await client().set({ replacePeers: true });
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

  test('a socket that floods without ending its answer is cut off at the cap, with an error naming it', async () => {
    // Fake: wireguard-go always ends its answer with errno=N; it cannot be made to flood. This is
    // the socket of something else (or a compromised sidecar) that sends without end.
    const path = join(dir, 'wg-flood.sock');
    let written = 0;
    const closed = new Promise<void>((resolve) => {
      const server = createServer((s) => {
        const chunk = Buffer.alloc(64 * 1024, 'private_key=0123456789abcdef\n');
        const pump = (): void => {
          while (!s.destroyed && s.write(chunk)) written += chunk.length;
          if (!s.destroyed) written += chunk.length;
        };
        s.on('drain', pump);
        s.on('error', () => undefined);
        s.on('close', () => resolve());
        pump();
      });
      servers.push(server);
      server.listen(path);
    });
    await new Promise((r) => setTimeout(r, 50));
    const cap = 4 * 1024 * 1024;
    await assert.rejects(new UapiClient(path, { maxReplyBytes: cap, timeoutMs: 60_000 }).get(), (err: Error) => {
      assert.ok(isNativeError(err, 'reply-too-large'), String(err));
      assert.equal(err.message, `UAPI get on ${path}: the answer passed the cap of ${cap} bytes (maxReplyBytes) without ending; stopped reading (is something other than wireguard-go on this socket, or is it flooding?)`);
      return true;
    });
    // The client hung up: the flood stops instead of filling the agent's memory.
    await closed;
    assert.ok(written < 4 * cap, `the server could write ${written} bytes`);
  });

  test('the default cap is the one the error names', async () => {
    // Fake, as above: an endless answer, read with the default cap.
    const path = join(dir, 'wg-flood2.sock');
    const server = createServer((s) => {
      const chunk = Buffer.alloc(256 * 1024, 'x');
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
      };
      s.on('drain', pump);
      s.on('error', () => undefined);
      pump();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await assert.rejects(new UapiClient(path, { timeoutMs: 60_000 }).get(), new RegExp(`the answer passed the cap of ${DEFAULT_MAX_REPLY_BYTES} bytes`));
  });

  test('an answer that arrives a few bytes at a time is read whole, and one that stops short is not', async () => {
    // Fake: wireguard-go writes its answer in large pieces; tiny ones test the completion check
    // across chunk boundaries (the errno line split between chunks).
    const device = {
      privateKey: null,
      publicKey: null,
      listenPort: 51820,
      fwmark: 0,
      peers: Array.from({ length: 3 }, (_, i) => blankPeerState(publicKeyOf(generatePrivateKey()), { allowedIPs: [`10.7.${i}.0/24`] })),
    };
    const answer = renderGet(device);
    const serve = (name: string, text: string): string => {
      const path = join(dir, name);
      const server = createServer((s) => {
        let at = 0;
        const next = (): void => {
          if (s.destroyed) return;
          if (at >= text.length) return void s.end();
          s.write(text.slice(at, at + 5));
          at += 5;
          setTimeout(next, 0);
        };
        s.on('error', () => undefined);
        next();
      });
      servers.push(server);
      server.listen(path);
      return path;
    };
    const whole = serve('wg-slow.sock', answer);
    const short = serve('wg-short.sock', answer.slice(0, -1));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual((await new UapiClient(whole, { timeoutMs: 30_000 }).get()).peers.map((p) => p.allowedIPs), [['10.7.0.0/24'], ['10.7.1.0/24'], ['10.7.2.0/24']]);
    await assert.rejects(new UapiClient(short, { timeoutMs: 30_000 }).get(), (err: Error) => isNativeError(err, 'protocol') && /without a complete answer \(got \d+ bytes\)/.test(err.message));
  });

  /** A fake socket that answers each connection with `answerFor(n)` (n counts connections), written in the pieces it returns, a few ms apart. */
  const servePieces = async (name: string, answerFor: (n: number) => Buffer[]): Promise<string> => {
    const path = join(dir, name);
    let n = 0;
    const server = createServer((s) => {
      const pieces = answerFor(n++);
      s.on('error', () => undefined);
      const next = (): void => {
        const piece = pieces.shift();
        if (piece === undefined || s.destroyed) return;
        s.write(piece);
        // Apart in time, so that the client reads them apart (the kernel would join them otherwise).
        setTimeout(next, 2);
      };
      next();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    return path;
  };

  test('an answer split in two at every byte, a multi-byte character included, reads as the whole answer', async () => {
    // Fake: wireguard-go writes its answer in one piece and its errno line in another; where the
    // kernel splits them is up to it. A hostile endpoint carries a 2-byte UTF-8 character, split too.
    const device = {
      privateKey: null,
      publicKey: null,
      listenPort: 51820,
      fwmark: 0,
      peers: [blankPeerState(publicKeyOf(generatePrivateKey()), { endpoint: 'h\u00e9:1', allowedIPs: ['10.7.0.0/24'], txBytes: 12345678901234567890n })],
    };
    const answer = Buffer.from(renderGet(device), 'utf8');
    const path = await servePieces('wg-split.sock', (at) => [answer.subarray(0, at), answer.subarray(at)].filter((b) => b.length > 0));
    const client = new UapiClient(path, { timeoutMs: 30_000 });
    for (let at = 0; at < answer.length; at++) {
      assert.deepEqual(await client.get(), device, `split after byte ${at}`);
    }
    // A two-digit errno split inside its line: "errno=-2" then "2\n\n" is not errno 2, and "errno=-22\n" is not complete.
    const refused = Buffer.from('listen_port=1\nerrno=-22\n\n', 'latin1');
    const errPath = await servePieces('wg-split-errno.sock', (at) => [refused.subarray(0, at), refused.subarray(at)].filter((b) => b.length > 0));
    for (let at = 0; at < refused.length; at++) {
      await assert.rejects(new UapiClient(errPath, { timeoutMs: 30_000 }).get(), /failed with EINVAL$/, `split after byte ${at}`);
    }
  });

  test('answers across the read buffer\'s sizes, growing and shrinking, read whole; one byte over the cap does not', async () => {
    // Fake, to choose exact sizes: the client reads into one buffer sized from its last answer and
    // doubled when full, up to the cap. Sizes around each doubling step, in one client.
    const cap = 300_000;
    const answerOf = (bytes: number): Buffer => {
      // An unknown key pads the answer to exactly `bytes` (parseGet skips it).
      const head = 'listen_port=7\nfuture_key=';
      const tail = '\nerrno=0\n\n';
      return Buffer.from(head + 'x'.repeat(bytes - head.length - tail.length) + tail, 'latin1');
    };
    const sizes = [100, 65_535, 65_536, 65_537, 131_073, 40, 262_145, 300_000, 73_729, 300_000];
    const path = await servePieces('wg-sizes.sock', (n) => {
      const answer = answerOf(n < sizes.length ? sizes[n] : n === sizes.length ? cap + 1 : 100);
      // In pieces of 50,000 bytes: several reads, each landing where the last one stopped.
      return Array.from({ length: Math.ceil(answer.length / 50_000) }, (_, i) => answer.subarray(i * 50_000, (i + 1) * 50_000));
    });
    const client = new UapiClient(path, { timeoutMs: 30_000, maxReplyBytes: cap });
    for (const size of sizes) {
      assert.equal((await client.getRaw()).length, size, `an answer of ${size} bytes`);
    }
    await assert.rejects(client.get(), (err: Error) => isNativeError(err, 'reply-too-large') && err.message.includes(`the cap of ${cap} bytes`));
    assert.equal((await client.get()).listenPort, 7, 'the client reads again after refusing one answer');
  });

  test('a malformed private_key line in an answer is reported without its value', async () => {
    // Fake: wireguard-go never sends a malformed key; a foreign socket might.
    const key = generatePrivateKey();
    const path = join(dir, 'wg-badkey.sock');
    const server = createServer((s) => s.end(`private_key=${keyToHex(key).slice(0, 62)}zz\nerrno=0\n\n`));
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await assert.rejects(new UapiClient(path).get(), (err: Error) => {
      assert.ok(isNativeError(err, 'protocol'));
      assert.match(err.message, /line 1 "private_key=\(redacted\) \(64 characters\)": expected a 64-digit hex key/);
      assertNoKeys(everyRendering(err), { key });
      return true;
    });
  });

  test('maxReplyBytes must be a positive whole number', () => {
    assert.throws(() => new UapiClient('/nowhere.sock', { maxReplyBytes: 0 }), /maxReplyBytes: 0 is not a positive whole number of bytes/);
  });
});
