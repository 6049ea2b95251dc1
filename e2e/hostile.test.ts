/**
 * Issue 9, "Done when" 2: with some 50 hostile but schema-valid objects in the cluster (stolen keys,
 * default routes and their halves, cloud metadata and platform addresses, the service CIDR, node
 * addresses and subnets, pod space of Nodes with and without podCIDRs, a node's Peer claiming
 * another's CIDR or a supernet of its own, squatted and duplicate mesh IPs, Gateways without nodes,
 * ...), no agent or gateway crashes or stops converging, every pod still reaches every other pod,
 * and each refused object carries a reason naming the field. Once against a real API server (the
 * Accepted condition the agents write), once with --peers-dir (the agents' logs and metrics),
 * there with the file cases too: a FIFO, a symlink to /dev/zero and to a directory, an oversized
 * file, a file that is not YAML, a Node whose podCIDRs is a string, a file written in two steps.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, symlink, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { API_VERSION, GROUP, VERSION, allocateMeshIP, apiMessage } from '../mesh/index.ts';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { ClusterMember } from '../sandbox/cluster.ts';
import { createNode, customApi, parseDump } from '../sandbox/kube.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';

const networkSkip = networkTestsUnavailable() ?? false;
const kubeSkip = networkSkip || (kubeTestsUnavailable() ?? false);

type Expect = { reason: string; field: string } | 'accepted' | { schema: string };
interface Hostile {
  kind: 'Peer' | 'Gateway';
  name: string;
  spec: Record<string, unknown>;
  /** kube mode, then dir mode when it differs. */
  expect: Expect;
  dirExpect?: Expect | 'skip';
}

/** Nodes that exist but run no agent: node-6 and node-7 with pod CIDRs, node-8 without any yet. */
const EXTRA_NODES: Array<{ name: string; podCIDRs: string[]; octet: number }> = [
  { name: 'node-6', podCIDRs: ['10.244.6.0/24'], octet: 66 },
  { name: 'node-7', podCIDRs: ['10.244.7.0/24'], octet: 67 },
  { name: 'node-8', podCIDRs: [], octet: 68 },
];

const refused = (reason: string, field: string): Expect => ({ reason, field });

