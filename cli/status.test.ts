/**
 * `aks-mesh status` as an operator runs it against a real kube-apiserver (TestCluster, 1.20): the
 * warning that writes are not node-bound where the API server has no ValidatingAdmissionPolicy, and
 * nothing from the API reaching the terminal as an escape sequence or control character.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { createPeer, customApi, installCrds } from '../sandbox/kube.ts';
import { GROUP, NODE_BOUND_POLICY, VERSION } from '../mesh/index.ts';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';
import { meshHealth, meshHealthLines, nodeBoundWarning, printable } from './commands/status.ts';
import type { MemberHealth } from './commands/status.ts';
import { UNHEALTHY_REASONS } from '../mesh/crd/schema.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Anything a terminal would act on: ESC, other C0/C1 controls, bidi overrides and isolates. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

describe('printable', () => {
  test('drops escape sequences (colours, window titles, hyperlinks, cursor moves) and keeps their text', () => {
    assert.equal(printable('\x1b[31mred\x1b[0m'), 'red');
    assert.equal(printable('\x1b]0;owned\x07title'), 'title');
    assert.equal(printable('\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\'), 'link');
    assert.equal(printable('a\x1b[2J\x1b[Hb\x1bc\x1b(Bd'), 'abd');
  });

  test('line breaks become one space; other controls, bidi overrides and zero-width marks go', () => {
    assert.equal(printable('line1\r\nline2\tend'), 'line1 line2 end');
    assert.equal(printable('a\x00b\x07c\x7fd\x9be\u202ef\u2066g\u200bh'), 'abcdefgh');
  });

  test('whatever it is given, nothing unsafe is left and printable text is kept', () => {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const s = Array.from({ length: next() % 40 }, () => String.fromCharCode(next() % 3 === 0 ? next() % 0x30 : next() % 0x3000)).join('');
      const out = printable(s);
      assert.doesNotMatch(out, UNSAFE, JSON.stringify(s));
      assert.equal(printable(out), out, 'idempotent');
    }
    assert.equal(printable('Peer node-b: allowedIPs 10.244.9.0/24 is not inside Node node-b’s podCIDRs'), 'Peer node-b: allowedIPs 10.244.9.0/24 is not inside Node node-b’s podCIDRs');
  });
});

describe('the broken pairs, from what each member lists on its status', () => {
  const h = (summary: string, unhealthy: NonNullable<MemberHealth['health']>['unhealthy'], extra: Partial<NonNullable<MemberHealth['health']>> = {}): MemberHealth['health'] => ({
    desired: Number(summary.split('/')[1]),
    configured: 0,
    handshakeWithin3m: Number(summary.split('/')[0]),
    healthy: Number(summary.split('/')[0]),
    summary,
    ...(unhealthy ? { unhealthy } : {}),
    ...extra,
  });

  test('each unordered pair once, with every reason and who reports it; refused objects apart; cut lists said', () => {
    const members: MemberHealth[] = [
      { kind: 'Peer', name: 'node-b', health: h('1/3', [{ kind: 'Peer', name: 'node-a', reason: 'StaleHandshake', lastHandshake: '2026-12-01T07:00:00Z' }, { kind: 'Peer', name: 'evil', reason: 'Refused' }]) },
      { kind: 'Peer', name: 'node-a', health: h('1/3', [{ kind: 'Peer', name: 'node-b', reason: 'StaleHandshake', lastHandshake: '2026-12-01T07:00:01Z' }, { kind: 'Gateway', name: 'gw', reason: 'NoHandshake' }]) },
      { kind: 'Peer', name: 'node-c', health: h('2/2', undefined) },
      { kind: 'Gateway', name: 'gw', health: h('2/3', [{ kind: 'Peer', name: 'node-a', reason: 'NotConfigured' }], { unhealthyOmitted: 4 }) },
      { kind: 'Peer', name: 'evil', refusedMessage: "Peer evil: spec.allowedIPs[0] 10.244.0.0/16 overlaps Node node-a's podCIDR 10.244.0.0/24" },
    ];
    const got = meshHealth(members);
    assert.deepEqual(got.brokenPairs, [
      { members: ['Gateway/gw', 'node-a'], reasons: [{ reason: 'NoHandshake', reportedBy: ['node-a'] }, { reason: 'NotConfigured', reportedBy: ['Gateway/gw'] }] },
      { members: ['node-a', 'node-b'], reasons: [{ reason: 'StaleHandshake', reportedBy: ['node-a', 'node-b'], lastHandshake: '2026-12-01T07:00:01Z' }] },
    ]);
    assert.deepEqual(got.refused, [{ kind: 'Peer', name: 'evil', reportedBy: ['node-b'], message: "Peer evil: spec.allowedIPs[0] 10.244.0.0/16 overlaps Node node-a's podCIDR 10.244.0.0/24" }]);
    assert.deepEqual(got.omitted, [{ member: 'Gateway/gw', count: 4 }]);
    assert.deepEqual(meshHealthLines(got, members.length), [
      'broken pairs:',
      '  Gateway/gw ↔ node-a: NoHandshake (reported by node-a); NotConfigured (reported by Gateway/gw)',
      '  node-a ↔ node-b: StaleHandshake (reported by node-a, node-b; last handshake 2026-12-01T07:00:01Z)',
      '  Gateway/gw lists 4 more unhealthy peers than its status holds',
      'refused:',
      "  Peer evil: Peer evil: spec.allowedIPs[0] 10.244.0.0/16 overlaps Node node-a's podCIDR 10.244.0.0/24 (reported by node-b)",
    ]);
    assert.deepEqual(meshHealthLines(meshHealth([{ kind: 'Peer', name: 'node-c', health: h('2/2', undefined) }]), 1), ['broken pairs: none']);
    // A list that reaches its refused entries holds every pair: only refused objects were cut, and the
    // broken pair is still named.
    const cut = meshHealth([{ kind: 'Peer', name: 'node-a', health: h('1/2', [{ kind: 'Peer', name: 'z', reason: 'NoHandshake' }, { kind: 'Gateway', name: 'a-00', reason: 'Refused' }], { unhealthyOmitted: 9 }) }]);
    assert.deepEqual(cut.omitted, [{ member: 'node-a', count: 9, refusedOnly: true }]);
    assert.deepEqual(meshHealthLines(cut, 1).slice(0, 3), ['broken pairs:', '  node-a ↔ z: NoHandshake (reported by node-a)', '  node-a lists 9 more refused objects than its status holds']);
  });

  test('whatever a writer put on a status, nothing unsafe is printed and nothing malformed throws', () => {
    const members = [
      { kind: 'Peer', name: 'node-a', health: { ...h('0/1', undefined), unhealthy: [{ kind: 'Peer', name: 'x\x1b[2Jy', reason: 'No\u202eHandshake' }, { kind: 'Evil', name: 'z', reason: 'NoHandshake' }, null, 'text'] } },
      { kind: 'Peer', name: 'node-b', health: { unhealthy: 'not a list' } },
    ] as unknown as MemberHealth[];
    const lines = meshHealthLines(meshHealth(members), 2);
    assert.deepEqual(lines, ['broken pairs:', '  node-a ↔ xy: NoHandshake (reported by node-a)']);
    for (const l of lines) assert.doesNotMatch(l, UNSAFE);
  });
});

describe('nodeBoundWarning', () => {
  test('says why writes are not node-bound: API not served, policy or binding missing, or not readable', () => {
    assert.match(nodeBoundWarning({ served: false }, NODE_BOUND_POLICY) ?? '', /does not serve ValidatingAdmissionPolicy.*writes are not node-bound: a compromised node could rewrite other nodes' Peers/);
    assert.match(nodeBoundWarning({ served: true, policy: 'missing', binding: 'missing' }, NODE_BOUND_POLICY) ?? '', /ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding aks-mesh-node-bound-writes not installed.*not node-bound/);
    assert.match(nodeBoundWarning({ served: true, policy: 'present', binding: 'missing' }, NODE_BOUND_POLICY) ?? '', /^warning: ValidatingAdmissionPolicyBinding aks-mesh-node-bound-writes not installed/);
    assert.match(nodeBoundWarning({ served: true, policy: 'unknown', binding: 'present' }, NODE_BOUND_POLICY) ?? '', /could not read/);
    assert.equal(nodeBoundWarning({ served: true, policy: 'present', binding: 'present' }, NODE_BOUND_POLICY), null);
  });
});

const skip = kubeTestsUnavailable() ?? false;

describe('aks-mesh status against kube-apiserver 1.20', { skip }, () => {
  let cluster: TestCluster;
  let kubeconfig: string;

  before(async () => {
    cluster = await TestCluster.start();
    await installCrds(cluster);
    kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'status.kubeconfig'));
  });
  after(() => cluster?.stop());

  test('warns that writes are not node-bound: 1.20 serves no ValidatingAdmissionPolicy', async () => {
    const r = await cli(['status', '--kubeconfig', kubeconfig]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: this API server does not serve ValidatingAdmissionPolicy \(admissionregistration\.k8s\.io\/v1, Kubernetes >= 1\.30\), so writes are not node-bound/);
    const json = await cli(['status', '--kubeconfig', kubeconfig, '--json']);
    assert.match(json.stderr, /writes are not node-bound/);
    assert.doesNotThrow(() => JSON.parse(json.stdout), 'the warning stays out of the JSON');
  });

  test('a condition message with terminal escapes and control characters is printed without them', async () => {
    const kc = cluster.kubeConfig();
    await createPeer(kc, 'evil', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.99.0.0/24'] });
    const message = '\x1b]0;owned\x07\x1b[31mallowedIPs\x1b[0m 10.99.0.0/24\nis \x1b[2Jrefused\u202e\x9b';
    await customApi(kc).patchClusterCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: 'peers',
        name: 'evil',
        body: { status: { conditions: [{ type: 'Accepted', status: 'False', reason: 'Test', message, lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] } },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    const table = await cli(['status', '--kubeconfig', kubeconfig]);
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((l) => l.startsWith('Peer ') && l.includes('evil'));
    assert.ok(row, table.stdout);
    assert.match(row, /False\s.*allowedIPs 10\.99\.0\.0\/24 is refused$/);
    assert.doesNotMatch(table.stdout, UNSAFE);
    const json = await cli(['status', '--kubeconfig', kubeconfig, '--json']);
    const rows = (JSON.parse(json.stdout) as { members: Array<{ name: string; problem: string }> }).members;
    assert.equal(rows.find((r) => r.name === 'evil')?.problem, 'allowedIPs 10.99.0.0/24 is refused');
  });
});

describe('status: HEALTHY in the table, every reason in --help, DeviceUnreadable named as its cause (audit12 #2, #12)', () => {
  test('--help names every reason a member may list, Refused and DeviceUnreadable included, and the HEALTHY column', async () => {
    const r = await cli(['status', '--help']);
    assert.equal(r.code, 0, r.stderr);
    // yargs wraps the text: compare it as one line.
    const help = r.stdout.replace(/\s+/g, ' ');
    for (const reason of UNHEALTHY_REASONS) assert.match(help, new RegExp(`\\b${reason} \\(`), `${reason} missing from:\n${r.stdout}`);
    assert.match(help, /HEALTHY/);
  });

  test('a member that cannot read its device is named as the cause of its pairs, not its peers', () => {
    const lines = meshHealthLines(
      meshHealth([
        {
          kind: 'Peer',
          name: 'node-2',
          health: { desired: 2, configured: 2, handshakeWithin3m: 0, healthy: 0, summary: '0/2', unhealthy: [{ kind: 'Peer', name: 'node-0', reason: 'DeviceUnreadable', lastHandshake: '2026-12-01T07:56:11Z' }, { kind: 'Peer', name: 'node-1', reason: 'DeviceUnreadable' }] },
        },
        { kind: 'Peer', name: 'node-0', health: { desired: 2, configured: 2, handshakeWithin3m: 2, healthy: 2, summary: '2/2' } },
      ]),
      2,
    );
    assert.deepEqual(lines, [
      'broken pairs:',
      '  node-0 ↔ node-2: DeviceUnreadable (node-2 cannot read its own device; last handshake 2026-12-01T07:56:11Z)',
      '  node-1 ↔ node-2: DeviceUnreadable (node-2 cannot read its own device)',
    ]);
  });

  describe('the table against kube-apiserver 1.20', { skip }, () => {
    let cluster: TestCluster;
    let kubeconfig: string;

    before(async () => {
      cluster = await TestCluster.start();
      await installCrds(cluster);
      kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'status-healthy.kubeconfig'));
    });
    after(() => cluster?.stop());

    test('HEALTHY shows status.peers.summary (n/m), as kubectl get mp -o wide does; "-" before a member wrote health', async () => {
      const kc = cluster.kubeConfig();
      for (const [i, name] of ['node-a', 'node-b'].entries()) await createPeer(kc, name, { publicKey: publicKeyOf(generatePrivateKey()), endpoint: `198.51.100.${i + 1}:51820`, allowedIPs: [`10.251.${i}.0/24`] });
      // Counts chosen so that HEALTHY (1/3) differs from PEERS (configured 2/3) and HANDSHAKES<3M (2/3).
      const peers = { desired: 3, configured: 2, handshakeWithin3m: 2, healthy: 1, summary: '1/3', unhealthy: [{ kind: 'Peer', name: 'node-b', reason: 'DeviceUnreadable' }] };
      await customApi(kc).patchClusterCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: 'peers', name: 'node-a', body: { status: { peers } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
      const r = await cli(['status', '--kubeconfig', kubeconfig]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.match(lines[0], /^KIND\s+NAME\s+NODE\s+MESH IP\s+READY\s+ACCEPTED\s+HEALTHY\s+PEERS\s+HANDSHAKES<3M\s+LAST SYNC\s+PROBLEM$/);
      assert.match(r.stdout, /^Peer\s+node-a\s+-\s+-\s+-\s+-\s+1\/3\s+2\/3\s+2\/3\s+-\s*$/m, r.stdout);
      assert.match(r.stdout, /^Peer\s+node-b\s+-\s+-\s+-\s+-\s+-\s+-\s+-\s+-\s*$/m, r.stdout);
      assert.match(r.stdout, /node-a ↔ node-b: DeviceUnreadable \(node-a cannot read its own device\)/);
      // The CRD's enum takes the new reason (the patch above would be refused otherwise).
      const wide = await cluster.kubectl(['get', 'mp', 'node-a', '-o', 'wide']);
      assert.match(wide.stdout, /^node-a\s.*\s1\/3\s/m, wide.stdout);
    });
  });
});
