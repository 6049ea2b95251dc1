/**
 * The one checked path (validate.ts) on its own: canonical forms, names, times, Nodes of any shape.
 * (Refusals of whole objects, field by field, are tested through computeTopology in
 * mesh/topology/topology.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import { nodeInfo } from '../source/types.ts';
import { checkNode, checkNodeInfo, checkObject, checkSpec, createdAt, isObjectName, reportedName, shown, unknownFields } from './validate.ts';

const KEY = publicKeyOf(generatePrivateKey());

describe('checkSpec and checkObject', () => {
  test('a good Peer comes back canonical: host bits cleared, IPv6 compressed and lower case', () => {
    const r = checkObject('Peer', {
      metadata: { name: 'laptop', creationTimestamp: '2026-01-02T03:04:05Z' },
      spec: { publicKey: KEY, endpoint: '[FD00:0:0::1]:51820', allowedIPs: ['10.244.1.5/24', 'FD00:0::1/64'], meshIP: 'FD00::0001', persistentKeepalive: 0 },
    });
    assert.deepEqual(r, {
      ok: true,
      object: {
        kind: 'Peer',
        name: 'laptop',
        created: Date.parse('2026-01-02T03:04:05Z'),
        spec: { publicKey: KEY, endpoint: '[fd00::1]:51820', meshIP: 'fd00::1', nodeName: null, cidrs: ['10.244.1.0/24', 'fd00::/64'], persistentKeepalive: 0, presharedKeySecretRef: null },
      },
    });
  });

  test('null stands for absent (as the API server prunes it); every problem is listed, in field order', () => {
    const r = checkSpec('Peer', { spec: { publicKey: KEY, allowedIPs: ['10.0.0.0/8'], endpoint: null, meshIP: null, nodeName: null, persistentKeepalive: null, presharedKeySecretRef: null } });
    assert.ok('spec' in r);
    const bad = checkSpec('Peer', { spec: { allowedIPs: ['x', '10.0.0.0/8', 'y'], endpoint: 'z', meshIp: 1 } });
    assert.deepEqual(
      'problems' in bad && bad.problems.map((p) => p.field),
      ['spec.meshIp', 'spec.publicKey', 'spec.endpoint', 'spec.allowedIPs[0]', 'spec.allowedIPs[2]'],
    );
  });

  test('a near miss of a field, the other kind\'s field or a secret is refused; a field like none is left alone (a newer schema\'s) and named by unknownFields', () => {
    const gw = { publicKey: KEY, meshIP: '100.96.0.1', podCIDRs: ['10.244.0.0/16'] };
    const r = checkSpec('Gateway', { spec: { ...gw, allowedIPs: ['10.0.0.0/8'] } });
    assert.deepEqual('problems' in r && r.problems, [
      { field: 'spec.allowedIPs', message: 'spec.allowedIPs: a Gateway has no allowedIPs (a Peer field); a Gateway has publicKey, endpoint, meshIP, nodeName, podCIDRs, persistentKeepalive' },
    ]);
    const peer = { publicKey: KEY, allowedIPs: ['10.0.0.0/8'] };
    const problemOf = (extra: Record<string, unknown>): string[] => {
      const c = checkSpec('Peer', { spec: { ...peer, ...extra } });
      return 'problems' in c ? c.problems.map((p) => p.message) : [];
    };
    assert.deepEqual(problemOf({ nodename: 'a' }), ['spec.nodename: a Peer has no such field; did you mean nodeName?']);
    assert.deepEqual(problemOf({ endpoints: 'a' }), ['spec.endpoints: a Peer has no such field; did you mean endpoint?']);
    assert.deepEqual(problemOf({ alowedIP: [] }), ['spec.alowedIP: a Peer has no such field; did you mean allowedIPs?']);
    assert.deepEqual(problemOf({ 'mesh_ip': 'a' }), ['spec["mesh_ip"]: a Peer has no such field; did you mean meshIP?']);
    assert.deepEqual(problemOf({ private_key: 'a' }), ['spec["private_key"]: a secret key never goes into the API; keep it in the node key file']);
    assert.deepEqual(problemOf({ PSK: 'a' }), ['spec.PSK: a secret key never goes into the API; keep it in the node key file']);
    // Far from every field: accepted, and named for a log line.
    assert.deepEqual(problemOf({ mtu: 1400, someNewField: { x: 1 } }), []);
    assert.deepEqual(unknownFields('Peer', { spec: { ...peer, mtu: 1400, meshIp: 'x', someNewField: 1 } }), ['spec.mtu', 'spec.someNewField']);
    assert.deepEqual(unknownFields('Gateway', { spec: null }), []);
    const secret = generatePrivateKey();
    const s = checkSpec('Peer', { spec: { publicKey: `${secret}x`, allowedIPs: ['10.0.0.0/8'], privateKey: secret } });
    assert.ok('problems' in s);
    assert.deepEqual(s.problems, [
      { field: 'spec.privateKey', message: 'spec.privateKey: a secret key never goes into the API; keep it in the node key file' },
      { field: 'spec.publicKey', message: 'spec.publicKey: not a WireGuard public key (45 characters; expected 44 characters of base64 encoding 32 bytes, as "wg pubkey" prints it)' },
    ]);
    assert.ok(!JSON.stringify(s).includes(secret));
  });

  test('values are quoted short and escaped; long ones are refused by length before parsing', () => {
    const long = `1.2.3.4\n${'9'.repeat(100)}`;
    const r = checkSpec('Peer', { spec: { publicKey: KEY, allowedIPs: ['10.0.0.0/8'], endpoint: long } });
    assert.deepEqual('problems' in r && r.problems, [{ field: 'spec.endpoint', message: `spec.endpoint: ${JSON.stringify(long).slice(0, 61)}... is longer than 64 characters` }]);
    assert.equal(shown('a\u001b[31m'), '"a\\u001b[31m"');
    assert.equal(shown(undefined), 'undefined');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(shown(cyclic), 'object');
    assert.equal(shown('x'.repeat(62)).length, 64);
    assert.equal(shown('x'.repeat(70)), `"${'x'.repeat(60)}...`);
  });

  test('key-shaped text is never quoted in a refusal (conditions, events and logs): base64 keys and 64 hex digits, in any field', () => {
    const secret = generatePrivateKey();
    const hex = Buffer.from(secret, 'base64').toString('hex');
    const said = (spec: Record<string, unknown>): string => {
      const r = checkObject('Peer', { metadata: { name: 'p' }, spec: { publicKey: KEY, allowedIPs: ['10.0.0.0/8'], ...spec } });
      return r.ok ? '' : r.problems.map((p) => p.message).join('; ');
    };
    const cases: Array<Record<string, unknown>> = [
      { endpoint: secret },
      { endpoint: `${secret}:51820` },
      { endpoint: hex },
      { meshIP: secret },
      { allowedIPs: [secret] },
      { nodeName: secret },
      { nodeName: hex.toUpperCase() },
      { persistentKeepalive: hex },
      { presharedKeySecretRef: { namespace: 'ns', name: 'n', key: secret } },
      { presharedKeySecretRef: { namespace: hex, name: 'n', key: 'k' } },
    ];
    for (const spec of cases) {
      const message = said(spec);
      assert.ok(message.includes('(a value shaped like a key, not shown)'), `${Object.keys(spec)[0]}: ${message}`);
      assert.ok(!message.includes(secret) && !message.includes(secret.slice(0, 20)) && !message.toLowerCase().includes(hex.slice(0, 20)), message);
    }
    // A field like no field is left alone, but named (for the directory), redacted too.
    assert.deepEqual(unknownFields('Peer', { spec: { [secret]: 1 } }), ['spec["(a value shaped like a key, not shown)"]']);
    assert.equal(shown(`x${secret}`), '"(a value shaped like a key, not shown)"');
    // Not key-shaped: left readable.
    assert.equal(shown('1'.repeat(64)), `"${'1'.repeat(60)}...`);
    assert.equal(shown('10.0.0.1:51820'), '"10.0.0.1:51820"');
  });

  test('names: a DNS subdomain of at most 253 characters; reported names are escaped or "(unnamed)"', () => {
    assert.equal(isObjectName('a'.repeat(253)), true);
    assert.equal(isObjectName('a'.repeat(254)), false);
    for (const bad of ['', 'A', 'a_b', '-a', 'a-', 'a..b', 5, null, undefined]) assert.equal(isObjectName(bad), false, String(bad));
    assert.equal(reportedName({ metadata: { name: 'node-a' } }), 'node-a');
    assert.equal(reportedName({ metadata: { name: 'Node\nA' } }), '"Node\\nA"');
    for (const v of [null, {}, { metadata: null }, { metadata: { name: '' } }, { metadata: { name: 7 } }]) assert.equal(reportedName(v), '(unnamed)');
  });

  test('creation times: strings and Dates; anything else sorts last', () => {
    assert.equal(createdAt({ metadata: { creationTimestamp: '2026-01-01T00:00:00Z' } }), Date.parse('2026-01-01T00:00:00Z'));
    assert.equal(createdAt({ metadata: { creationTimestamp: new Date(5000) } }), 5000);
    for (const t of ['yesterday', 1234, null, undefined, {}]) assert.equal(createdAt({ metadata: { creationTimestamp: t } }), Number.MAX_SAFE_INTEGER, String(t));
    assert.equal(createdAt(null), Number.MAX_SAFE_INTEGER);
  });
});

describe('checkNode and nodeInfo', () => {
  test('spec.podCIDRs first, else spec.podCIDR; canonical, once each; only InternalIPs', () => {
    assert.deepEqual(
      checkNode({
        metadata: { name: 'node-a', creationTimestamp: new Date('2026-01-01T00:00:00Z') },
        spec: { podCIDR: '10.9.0.0/24', podCIDRs: ['10.244.0.5/24', '10.244.0.0/24', 'FD00::/64'] },
        status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.1' }, { type: 'InternalIP', address: '198.18.0.1' }, { type: 'InternalIP', address: '198.18.0.1' }, { type: 'Hostname', address: 'node-a' }] },
      }),
      { node: { name: 'node-a', podCIDRs: ['10.244.0.0/24', 'fd00::/64'], internalIPs: ['198.18.0.1'], creationTimestamp: '2026-01-01T00:00:00.000Z' }, problems: [] },
    );
    assert.deepEqual(checkNode({ metadata: { name: 'b' }, spec: { podCIDR: '10.244.1.0/24', podCIDRs: [] } }).node?.podCIDRs, ['10.244.1.0/24']);
    assert.deepEqual(checkNode({ metadata: { name: 'b' }, spec: { podCIDR: '' } }), { node: { name: 'b', podCIDRs: [], internalIPs: [] }, problems: [] });
  });

  test('any shape: what does not parse is left out and named; no usable name, no node', () => {
    assert.deepEqual(checkNode({ metadata: { name: 'x' }, spec: { podCIDRs: '10.244.5.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.05' }] } }), {
      node: { name: 'x', podCIDRs: [], internalIPs: [] },
      problems: [
        { field: 'spec.podCIDRs', message: 'spec.podCIDRs: expected a list of CIDRs, got a string' },
        { field: 'status.addresses[0].address', message: 'status.addresses[0].address: "198.18.0.05" is not an IPv4 or IPv6 address' },
      ],
    });
    assert.deepEqual(checkNode({ metadata: { name: 'Bad' } }), { node: null, problems: [{ field: 'metadata.name', message: 'metadata.name: "Bad" is not a node name' }] });
    for (const junk of [null, 5, 'node', [], { metadata: 'x' }]) assert.equal(checkNode(junk).node, null);
    assert.equal(checkNode({ metadata: { name: 'n' }, spec: { podCIDRs: Array.from({ length: 70 }, (_, i) => `10.${i}.0.0/16`) } }).node?.podCIDRs.length, 64);
    assert.deepEqual(checkNode({ metadata: { name: 'n', creationTimestamp: 'soon' }, spec: null, status: 7 }).node, { name: 'n', podCIDRs: [], internalIPs: [] });
  });

  test('nodeInfo (what the sources use) never throws and always has the NodeInfo shape', () => {
    for (const junk of [null, undefined, 'x', { metadata: { name: 5 } }]) assert.deepEqual(nodeInfo(junk), { name: '', podCIDRs: [], internalIPs: [] });
    assert.deepEqual(nodeInfo({ metadata: { name: 'n' }, spec: { podCIDRs: [null, '10.1.0.0/16'] } }), { name: 'n', podCIDRs: ['10.1.0.0/16'], internalIPs: [] });
  });

  test('checkNodeInfo: a NodeInfo checked again; junk is null', () => {
    assert.deepEqual(checkNodeInfo({ name: 'n', podCIDRs: ['10.1.2.3/16', 7], internalIPs: ['198.18.0.1', 'x'], creationTimestamp: '2026-01-01T00:00:00Z' }), {
      name: 'n',
      podCIDRs: ['10.1.0.0/16'],
      internalIPs: ['198.18.0.1'],
      creationTimestamp: '2026-01-01T00:00:00.000Z',
    });
    assert.deepEqual(checkNodeInfo({ name: 'n', podCIDRs: '10.1.0.0/16', internalIPs: null }), { name: 'n', podCIDRs: [], internalIPs: [] });
    for (const junk of [null, [], { name: 'N' }, { podCIDRs: [] }]) assert.equal(checkNodeInfo(junk), null);
  });
});
