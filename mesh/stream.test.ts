/**
 * The stream server (mesh/stream.ts) on real sockets with real `ws` clients. The device reader is a
 * function of the test: these tests are about the door (token, loopback, client cap), the bounds (a
 * slow client) and the shared reads; e2e/stream.test.ts serves a real agent's device.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { StreamListenError, StreamServer, bearerMatches, isLiteralHost, isLoopback, parseHostPort } from './stream.ts';
import type { StreamServerOptions } from './stream.ts';
import { WebSocket } from './ws.ts';
import type { WebSocketLike } from './ws.ts';

const TOKEN = 'a-test-token-0123456789';

interface Received {
  ws: WebSocketLike;
  messages: Array<Record<string, unknown>>;
  status: Promise<number>;
  closed: Promise<{ code: number; reason: string }>;
}

/** A ws client that collects every message; status resolves 101 on open, else the HTTP status. */
function client(port: number, headers: Record<string, string> = {}, path = '/stream'): Received {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
  const messages: Array<Record<string, unknown>> = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as Record<string, unknown>));
  ws.on('error', () => undefined);
  const status = new Promise<number>((resolve) => {
    ws.once('open', () => resolve(101));
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return { ws, messages, status, closed };
}

async function until(ok: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('mesh/stream: the live stream server', () => {
  const servers: StreamServer[] = [];
  const clients: WebSocketLike[] = [];
  const sockets: Socket[] = [];
  after(async () => {
    for (const c of clients) c.terminate();
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => s.close()));
  });

  async function start(o: Partial<StreamServerOptions> = {}): Promise<StreamServer> {
    const server = await StreamServer.start({ address: '127.0.0.1:0', member: { role: 'node', kind: 'Peer', name: 'node-t', interface: 'wg-t', publicKey: 'k' }, readDevice: async () => ({ peers: [] }), ...o });
    servers.push(server);
    return server;
  }

  test('addresses: loopback recognised, bad ones named', () => {
    assert.ok(isLoopback('127.0.0.1') && isLoopback('127.3.2.1') && isLoopback('::1') && isLoopback('localhost'));
    assert.ok(!isLoopback('0.0.0.0') && !isLoopback('10.0.0.1') && !isLoopback('::'));
    assert.deepEqual(parseHostPort('[::1]:9587', 'x'), { host: '::1', port: 9587 });
    assert.throws(() => parseHostPort('nowhere:99999', '--stream-address'), /--stream-address "nowhere:99999": expected IP:port/);
  });

  test('a non-loopback address without a token refuses to start, naming the flags', async () => {
    await assert.rejects(
      StreamServer.start({ address: '0.0.0.0:0', member: {}, readDevice: async () => ({}) }),
      /--stream-address 0\.0\.0\.0:0 is not a loopback address: it needs a token \(--stream-token-file or AKS_MESH_STREAM_TOKEN\)/,
    );
    await assert.rejects(StreamServer.start({ address: '127.0.0.1:0', token: 'short', member: {}, readDevice: async () => ({}) }), /at least 16/);
  });

  test('bearer comparison', () => {
    assert.ok(bearerMatches(`Bearer ${TOKEN}`, TOKEN));
    assert.ok(!bearerMatches(undefined, TOKEN));
    assert.ok(!bearerMatches(`Bearer ${TOKEN}x`, TOKEN));
    assert.ok(!bearerMatches(TOKEN, TOKEN));
  });

  test('with a token: none or a wrong one is 401 before the upgrade; the right one gets hello then device', async () => {
    const server = await start({ token: TOKEN });
    const { port } = server.address();
    const none = client(port);
    clients.push(none.ws);
    assert.equal(await none.status, 401);
    const wrong = client(port, { authorization: 'Bearer not-the-token-at-all' });
    clients.push(wrong.ws);
    assert.equal(await wrong.status, 401);
    assert.equal(server.clientCount, 0);
    const right = client(port, { authorization: `Bearer ${TOKEN}` });
    clients.push(right.ws);
    assert.equal(await right.status, 101);
    await until(() => right.messages.length >= 2, 'hello and device');
    assert.equal(right.messages[0].type, 'hello');
    assert.deepEqual(right.messages[0].member, { role: 'node', kind: 'Peer', name: 'node-t', interface: 'wg-t', publicKey: 'k' });
    assert.equal(right.messages[1].type, 'device');
    assert.deepEqual(right.messages[1].device, { peers: [] });
    // Another path is not the stream (and says where it is).
    const elsewhere = client(port, { authorization: `Bearer ${TOKEN}` }, '/other');
    clients.push(elsewhere.ws);
    assert.equal(await elsewhere.status, 404);
  });

  test('a web page is refused (403): any Origin header, and without a token a Host that is a name (DNS rebinding)', async () => {
    assert.ok(isLiteralHost('127.0.0.1:9587') && isLiteralHost('[::1]:9587') && isLiteralHost('localhost:9587') && isLiteralHost('LOCALHOST') && isLiteralHost('10.0.0.4'));
    assert.ok(!isLiteralHost('evil.example:9588') && !isLiteralHost(undefined) && !isLiteralHost('') && !isLiteralHost('localhost.evil.example'));
    const open = await start();
    const port = open.address().port;
    const page = client(port, { origin: 'http://evil.example' });
    clients.push(page.ws);
    assert.equal(await page.status, 403, 'a page on any site');
    const own = client(port, { origin: `http://127.0.0.1:${port}` });
    clients.push(own.ws);
    assert.equal(await own.status, 403, 'even one claiming to be served from the stream itself: the stream serves no page');
    const rebound = client(port, { host: `evil.example:${port}` });
    clients.push(rebound.ws);
    assert.equal(await rebound.status, 403, 'a rebinding name');
    const named = client(port, { host: `localhost:${port}` });
    clients.push(named.ws);
    assert.equal(await named.status, 101, 'localhost is this machine');
    assert.equal(open.clientCount, 1);
    // With a token a browser cannot get in anyway (it cannot set Authorization), but Origin is still refused first.
    const guarded = await start({ token: TOKEN });
    const withToken = client(guarded.address().port, { authorization: `Bearer ${TOKEN}`, origin: 'http://evil.example' });
    clients.push(withToken.ws);
    assert.equal(await withToken.status, 403);
    const byName = client(guarded.address().port, { authorization: `Bearer ${TOKEN}`, host: `mesh-node.example:${guarded.address().port}` });
    clients.push(byName.ws);
    assert.equal(await byName.status, 101, 'with a token, any name reaches it (a forwarded port, a DNS name)');
  });

  test('a refused upgrade is cut after its answer, even when the client never closes its side', async () => {
    const server = await start({ token: TOKEN });
    // allowHalfOpen: this client keeps its side open after the server's FIN, as a hostile one would.
    const raw = connect({ port: server.address().port, host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(raw);
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()));
    let answer = '';
    raw.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    raw.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.write(`GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    // Writing on: a socket the server destroyed answers with a reset, which closes ours.
    const poke = setInterval(() => raw.writable && raw.write('x'), 200);
    try {
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the refused connection was still open after 15 s')), 15_000))]);
    } finally {
      clearInterval(poke);
    }
    assert.match(answer, /^HTTP\/1\.1 401 Unauthorized/);
  });

  test('a reader that keeps up is not dropped when one message is larger than the buffer limit (a device of thousands of peers)', async () => {
    // 4 MB messages with a 1 MiB limit: on connect, hello + device + desired are queued back to back.
    const big = (n: number) => ({ n, filler: 'p'.repeat(4 * 1024 * 1024) });
    const warnings: string[] = [];
    const log = { error: () => undefined, warn: (m: string) => warnings.push(m), info: () => undefined, debug: () => undefined };
    const server = await start({ intervalMs: 50, maxBufferedBytes: 1024 * 1024, log, readDevice: async () => big(0) });
    server.setDesired({ type: 'desired', ...big(1) });
    const first = client(server.address().port);
    clients.push(first.ws);
    await until(() => first.messages.some((m) => m.type === 'device'), 'the first client\'s device');
    // The second client gets the last device and the desired state at once, on connect.
    const second = client(server.address().port);
    clients.push(second.ws);
    await until(() => second.messages.some((m) => m.type === 'device') && second.messages.some((m) => m.type === 'desired'), 'device and desired for the second client', 60_000);
    server.broadcast({ type: 'pass', full: true, sets: 1 });
    await until(() => second.messages.some((m) => m.type === 'pass'), 'a later message');
    assert.equal(second.ws.readyState, 1, 'still connected');
    assert.deepEqual(warnings, []);
  });

  test('the idle hook runs when the last client leaves, not before (what the reads kept is then stale)', async () => {
    let idle = 0;
    const server = await start({ intervalMs: 50, onIdle: () => idle++ });
    const a = client(server.address().port);
    const b = client(server.address().port);
    clients.push(a.ws, b.ws);
    await Promise.all([a.status, b.status]);
    a.ws.close();
    await until(() => server.clientCount === 1, 'one gone');
    assert.equal(idle, 0);
    b.ws.close();
    await until(() => idle > 0, 'the idle hook');
  });

  test('a port already taken rejects with the errno code (the caller decides whether that stops the member)', async () => {
    const taken = await start();
    await assert.rejects(StreamServer.start({ address: `127.0.0.1:${taken.address().port}`, member: {}, readDevice: async () => ({}) }), (err: unknown) => err instanceof StreamListenError && err.code === 'EADDRINUSE' && /--stream-address 127\.0\.0\.1:\d+: listen EADDRINUSE/.test(err.message));
  });

  test('reads the device only while a client is connected, one read for all clients, a message only on change', async () => {
    let reads = 0;
    let version = 0;
    const server = await start({ intervalMs: 50, readDevice: async () => (reads++, { version }) });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(reads, 0, 'no client, no read');
    const a = client(server.address().port);
    const b = client(server.address().port);
    clients.push(a.ws, b.ws);
    await Promise.all([a.status, b.status]);
    await until(() => reads >= 6, 'several reads');
    const devices = (c: Received): Array<Record<string, unknown>> => c.messages.filter((m) => m.type === 'device');
    assert.equal(devices(a).length, 1, 'an unchanged device is sent once');
    assert.equal(devices(b).length, 1);
    version = 1;
    await until(() => devices(a).length === 2 && devices(b).length === 2, 'the change on both');
    assert.deepEqual(devices(a)[1].device, { version: 1 });
    // Shared: two clients for 6+ reads did not double them (at most one read per interval).
    a.ws.close();
    b.ws.close();
    await until(() => server.clientCount === 0, 'both gone');
    await new Promise((r) => setTimeout(r, 150));
    const stoppedAt = reads;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(reads, stoppedAt, 'reads stop with the last client');
  });

  test('desired, change and pass messages reach every client; a client that connects later gets the last desired', async () => {
    const server = await start();
    const a = client(server.address().port);
    clients.push(a.ws);
    await a.status;
    server.setDesired({ type: 'desired', peers: [{ kind: 'Peer', name: 'node-x' }], refused: [] });
    server.broadcast({ type: 'pass', full: true, sets: 1 });
    await until(() => a.messages.some((m) => m.type === 'pass'), 'the pass');
    const late = client(server.address().port);
    clients.push(late.ws);
    await until(() => late.messages.some((m) => m.type === 'desired'), 'desired for the late client');
  });

  test('at most maxClients connections: the next is answered 503', async () => {
    const server = await start({ maxClients: 2 });
    const port = server.address().port;
    const [a, b] = [client(port), client(port)];
    clients.push(a.ws, b.ws);
    assert.deepEqual(await Promise.all([a.status, b.status]), [101, 101]);
    const c = client(port);
    clients.push(c.ws);
    assert.equal(await c.status, 503);
  });

  test('a client that reads nothing (its socket paused) is dropped while a normal client keeps receiving', async () => {
    // Large, ever-changing payloads fill the kernel's socket buffers in a moment, so the server's own
    // buffer for the paused client grows past the limit; a real device changes far more slowly.
    let n = 0;
    const filler = 'x'.repeat(256 * 1024);
    const warnings: string[] = [];
    const log = { error: () => undefined, warn: (m: string) => warnings.push(m), info: () => undefined, debug: () => undefined };
    const server = await start({ intervalMs: 10, maxBufferedBytes: 1024 * 1024, log, readDevice: async () => ({ n: n++, filler }) });
    const port = server.address().port;
    const normal = client(port);
    clients.push(normal.ws);
    await normal.status;
    // The slow client: a raw upgrade, then never a byte read (Node stops reading, the TCP window closes).
    const slow = connect(port, '127.0.0.1');
    sockets.push(slow);
    await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
    slow.write(`GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    slow.pause();
    await until(() => server.clientCount === 2, 'both connected');
    await until(() => server.clientCount === 1, 'the slow client dropped', 60_000);
    const before = normal.messages.length;
    await until(() => normal.messages.length > before + 5, 'the normal client still receiving');
    assert.equal(normal.ws.readyState, 1);
    // What the slow client would have read, had it read: the close frame with code and reason.
    slow.resume();
    const text = await new Promise<string>((resolve) => {
      let all = Buffer.alloc(0);
      slow.on('data', (d: Buffer) => (all = Buffer.concat([all, d])));
      slow.on('close', () => resolve(all.toString('latin1')));
    });
    // Terminated after the grace (the close may or may not have fit): either way nothing stays buffered.
    assert.ok(text.startsWith('HTTP/1.1 101'), text.slice(0, 100));
    assert.deepEqual(warnings, ['stream: a client read too slowly and was dropped']);
  });

  test('close() ends the clients (1001) and frees the port', async () => {
    const server = await StreamServer.start({ address: '127.0.0.1:0', member: {}, readDevice: async () => ({}) });
    const port = server.address().port;
    const a = client(port);
    clients.push(a.ws);
    await a.status;
    await server.close();
    assert.equal((await a.closed).code, 1001);
    const again = await StreamServer.start({ address: `127.0.0.1:${port}`, member: {}, readDevice: async () => ({}) });
    servers.push(again);
  });
});
