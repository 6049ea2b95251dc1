/**
 * What `aks-mesh status --local` and `aks-mesh diff` say (mesh/control.ts's answers from a preview,
 * printed by cli/control-client.ts), with no key in either; the client's errors name the socket and
 * say what to do; which socket it finds. Real agents answering through the CLI: e2e/control.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { blankPeerState, generatePrivateKey, publicKeyOf, silentLogger } from '../native/index.ts';
import type { WireguardStatus } from '../native/index.ts';
import { ControlServer, diffAnswer, statusAnswer } from '../mesh/control.ts';
import type { DiffAnswer } from '../mesh/control.ts';
import { deviceDrift, planDevice, planRoutes } from '../mesh/reconcile/index.ts';
import type { Preview } from '../mesh/reconcile/index.ts';
import { ControlError, connectProblem, controlRequest, formatDiff, formatReconcile, formatStatus, resolveControlSocket } from './control-client.ts';

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
