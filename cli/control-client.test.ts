/**
 * What `aks-mesh status --local` and `aks-mesh diff` say (mesh/control.ts's answers from a preview,
 * printed by cli/control-client.ts), with no key in either; the client's errors name the socket and
 * say what to do; which socket it finds. Real agents answering through the CLI: e2e/control.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { blankPeerState, generatePrivateKey, publicKeyOf, silentLogger } from '../native/index.ts';
import type { WireguardStatus } from '../native/index.ts';
import { ControlServer, diffAnswer, statusAnswer } from '../mesh/control.ts';
import type { DiffAnswer, StatusAnswer } from '../mesh/control.ts';
import { deviceDrift, planDevice, planRoutes } from '../mesh/reconcile/index.ts';
import type { Preview } from '../mesh/reconcile/index.ts';
import { NOBODY, nobodyUnavailable } from '../sandbox/nobody.ts';
import { ControlError, connectProblem, controlRequest, describeUid, formatDiff, formatReconcile, formatStatus, localVerdict, resolveControlSocket } from './control-client.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

/** The CLI as an operator runs it: exit code, stdout, stderr. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, AKS_MESH_CONTROL_SOCKET: '', AKS_MESH_INTERFACE: '' };
    execFile(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const lastLine = (text: string): string => text.trimEnd().split('\n').at(-1) ?? '';

describe('status and diff answers from a preview, as printed', () => {
  const privateKey = generatePrivateKey();
  const psk = 'KVJp2hZrDCb2uY7fQKzbH6iTo+oiFePJkM5LhA8AA+o=';
  const [ka, kb, kx] = Array.from({ length: 3 }, () => publicKeyOf(generatePrivateKey()));
  const desiredPeers = [
    { kind: 'Peer', name: 'node-a', publicKey: ka, allowedIPs: ['10.244.1.0/24'], endpoint: '198.18.0.1:51820', presharedKey: psk },
    { kind: 'Gateway', name: 'gw', publicKey: kb, allowedIPs: ['10.244.9.0/24'], endpoint: '198.18.0.9:51820' },
  ];
  const live = {
    privateKey,
    publicKey: publicKeyOf(privateKey),
    listenPort: 51820,
    fwmark: 0x2000,
    peers: [
      { ...blankPeerState(ka), allowedIPs: ['10.244.7.0/24'], endpoint: '198.18.0.1:51820', presharedKey: psk },
      { ...blankPeerState(kx), allowedIPs: ['10.99.0.0/24'] },
    ],
  };
  const device = { privateKey, listenPort: 51820, fwmark: 0x2000, peers: desiredPeers };
  const desired = { device, routes: ['10.244.1.0/24', '10.244.9.0/24'] };
  const preview: Preview = {
    at: new Date(),
    desired,
    live,
    ops: planDevice(device, live).ops,
    drift: deviceDrift(device, live),
    routes: planRoutes(desired.routes, [desired.routes], [{ dst: '10.244.1.0/24', dev: 'wg0' }], new Set(['10.244.1.0/24']), 'wg0'),
  };
  const wireguard: WireguardStatus = { mode: 'spawn', state: 'running', pid: 4242, restarts: 1, failures: 0, lastError: null, since: new Date(0), healthy: true };
  const escape = (k: string): string => k.replace(/[+/]/g, '\\$&');

  test('status: desired against live, named; refused objects; not in sync; no key material', () => {
    const s = statusAnswer({
      member: { role: 'node', kind: 'Peer', name: 'node-b', interface: 'wg0', publicKey: 'B' },
      synced: true,
      wireguard,
      passes: 3,
      lastPass: null,
      refused: [{ kind: 'Peer', name: 'evil', reason: 'NotInNodePodCIDRs', field: 'spec.allowedIPs[0]', message: "Peer evil: spec.allowedIPs[0] 10.244.2.0/24 is not inside Node evil's podCIDRs" }],
      preview,
    });
    assert.deepEqual(s.peers, {
      desired: 2,
      onDevice: 2,
      missing: [{ kind: 'Gateway', name: 'gw', publicKey: kb }],
      extra: [{ publicKey: kx }],
      different: [{ kind: 'Peer', name: 'node-a', publicKey: ka, fields: ['allowedIPs'] }],
      settings: [],
    });
    assert.deepEqual(s.routes, { desired: 2, missing: ['10.244.9.0/24'], extra: [], conflicts: [] });
    assert.equal(s.inSync, false);
    assert.equal(s.wireguard.restarts, 1);
    const json = JSON.stringify(s);
    assert.ok(!json.includes(privateKey) && !json.includes(psk), 'no private or preshared key in the answer');
    const text = formatStatus(s);
    assert.match(text, /^Peer node-b \(agent\) on wg0$/m);
    assert.match(text, /^wireguard-go: running \(pid 4242\), spawn mode, 1 restart$/m);
    assert.match(text, /^peers: +2 desired, 2 on the device, 1 missing, 1 extra, 1 different$/m);
    assert.match(text, /missing \(desired, not on the device\):\n +Gateway\/gw\n/);
    assert.match(text, new RegExp(`extra \\(on the device, not desired\\):\\n +\\(unnamed\\) ${escape(kx)}\\n`));
    assert.match(text, /configured differently:\n +Peer\/node-a: allowedIPs\n/);
    assert.match(text, /^routes: +2 desired, 1 missing, 0 extra$/m);
    assert.match(text, /Peer\/evil \(NotInNodePodCIDRs\): Peer evil: spec\.allowedIPs\[0\]/);
    assert.match(text, /in sync: +NO/);
    assert.ok(!text.includes(privateKey) && !text.includes(psk));
  });

  test('status with no desired state yet, and with a device that cannot be read', () => {
    const base = { member: { role: 'gateway' as const, kind: 'Gateway', name: 'gw', interface: 'wg-gw', publicKey: 'G' }, synced: false, wireguard, passes: 0, lastPass: null, refused: [] };
    assert.match(formatStatus(statusAnswer({ ...base, preview: null })), /source: +NOT SYNCED[\s\S]*peers: +no desired state yet/);
    const s = statusAnswer({ ...base, preview: null, previewError: 'UAPI get on /var/run/wireguard/wg-gw.sock: connect ENOENT' });
    assert.equal(s.deviceError, 'UAPI get on /var/run/wireguard/wg-gw.sock: connect ENOENT');
    assert.match(formatStatus(s), /device: +cannot read it: UAPI get/);
  });

  test('diff: +, - and ~ lines for peers and routes, counted; no key material', () => {
    const d: DiffAnswer = diffAnswer(preview);
    assert.deepEqual(d.device.add, [{ kind: 'Gateway', name: 'gw', publicKey: kb, allowedIPs: ['10.244.9.0/24'], endpoint: '198.18.0.9:51820' }]);
    assert.deepEqual(d.device.update, [{ kind: 'Peer', name: 'node-a', publicKey: ka, fields: ['allowedIPs'] }]);
    assert.deepEqual(d.device.remove, [{ publicKey: kx }]);
    assert.deepEqual(d.routes?.add, ['10.244.9.0/24']);
    assert.equal(d.changes, 5, '3 peers, 1 route, 1 fallback');
    assert.equal(
      formatDiff(d),
      [
        `- peer (unnamed) ${kx}`,
        `+ peer Gateway/gw ${kb} allowed-ips 10.244.9.0/24 endpoint 198.18.0.9:51820`,
        `~ peer Peer/node-a ${ka}: allowedIPs`,
        '+ route 10.244.9.0/24',
        '+ unreachable 10.244.9.0/24',
        '',
      ].join('\n'),
    );
    assert.ok(!JSON.stringify(d).includes(privateKey) && !JSON.stringify(d).includes(psk));
    const keyChange = diffAnswer({ ...preview, ops: [{ op: 'device', privateKey: generatePrivateKey(), listenPort: 51821 }], routes: null });
    assert.deepEqual(keyChange.device.settings, ['privateKey', 'listenPort']);
    assert.equal(formatDiff(keyChange), '~ device privateKey\n~ device listenPort\n');
    assert.equal(formatDiff(diffAnswer({ ...preview, ops: [], routes: null })), 'no changes: the device and the routes are what the desired state says\n');
    assert.equal(formatDiff(diffAnswer(null)), 'the source has not synced yet: a pass would leave the device as it is\n');
  });

  test('reconcile: what the pass did, or why there was none', () => {
    const at = new Date(Date.now() - 2000).toISOString();
    const text = formatReconcile({ pass: { at, full: true, sets: 1, added: [{ kind: 'Peer', name: 'node-a', publicKey: ka }], updated: [], removed: [], routesAdded: [], routesRemoved: [] } });
    assert.match(text, /^last pass: .* \(2 s ago\), full, 1 set\n +1 added\n\+ peer Peer\/node-a /);
    assert.equal(formatReconcile({ pass: null }), 'no pass: the source has not synced yet, so the device is left as it is\n');
  });
});

describe('the client: which socket, and errors that say what to do', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-control-client-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the socket: the flag, then $AKS_MESH_CONTROL_SOCKET, then the interface (flag, $AKS_MESH_INTERFACE, wg-mesh)', () => {
    assert.equal(resolveControlSocket({ socket: '/x.sock', interface: 'wg0' }, { AKS_MESH_CONTROL_SOCKET: '/y.sock' }), '/x.sock');
    assert.equal(resolveControlSocket({ interface: 'wg0' }, { AKS_MESH_CONTROL_SOCKET: '/y.sock' }), '/y.sock');
    assert.equal(resolveControlSocket({ interface: 'wg0' }, {}), '/var/run/aks-mesh/wg0.sock');
    assert.equal(resolveControlSocket({}, { AKS_MESH_INTERFACE: 'wg-gw', AKS_MESH_CONTROL_SOCKET: 'off' }), '/var/run/aks-mesh/wg-gw.sock');
    assert.equal(resolveControlSocket({}, {}), '/var/run/aks-mesh/wg-mesh.sock');
  });

  test('no agent there; permission denied; a failing request', async () => {
    const path = join(dir, 'none.sock');
    await assert.rejects(controlRequest(path, 'status', 5000), (err: unknown) => {
      assert.ok(err instanceof ControlError);
      assert.equal(err.message, `no agent listening on ${path} (is the agent running on this node? --control-socket or --interface choose another socket)`);
      return true;
    });
    assert.equal(connectProblem('/s.sock', Object.assign(new Error('x'), { code: 'EACCES' })), "permission denied: the control socket /s.sock is owner-only; run as root (or as the agent's user)");
    const live = join(dir, 'live.sock');
    const server = await ControlServer.start(
      live,
      {
        status: async () => {
          throw new Error('boom');
        },
        reconcile: async () => ({ pass: null }),
        diff: async () => diffAnswer(null),
      },
      { log: silentLogger },
    );
    try {
      await assert.rejects(controlRequest(live, 'status', 5000), { message: `the agent on ${live} could not status: boom` });
      assert.deepEqual(await controlRequest(live, 'reconcile', 5000), { pass: null });
    } finally {
      await server.close();
    }
  });
});

describe('exit codes a script can use: status --local and diff, as the CLI runs them', () => {
  // The answers come from a real control socket with fixed handlers: the states they stand for (a
  // device that cannot be read, a failed pass) are what this test is about, and what a real member
  // answers in them is e2e/control.test.ts's.
  const at = new Date().toISOString();
  const inSync: StatusAnswer = {
    member: { role: 'node', kind: 'Peer', name: 'node-a', interface: 'wg0', publicKey: 'A' },
    source: { synced: true },
    wireguard: { mode: 'spawn', state: 'running', pid: 7, restarts: 0, failures: 0, lastError: null, since: at, healthy: true },
    passes: 2,
    lastPass: { at, full: true, sets: 0, added: [], updated: [], removed: [], routesAdded: [], routesRemoved: [] },
    peers: { desired: 1, onDevice: 1, missing: [], extra: [], different: [], settings: [] },
    routes: null,
    refused: [],
    inSync: true,
  };
  const drift: StatusAnswer = { ...inSync, peers: { ...inSync.peers!, onDevice: 0, missing: [{ kind: 'Peer', name: 'node-b', publicKey: 'B' }] }, inSync: false };
  const failedPass: StatusAnswer = { ...inSync, lastPass: { ...inSync.lastPass!, error: 'UAPI set on /var/run/wireguard/wg0.sock: errno=22' } };
  const unreadable: StatusAnswer = { ...inSync, peers: null, deviceError: 'UAPI get on /var/run/wireguard/wg0.sock: no complete answer within 5000 ms', inSync: false };
  const notSynced: StatusAnswer = { ...inSync, source: { synced: false }, lastPass: null, peers: null, inSync: false };
  const noChange: DiffAnswer = { at, synced: true, device: { settings: [], add: [], update: [], remove: [] }, routes: null, changes: 0 };
  const change: DiffAnswer = { ...noChange, device: { ...noChange.device, remove: [{ publicKey: 'X' }] }, changes: 1 };

  let dir: string;
  let socket: string;
  let server: ControlServer;
  let status: StatusAnswer = inSync;
  let diff: () => Promise<DiffAnswer> = async () => noChange;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-control-exit-'));
    socket = join(dir, 'wg0.sock');
    server = await ControlServer.start(socket, { status: async () => status, reconcile: async () => ({ pass: null }), diff: () => diff() }, { log: silentLogger });
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the last line of status --local says which, and names diff and reconcile only where they can help', () => {
    assert.deepEqual(localVerdict(inSync), { ok: true, line: 'in sync:     yes' });
    assert.deepEqual(localVerdict(drift), { ok: false, line: 'in sync:     NO (aks-mesh diff shows what a pass would change; aks-mesh reconcile runs one now)' });
    assert.deepEqual(localVerdict({ ...drift, lastPass: failedPass.lastPass }), { ok: false, line: 'in sync:     NO, and the last pass FAILED (aks-mesh diff shows what a pass would change; aks-mesh reconcile runs one now)' });
    assert.deepEqual(localVerdict(failedPass), { ok: false, line: 'in sync:     yes, but the last pass FAILED (see "last pass:" above; aks-mesh reconcile tries one now)' });
    assert.deepEqual(localVerdict(unreadable), { ok: false, line: 'in sync:     UNKNOWN: the device cannot be read (see "device:" above: is wireguard-go running and answering?)' });
    assert.deepEqual(localVerdict(notSynced), { ok: false, line: 'in sync:     NO: the source has not synced yet (Peers and Gateways not read), so the device is left as it is' });
    for (const s of [unreadable, notSynced]) assert.doesNotMatch(formatStatus(s), /aks-mesh (diff|reconcile)/, 'no hint where neither can help');
  });

  test('status --local: exit 0 in sync; 1 out of sync, after a failed pass, or with a device it cannot read; 1 with no agent', async () => {
    for (const [what, answer, code] of [['in sync', inSync, 0], ['drift', drift, 1], ['a failed pass', failedPass, 1], ['an unreadable device', unreadable, 1], ['not synced', notSynced, 1]] as const) {
      status = answer;
      const text = await cli(['status', '--local', '--control-socket', socket]);
      assert.equal(text.code, code, `${what}: ${text.stdout}${text.stderr}`);
      assert.equal(lastLine(text.stdout), localVerdict(answer).line, what);
      const json = await cli(['status', '--local', '--control-socket', socket, '--json']);
      assert.equal(json.code, code, `${what} (--json): ${json.stderr}`);
      assert.equal((JSON.parse(json.stdout) as StatusAnswer).inSync, answer.inSync);
    }
    const none = await cli(['status', '--local', '--control-socket', join(dir, 'none.sock')]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^aks-mesh: no agent listening on /);
  });

  test('diff: 0 nothing would change, 1 something would, 2 trouble (no agent, an agent that cannot diff, no answer, bad flags); reconcile keeps 1', async () => {
    diff = async () => noChange;
    assert.equal((await cli(['diff', '--control-socket', socket])).code, 0);
    diff = async () => change;
    const changed = await cli(['diff', '--control-socket', socket]);
    assert.equal(changed.code, 1, changed.stderr);
    assert.equal(changed.stdout, '- peer (unnamed) X\n');

    const none = join(dir, 'none.sock');
    const noAgent = await cli(['diff', '--control-socket', none]);
    assert.deepEqual([noAgent.code, noAgent.stdout, noAgent.stderr], [2, '', `aks-mesh: no agent listening on ${none} (is the agent running on this node? --control-socket or --interface choose another socket)\n`]);
    diff = async () => {
      throw new Error('UAPI get on /var/run/wireguard/wg0.sock: no complete answer within 5000 ms');
    };
    const cannot = await cli(['diff', '--control-socket', socket, '--json']);
    assert.deepEqual([cannot.code, cannot.stdout], [2, '']);
    assert.equal(cannot.stderr, `aks-mesh: the agent on ${socket} could not diff: UAPI get on /var/run/wireguard/wg0.sock: no complete answer within 5000 ms\n`);
    diff = () => new Promise<never>(() => undefined);
    const hung = await cli(['diff', '--control-socket', socket, '--timeout', '1']);
    assert.deepEqual([hung.code, hung.stderr], [2, `aks-mesh: the agent on ${socket} did not answer diff within 1 s (--timeout)\n`]);
    assert.equal((await cli(['diff', '--control-socket', socket, '--timeout', '0'])).code, 2, 'a bad flag');
    assert.equal((await cli(['diff', '--no-such-flag'])).code, 2, 'an unknown flag');

    const reconcile = await cli(['reconcile', '--control-socket', none]);
    assert.equal(reconcile.code, 1, 'reconcile: trouble is 1 (its 1 already means the pass failed: the agent could not do it)');
  });

  test("a socket of another user is refused before anything is sent to it, naming its owner (status 1, diff 2)", { skip: nobodyUnavailable() }, async () => {
    // What another user could leave in a sticky folder (/tmp) between two runs of an agent: root may
    // connect to any socket, so only its owner tells it apart from the agent's.
    const foreign = join(dir, 'foreign.sock');
    let connections = 0;
    const plain = createServer((c) => {
      connections++;
      // Cut at once, so that a client that did connect fails quickly instead of waiting for an answer.
      c.destroy();
    });
    await new Promise<void>((resolve) => plain.listen(foreign, resolve));
    try {
      chownSync(foreign, NOBODY, NOBODY);
      const me = process.geteuid?.() ?? 0;
      const expected = `aks-mesh: the control socket ${foreign} is owned by ${describeUid(NOBODY)}, not by root or by you (${describeUid(me)}): refusing to talk to it, another user may have put it there (an agent running as ${describeUid(NOBODY)} is asked as that user; a socket in a folder only its agent may write to, such as the default /var/run/aks-mesh, cannot be replaced)\n`;
      const s = await cli(['status', '--local', '--control-socket', foreign]);
      assert.deepEqual([s.code, s.stdout, s.stderr], [1, '', expected]);
      const d = await cli(['diff', '--control-socket', foreign]);
      assert.deepEqual([d.code, d.stderr], [2, expected]);
      const r = await cli(['reconcile', '--control-socket', foreign]);
      assert.deepEqual([r.code, r.stderr], [1, expected]);
      assert.equal(connections, 0, 'nothing connected to it');
      // Root's own socket (the agent's, in the chart) is answered as before.
      status = inSync;
      assert.equal((await cli(['status', '--local', '--control-socket', socket])).code, 0);
    } finally {
      await new Promise((r) => plain.close(r));
    }
  });
});
