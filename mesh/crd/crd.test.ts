/**
 * The CRDs on a real kube-apiserver (1.20.2) with etcd: they install, the API server itself refuses
 * malformed Peers and Gateways with a message naming the field, and `kubectl get mp` shows the
 * printer columns. No mocked API server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { TestCluster, kubeTestsUnavailable } from '../../sandbox/apiserver.ts';
import fc from 'fast-check';
import { canonicalCidr, canonicalIp, generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import { apiMessage } from '../kube.ts';
import { CRDS, PATTERNS } from './schema.ts';
import { GROUP, VERSION } from './types.ts';

const skip = kubeTestsUnavailable() ?? false;
const KEY = publicKeyOf(generatePrivateKey());
const HEX_KEY = Buffer.from(KEY, 'base64').toString('hex');

const goodPeer = { publicKey: KEY, endpoint: '198.18.0.1:51820', allowedIPs: ['10.244.1.0/24'], meshIP: '100.96.0.7', nodeName: 'node-a', persistentKeepalive: 25 };
const goodGateway = { publicKey: KEY, endpoint: '[fd00::9]:51820', meshIP: '100.96.255.1', podCIDRs: ['10.244.0.0/16'] };

type Case = [what: string, kind: 'peers' | 'gateways', spec: Record<string, unknown> | undefined, field: string];
const peer = (patch: Record<string, unknown>): Record<string, unknown> => withPatch(goodPeer, patch);
const gw = (patch: Record<string, unknown>): Record<string, unknown> => withPatch(goodGateway, patch);
function withPatch(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete out[k];
  return out;
}

const MALFORMED: Case[] = [
  ['no public key', 'peers', peer({ publicKey: undefined }), 'spec.publicKey'],
  ['empty public key', 'peers', peer({ publicKey: '' }), 'spec.publicKey'],
  ['short public key (43 chars)', 'peers', peer({ publicKey: KEY.slice(1) }), 'spec.publicKey'],
  ['public key without padding', 'peers', peer({ publicKey: KEY.slice(0, 43) }), 'spec.publicKey'],
  ['public key with bad characters', 'peers', peer({ publicKey: `${'-'.repeat(43)}=` }), 'spec.publicKey'],
  ['public key not canonical base64', 'peers', peer({ publicKey: `${KEY.slice(0, 42)}B=` }), 'spec.publicKey'],
  ['public key in hex', 'peers', peer({ publicKey: HEX_KEY }), 'spec.publicKey'],
  ['public key too long', 'peers', peer({ publicKey: `${KEY}AAAA` }), 'spec.publicKey'],
  ['a privateKey field', 'peers', peer({ privateKey: generatePrivateKey() }), 'spec.privateKey'],
  ['a presharedKey field', 'peers', peer({ presharedKey: generatePrivateKey() }), 'spec.presharedKey'],
  ['no allowedIPs', 'peers', peer({ allowedIPs: undefined }), 'spec.allowedIPs'],
  ['empty allowedIPs', 'peers', peer({ allowedIPs: [] }), 'spec.allowedIPs'],
  ['allowedIPs not a list', 'peers', peer({ allowedIPs: '10.244.1.0/24' }), 'spec.allowedIPs'],
  ['CIDR prefix /33', 'peers', peer({ allowedIPs: ['10.244.1.0/33'] }), 'spec.allowedIPs'],
  ['CIDR without prefix', 'peers', peer({ allowedIPs: ['10.244.1.0'] }), 'spec.allowedIPs'],
  ['CIDR octet 256', 'peers', peer({ allowedIPs: ['10.244.1.0/24', '10.256.0.0/16'] }), 'spec.allowedIPs'],
  ['IPv6 CIDR prefix /129', 'peers', peer({ allowedIPs: ['fd00::/129'] }), 'spec.allowedIPs'],
  ['CIDR that is a word', 'peers', peer({ allowedIPs: ['ten.0.0.0/8'] }), 'spec.allowedIPs'],
  ['endpoint without port', 'peers', peer({ endpoint: '198.18.0.1' }), 'spec.endpoint'],
  ['endpoint port 0', 'peers', peer({ endpoint: '198.18.0.1:0' }), 'spec.endpoint'],
  ['endpoint port 65536', 'peers', peer({ endpoint: '198.18.0.1:65536' }), 'spec.endpoint'],
  ['endpoint host name', 'peers', peer({ endpoint: 'node-a.example:51820' }), 'spec.endpoint'],
  ['IPv6 endpoint without brackets', 'peers', peer({ endpoint: 'fd00::1:51820' }), 'spec.endpoint'],
  ['endpoint octet with leading zero', 'peers', peer({ endpoint: '198.018.0.1:51820' }), 'spec.endpoint'],
  ['mesh IP octet 256', 'peers', peer({ meshIP: '100.96.0.256' }), 'spec.meshIP'],
  ['mesh IP with a prefix', 'peers', peer({ meshIP: '100.96.0.7/32' }), 'spec.meshIP'],
  // Go before 1.17 (what a 1.20 API server is built with) reads these as decimal; the agent refuses them.
  ['mesh IP with a leading zero', 'peers', peer({ meshIP: '100.96.0.08' }), 'spec.meshIP'],
  ['CIDR with a leading zero', 'peers', peer({ allowedIPs: ['10.244.01.0/24'] }), 'spec.allowedIPs'],
  ['CIDR prefix with a leading zero', 'peers', peer({ allowedIPs: ['10.244.1.0/024'] }), 'spec.allowedIPs'],
  ['gateway mesh IP with a leading zero', 'gateways', gw({ meshIP: '100.96.255.01' }), 'spec.meshIP'],
  ['node name with capitals', 'peers', peer({ nodeName: 'Node_A' }), 'spec.nodeName'],
  ['keepalive -1', 'peers', peer({ persistentKeepalive: -1 }), 'spec.persistentKeepalive'],
  ['keepalive 65536', 'peers', peer({ persistentKeepalive: 65536 }), 'spec.persistentKeepalive'],
  ['keepalive as a string', 'peers', peer({ persistentKeepalive: '25' }), 'spec.persistentKeepalive'],
  ['secret ref without key', 'peers', peer({ presharedKeySecretRef: { namespace: 'kube-system', name: 'psk' } }), 'spec.presharedKeySecretRef.key'],
  ['no spec at all', 'peers', undefined, 'spec'],
  ['gateway without mesh IP', 'gateways', gw({ meshIP: undefined }), 'spec.meshIP'],
  ['gateway without podCIDRs', 'gateways', gw({ podCIDRs: undefined }), 'spec.podCIDRs'],
  ['gateway with a bad pod CIDR', 'gateways', gw({ podCIDRs: ['10.244.0.0/16', '10.244.0.0'] }), 'spec.podCIDRs'],
  ['gateway with a short key', 'gateways', gw({ publicKey: KEY.slice(4) }), 'spec.publicKey'],
  ['gateway with a privateKey field', 'gateways', gw({ privateKey: generatePrivateKey() }), 'spec.privateKey'],
  ['gateway endpoint with a bad port', 'gateways', gw({ endpoint: '[fd00::9]:99999' }), 'spec.endpoint'],
];

describe('the schema patterns for addresses', () => {
  const accepts = (parse: (t: string) => string) => (t: string): boolean => {
    try {
      parse(t);
      return true;
    } catch {
      return false;
    }
  };
  const octet = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('01', '00', '08', '010'));
  const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
  const v6 = fc.constantFrom('fd00::1', '::1', '::', 'fe80::1:2:3', '2001:db8::8a2e:370:7334', 'fd00:::1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', 'gg::1', 'fe80::1%eth0');
  const prefix = fc.oneof(fc.integer({ min: 0, max: 130 }).map(String), fc.constantFrom('08', '00', '024', '', '-1'));

  test('the mesh IP pattern accepts exactly the addresses our parser accepts (no leading zeros, no zones)', () => {
    const re = new RegExp(PATTERNS.ip);
    for (const t of ['100.96.0.08', '100.96.0.8', '010.0.0.1', '1.2.3.4.5', ' 1.2.3.4', '::ffff:1.2.3.4']) assert.equal(re.test(t), t === '100.96.0.8', t);
    fc.assert(fc.property(fc.oneof(v4, v6), (t) => t.includes('.') ? assert.equal(re.test(t), accepts(canonicalIp)(t), t) : !re.test(t) || assert.ok(accepts(canonicalIp)(t), t)));
  });

  test('the CIDR pattern accepts exactly the CIDRs our parser accepts', () => {
    const re = new RegExp(PATTERNS.cidr);
    for (const t of ['10.244.01.0/24', '10.244.1.0/024', '10.244.1.0/33', 'fd00::/129', 'fd00::/08']) assert.equal(re.test(t), false, t);
    for (const t of ['10.244.1.0/24', '0.0.0.0/0', 'fd00::/64', '::/0', '10.244.1.5/24']) assert.equal(re.test(t), true, t);
    fc.assert(fc.property(fc.oneof(v4, v6), prefix, (a, p) => {
      const t = `${a}/${p}`;
      // (The pattern knows no IPv4-mapped IPv6; everything it accepts, the parser accepts too.)
      if (a.includes('.')) assert.equal(re.test(t), accepts(canonicalCidr)(t), t);
      else if (re.test(t)) assert.ok(accepts(canonicalCidr)(t), t);
    }));
  });
});

describe('CRDs on a real kube-apiserver', { skip }, () => {
  let cluster: TestCluster;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    cluster = await TestCluster.start();
    const ext = cluster.kubeConfig().makeApiClient(k8s.ApiextensionsV1Api);
    for (const crd of CRDS) await ext.createCustomResourceDefinition({ body: crd as unknown as k8s.V1CustomResourceDefinition });
    for (const crd of CRDS) {
      const name = (crd.metadata as { name: string }).name;
      for (let i = 0; ; i++) {
        const got = await ext.readCustomResourceDefinition({ name });
        if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
        if (i > 300) throw new Error(`CRD ${name} not established after 30 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    custom = cluster.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
  });
  after(async () => {
    await cluster?.stop();
  });

  const create = (plural: 'peers' | 'gateways', name: string, spec: Record<string, unknown> | undefined): Promise<unknown> =>
    custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: plural === 'peers' ? 'Peer' : 'Gateway', metadata: { name }, ...(spec ? { spec } : {}) },
    });

  test('well-formed Peer and Gateway are stored as sent', async () => {
    await create('peers', 'node-a', goodPeer);
    await create('gateways', 'konnectivity', goodGateway);
    const got = (await custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: 'node-a' })) as { spec: unknown };
    assert.deepEqual(got.spec, goodPeer);
  });

  test(`${MALFORMED.length} malformed objects are each refused, naming the field`, async () => {
    assert.ok(MALFORMED.length >= 30);
    const wrong: string[] = [];
    for (const [i, [what, plural, spec, field]] of MALFORMED.entries()) {
      try {
        await create(plural, `bad-${i}`, spec);
        wrong.push(`${what}: was accepted`);
      } catch (err) {
        const msg = apiMessage(err);
        if (!(err instanceof k8s.ApiException) || err.code !== 422) wrong.push(`${what}: HTTP ${(err as { code?: number }).code}: ${msg}`);
        else if (!msg.includes(`${field}:`) && !msg.includes(`${field} in body`)) wrong.push(`${what}: message does not name ${field}: ${msg}`);
      }
    }
    assert.deepEqual(wrong, []);
    const list = (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers' })) as { items: unknown[] };
    assert.equal(list.items.length, 1, 'nothing malformed was stored');
  });

  test('kubectl get mp and mgw show the printer columns', async () => {
    const mp = await cluster.kubectl(['get', 'mp']);
    assert.equal(mp.code, 0, mp.stderr);
    const [header, row] = mp.stdout.trim().split('\n');
    assert.match(header, /^NAME\s+ENDPOINT\s+MESH IP\s+ALLOWED IPS\s+READY\s+AGE$/);
    // READY is empty until an agent writes the Ready condition.
    assert.match(row, /^node-a\s+198\.18\.0\.1:51820\s+100\.96\.0\.7\s+\["10\.244\.1\.0\/24"\]\s+\d+s$/);
    const wide = await cluster.kubectl(['get', 'meshpeer', '-o', 'wide']);
    assert.match(wide.stdout, /^NAME\s+ENDPOINT\s+MESH IP\s+ALLOWED IPS\s+NODE\s+READY\s+HEALTHY\s+AGE$/m);
    assert.match(wide.stdout, /^node-a\s.*\]\s+node-a\s+\d+s$/m);
    const mgw = await cluster.kubectl(['get', 'mgw']);
    assert.equal(mgw.code, 0, mgw.stderr);
    assert.match(mgw.stdout, /^NAME\s+ENDPOINT\s+MESH IP\s+POD CIDRS\s+READY\s+AGE\nkonnectivity\s+\[fd00::9\]:51820\s+100\.96\.255\.1\s+\["10\.244\.0\.0\/16"\]\s+\d+s$/m);
    const cat = await cluster.kubectl(['get', 'aksmesh']);
    assert.match(cat.stdout, /peer\.aksmesh\.io\/node-a/);
    assert.match(cat.stdout, /gateway\.aksmesh\.io\/konnectivity/);
  });

  test('status is a subresource: a spec write cannot set it, a status write cannot change the spec', async () => {
    const base = { group: GROUP, version: VERSION, plural: 'peers', name: 'node-a' };
    const obj = (await custom.getClusterCustomObject(base)) as Record<string, unknown>;
    await custom.replaceClusterCustomObject({ ...base, body: { ...obj, status: { listenPort: 1 } } });
    let now = (await custom.getClusterCustomObject(base)) as { status?: unknown; spec: { endpoint: string } };
    assert.equal(now.status, undefined);
    await custom.replaceClusterCustomObjectStatus({ ...base, body: { ...now, spec: { ...now.spec, endpoint: '198.18.9.9:1' }, status: { listenPort: 51820 } } });
    now = (await custom.getClusterCustomObject(base)) as { status?: unknown; spec: { endpoint: string } };
    assert.deepEqual(now.status, { listenPort: 51820 });
    assert.equal(now.spec.endpoint, '198.18.0.1:51820');
  });

  test('the per-peer health a member writes is kept as written (nothing pruned), shows as HEALTHY in -o wide, and a wrong reason is refused', async () => {
    const base = { group: GROUP, version: VERSION, plural: 'peers', name: 'node-a' };
    const peers = {
      desired: 3,
      configured: 3,
      handshakeWithin3m: 1,
      healthy: 1,
      summary: '1/3',
      unhealthy: [
        { kind: 'Gateway', name: 'konnectivity', reason: 'NoHandshake' },
        { kind: 'Peer', name: 'node-b', reason: 'StaleHandshake', lastHandshake: '2026-01-01T00:00:00Z' },
        // The member that cannot read its own device lists every peer so (audit12 #2).
        { kind: 'Peer', name: 'node-c', reason: 'DeviceUnreadable', lastHandshake: '2026-01-01T00:00:00Z' },
      ],
      unhealthyOmitted: 0,
    };
    const obj = (await custom.getClusterCustomObject(base)) as Record<string, unknown>;
    await custom.replaceClusterCustomObjectStatus({ ...base, body: { ...obj, status: { peers } } });
    const now = (await custom.getClusterCustomObject(base)) as { status?: { peers?: unknown } };
    assert.deepEqual(now.status?.peers, peers);
    const wide = await cluster.kubectl(['get', 'mp', 'node-a', '-o', 'wide']);
    assert.match(wide.stdout, /^node-a\s.*\]\s+node-a\s+1\/3\s+\d+s$/m);
    const plain = await cluster.kubectl(['get', 'mp', 'node-a']);
    assert.doesNotMatch(plain.stdout, /HEALTHY|1\/3/, 'HEALTHY is a wide column');
    const again = (await custom.getClusterCustomObject(base)) as Record<string, unknown>;
    await assert.rejects(
      custom.replaceClusterCustomObjectStatus({ ...base, body: { ...again, status: { peers: { ...peers, unhealthy: [{ kind: 'Peer', name: 'x', reason: 'Sad' }] } } } }),
      (err: unknown) => err instanceof k8s.ApiException && err.code === 422 && apiMessage(err).includes('status.peers.unhealthy.reason'),
    );
  });
});
