/**
 * The one checked path (validate.ts), pinned message by message: every refusal names its field and
 * says what is wrong in words a user can act on; accepted objects come out canonical. Written for
 * the mutation run (stryker.config.mjs): each case below is a change to validate.ts that no other
 * test noticed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkNode, checkNodeInfo, checkObject, createdAt, isObjectName, reportedName, shown, unknownFields } from './validate.ts';

const KEY = 'ln1Gl4iJD0uJ8qtXV5hE0X0EcmPIKwskW6bZKjHVgmg=';
const peer = (spec: unknown, metadata: unknown = { name: 'p1' }): unknown => ({ metadata, spec });
const good = { publicKey: KEY, allowedIPs: ['10.0.0.0/24'] };
const gw = { publicKey: KEY, meshIP: '100.96.0.1', podCIDRs: ['10.0.0.0/24'] };
const long = (c: string, n: number): string => c.repeat(n);
/** How shown() prints a long string: JSON, cut to 61 characters and "...". */
const cut = (c: string): string => `"${long(c, 60)}...`;

/** [what, kind, object, the problems as "field | message"] */
const REFUSED: Array<[string, 'Peer' | 'Gateway', unknown, string[]]> = [
  ['no spec', 'Peer', { metadata: { name: 'p1' } }, ['spec | spec: required']],
  ['a list as spec', 'Peer', peer([]), ['spec | spec: expected an object, got a list']],
  ['a string as spec', 'Peer', peer('x'), ['spec | spec: expected an object, got a string']],
  ['a number as spec', 'Gateway', peer(5), ['spec | spec: expected an object, got a number']],
  ['null as spec', 'Peer', peer(null), ['spec | spec: expected an object, got null']],
  ['a private key field', 'Peer', peer({ ...good, privateKey: 'x' }), ['spec.privateKey | spec.privateKey: a secret key never goes into the API; keep it in the node key file']],
  ['a preshared key field', 'Peer', peer({ ...good, presharedKey: 'x' }), ['spec.presharedKey | spec.presharedKey: a secret key never goes into the API; keep it in the node key file']],
  ['a misspelled field (case)', 'Peer', peer({ ...good, meshIp: '100.96.0.1' }), ['spec.meshIp | spec.meshIp: a Peer has no such field; did you mean meshIP?']],
  ['a Peer field on a Gateway', 'Gateway', peer({ ...gw, allowedIPs: [] }), ['spec.allowedIPs | spec.allowedIPs: a Gateway has no allowedIPs (a Peer field); a Gateway has publicKey, endpoint, meshIP, nodeName, podCIDRs, persistentKeepalive']],
  ['no public key', 'Peer', peer({ allowedIPs: ['10.0.0.0/24'] }), ['spec.publicKey | spec.publicKey: required']],
  ['a null public key', 'Peer', peer({ publicKey: null, allowedIPs: ['10.0.0.0/24'] }), ['spec.publicKey | spec.publicKey: required']],
  ['a number as public key', 'Peer', peer({ publicKey: 5, allowedIPs: ['10.0.0.0/24'] }), ['spec.publicKey | spec.publicKey: expected a string, got a number']],
  [
    'a public key one character short (its text never quoted)',
    'Peer',
    peer({ publicKey: KEY.slice(1), allowedIPs: ['10.0.0.0/24'] }),
    ['spec.publicKey | spec.publicKey: not a WireGuard public key (43 characters; expected 44 characters of base64 encoding 32 bytes, as "wg pubkey" prints it)'],
  ],
  ['a host name as endpoint', 'Peer', peer({ ...good, endpoint: 'host:1' }), ['spec.endpoint | spec.endpoint: "host" is not an IPv4 or IPv6 address']],
  ['a number as endpoint', 'Peer', peer({ ...good, endpoint: 5 }), ['spec.endpoint | spec.endpoint: expected a string, got a number']],
  ['an endpoint of 65 characters', 'Peer', peer({ ...good, endpoint: long('1', 65) }), [`spec.endpoint | spec.endpoint: ${cut('1')} is longer than 64 characters`]],
  ['an endpoint of 64 characters (not too long, just wrong)', 'Peer', peer({ ...good, endpoint: long('1', 64) }), [`spec.endpoint | spec.endpoint: "${long('1', 64)}" is not an endpoint such as 10.0.0.4:51820 or [fd00::4]:51820`]],
  ['port 0', 'Peer', peer({ ...good, endpoint: '1.2.3.4:0' }), ['spec.endpoint | spec.endpoint: "1.2.3.4:0" has port 0']],
  ['a mesh IP with a leading zero', 'Peer', peer({ ...good, meshIP: '100.96.0.08' }), ['spec.meshIP | spec.meshIP: "100.96.0.08" is not an IPv4 or IPv6 address']],
  ['a mesh IP of 46 characters', 'Peer', peer({ ...good, meshIP: long('1', 46) }), [`spec.meshIP | spec.meshIP: "${long('1', 46)}" is longer than 45 characters`]],
  ['a Gateway without mesh IP', 'Gateway', peer({ publicKey: KEY, podCIDRs: ['10.0.0.0/24'] }), ['spec.meshIP | spec.meshIP: required']],
  ['a Gateway with a null mesh IP', 'Gateway', peer({ ...gw, meshIP: null }), ['spec.meshIP | spec.meshIP: required']],
  ['a node name with upper case', 'Peer', peer({ ...good, nodeName: 'Node_A' }), ['spec.nodeName | spec.nodeName: "Node_A" is not a node name (lower case letters, digits, \'-\' and \'.\', at most 253)']],
  ['a node name of 254 characters', 'Peer', peer({ ...good, nodeName: long('a', 254) }), [`spec.nodeName | spec.nodeName: ${cut('a')} is not a node name (lower case letters, digits, '-' and '.', at most 253)`]],
  ['no allowedIPs', 'Peer', peer({ publicKey: KEY }), ['spec.allowedIPs | spec.allowedIPs: required, at least one CIDR']],
  ['null allowedIPs', 'Peer', peer({ publicKey: KEY, allowedIPs: null }), ['spec.allowedIPs | spec.allowedIPs: required, at least one CIDR']],
  ['allowedIPs as a string', 'Peer', peer({ publicKey: KEY, allowedIPs: '10.0.0.0/24' }), ['spec.allowedIPs | spec.allowedIPs: expected a list of CIDRs, got a string']],
  ['empty allowedIPs', 'Peer', peer({ publicKey: KEY, allowedIPs: [] }), ['spec.allowedIPs | spec.allowedIPs: required, at least one CIDR']],
  [
    '257 allowedIPs',
    'Peer',
    peer({ publicKey: KEY, allowedIPs: Array.from({ length: 257 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`) }),
    ['spec.allowedIPs | spec.allowedIPs: 257 entries, at most 256'],
  ],
  [
    'a number and a bad address among allowedIPs: each named by its index',
    'Peer',
    peer({ publicKey: KEY, allowedIPs: ['10.0.0.0/24', 5, '10.0.0.300/32'] }),
    ['spec.allowedIPs[1] | spec.allowedIPs[1]: expected a string, got a number', 'spec.allowedIPs[2] | spec.allowedIPs[2]: "10.0.0.300" is not an IPv4 or IPv6 address'],
  ],
  [
    'allowedIPs entries of every other type, each said by its type',
    'Peer',
    peer({ publicKey: KEY, allowedIPs: [null, undefined, {}, [], true] }),
    [
      'spec.allowedIPs[0] | spec.allowedIPs[0]: expected a string, got null',
      'spec.allowedIPs[1] | spec.allowedIPs[1]: expected a string, got nothing',
      'spec.allowedIPs[2] | spec.allowedIPs[2]: expected a string, got an object',
      'spec.allowedIPs[3] | spec.allowedIPs[3]: expected a string, got a list',
      'spec.allowedIPs[4] | spec.allowedIPs[4]: expected a string, got a boolean',
    ],
  ],
  ['a CIDR of 50 characters', 'Peer', peer({ publicKey: KEY, allowedIPs: [long('1', 50)] }), [`spec.allowedIPs[0] | spec.allowedIPs[0]: "${long('1', 50)}" is longer than 49 characters`]],
  ['a Gateway without podCIDRs', 'Gateway', peer({ publicKey: KEY, meshIP: '100.96.0.1' }), ['spec.podCIDRs | spec.podCIDRs: required, at least one CIDR']],
  [
    'a Gateway with 65 podCIDRs',
    'Gateway',
    peer({ ...gw, podCIDRs: Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/24`) }),
    ['spec.podCIDRs | spec.podCIDRs: 65 entries, at most 64'],
  ],
  ['a Gateway with a bad pod CIDR', 'Gateway', peer({ ...gw, podCIDRs: ['10.0.0.0/33'] }), ['spec.podCIDRs[0] | spec.podCIDRs[0]: "10.0.0.0/33" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (prefix length must be 0 to 32)']],
  ['keepalive -1', 'Peer', peer({ ...good, persistentKeepalive: -1 }), ['spec.persistentKeepalive | spec.persistentKeepalive: -1 is not a whole number of seconds from 0 to 65535']],
  ['keepalive 65536', 'Peer', peer({ ...good, persistentKeepalive: 65536 }), ['spec.persistentKeepalive | spec.persistentKeepalive: 65536 is not a whole number of seconds from 0 to 65535']],
  ['keepalive 1.5', 'Peer', peer({ ...good, persistentKeepalive: 1.5 }), ['spec.persistentKeepalive | spec.persistentKeepalive: 1.5 is not a whole number of seconds from 0 to 65535']],
  ['keepalive as text', 'Peer', peer({ ...good, persistentKeepalive: '25' }), ['spec.persistentKeepalive | spec.persistentKeepalive: "25" is not a whole number of seconds from 0 to 65535']],
  ['a Secret reference as text', 'Peer', peer({ ...good, presharedKeySecretRef: 'x' }), ['spec.presharedKeySecretRef | spec.presharedKeySecretRef: expected an object with namespace, name and key, got a string']],
  [
    'an empty Secret reference',
    'Peer',
    peer({ ...good, presharedKeySecretRef: {} }),
    [
      'spec.presharedKeySecretRef.namespace | spec.presharedKeySecretRef.namespace: required',
      'spec.presharedKeySecretRef.name | spec.presharedKeySecretRef.name: required',
      'spec.presharedKeySecretRef.key | spec.presharedKeySecretRef.key: required',
    ],
  ],
  [
    'a Secret reference with every part wrong',
    'Peer',
    peer({ ...good, presharedKeySecretRef: { namespace: 'Kube_System', name: long('a', 254), key: 'a b' } }),
    [
      'spec.presharedKeySecretRef.namespace | spec.presharedKeySecretRef.namespace: "Kube_System" is not a Secret namespace',
      `spec.presharedKeySecretRef.name | spec.presharedKeySecretRef.name: ${cut('a')} is not a Secret name`,
      'spec.presharedKeySecretRef.key | spec.presharedKeySecretRef.key: "a b" is not a Secret key',
    ],
  ],
  ['a number as Secret namespace', 'Peer', peer({ ...good, presharedKeySecretRef: { namespace: 1, name: 'n', key: 'k' } }), ['spec.presharedKeySecretRef.namespace | spec.presharedKeySecretRef.namespace: 1 is not a Secret namespace']],
  [
    'a Secret namespace of 64 characters',
    'Peer',
    peer({ ...good, presharedKeySecretRef: { namespace: long('a', 64), name: 'n', key: 'k' } }),
    [`spec.presharedKeySecretRef.namespace | spec.presharedKeySecretRef.namespace: ${cut('a')} is not a Secret namespace`],
  ],
  [
    'a Secret key of 254 characters',
    'Peer',
    peer({ ...good, presharedKeySecretRef: { namespace: 'ns', name: 'n', key: long('k', 254) } }),
    [`spec.presharedKeySecretRef.key | spec.presharedKeySecretRef.key: ${cut('k')} is not a Secret key`],
  ],
  [
    'a Secret reference with an extra field',
    'Peer',
    peer({ ...good, presharedKeySecretRef: { namespace: 'ns', name: 'n', key: 'k', optional: true } }),
    ['spec.presharedKeySecretRef.optional | spec.presharedKeySecretRef.optional: a Secret reference has only namespace, name and key'],
  ],
  ['no metadata', 'Peer', { spec: good }, ['metadata.name | metadata.name: required']],
  ['a null name', 'Peer', peer(good, { name: null }), ['metadata.name | metadata.name: required']],
  ['an empty name', 'Peer', peer(good, { name: '' }), ['metadata.name | metadata.name: "" is not an object name (lower case letters, digits, \'-\' and \'.\', at most 253)']],
  ['a name with a control character (escaped)', 'Peer', peer(good, { name: 'Bad Name\u001b' }), ['metadata.name | metadata.name: "Bad Name\\u001b" is not an object name (lower case letters, digits, \'-\' and \'.\', at most 253)']],
  ['null', 'Peer', null, ['metadata.name | metadata.name: required']],
  ['a string', 'Gateway', 'x', ['metadata.name | metadata.name: required']],
];

describe('checkObject: exactly the problems, each naming its field', () => {
  for (const [what, kind, raw, expected] of REFUSED) {
    test(`${kind}: ${what}`, () => {
      const c = checkObject(kind, raw);
      assert.equal(c.ok, false, 'refused');
      if (c.ok) return;
      assert.equal(c.kind, kind);
      assert.deepEqual(
        c.problems.map((p) => `${p.field} | ${p.message}`),
        expected,
      );
    });
  }

  test('an object is reported by its name, an unusable name escaped or "(unnamed)"', () => {
    assert.equal((checkObject('Peer', peer({}, { name: 'p1' })) as { name: string }).name, 'p1');
    assert.equal((checkObject('Peer', peer(good, { name: 'Bad Name\u001b' })) as { name: string }).name, '"Bad Name\\u001b"');
    assert.equal((checkObject('Peer', null) as { name: string }).name, '(unnamed)');
  });

  test('accepted: canonical addresses, the creation time, and nulls for what is not set', () => {
    const raw = {
      metadata: { name: 'node-a', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { publicKey: KEY, endpoint: '[FD00::1]:51820', meshIP: '100.96.0.1', nodeName: 'node-a', allowedIPs: ['10.0.0.5/24', 'FD00:0::/64'], persistentKeepalive: 0 },
    };
    assert.deepEqual(checkObject('Peer', raw), {
      ok: true,
      object: {
        kind: 'Peer',
        name: 'node-a',
        created: Date.parse('2026-01-01T00:00:00Z'),
        spec: { publicKey: KEY, endpoint: '[fd00::1]:51820', meshIP: '100.96.0.1', nodeName: 'node-a', cidrs: ['10.0.0.0/24', 'fd00::/64'], persistentKeepalive: 0, presharedKeySecretRef: null },
      },
    });
    const minimal = checkObject('Peer', peer({ ...good, endpoint: null, meshIP: null, nodeName: null, persistentKeepalive: null, presharedKeySecretRef: null }));
    assert.deepEqual(minimal, {
      ok: true,
      object: { kind: 'Peer', name: 'p1', created: Number.MAX_SAFE_INTEGER, spec: { publicKey: KEY, endpoint: null, meshIP: null, nodeName: null, cidrs: ['10.0.0.0/24'], persistentKeepalive: null, presharedKeySecretRef: null } },
    });
    const ref = checkObject('Peer', peer({ ...good, endpoint: '1.2.3.4:10', presharedKeySecretRef: { namespace: 'ns', name: 'n.x', key: 'k_1' } }));
    assert.ok(ref.ok);
    assert.deepEqual(ref.object.spec.presharedKeySecretRef, { namespace: 'ns', name: 'n.x', key: 'k_1' });
    assert.equal(ref.object.spec.endpoint, '1.2.3.4:10');
    const g = checkObject('Gateway', peer({ ...gw, podCIDRs: ['10.0.0.5/24'] }));
    assert.ok(g.ok);
    assert.deepEqual(g.object.spec.cidrs, ['10.0.0.0/24']);
  });

  test('the limits themselves are allowed: 256 allowedIPs, a 253-character node name, 64-character endpoints are judged by their syntax', () => {
    assert.ok(checkObject('Peer', peer({ publicKey: KEY, allowedIPs: Array.from({ length: 256 }, (_, i) => `10.${i}.0.0/16`) })).ok);
    assert.ok(checkObject('Peer', peer({ ...good, nodeName: long('a', 253) })).ok);
    assert.ok(checkObject('Gateway', peer({ ...gw, podCIDRs: Array.from({ length: 64 }, (_, i) => `10.${i}.0.0/16`) })).ok);
    assert.ok(checkObject('Peer', peer({ ...good, persistentKeepalive: 65535 })).ok);
    const zeroGroup = checkObject('Peer', peer({ ...good, endpoint: '[1:0:1:1:1:1:1:1]:51820' }));
    assert.ok(zeroGroup.ok, 'only port 0 is refused, not a ":0" inside the address');
    assert.equal(zeroGroup.object.spec.endpoint, '[1:0:1:1:1:1:1:1]:51820');
  });
});

describe('fields a kind does not have', () => {
  test('near misses and secret-looking fields are refused; a field like no other is left alone and listed', () => {
    const fields = (kind: 'Peer' | 'Gateway', extra: Record<string, unknown>): string[] => {
      const c = checkObject(kind, peer({ ...(kind === 'Peer' ? good : gw), ...extra }));
      return c.ok ? [] : c.problems.map((p) => p.message);
    };
    assert.deepEqual(fields('Peer', { allowedIps: [] }), ['spec.allowedIps: a Peer has no such field; did you mean allowedIPs?']);
    assert.deepEqual(fields('Peer', { endpont: '1.2.3.4:5' }), ['spec.endpont: a Peer has no such field; did you mean endpoint?']);
    assert.deepEqual(fields('Peer', { private_key: 'x' }), ['spec["private_key"]: a secret key never goes into the API; keep it in the node key file']);
    assert.deepEqual(fields('Peer', { psk: 'x' }), ['spec.psk: a secret key never goes into the API; keep it in the node key file']);
    assert.deepEqual(fields('Peer', { 'Preshared-Key': 'x' }), ['spec["Preshared-Key"]: a secret key never goes into the API; keep it in the node key file']);
    assert.deepEqual(fields('Peer', { podCIDRs: [] }), ['spec.podCIDRs: a Peer has no podCIDRs (a Gateway field); a Peer has publicKey, endpoint, allowedIPs, meshIP, nodeName, persistentKeepalive, presharedKeySecretRef']);
    assert.deepEqual(fields('Peer', { weight: 5, mtu: 1420, labels: {} }), []);
    assert.deepEqual(unknownFields('Peer', peer({ ...good, weight: 5, 'odd field': 1, meshIp: 'x' })), ['spec.weight', 'spec["odd field"]']);
    assert.deepEqual(unknownFields('Gateway', peer({ ...gw })), []);
    assert.deepEqual(unknownFields('Peer', null), []);
  });
});

describe('checkNode: what parses is kept, what does not is named', () => {
  test('pod CIDRs and InternalIPs canonical and deduplicated; bad ones named by index; other address types ignored', () => {
    const raw = {
      metadata: { name: 'n1', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { podCIDRs: ['10.244.1.5/24', 'bad', '10.244.1.0/24', 'fd00:1::/64'] },
      status: {
        addresses: [
          { type: 'InternalIP', address: '10.224.0.4' },
          { type: 'ExternalIP', address: '1.2.3.4' },
          { type: 'InternalIP', address: '10.224.0.04' },
          { type: 'InternalIP', address: '10.224.0.4' },
          'junk',
          { type: 'Hostname', address: 'n1' },
        ],
      },
    };
    assert.deepEqual(checkNode(raw), {
      node: { name: 'n1', podCIDRs: ['10.244.1.0/24', 'fd00:1::/64'], internalIPs: ['10.224.0.4'], creationTimestamp: '2026-01-01T00:00:00.000Z' },
      problems: [
        { field: 'spec.podCIDRs[1]', message: 'spec.podCIDRs[1]: "bad" is not a CIDR such as 10.244.1.0/24 or fd00::/64 (the prefix length is missing)' },
        { field: 'status.addresses[2].address', message: 'status.addresses[2].address: "10.224.0.04" is not an IPv4 or IPv6 address' },
      ],
    });
  });

  test('spec.podCIDR is the fallback when podCIDRs is missing or empty; an empty podCIDR is none', () => {
    assert.deepEqual(checkNode({ metadata: { name: 'n2' }, spec: { podCIDR: '10.244.2.5/24' } }), { node: { name: 'n2', podCIDRs: ['10.244.2.0/24'], internalIPs: [] }, problems: [] });
    assert.deepEqual(checkNode({ metadata: { name: 'n3' }, spec: { podCIDRs: [], podCIDR: '10.244.3.0/24' } }).node?.podCIDRs, ['10.244.3.0/24']);
    assert.deepEqual(checkNode({ metadata: { name: 'n3' }, spec: { podCIDRs: ['10.244.9.0/24'], podCIDR: '10.244.3.0/24' } }).node?.podCIDRs, ['10.244.9.0/24']);
    assert.deepEqual(checkNode({ metadata: { name: 'n5' }, spec: { podCIDR: '' } }), { node: { name: 'n5', podCIDRs: [], internalIPs: [] }, problems: [] });
    assert.deepEqual(checkNode({ metadata: { name: 'n5' }, spec: { podCIDR: 'x' } }).problems.map((p) => p.field), ['spec.podCIDR[0]']);
  });

  test('lists that are not lists are named; a node without a usable name is none', () => {
    assert.deepEqual(checkNode({ metadata: { name: 'n4' }, spec: { podCIDRs: '10.244.4.0/24' }, status: { addresses: 'x' } }), {
      node: { name: 'n4', podCIDRs: [], internalIPs: [] },
      problems: [
        { field: 'spec.podCIDRs', message: 'spec.podCIDRs: expected a list of CIDRs, got a string' },
        { field: 'status.addresses', message: 'status.addresses: expected a list, got a string' },
      ],
    });
    assert.deepEqual(checkNode({ metadata: { name: 'N6' } }), { node: null, problems: [{ field: 'metadata.name', message: 'metadata.name: "N6" is not a node name' }] });
    assert.deepEqual(checkNode(null), { node: null, problems: [{ field: 'metadata.name', message: 'metadata.name: undefined is not a node name' }] });
    assert.deepEqual(checkNode({ metadata: { name: 'n7', creationTimestamp: 'nope' }, spec: null, status: 5 }), { node: { name: 'n7', podCIDRs: [], internalIPs: [] }, problems: [] });
  });

  test('at most 64 pod CIDRs are read from a Node', () => {
    const node = checkNode({ metadata: { name: 'n8' }, spec: { podCIDRs: Array.from({ length: 70 }, (_, i) => `10.${i}.0.0/24`) } }).node;
    assert.equal(node?.podCIDRs.length, 64);
    assert.equal(node?.podCIDRs[63], '10.63.0.0/24');
  });

  test('checkNodeInfo: a NodeInfo checked again, canonical; nothing without a usable name', () => {
    assert.deepEqual(checkNodeInfo({ name: 'a', podCIDRs: ['10.0.0.5/24', 'x'], internalIPs: ['10.1.1.1', 'y'], creationTimestamp: '2026-01-01T00:00:00Z' }), {
      name: 'a',
      podCIDRs: ['10.0.0.0/24'],
      internalIPs: ['10.1.1.1'],
      creationTimestamp: '2026-01-01T00:00:00.000Z',
    });
    assert.deepEqual(checkNodeInfo({ name: 'a', podCIDRs: 'x', internalIPs: 5 }), { name: 'a', podCIDRs: [], internalIPs: [] });
    assert.equal(checkNodeInfo({ name: 'B' }), null);
    assert.equal(checkNodeInfo(null), null);
    assert.equal(checkNodeInfo([]), null);
  });
});

describe('names, times and how values are shown', () => {
  test('createdAt: a timestamp string or Date in ms; anything else sorts last', () => {
    assert.equal(createdAt({ metadata: { creationTimestamp: '2026-01-01T00:00:00Z' } }), Date.parse('2026-01-01T00:00:00Z'));
    assert.equal(createdAt({ metadata: { creationTimestamp: new Date(5) } }), 5);
    for (const bad of [{ metadata: { creationTimestamp: 'nope' } }, { metadata: { creationTimestamp: 5 } }, { metadata: 'x' }, null]) {
      assert.equal(createdAt(bad), Number.MAX_SAFE_INTEGER, JSON.stringify(bad));
    }
  });

  test('reportedName: the name, an unusable one escaped, none as "(unnamed)"', () => {
    assert.equal(reportedName({ metadata: { name: 'a' } }), 'a');
    assert.equal(reportedName({ metadata: { name: 'A B' } }), '"A B"');
    assert.equal(reportedName({ metadata: { name: '' } }), '(unnamed)');
    assert.equal(reportedName({ metadata: { name: 5 } }), '(unnamed)');
    assert.equal(reportedName({}), '(unnamed)');
    assert.equal(reportedName({ metadata: { name: long('x', 300) } }), cut('x'));
  });

  test('shown: JSON with control characters escaped, at most 64 characters; never throws', () => {
    assert.equal(shown('a\u0007b'), '"a\\u0007b"');
    assert.equal(shown(undefined), 'undefined');
    assert.equal(shown({ a: 1 }), '{"a":1}');
    assert.equal(shown(long('x', 62)), `"${long('x', 62)}"`);
    assert.equal(shown(long('x', 63)), cut('x'));
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.equal(shown(circular), 'object');
    assert.equal(shown(10n), 'bigint');
  });

  test('isObjectName: DNS subdomains of at most 253 characters', () => {
    assert.equal(isObjectName(long('a', 253)), true);
    assert.equal(isObjectName(long('a', 254)), false);
    assert.equal(isObjectName('a.b-c'), true);
    assert.equal(isObjectName(''), false);
    assert.equal(isObjectName(5), false);
  });
});
