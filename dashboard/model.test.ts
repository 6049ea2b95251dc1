import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FULL_PAIRS_MEMBERS, clusterView, pairView, memberView } from './model.ts';
import type { MeshObject } from './model.ts';

const ready = (status = 'True') => ({ type: 'Ready', status, reason: 'Converged', message: 'ok', lastTransitionTime: '2026-01-01T00:00:00Z' });
function peer(name: string, peers?: Record<string, unknown>, conditions: unknown[] = [ready()], spec: Record<string, unknown> = { nodeName: name }): MeshObject {
  return { metadata: { name }, spec, status: { conditions, ...(peers ? { peers } : {}) } };
}
const healthy = (n: number, unhealthy: unknown[] = [], omitted?: number) => ({
  desired: n,
  configured: n,
  handshakeWithin3m: n - unhealthy.length,
  healthy: n - unhealthy.length,
  summary: `${n - unhealthy.length}/${n}`,
  ...(unhealthy.length ? { unhealthy } : {}),
  ...(omitted ? { unhealthyOmitted: omitted } : {}),
});

test('a pair is unhealthy when either side lists the other, with that side\'s reason', () => {
  const a = memberView('Peer', peer('a', healthy(2, [{ kind: 'Peer', name: 'b', reason: 'StaleHandshake', lastHandshake: '2026-01-01T00:00:00Z' }])))!;
  const b = memberView('Peer', peer('b', healthy(2)))!;
  for (const p of [pairView(a, b), pairView(b, a)]) {
    assert.equal(p.health, 'unhealthy');
    assert.deepEqual([p.a, p.b], ['Peer/a', 'Peer/b']);
    assert.deepEqual(p.sides.find((s) => s.from === 'Peer/a'), { from: 'Peer/a', health: 'unhealthy', reason: 'StaleHandshake', lastHandshake: '2026-01-01T00:00:00Z' });
  }
});

test('healthy only when every side that writes health vouches for it; unknown without health, when not Ready, or when the list was cut', () => {
  const ok = memberView('Peer', peer('a', healthy(2)))!;
  assert.equal(pairView(ok, memberView('Peer', peer('b', healthy(2)))!).health, 'healthy');
  // An external Peer has no agent and writes nothing: the other side's word decides.
  assert.equal(pairView(ok, memberView('Peer', { metadata: { name: 'ext' }, spec: {} })!).health, 'healthy');
  // A member that has not written health yet (an older agent) does not make its pairs healthy.
  assert.equal(pairView(ok, memberView('Peer', peer('b', { desired: 2, configured: 2, handshakeWithin3m: 2 }))!).health, 'unknown');
  assert.equal(pairView(ok, memberView('Peer', peer('b', healthy(2), [ready('False')]))!).health, 'unknown');
  assert.equal(pairView(ok, memberView('Peer', peer('b', healthy(40, [], 9)))!).health, 'unknown');
  // Pairs come first in a member's list: once it lists a refused object, only refusals were cut, so
  // the pairs it does not list are healthy (40 refused objects do not make the whole mesh unknown).
  const cutRefusals = memberView('Peer', { ...peer('b'), status: { conditions: [ready()], peers: { ...healthy(2), unhealthy: [{ kind: 'Peer', name: 'z', reason: 'NoHandshake' }, { kind: 'Gateway', name: 'a-00', reason: 'Refused' }], unhealthyOmitted: 9, summary: '1/2', healthy: 1 } } })!;
  assert.equal(pairView(ok, cutRefusals).health, 'healthy');
  assert.equal(pairView(memberView('Peer', peer('z', healthy(2)))!, cutRefusals).health, 'unhealthy');
  assert.equal(pairView(memberView('Peer', { metadata: { name: 'x' } })!, memberView('Peer', { metadata: { name: 'y' } })!).health, 'unknown');
});

