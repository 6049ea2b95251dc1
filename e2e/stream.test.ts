/**
 * The agent's live stream (issue 12, contract (2)) on real agents against a real kube-apiserver:
 * `aks-mesh inspect --url` through a forwarded port into a node's network namespace, as
 * `kubectl port-forward` reaches a hostNetwork agent pod's loopback (kubelet enters the pod's
 * namespace and connects to localhost there; here the forwarder runs `ip netns exec <ns> socat`).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, MeshCluster, NODE_BINARY } from '../sandbox/cluster.ts';
import type { ClusterNode } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { WebSocket } from '../mesh/ws.ts';
import type { WatchJson } from '../cli/inspect-watch.ts';

const skip = networkTestsUnavailable(['wg']) ?? kubeTestsUnavailable() ?? (spawnSync('socat', ['-V']).status === 0 ? false : 'socat is not installed');
const LOOPBACK_STREAM = '127.0.0.1:9587';

/**
 * A TCP port on the host's loopback whose every connection is carried into `ns` to 127.0.0.1:<port>
 * by `ip netns exec <ns> socat STDIO TCP:…` (what kubelet's port-forward did with nsenter + socat).
 */
class Forwarder {
  readonly server: Server;
  readonly children = new Set<ChildProcess>();
  readonly sockets = new Set<Socket>();