/** The hostile objects for this cluster (its keys, addresses and the mesh IPs its members will want). */
function hostileObjects(c: MeshCluster, mode: 'kube' | 'dir'): Hostile[] {
  const [n0, n1, n2] = c.nodes;
  const gw = c.gateway as ClusterMember;
  const key = (): string => publicKeyOf(generatePrivateKey());
  const ext = (allowedIPs: string[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({ publicKey: key(), endpoint: '192.0.2.66:51820', allowedIPs, ...extra });
  const twinKey = key();
  // In kube mode members allocate their mesh IPs: squat on the first choices, before they register.
  // In dir mode the files hold them (writeMembers below): squat on those.
  const node0MeshIP = mode === 'kube' ? allocateMeshIP({ kind: 'Peer', name: n0.name }, c.meshCIDR, []) : '100.96.0.1';
  const gatewayMeshIP = allocateMeshIP({ kind: 'Gateway', name: gw.name }, c.meshCIDR, []);
  const P = (name: string, spec: Record<string, unknown>, expect: Expect, dirExpect?: Expect | 'skip'): Hostile => ({ kind: 'Peer', name, spec, expect, ...(dirExpect ? { dirExpect } : {}) });
  const G = (name: string, spec: Record<string, unknown>, expect: Expect, dirExpect?: Expect | 'skip'): Hostile => ({ kind: 'Gateway', name, spec, expect, ...(dirExpect ? { dirExpect } : {}) });
  const gwSpec = (extra: Record<string, unknown>): Record<string, unknown> => ({ publicKey: key(), endpoint: '192.0.2.77:51820', podCIDRs: ['10.244.0.0/16'], ...extra });
  return [
    // Stolen keys: older than the members' own objects (created before the agents start).
    P('steal-key-node-0', ext(['192.168.100.0/24'], { publicKey: n0.publicKey }), refused('DuplicatePublicKey', 'spec.publicKey')),
    G('steal-key-node-1', gwSpec({ publicKey: n1.publicKey, meshIP: '100.96.250.1' }), refused('DuplicatePublicKey', 'spec.publicKey')),
    P('steal-key-gateway', ext(['192.168.101.0/24'], { publicKey: gw.publicKey }), refused('DuplicatePublicKey', 'spec.publicKey')),
    P('impostor-node-1', { publicKey: n1.publicKey, endpoint: '192.0.2.66:51820', allowedIPs: [n1.podCIDR], nodeName: n1.name }, refused('NodeNameMismatch', 'spec.nodeName')),
    P('node-42', { publicKey: key(), allowedIPs: ['10.244.42.0/24'], nodeName: 'node-42', meshIP: '100.96.240.42' }, refused('NodeNotFound', 'spec.nodeName')),
    // Peers named after a node, claiming another node's CIDR, a supernet of their own, or pod space they do not have.
    P('node-7', { publicKey: key(), allowedIPs: ['10.244.7.0/24', n0.podCIDR], nodeName: 'node-7', meshIP: '100.96.240.7' }, refused('AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[1]')),
    P('node-6', { publicKey: key(), allowedIPs: ['10.244.0.0/16'], nodeName: 'node-6', meshIP: '100.96.240.6' }, refused('AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[0]')),
    P('node-8', { publicKey: key(), allowedIPs: ['10.244.8.0/24'], nodeName: 'node-8', meshIP: '100.96.240.8' }, refused('AllowedIPsOutsidePodCIDRs', 'spec.allowedIPs[0]')),
    // Cloud metadata and platform addresses.
    P('metadata', ext(['169.254.169.254/32']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('azure-platform', ext(['168.63.129.16/32']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('node-local-dns', ext(['192.168.102.0/24', '169.254.20.10/32']), refused('AllowedIPsReserved', 'spec.allowedIPs[1]')),
    P('aws-metadata-v6', ext(['fd00:ec2::254/128']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    // Default routes, their halves, and anything that large.
    P('default-v4', ext(['0.0.0.0/0']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    P('default-v6', ext(['::/0']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    P('half-v4-low', ext(['0.0.0.0/1']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    P('half-v4-high', ext(['128.0.0.0/1']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    P('half-v6-low', ext(['::/1']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    P('half-v6-high', ext(['8000::/1']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    P('an-eighth', ext(['64.0.0.0/3']), refused('AllowedIPsTooBroad', 'spec.allowedIPs[0]')),
    // Loopback, multicast, broadcast, unspecified, link-local, all of IPv4 inside IPv6.
    P('loopback', ext(['127.0.0.1/32']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('multicast', ext(['224.0.0.0/24']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('broadcast', ext(['255.255.255.255/32']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('this-network', ext(['0.0.0.0/8']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('link-local-v6', ext(['fe80::/64']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('multicast-v6', ext(['ff02::/16']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('ipv4-mapped', ext(['::ffff:0:0/96']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    P('nat64', ext(['64:ff9b::/96']), refused('AllowedIPsReserved', 'spec.allowedIPs[0]')),
    // The cluster's own address space.
    P('service-cidr', ext(['10.0.0.0/16']), refused('OverlapsServiceCIDR', 'spec.allowedIPs[0]')),
    P('kube-dns', ext(['192.168.103.0/24', '10.0.0.10/32']), refused('OverlapsServiceCIDR', 'spec.allowedIPs[1]')),
    P('pod-supernet', ext(['10.244.0.0/16']), refused('OverlapsPodCIDR', 'spec.allowedIPs[0]')),
    P('pod-of-node-1', ext([`${n1.podCIDR.replace('.0/24', '.128/25')}`]), refused('OverlapsPodCIDR', 'spec.allowedIPs[0]')),
    P('ten-slash-eight', ext(['10.0.0.0/8']), refused('OverlapsPodCIDR', 'spec.allowedIPs[0]')),
    P('pod-of-node-8', ext(['10.244.8.0/24']), refused('OverlapsClusterCIDR', 'spec.allowedIPs[0]')),
    P('node-address', ext([`${n2.underlayIp}/32`]), refused('OverlapsNodeAddress', 'spec.allowedIPs[0]')),
    P('underlay', ext([c.underlay.subnet]), refused('OverlapsNodeAddress', 'spec.allowedIPs[0]')),
    P('node-subnet', ext(['10.224.0.0/16']), refused('OverlapsNodeSubnet', 'spec.allowedIPs[0]')),
    P('mesh-cidr', ext([c.meshCIDR]), refused('OverlapsMeshCIDR', 'spec.allowedIPs[0]')),
    P('mesh-neighbour', ext(['192.168.104.0/24', '100.96.0.0/24']), refused('OverlapsMeshCIDR', 'spec.allowedIPs[1]')),
    // Mesh IPs: outside the mesh, with a leading zero (the schema refuses it; a directory has none), duplicated, squatted.
    G('gateway-outside-mesh', gwSpec({ meshIP: '10.99.0.1' }), refused('MeshIPOutsideMeshCIDR', 'spec.meshIP')),
    P('leading-zero-mesh-ip', ext(['192.168.105.0/24'], { meshIP: '100.96.0.08' }), { schema: 'spec.meshIP' }, refused('InvalidSpec', 'spec.meshIP')),
    P('leading-zero-cidr', ext(['10.244.01.0/24']), { schema: 'spec.allowedIPs' }, refused('InvalidSpec', 'spec.allowedIPs[0]')),
    P('dup-mesh-a', ext(['192.168.106.0/24'], { meshIP: '100.96.230.1' }), 'accepted'),
    P('dup-mesh-b', ext(['192.168.107.0/24'], { meshIP: '100.96.230.1' }), refused('DuplicateMeshIP', 'spec.meshIP')),
    // Older than node-0's Peer (kube: node-0 takes another address), or against a node's own address (dir: the node keeps it).
    P('squat-node-0', ext(['192.168.108.0/24'], { meshIP: node0MeshIP }), 'accepted', refused('DuplicateMeshIP', 'spec.meshIP')),
    // (In a directory nothing is dated and Gateways rank alike: a Gateway with a smaller name would win there, so not in dir mode.)
    G('a-squat-gateway', gwSpec({ meshIP: gatewayMeshIP }), 'accepted', 'skip'),
    // Gateways without nodes, Gateways sharing a key, overlapping external Peers, a missing Secret.
    G('orphan-gateway', gwSpec({ meshIP: '100.96.251.1', nodeName: 'nowhere' }), 'accepted'),
    G('twin-gw-a', gwSpec({ publicKey: twinKey, meshIP: '100.96.252.1' }), 'accepted'),
    G('twin-gw-b', gwSpec({ publicKey: twinKey, meshIP: '100.96.252.2' }), refused('DuplicatePublicKey', 'spec.publicKey')),
    P('overlap-a', ext(['192.168.110.0/24']), 'accepted'),
    P('overlap-b', ext(['192.168.110.128/25']), refused('OverlapsPeer', 'spec.allowedIPs[0]')),
    P('psk-missing', ext(['192.168.109.0/24'], { presharedKeySecretRef: { namespace: 'kube-system', name: 'no-such-secret', key: 'psk' } }), refused('PresharedKeyMissing', 'spec.presharedKeySecretRef')),
    P('weird-endpoint', ext(['192.168.111.0/24'], { endpoint: '127.0.0.1:51820', persistentKeepalive: 65535 }), 'accepted'),
    P('v6-site', ext(['fd00:99::/64']), 'accepted'),
  ];
}

const expectIn = (h: Hostile, mode: 'kube' | 'dir'): Expect | 'skip' => (mode === 'dir' && h.dirExpect ? h.dirExpect : h.expect);
const isRefusal = (e: Expect | 'skip'): e is { reason: string; field: string } => typeof e === 'object' && 'reason' in e;

/** The /readyz and /metrics of a member, asked from inside its namespace. */
async function fetchFrom(c: MeshCluster, m: ClusterMember, path: string): Promise<{ status: number; body: string }> {
  const script = `fetch('http://${m.metricsAddress}${path}').then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), () => process.stdout.write('{"status":0,"body":""}'))`;
  const { stdout } = await c.box.exec(m.ns, process.execPath, ['-e', script], { timeoutMs: 10_000 });
  return JSON.parse(stdout) as { status: number; body: string };
}

/** What the members' devices hold (wg show dump, an independent reader): every allowed IP, by member. */
async function deviceAllowedIPs(c: MeshCluster): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const m of [...c.nodes, c.gateway as ClusterMember]) {
    const dump = parseDump((await c.box.exec(m.ns, 'wg', ['show', m.interfaceName, 'dump'])).stdout);
    out.set(m.name, new Set([...dump.peers.values()].flatMap((p) => p.allowedIPs)));
  }
  return out;
}

/** Every member's agent still runs, every pod reaches every other pod, the devices hold nothing refused. */
async function assertMeshStands(c: MeshCluster, hostile: Hostile[], mode: 'kube' | 'dir'): Promise<void> {
  await c.waitForMatrix({ timeoutMs: 90_000 });
  for (const m of [...c.nodes, c.gateway as ClusterMember]) assert.ok(c.agentPid(m.name), `the agent of ${m.name} still runs`);
  const held = await deviceAllowedIPs(c);
  const wrong: string[] = [];
  for (const h of hostile) {
    if (!isRefusal(expectIn(h, mode))) continue;
    // Its allowed IPs (a node's pod CIDR it claims stays with the node), or a Gateway's mesh IP.
    const cidrs = (h.kind === 'Peer' ? (h.spec.allowedIPs as string[]) : [`${h.spec.meshIP as string}/32`]).filter((x) => !c.nodes.some((n) => n.podCIDR === x));
    for (const [member, set] of held) for (const x of cidrs) if (set.has(x)) wrong.push(`${member} routes ${x} of refused ${h.kind} ${h.name}`);
  }
  assert.deepEqual(wrong, []);
  for (const m of [...c.nodes, c.gateway as ClusterMember]) {
    await c.waitFor(`${m.name} ready (/readyz)`, async () => (await fetchFrom(c, m, '/readyz')).status === 200, { timeoutMs: 60_000 });
  }
}

describe('50 hostile objects against a real API server: the mesh stands, each refusal names its field', { skip: kubeSkip }, () => {
  let c: MeshCluster;
  let hostile: Hostile[];
  const schemaRefusals = new Map<string, string>();

  before(async () => {
    c = await MeshCluster.start({ nodes: 3, gateway: true, source: 'kube', resyncSeconds: 5 });
    const kc = c.kubeConfig();
    for (const n of EXTRA_NODES) await createNode(kc, n.name, n.podCIDRs, `${c.underlay.prefix}.${n.octet}`);
    hostile = hostileObjects(c, 'kube');
    const api = customApi(kc);
    // Before the agents start: every hostile object is older than the members' own.
    for (const h of hostile) {
      try {
        await api.createClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: h.kind === 'Peer' ? 'peers' : 'gateways',
          body: { apiVersion: API_VERSION, kind: h.kind, metadata: { name: h.name }, spec: h.spec },
        });
      } catch (err) {
        if (!(err instanceof k8s.ApiException) || err.code !== 422) throw err;
        schemaRefusals.set(h.name, apiMessage(err));
      }
    }
    for (const m of [...c.nodes.map((n) => n.name), 'gateway']) await c.startAgent(m);
  });
  after(async () => {
    await c?.stop();
  });

  test('there are at least 50, and the ones the schema can catch are refused by the API server, naming the field', () => {
    assert.ok(hostile.length >= 50, `${hostile.length} hostile objects`);
    const wrong: string[] = [];
    for (const h of hostile) {
      const e = h.expect;
      const got = schemaRefusals.get(h.name);
      if (typeof e === 'object' && 'schema' in e) {
        if (!got?.includes(e.schema)) wrong.push(`${h.name}: expected the API server to refuse it naming ${e.schema}, got ${got ?? 'accepted'}`);
      } else if (got) wrong.push(`${h.name}: the API server refused it: ${got}`);
    }
    assert.deepEqual(wrong, []);
  });

  test('no agent crashes, every pod reaches every other pod, no device holds what was refused', async () => {
    await assertMeshStands(c, hostile, 'kube');
  });

  test("each refused object carries Accepted=False with the reason, its message naming the field; the others don't", async () => {
    const api = customApi(c.kubeConfig());
    const condition = async (h: Hostile): Promise<{ status: string; reason: string; message: string } | undefined> => {
      const obj = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: h.kind === 'Peer' ? 'peers' : 'gateways', name: h.name })) as {
        status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
      };
      return obj.status?.conditions?.find((x) => x.type === 'Accepted');
    };
    const pending = hostile.filter((h) => isRefusal(h.expect));
    await c.waitFor(`Accepted=False on ${pending.length} refused objects`, async () => {
      const missing: string[] = [];
      for (const h of pending) {
        const e = h.expect as { reason: string; field: string };
        const cond = await condition(h);
        if (cond?.status !== 'False' || cond.reason !== e.reason || !cond.message.startsWith(`${h.kind} ${h.name}: ${e.field}`)) missing.push(`${h.name} (${JSON.stringify(cond)})`);
      }
      // (Thrown, so that a timeout shows what is still missing.)
      if (missing.length > 0) throw new Error(`not yet: ${missing.join('; ')}`);
      return true;
    }, { timeoutMs: 90_000, intervalMs: 1000 });
    for (const h of hostile.filter((x) => x.expect === 'accepted')) assert.notEqual((await condition(h))?.status, 'False', `${h.name} is not refused`);
    // The members' own objects are Ready, and kept their keys.
    for (const m of [...c.nodes]) {
      const obj = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: m.name })) as { spec: { publicKey: string; meshIP: string }; status?: { conditions?: Array<{ type: string; status: string }> } };
      assert.equal(obj.spec.publicKey, m.publicKey);
      await c.waitFor(`${m.name} Ready=True`, async () => {
        const o = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: m.name })) as typeof obj;
        return o.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True');
      }, { timeoutMs: 60_000 });
    }
    const node0 = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: 'node-0' })) as { spec: { meshIP: string } };
    assert.notEqual(node0.spec.meshIP, hostile.find((h) => h.name === 'squat-node-0')?.spec.meshIP, 'node-0 took another mesh IP than the older squatter');
  });

  test('more hostile objects while the mesh runs, then a harmless change: still converging', async () => {
    const api = customApi(c.kubeConfig());
    const create = (name: string, spec: Record<string, unknown>): Promise<unknown> =>
      api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', body: { apiVersion: API_VERSION, kind: 'Peer', metadata: { name }, spec } });
    await create('late-steal-node-2', { publicKey: c.nodes[2].publicKey, allowedIPs: ['192.168.120.0/24'] });
    await create('late-default', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['192.168.121.0/24', '0.0.0.0/0'] });
    await create('canary', { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['192.168.250.0/24'] });
    await c.waitFor('the canary in every member\'s device', async () => [...(await deviceAllowedIPs(c)).entries()].every(([m, set]) => m === 'gateway' || set.has('192.168.250.0/24')), { timeoutMs: 60_000 });
    const held = await deviceAllowedIPs(c);
    for (const [m, set] of held) assert.ok(!set.has('192.168.120.0/24') && !set.has('0.0.0.0/0'), `${m} holds nothing of the late hostile objects`);
    await assertMeshStands(c, hostile, 'kube');
  });
});

describe('the same in --peers-dir mode, with the file cases', { skip: networkSkip }, () => {
  let c: MeshCluster;
  let hostile: Hostile[];
  const files: Record<string, string> = {};

  before(async () => {
    c = await MeshCluster.start({ nodes: 3, gateway: true, source: 'dir', resyncSeconds: 5 });
    const dir = c.peersDir as string;
    // Without an API server nobody registers: the members' objects are files, as an administrator writes them.
    c.writePeersFile('members.yaml', [
      ...c.nodes.map((n, i) => ({
        apiVersion: API_VERSION,
        kind: 'Peer',
        metadata: { name: n.name },
        spec: { publicKey: n.publicKey, endpoint: n.endpoint, allowedIPs: [n.podCIDR], meshIP: `100.96.0.${i + 1}`, nodeName: n.name },
      })),
      { apiVersion: API_VERSION, kind: 'Gateway', metadata: { name: 'gateway' }, spec: { publicKey: (c.gateway as ClusterMember).publicKey, endpoint: (c.gateway as ClusterMember).endpoint, meshIP: '100.96.255.1', podCIDRs: ['10.244.0.0/16'] } },
    ]);
    c.writePeersFile(
      'extra-nodes.yaml',
      EXTRA_NODES.map((n) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: n.name }, spec: n.podCIDRs.length ? { podCIDRs: n.podCIDRs } : {}, status: { addresses: [{ type: 'InternalIP', address: `${c.underlay.prefix}.${n.octet}` }] } })),
    );
    hostile = hostileObjects(c, 'dir').filter((h) => expectIn(h, 'dir') !== 'skip');
    const objects = hostile.map((h) => ({ apiVersion: API_VERSION, kind: h.kind, metadata: { name: h.name }, spec: h.spec }));
    for (let i = 0; i < objects.length; i += 10) c.writePeersFile(`hostile-${i / 10}.yaml`, objects.slice(i, i + 10));
    // The file cases.
    files.fifo = join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [files.fifo]);
    files.zero = join(dir, 'zero.yaml');
    await symlink('/dev/zero', files.zero);
    await mkdir(join(dir, 'sub'));
    files.directory = join(dir, 'directory.yaml');
    await symlink('sub', files.directory);
    files.big = join(dir, 'big.yaml');
    await writeFile(files.big, `# ${'x'.repeat(2 * 1024 * 1024)}\n`);
    files.broken = join(dir, 'broken.yaml');
    await writeFile(files.broken, 'kind: Peer\nmetadata: {name: [unclosed\n');
    files.badNode = join(dir, 'bad-node.yaml');
    await writeFile(
      files.badNode,
      [
        { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-x' }, spec: { podCIDRs: '10.244.5.0/24' } },
        { apiVersion: API_VERSION, kind: 'Peer', metadata: { name: 'node-x' }, spec: { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.244.5.0/24'], nodeName: 'node-x', meshIP: '100.96.240.5' } },
      ].map((o) => stringify(o)).join('---\n'),
    );
    for (const m of [...c.nodes.map((n) => n.name), 'gateway']) await c.startAgent(m, { flags: { '--log-format': 'json' } });
  });
  after(async () => {
    await c?.stop();
  });

  test('no agent hangs or crashes on the files, every pod reaches every other pod, no device holds what was refused', async () => {
    assert.ok(hostile.length >= 50, `${hostile.length} hostile objects`);
    await assertMeshStands(c, hostile, 'dir');
  });

  /** The JSON log lines of a member's agent. */
  const logOf = (m: ClusterMember): Array<Record<string, unknown>> =>
    readFileSync(m.logFile, 'utf8')
      .split('\n')
      .flatMap((line) => {
        try {
          const o = JSON.parse(line) as unknown;
          return o && typeof o === 'object' ? [o as Record<string, unknown>] : [];
        } catch {
          return [];
        }
      });

  test('each file case is named in every agent\'s log; the bad Node\'s field is named, its Peer refused', async () => {
    const expected: Array<[string, RegExp]> = [
      [files.fifo, /^ignoring a peer file: not a regular file \(a FIFO\)$/],
      [files.zero, /^ignoring a peer file: a symlink to "\/dev\/zero", outside the directory$/],
      [files.directory, /^ignoring a peer file: not a regular file \(a directory\)$/],
      [files.big, /^ignoring a peer file: \d+ bytes, more than the limit of 1048576$/],
      [files.broken, /^ignoring a file that does not parse; its previous objects stay$/],
      [files.badNode, /^document 1: Node node-x: left out spec\.podCIDRs: expected a list of CIDRs, got a string$/],
    ];
    for (const m of [...c.nodes, c.gateway as ClusterMember]) {
      const log = logOf(m);
      for (const [file, re] of expected) assert.ok(log.some((l) => l.file === file && re.test(String(l.message))), `${m.name}: nothing like ${re} for ${file}\n${c.logTail(m.name, 20)}`);
    }
  });

  test('each refused object is named in every agent\'s log with its reason and field; the metrics count them', async () => {
    const want = [...hostile.filter((h) => isRefusal(expectIn(h, 'dir'))).map((h) => ({ kind: h.kind, name: h.name, ...(expectIn(h, 'dir') as { reason: string; field: string }) })), { kind: 'Peer', name: 'node-x', reason: 'AllowedIPsOutsidePodCIDRs', field: 'spec.allowedIPs[0]' }];
    for (const m of [...c.nodes, c.gateway as ClusterMember]) {
      await c.waitFor(`${m.name} counts ${want.length} refusals in aksmesh_peers{state="refused"}`, async () => {
        const count = /^aksmesh_peers\{[^}]*state="refused"[^}]*\} (\d+)$/m.exec((await fetchFrom(c, m, '/metrics')).body);
        if (Number(count?.[1]) !== want.length) throw new Error(`the metric says ${count?.[1]}`);
        return true;
      }, { timeoutMs: 30_000, intervalMs: 1000 });
    }
    for (const m of [...c.nodes, c.gateway as ClusterMember]) {
      await c.waitFor(`${m.name} logs ${want.length} refusals`, () => {
        // (The logger appends the refusal's message to "refused".)
        const lines = logOf(m).filter((l) => String(l.message).startsWith('refused '));
        const missing = want.filter((w) => !lines.some((l) => l.kind === w.kind && l.name === w.name && l.reason === w.reason && l.field === w.field && String(l.message).startsWith(`refused ${w.kind} ${w.name}: ${w.field}`)));
        if (missing.length > 0) throw new Error(`not yet: ${missing.map((x) => `${x.kind} ${x.name}`).join(', ')}`);
        return true;
      }, { timeoutMs: 30_000, intervalMs: 1000 });
    }
  });

  test('a file written in two steps (no rename) is applied whole once it is complete; updates keep flowing', async () => {
    const file = join(c.peersDir as string, 'two-steps.yaml');
    const peer = (name: string, cidr: string): string => stringify({ apiVersion: API_VERSION, kind: 'Peer', metadata: { name }, spec: { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: [cidr] } });
    await writeFile(file, `${peer('step-one', '192.168.251.0/24')}---\n`);
    await new Promise((r) => setTimeout(r, 100));
    await appendFile(file, peer('step-two', '192.168.252.0/24'));
    await c.waitFor('both steps in every node\'s device', async () => [...(await deviceAllowedIPs(c)).entries()].every(([m, set]) => m === 'gateway' || (set.has('192.168.251.0/24') && set.has('192.168.252.0/24'))), { timeoutMs: 60_000 });
    await assertMeshStands(c, hostile, 'dir');
  });

  test('the FIFO and the rest do not hang a stop either: every member exits on SIGTERM, cleanly', async () => {
    for (const m of [...c.nodes, c.gateway as ClusterMember]) {
      const exit = await c.stopAgent(m.name, 'SIGTERM', { graceMs: 20_000 });
      assert.deepEqual(exit && { code: exit.code, forced: exit.forced }, { code: 0, forced: false }, `${m.name}\n${c.logTail(m.name, 20)}`);
    }
  });
});