test('clusterView: Peers before Gateways, no Gateway-Gateway pairs, refused objects out of the picture and listed with why; odd shapes never throw', () => {
  const view = clusterView(
    [
      peer('b', healthy(3)),
      peer('a', healthy(3, [{ kind: 'Peer', name: 'rogue', reason: 'Refused' }, { kind: 'Peer', name: 'ghost', reason: 'Refused' }])),
      peer('rogue', undefined, [{ type: 'Accepted', status: 'False', reason: 'Overlap', message: '<b>overlaps</b>' }], {}),
      { metadata: {} },
      { metadata: { name: 'weird' }, spec: 'x' as unknown as Record<string, unknown>, status: { peers: { unhealthy: 'no', summary: 7 }, conditions: 'no' } },
    ],
    [peer('gw-2', healthy(3)), peer('gw-1', healthy(3))],
    [
      { name: 'a', podCIDRs: ['10.244.0.0/24'], internalIPs: ['10.0.0.1'] },
      { name: 'lonely', podCIDRs: [], internalIPs: [] },
    ],
  );
  assert.deepEqual(view.members.map((m) => m.key), ['Peer/a', 'Peer/b', 'Peer/rogue', 'Peer/weird', 'Gateway/gw-1', 'Gateway/gw-2']);
  const keys = view.pairs.map((p) => `${p.a}|${p.b}`);
  assert.ok(!keys.some((k) => k.includes('rogue')), 'a refused object has no tunnel to draw');
  assert.ok(!keys.includes('Gateway/gw-1|Gateway/gw-2'));
  assert.equal(keys.length, 9, 'a, b, weird, gw-1, gw-2: 10 pairs less the Gateway-Gateway one');
  assert.deepEqual(view.refused, [
    { kind: 'Peer', name: 'rogue', reason: 'Overlap', message: '<b>overlaps</b>', source: 'Accepted condition' },
    { kind: 'Peer', name: 'ghost', reason: 'Refused', message: 'refused by Peer/a', source: 'peer health' },
  ]);
  const weird = view.members.find((m) => m.name === 'weird')!;
  assert.equal(weird.healthy, null);
  assert.deepEqual(weird.unhealthy, []);
  assert.deepEqual(view.nodes.map((n) => [n.name, n.hasPeer]), [['a', true], ['lonely', false]]);
});

test('a large mesh sends only the pairs that are not healthy, found from the lists and the members that cannot vouch, not from N² pairs', () => {
  const n = FULL_PAIRS_MEMBERS + 40;
  const names = Array.from({ length: n }, (_, i) => `n${String(i).padStart(3, '0')}`);
  const peers = names.map((name, i) =>
    i === 0 ? peer(name, healthy(n - 1, [{ kind: 'Peer', name: 'n001', reason: 'NoHandshake' }])) : i === 2 ? peer(name, healthy(n - 1), [ready('False')]) : peer(name, healthy(n - 1)),
  );
  const view = clusterView(peers, [], []);
  assert.deepEqual(view.pairsPartial, { omitted: 0 });
  assert.equal(view.pairs[0].health, 'unhealthy');
  assert.deepEqual([view.pairs[0].a, view.pairs[0].b], ['Peer/n000', 'Peer/n001']);
  // n002 is not Ready: its n-1 pairs are unknown; nothing else is drawn.
  assert.equal(view.pairs.length, 1 + (n - 1));
  assert.ok(view.pairs.slice(1).every((p) => p.health === 'unknown' && (p.a === 'Peer/n002' || p.b === 'Peer/n002')));
});

test('a member that cannot read its own device (not Ready, every peer DeviceUnreadable): its pairs are unhealthy, by its word, not grey "not Ready" (audit12 #2)', () => {
  const frozen = memberView(
    'Peer',
    peer(
      'c',
      { desired: 2, configured: 2, handshakeWithin3m: 0, healthy: 0, summary: '0/2', unhealthy: [{ kind: 'Peer', name: 'a', reason: 'DeviceUnreadable' }, { kind: 'Peer', name: 'b', reason: 'DeviceUnreadable' }] },
      [{ ...ready('False'), reason: 'ReconcileFailed', message: 'UAPI get on /var/run/wireguard/wg-mesh.sock got no complete answer within 5000 ms' }],
    ),
  )!;
  const a = memberView('Peer', peer('a', healthy(2)))!;
  const p = pairView(a, frozen);
  assert.equal(p.health, 'unhealthy');
  assert.deepEqual(p.sides.find((s) => s.from === 'Peer/c'), { from: 'Peer/c', health: 'unhealthy', reason: 'DeviceUnreadable', lastHandshake: null });
  assert.equal(frozen.healthy, '0/2', 'HEALTHY reads 0/2, not the last good count');
});