  constructor(ns: string, target: string) {
    this.server = createServer((socket) => {
      const child = spawn('ip', ['netns', 'exec', ns, 'socat', 'STDIO', `TCP:${target}`], { stdio: ['pipe', 'pipe', 'ignore'] });
      this.children.add(child);
      this.sockets.add(socket);
      socket.pipe(child.stdin);
      child.stdout.pipe(socket);
      const done = (): void => {
        socket.destroy();
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      };
      child.once('exit', () => {
        this.children.delete(child);
        done();
      });
      socket.once('close', () => {
        this.sockets.delete(socket);
        done();
      });
      socket.on('error', done);
      child.stdin.on('error', done);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    for (const c of this.children) c.kill('SIGKILL');
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A running `aks-mesh inspect --url … --watch --json`: each line with the time it arrived. */
class RemoteWatch {
  readonly child: ChildProcess;
  readonly lines: Array<{ at: number; line: WatchJson }> = [];
  stderr = '';
  private partial = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(NODE_BINARY, [CLI, 'inspect', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      const at = Date.now();
      const parts = (this.partial + d).split('\n');
      this.partial = parts.pop() ?? '';
      for (const p of parts) if (p.startsWith('{')) this.lines.push({ at, line: JSON.parse(p) as WatchJson });
    });
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  async until(ok: (line: WatchJson) => boolean, what: string, timeoutMs = 60_000): Promise<{ at: number; line: WatchJson }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((l) => ok(l.line));
      if (found) return found;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        assert.fail(`no watch line ${what} (exit ${this.child.exitCode}); stderr: ${this.stderr}; last: ${JSON.stringify(this.lines.slice(-3))}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** `aks-mesh inspect …` to its end. Never spawnSync: the forwarder runs in this process and must keep serving. */
async function inspect(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(NODE_BINARY, [CLI, 'inspect', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AKS_MESH_STREAM_TOKEN: '', ...env }, timeout: 60_000 });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { code, stdout, stderr };
}

describe("the agent's live stream through a forwarded port (ip netns exec + socat, like kubectl port-forward), against kube-apiserver 1.20", { skip }, () => {
  let c: MeshCluster;
  let a: ClusterNode;
  let b: ClusterNode;
  let forwarder: Forwarder;
  let url: string;
  const watches: RemoteWatch[] = [];

  before(async () => {
    c = await MeshCluster.start({ nodes: 2, source: 'kube', resyncSeconds: 5 });
    [a, b] = c.nodes;
    // node-0's stream on its namespace's loopback only (the default address): the forwarder is the way in.
    await c.startAgent(a.name, { flags: { '--stream-address': LOOPBACK_STREAM } });
    forwarder = new Forwarder(a.ns, LOOPBACK_STREAM);
    url = `ws://127.0.0.1:${await forwarder.listen()}`;
    await c.waitFor(`${a.name}'s stream through the forwarder`, async () => (await inspect(['--url', url, '--token-file', a.streamTokenFile])).code === 0, { timeoutMs: 60_000 });
  });

  after(async () => {
    await Promise.all(watches.map((w) => w.stop()));
    await forwarder?.close();
    await c?.stop();
  });

  test('refused without the token and with a wrong one: an error naming the URL and the token, exit 1', async () => {
    const none = await inspect(['--url', url]);
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, new RegExp(`ws://127\\.0\\.0\\.1:\\d+/stream: the stream requires a token \\(401 Unauthorized\\): pass --token-file`));
    assert.equal(none.stdout, '');
    const wrongFile = join(c.dir, 'wrong-token');
    writeFileSync(wrongFile, 'not-the-token-of-this-agent\n', { mode: 0o600 });
    const wrong = await inspect(['--url', url, '--token-file', wrongFile]);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /\/stream: the stream refused the token \(401 Unauthorized\): wrong token/);
    const viaEnv = await inspect(['--url', url], { AKS_MESH_STREAM_TOKEN: 'also-not-the-token-0123' });
    assert.equal(viaEnv.code, 1);
    assert.match(viaEnv.stderr, /refused the token/);
  });

  test('--watch --json reports a new handshake as it happens; peers carry their names; one snapshot without --watch', async (t) => {
    const w = new RemoteWatch(['--url', url, '--watch', '--json'], { AKS_MESH_STREAM_TOKEN: a.streamToken });
    watches.push(w);
    // A raw client beside it, to see the desired state and the change that node-1 joining makes.
    const messages: Array<Record<string, unknown>> = [];
    const ws = new WebSocket(`${url}/stream`, { headers: { authorization: `Bearer ${a.streamToken}` } });
    ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as Record<string, unknown>));
    ws.on('error', () => undefined);
    try {
      // Connected and greeted before node-1 starts: a client connecting after the change was
      // broadcast gets only the latest desired state, never the change message this test waits for.
      await c.waitFor('the raw client\'s hello', () => messages.some((m) => m.type === 'hello'));
      const first = await w.until((l) => Array.isArray(l.peers), 'with the device');
      assert.equal(first.line.interface, a.interfaceName);
      assert.equal(first.line.privateKey, '(hidden)');
      assert.equal(first.line.publicKey, a.publicKey);
      assert.ok(!first.line.peers?.some((p) => p.publicKey === b.publicKey), 'node-1 has not joined yet');
      await c.startAgent(b.name);
      const shaken = await w.until((l) => l.peers?.some((p) => p.publicKey === b.publicKey && p.latestHandshakeMs !== null) === true, 'with a handshake with node-1');
      const peer = shaken.line.peers?.find((p) => p.publicKey === b.publicKey);
      assert.equal(peer?.name, `Peer/${b.name}`);
      // Diagnostic only (never asserted): from the handshake to the line reaching this process.
      t.diagnostic(`inspect --url --watch reported the handshake ${shaken.at - (peer?.latestHandshakeMs as number)} ms after it happened (stream read every 250 ms, through the forwarder)`);
      const types = messages.map((m) => m.type);
      assert.equal(types[0], 'hello');
      assert.deepEqual((messages[0] as { member: unknown }).member, { role: 'node', kind: 'Peer', name: a.name, interface: a.interfaceName, publicKey: a.publicKey });
      await c.waitFor('the change adding node-1', () =>
        messages.some((m) => m.type === 'change' && (m.added as Array<{ name: string }>).some((p) => p.name === b.name)),
      );
      // The watch carries the stream's news beside the device: the change that added node-1, and the
      // member's refused objects (none here).
      const news = await w.until((l) => l.changes?.some((ch) => ch.added.some((p) => p.name === b.name && p.publicKey === b.publicKey)) === true, 'with the change adding node-1');
      assert.deepEqual(news.line.refused, [], 'refused: none');
      const desired = messages.filter((m) => m.type === 'desired').pop() as { peers: Array<{ kind: string; name: string; publicKey: string; endpoint?: string; allowedIPs: string[] }> };
      assert.deepEqual(
        desired.peers.find((p) => p.name === b.name),
        { kind: 'Peer', name: b.name, publicKey: b.publicKey, endpoint: b.endpoint, allowedIPs: desired.peers.find((p) => p.name === b.name)?.allowedIPs },
      );
      assert.ok(desired.peers.find((p) => p.name === b.name)?.allowedIPs.includes(b.podCIDR));
      assert.ok(messages.some((m) => m.type === 'pass' && typeof m.full === 'boolean' && typeof m.sets === 'number'));
    } finally {
      ws.terminate();
      assert.equal(await w.stop(), 0, w.stderr);
    }
    // One snapshot: the wg show view with names, then exit 0.
    const text = await inspect(['--url', url, '--token-file', a.streamTokenFile]);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(text.stdout.startsWith(`interface: ${a.interfaceName}\n  public key: ${a.publicKey}\n  private key: (hidden)\n`), text.stdout);
    assert.ok(text.stdout.includes(`\npeer: ${b.publicKey}\n  name: Peer/${b.name}\n  endpoint: ${b.endpoint}\n`), text.stdout);
    assert.match(text.stdout, /\n {2}latest handshake: /);
  });

  test("a member's stream on its underlay address answers from the host with its token (what the sandbox gives every member)", async () => {
    const got = await inspect(['--url', b.streamUrl.replace(/\/stream$/, ''), '--json'], { AKS_MESH_STREAM_TOKEN: b.streamToken });
    assert.equal(got.code, 0, got.stderr);
    const device = JSON.parse(got.stdout) as { interface: string; peers: Array<{ publicKey: string; name?: string }> };
    assert.equal(device.interface, b.interfaceName);
    assert.equal(device.peers.find((p) => p.publicKey === a.publicKey)?.name, `Peer/${a.name}`);
  });

  test('the stream stops with the agent: a watch reports it and keeps trying; a new inspect is refused', async () => {
    const w = new RemoteWatch(['--url', url, '--watch', '--json', '--token-file', a.streamTokenFile]);
    watches.push(w);
    await w.until((l) => Array.isArray(l.peers), 'with the device');
    const exit = await c.stopAgent(a.name);
    assert.equal(exit?.code, 0);
    const gone = await w.until((l) => l.error !== undefined, 'reporting the stream gone');
    assert.match(gone.line.error ?? '', /the stream closed \(1001: member stopping\); reconnecting/);
    assert.equal(w.child.exitCode, null, 'the watch keeps running');
    const after = await inspect(['--url', url, '--token-file', a.streamTokenFile]);
    assert.equal(after.code, 1);
    assert.match(after.stderr, /\/stream: /);
    assert.equal(await w.stop(), 0, w.stderr);
  });
});
