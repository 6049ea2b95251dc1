/**
 * The agent's local control socket on real agents (issue 12, Done when 1's /readyz half and 4): a
 * two-node sandbox cluster (peers directory, real wireguard-go), its agents' control sockets asked
 * through the CLI as a child process. A peer removed by hand with `wg set … remove` makes `aks-mesh
 * diff` show it missing (exit 1), `status --local` say so (exit 1), and `/readyz` fail naming it; `aks-mesh
 * reconcile` repairs it and all three recover; left alone, the next resync pass puts it back by
 * itself and /readyz recovers without any command. Another user (nobody, uid 65534) is refused with
 * the permission error (diff's exit 2: trouble, not drift), in a folder nobody can enter (only the socket's own 0600 guards it: a 0666
 * socket beside it lets nobody in); the socket goes with the agent; a socket path that cannot be
 * taken stops it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, MeshCluster, NODE_BINARY, REPO_ROOT } from '../sandbox/cluster.ts';
import type { ClusterMember } from '../sandbox/cluster.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { folderNobodyCanEnter, nobodyConnects, runCliAsNobody } from '../sandbox/nobody.ts';
import { API_VERSION } from '../mesh/crd/types.ts';

const skip = networkTestsUnavailable() ?? false;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI as a child process (optionally as another user), with a deadline. */
function cli(args: string[], options: { uid?: number; gid?: number; script?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const argv = options.script ? ['--input-type=module', '-e', options.script] : [CLI, ...args];
    const child = spawn(NODE_BINARY, argv, {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // The compile cache (cli/main.ts) is root's: another user skips it.
      env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '1', AKS_MESH_CONTROL_SOCKET: '', AKS_MESH_INTERFACE: '' },
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `aks-mesh status --local`, as an operator runs it. */
function localStatus(socket: string, json: boolean): Promise<Run> {
  return cli(['status', '--local', '--control-socket', socket, ...(json ? ['--json'] : [])]);
}

describe('the control socket of a real agent', { skip }, () => {
  let c: MeshCluster;
  let dir: string;
  const socketOf = (m: ClusterMember): string => join(dir, `${m.interfaceName}.sock`);

  async function readyz(m: ClusterMember): Promise<{ status: number; body: string }> {
    const script = `fetch('http://${m.metricsAddress}/readyz').then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), () => process.stdout.write('{"status":0,"body":""}'))`;
    const { stdout } = await c.box.exec(m.ns, process.execPath, ['-e', script], { timeoutMs: 10_000 });
    return JSON.parse(stdout) as { status: number; body: string };
  }

  before(async () => {
    // A folder of our own that others can enter (0711, root's, under /tmp): the socket's own mode is
    // then all that keeps another user out. The sockets of this run, removed with it.
    dir = folderNobodyCanEnter('aks-mesh-control-');
    // A long resync: the drift made by hand stays until `aks-mesh reconcile` repairs it.
    c = await MeshCluster.start({ nodes: 2, source: 'dir', resyncSeconds: 600 });
    // Without an API server nobody registers: the Peers are files, as an administrator would write them.
    c.writePeersFile(
      'peers.yaml',
      c.nodes.map((n, i) => ({
        apiVersion: API_VERSION,
        kind: 'Peer',
        metadata: { name: n.name },
        spec: { publicKey: n.publicKey, endpoint: n.endpoint, allowedIPs: [n.podCIDR], meshIP: `100.96.0.${i + 1}`, nodeName: n.name },
      })),
    );
    for (const n of c.nodes) await c.startAgent(n.name, { flags: { '--control-socket': socketOf(n) } });
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });
  after(async () => {
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('status, diff and readyz agree the device is in step; the socket is owner-only', async () => {
    const [a, b] = c.nodes;
    const socket = socketOf(a);
    await c.waitFor(`${a.name} ready`, async () => (await readyz(a)).status === 200, { timeoutMs: 30_000 });
    assert.equal(statSync(socket).mode & 0o777, 0o600, 'the socket is 0600');
    const status = await localStatus(socket, true);
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { member: { name: string }; source: { synced: boolean }; peers: { desired: number; onDevice: number; missing: unknown[] }; inSync: boolean; wireguard: { state: string; restarts: number }; lastPass: { full: boolean } };
    assert.equal(s.member.name, a.name);
    assert.equal(s.source.synced, true);
    assert.deepEqual([s.peers.desired, s.peers.onDevice, s.peers.missing.length], [1, 1, 0]);
    assert.equal(s.inSync, true);
    assert.equal(s.wireguard.restarts, 0);
    const text = await localStatus(socket, false);
    assert.match(text.stdout, new RegExp(`Peer ${a.name} \\(agent\\) on ${a.interfaceName}`));
    assert.match(text.stdout, /in sync: +yes/);
    const diff = await cli(['diff', '--control-socket', socket]);
    assert.equal(diff.code, 0, `diff exits 0 when nothing would change: ${diff.stdout}${diff.stderr}`);
    assert.match(diff.stdout, /no changes/);
    assert.ok(b);
  });

  test('a peer removed by hand: diff shows it (exit 1), status and /readyz name it; reconcile repairs it and all recover', async (t) => {
    const [a, b] = c.nodes;
    const socket = socketOf(a);
    await c.box.exec(a.ns, 'wg', ['set', a.interfaceName, 'peer', b.publicKey, 'remove']);

    const diff = await cli(['diff', '--control-socket', socket]);
    assert.equal(diff.code, 1, `diff exits 1 when a pass would change something: ${diff.stdout}${diff.stderr}`);
    assert.match(diff.stdout, new RegExp(`^\\+ peer Peer/${b.name} ${b.publicKey.replace(/[+/]/g, '\\$&')} allowed-ips `, 'm'));
    const json = await cli(['diff', '--control-socket', socket, '--json']);
    const d = JSON.parse(json.stdout) as { changes: number; device: { add: Array<{ name: string }> }; routes: { add: string[] } };
    assert.equal(d.device.add[0]?.name, b.name);
    // The routes went with the peer? No: routes are the table's, wg set touches only the device.
    assert.deepEqual(d.routes.add, []);

    const statusRun = await localStatus(socket, true);
    assert.equal(statusRun.code, 1, 'status --local exits 1 while the member is not in sync');
    const status = JSON.parse(statusRun.stdout) as { peers: { missing: Array<{ kind: string; name: string }> }; inSync: boolean };
    assert.deepEqual(status.peers.missing.map((p) => `${p.kind}/${p.name}`), [`Peer/${b.name}`]);
    assert.equal(status.inSync, false);
    const statusText = await localStatus(socket, false);
    assert.equal(statusText.code, 1);
    assert.match(statusText.stdout, new RegExp(`missing \\(desired, not on the device\\):\\n +Peer/${b.name}`));
    assert.equal(statusText.stdout.trimEnd().split('\n').at(-1), 'in sync:     NO (aks-mesh diff shows what a pass would change; aks-mesh reconcile runs one now)');

    let notReady = { status: 0, body: '' };
    await c.waitFor(`${a.name}'s /readyz fails`, async () => (notReady = await readyz(a)).status === 503, { timeoutMs: 30_000 });
    assert.equal(notReady.body.trim(), `device differs from the desired state: 1 peer missing (Peer/${b.name})`);
    t.diagnostic(`/readyz while the device differs: 503 ${notReady.body.trim()}`);

    const reconcile = await cli(['reconcile', '--control-socket', socket]);
    assert.equal(reconcile.code, 0, reconcile.stderr);
    assert.match(reconcile.stdout, /full, 1 set/);
    assert.match(reconcile.stdout, new RegExp(`^\\+ peer Peer/${b.name} `, 'm'));
    const after = await cli(['diff', '--control-socket', socket]);
    assert.equal(after.code, 0, after.stdout);
    assert.equal((await localStatus(socket, false)).code, 0, 'status --local exits 0 once in sync again');
    await c.waitFor(`${a.name}'s /readyz recovers`, async () => (await readyz(a)).status === 200, { timeoutMs: 30_000 });
    // One decision line for the repair, naming the peer (at info: a pass of one change).
    assert.match(readFileSync(a.logFile, 'utf8'), new RegExp(`peer added peer="Peer/${b.name}" publicKey="${b.publicKey.replace(/[+/]/g, '\\$&')}"`));
    await c.waitForMatrix({ timeoutMs: 30_000 });
  });

  test('another user (nobody) is refused with the permission error (diff: exit 2, trouble, not drift); no agent there is said plainly', async () => {
    const socket = socketOf(c.nodes[0]);
    // The control: a socket anyone may open, in the same folder, lets nobody in; so the folder is no
    // guard, and the refusal below is the control socket's own 0600.
    const anyone = join(dir, 'anyone.sock');
    const plain = createServer((conn) => conn.end());
    await new Promise<void>((resolve) => plain.listen(anyone, resolve));
    try {
      chmodSync(anyone, 0o666);
      assert.equal(await nobodyConnects(anyone), 'connected', 'nobody reaches a 0666 socket in the sockets\' folder');
    } finally {
      await new Promise((r) => plain.close(r));
    }
    assert.equal(statSync(dir).mode & 0o777, 0o711, 'others can enter the sockets\' folder');
    // The CLI as nobody runs from a copy nobody can read (sandbox/nobody.ts): a CI clone's checkout
    // may sit in a folder only root can enter, which would refuse nobody before the socket could.
    const nobody = await runCliAsNobody(['diff', '--control-socket', socket]);
    assert.equal(nobody.code, 2, nobody.stdout + nobody.stderr);
    assert.equal(nobody.stderr.trim(), `aks-mesh: permission denied: the control socket ${socket} is owner-only; run as root (or as the agent's user)`);
    const missing = join(dir, 'nothing-here.sock');
    const none = await cli(['reconcile', '--control-socket', missing]);
    assert.equal(none.code, 1);
    assert.equal(none.stderr.trim(), `aks-mesh: no agent listening on ${missing} (is the agent running on this node? --control-socket or --interface choose another socket)`);
  });

  test('the socket goes with the agent; a restarted agent takes the place again', async () => {
    const a = c.nodes[0];
    const socket = socketOf(a);
    await c.stopAgent(a.name);
    assert.equal(existsSync(socket), false, 'a stopped agent removes its socket');
    const gone = await cli(['diff', '--control-socket', socket]);
    assert.equal(gone.code, 2, 'no agent is trouble (2), not drift (1)');
    assert.match(gone.stderr, /no agent listening on/);
    // A socket asked for that cannot be made (a plain file is in its place, never replaced) stops the agent, saying why.
    writeFileSync(socket, 'not a socket');
    await c.startAgent(a.name, { flags: { '--control-socket': socket } });
    await c.waitFor(`${a.name}'s agent to refuse the path`, () => c.agentExit(a.name) !== undefined, { timeoutMs: 30_000, failOnAgentExit: false });
    assert.equal(c.agentExit(a.name)?.code, 1);
    assert.match(readFileSync(a.logFile, 'utf8'), /something other than a socket is there; refusing to replace it/);
    assert.equal(readFileSync(socket, 'utf8'), 'not a socket');
    rmSync(socket);
    await c.startAgent(a.name, { flags: { '--control-socket': socket } });
    await c.waitFor(`${a.name}'s control socket answers`, async () => (await cli(['diff', '--control-socket', socket])).code === 0, { timeoutMs: 30_000 });
  });

  test('left alone, the next resync pass puts a peer removed by hand back, and /readyz recovers without any command', async (t) => {
    const [a, b] = c.nodes;
    const socket = socketOf(a);
    // A resync short enough to wait for, long enough to see the drift first (each probe below is a
    // process start, seconds on a loaded machine).
    await c.stopAgent(a.name);
    await c.startAgent(a.name, { flags: { '--control-socket': socket, '--resync': '40' } });
    await c.waitFor(`${a.name} ready`, async () => (await readyz(a)).status === 200, { timeoutMs: 60_000 });
    const lastPassAt = async (): Promise<string | null> => {
      const r = await localStatus(socket, true);
      // Exit 1 (not in sync) still answers: only an answer with no output is no answer.
      return r.stdout ? ((JSON.parse(r.stdout) as { lastPass: { at: string } | null }).lastPass?.at ?? null) : null;
    };
    // Right after a resync pass, so the drift is there to be seen before the next one.
    const before = await lastPassAt();
    await c.waitFor(`a resync pass of ${a.name}`, async () => {
      const at = await lastPassAt();
      return at !== null && at !== before;
    }, { timeoutMs: 90_000 });
    const logFrom = readFileSync(a.logFile, 'utf8').length;
    const removedAt = Date.now();
    await c.box.exec(a.ns, 'wg', ['set', a.interfaceName, 'peer', b.publicKey, 'remove']);
    let notReady = { status: 0, body: '' };
    await c.waitFor(`${a.name}'s /readyz fails`, async () => (notReady = await readyz(a)).status === 503, { timeoutMs: 30_000 });
    assert.equal(notReady.body.trim(), `device differs from the desired state: 1 peer missing (Peer/${b.name})`);

    // No command from here on: only the agent's own resync.
    await c.waitFor(`${a.name}'s /readyz recovers by itself`, async () => (await readyz(a)).status === 200, { timeoutMs: 90_000 });
    t.diagnostic(`repaired by the next resync pass ${Math.round((Date.now() - removedAt) / 1000)} s after the removal (resync 40 s; printed, not asserted)`);
    // /readyz answers 200 while a pass runs, so wait for that pass to be recorded, and for its line.
    type Local = { inSync: boolean; lastPass: { full: boolean; added: Array<{ kind: string; name: string }> } | null };
    const status = await c.waitFor(`the resync pass that put Peer/${b.name} back, on the control socket`, async () => {
      const r = await localStatus(socket, true);
      const s = r.stdout ? (JSON.parse(r.stdout) as Local) : null;
      return s?.inSync && s.lastPass?.added.some((p) => p.name === b.name) ? s : null;
    }, { timeoutMs: 60_000 });
    assert.equal(status.lastPass!.full, true);
    assert.deepEqual(status.lastPass!.added.map((p) => `${p.kind}/${p.name}`), [`Peer/${b.name}`]);
    await c.waitFor('the repair\'s log line', () => new RegExp(`peer added peer="Peer/${b.name}"`).test(readFileSync(a.logFile, 'utf8').slice(logFrom)), { timeoutMs: 30_000 });
    const log = readFileSync(a.logFile, 'utf8').slice(logFrom);
    assert.doesNotMatch(log, /full pass asked for on the control socket/, 'no reconcile was asked for');
    await c.waitForMatrix({ timeoutMs: 30_000 });
  });
});
