/**
 * `aks-mesh inspect --url` against the real stream server (mesh/stream.ts) on this host's loopback:
 * its errors say what to do (audit12 #7), and `--watch` shows the stream's refused objects and
 * changes beside the device (audit12 #14). The device here is a fixed stand-in (the server serves
 * whatever its reader returns); e2e/stream.test.ts runs the same against a real agent.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { StreamServer } from '../mesh/stream.ts';
import { WebSocket } from '../mesh/ws.ts';
import type { WebSocketLike } from '../mesh/ws.ts';
import { inspectRemote, watchRemote } from './inspect-remote.ts';
import type { WatchJson } from './inspect-watch.ts';

const TOKEN = 'a-token-for-this-test-0123';
const device = { interface: 'wg-t', publicKey: 'kA', privateKey: '(hidden)', listenPort: 51820, fwmark: 0, peers: [] };
const refusal = { kind: 'Peer', name: 'thief', reason: 'AllowedIPsOverlap', field: 'spec.allowedIPs[0]', message: 'Peer thief: spec.allowedIPs[0] 10.244.0.0/16 overlaps Node node-a\'s podCIDR' };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('inspect --url errors say what to do', () => {
  let server: StreamServer;
  let resetter: Server;
  const raw: WebSocketLike[] = [];
  before(async () => {
    server = await StreamServer.start({ address: '127.0.0.1:0', token: TOKEN, member: { role: 'node', kind: 'Peer', name: 'node-t', interface: 'wg-t' }, readDevice: async () => device, maxClients: 1 });
    // What kubectl port-forward does when nothing listens in the pod: it accepts, then closes.
    resetter = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    for (const ws of raw) ws.terminate();
    await server?.close();
    await new Promise<void>((resolve) => resetter.close(() => resolve()));
  });

  test('nothing listening: names host:port, asks whether kubectl port-forward runs, and says where the stream is', async () => {
    const port = await freePort();
    await assert.rejects(
      inspectRemote({ url: `ws://127.0.0.1:${port}`, timeoutMs: 5000, json: true }, new PassThrough()),
      new RegExp(`^Error: ws://127\\.0\\.0\\.1:${port}/stream: nothing listens on 127\\.0\\.0\\.1:${port} \\(connection refused\\): is \`kubectl port-forward\` running\\? An agent's stream is on its node's 127\\.0\\.0\\.1:9587`),
    );
  });

  test('accepted and closed (a port-forward with nothing behind it): says so', async () => {
    const { port } = resetter.address() as AddressInfo;
    await assert.rejects(inspectRemote({ url: `ws://127.0.0.1:${port}`, timeoutMs: 5000, json: true }, new PassThrough()), /was closed before the stream answered: kubectl port-forward accepted it, but nothing may listen on that port in the pod/);
  });

  test("503: the server's reason passed on (too many clients), with what to do", async () => {
    const url = `ws://127.0.0.1:${server.address().port}`;
    const first = new WebSocket(`${url}/stream`, { headers: { authorization: `Bearer ${TOKEN}` } });
    raw.push(first);
    await new Promise<void>((resolve, reject) => {
      first.once('open', () => resolve());
      first.on('error', reject);
    });
    await assert.rejects(
      inspectRemote({ url, token: TOKEN, timeoutMs: 5000, json: true }, new PassThrough()),
      /\/stream: the stream is busy \(503 Service Unavailable\): too many clients \(at most 1\); close another inspect --watch or dashboard on this member/,
    );
  });
});

describe("inspect --url --watch shows the stream's refused objects and changes", () => {
  let server: StreamServer;
  let url: string;
  before(async () => {
    server = await StreamServer.start({ address: '127.0.0.1:0', token: TOKEN, member: { role: 'node', kind: 'Peer', name: 'node-t', interface: 'wg-t' }, readDevice: async () => device });
    // What the member had when the watch connects: sent on connect.
    server.setDesired({ type: 'desired', time: Date.parse('2026-12-01T07:30:00Z'), peers: [], refused: [refusal] });
    url = `ws://127.0.0.1:${server.address().port}`;
  });
  after(async () => server?.close());

  /** Runs a watch until `done(output)`, then stops it (as Ctrl-C would); resolves with all it wrote. */
  async function watch(json: boolean, done: (output: string) => boolean, during: () => void): Promise<string> {
    const out = new PassThrough();
    let output = '';
    out.setEncoding('utf8').on('data', (d: string) => (output += d));
    const stop = new AbortController();
    const running = watchRemote({ url, token: TOKEN, timeoutMs: 5000, json, out, tty: false }, stop.signal);
    const deadline = Date.now() + 20_000;
    while (!/refused/.test(output)) {
      assert.ok(Date.now() < deadline, `no refusal shown: ${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    during();
    while (!done(output)) {
      assert.ok(Date.now() < deadline, `not shown: ${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    stop.abort();
    await running;
    return output;
  }

  test('text: the refused objects with reason, field and message, then the changes with their time, under the device block', async () => {
    const output = await watch(false, (o) => o.includes('added Peer/node-b'), () =>
      server.broadcast({ type: 'change', time: Date.parse('2026-12-01T07:31:02.500Z'), added: [{ kind: 'Peer', name: 'node-b', publicKey: 'nAPRh0abcdefghijklmnop3Cw=' }], removed: [{ kind: 'Gateway', name: 'gw-old', publicKey: 'kOLD' }], refused: [{ kind: 'Peer', name: 'evil', reason: 'Refused', message: 'Peer evil: no' }] }),
    );
    const block = output.slice(output.lastIndexOf('interface: wg-t'));
    assert.ok(
      block.includes(
        '\nrefused (1):\n' +
          "  Peer/thief: AllowedIPsOverlap (spec.allowedIPs[0]): Peer thief: spec.allowedIPs[0] 10.244.0.0/16 overlaps Node node-a's podCIDR\n" +
          'changes (since connected, newest last):\n' +
          '  2026-12-01T07:31:02Z  added Peer/node-b (nAPRh0…3Cw=)\n' +
          '  2026-12-01T07:31:02Z  removed Gateway/gw-old (kOLD)\n' +
          '  2026-12-01T07:31:02Z  refused Peer/evil: Refused: Peer evil: no\n',
      ),
      block,
    );
    // Before the change: said that nothing changed yet.
    assert.match(output, /refused \(1\):\n.*\nchanges: none since connected\n/);
  });

  test('--json: every line carries refused and changes', async () => {
    const output = await watch(true, (o) => o.includes('"removed":[{"kind":"Peer","name":"node-c"'), () =>
      server.broadcast({ type: 'change', time: 1, added: [], removed: [{ kind: 'Peer', name: 'node-c', publicKey: 'kC' }], refused: [] }),
    );
    const lines = output.trim().split('\n').map((l) => JSON.parse(l) as WatchJson);
    const lastLine = lines[lines.length - 1];
    assert.equal(lastLine.interface, 'wg-t');
    assert.deepEqual(lastLine.refused, [refusal]);
    assert.deepEqual(lastLine.changes, [{ time: 1, added: [], removed: [{ kind: 'Peer', name: 'node-c', publicKey: 'kC' }], refused: [] }]);
    assert.ok(Array.isArray(lastLine.peers), 'still the device line');
  });
});
