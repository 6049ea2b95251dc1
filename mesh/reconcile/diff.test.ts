import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { blankPeerState, canonicalCidr, encodeSet, generatePrivateKey, publicKeyOf } from '../../native/index.ts';
import type { DeviceState, PeerState, SetRequest } from '../../native/index.ts';
import { batchOps, batchRequest, describeDrift, deviceDrift, diffDevice, diffRoutes, driftMatters, opRequest, peerDifferences, planDevice, planRoutes } from './diff.ts';
import type { DesiredDevice } from './diff.ts';
import { CidrMirror, DeviceMirror } from './mirror.ts';

/**
 * A model of how wireguard-go applies a `set` (device/uapi.go): used only by the property tests
 * below, to apply thousands of random differences that a real daemon would take minutes for. The
 * real daemon is exercised by the reconciler's integration tests. Modelled: update_only skips a
 * missing peer, replace_allowed_ips clears, an allowed IP moves from any other peer that held it.
 */
function applySet(state: DeviceState, req: SetRequest): DeviceState {
  encodeSet(req); // what the real client would refuse, the model refuses too
  const next: DeviceState = structuredClone(state);
  if (req.privateKey !== undefined) {
    next.privateKey = req.privateKey;
    next.publicKey = req.privateKey === null ? null : publicOf(req.privateKey);
  }
  if (req.listenPort !== undefined) next.listenPort = req.listenPort;
  if (req.fwmark !== undefined) next.fwmark = req.fwmark;
  if (req.replacePeers) next.peers = [];
  for (const change of req.peers ?? []) {
    let peer = next.peers.find((p) => p.publicKey === change.publicKey);
    if (change.remove) {
      next.peers = next.peers.filter((p) => p.publicKey !== change.publicKey);
      continue;
    }
    if (!peer) {
      if (change.updateOnly) continue;
      peer = emptyPeer(change.publicKey);
      next.peers.push(peer);
    }
    if (change.presharedKey !== undefined) peer.presharedKey = change.presharedKey;
    if (change.endpoint !== undefined) peer.endpoint = change.endpoint;
    if (change.persistentKeepalive !== undefined) peer.persistentKeepalive = change.persistentKeepalive;
    if (change.replaceAllowedIPs) peer.allowedIPs = [];
    for (const cidr of change.allowedIPs ?? []) {
      for (const other of next.peers) other.allowedIPs = other.allowedIPs.filter((c) => c !== cidr);
      peer.allowedIPs.push(cidr);
    }
  }
  return next;
}

const emptyPeer = blankPeerState;

// A small pool of keys, so random desired and live states share peers often.
const KEYS = Array.from({ length: 8 }, () => publicKeyOf(generatePrivateKey()));
const PRIVATE = [generatePrivateKey(), generatePrivateKey()];
// Curve25519 takes milliseconds per key: computed once, so thousands of property runs stay quick
// (and a mutation run, which repeats them per mutant, stays affordable).
const PUBLIC = new Map(PRIVATE.map((k) => [k, publicKeyOf(k)]));
const publicOf = (privateKey: string): string => PUBLIC.get(privateKey) ?? publicKeyOf(privateKey);
const CIDRS = Array.from({ length: 24 }, (_, i) => (i % 3 === 2 ? `fd00:${i}::/64` : `10.${i}.0.0/24`));

/** Peers with distinct keys and allowed IPs that no two peers share (as on a real device). */
const peersArb = fc
  .uniqueArray(
    fc.record({
      key: fc.constantFrom(...KEYS),
      cidrs: fc.uniqueArray(fc.constantFrom(...CIDRS), { maxLength: 3 }),
      endpoint: fc.option(fc.constantFrom('198.18.0.1:51820', '198.18.0.2:51821', '[fd00::1]:51820'), { nil: null }),
      keepalive: fc.constantFrom(0, 25),
      psk: fc.option(fc.constant('f4Fqs1hPZ8mcbkzAFJDQi5yOAZgW7p6Y+B6g0gi10ws='), { nil: null }),
    }),
    { selector: (p) => p.key, maxLength: 6 },
  )
  .map((peers) => {
    const taken = new Set<string>();
    return peers.map((p) => ({ ...p, cidrs: p.cidrs.filter((c) => !taken.has(c) && taken.add(c)) }));
  });

const liveArb = fc.record({ priv: fc.option(fc.constantFrom(...PRIVATE), { nil: null }), port: fc.constantFrom(0, 51820, 51821), fwmark: fc.constantFrom(0, 0x4d5), peers: peersArb }).map(
  ({ priv, port, fwmark, peers }): DeviceState => ({
    privateKey: priv,
    publicKey: priv && publicOf(priv),
    listenPort: port,
    fwmark,
    peers: peers.map((p) => ({ ...emptyPeer(p.key), allowedIPs: p.cidrs, endpoint: p.endpoint, persistentKeepalive: p.keepalive, presharedKey: p.psk })),
  }),
);

const desiredArb = fc.record({ priv: fc.constantFrom(...PRIVATE), port: fc.constantFrom(51820, 51821), peers: peersArb }).map(
  ({ priv, port, peers }): DesiredDevice => ({
    privateKey: priv,
    listenPort: port,
    fwmark: 0x4d5,
    peers: peers.map((p) => ({ publicKey: p.key, allowedIPs: p.cidrs, endpoint: p.endpoint, persistentKeepalive: p.keepalive, presharedKey: p.psk })),
  }),
);

describe('diffDevice', () => {
  test('property: applying the difference to any live device yields the desired device', () => {
    fc.assert(
      fc.property(desiredArb, liveArb, (want, live) => {
        let state = live;
        for (const op of diffDevice(want, live)) state = applySet(state, opRequest(op));
        assert.deepEqual(diffDevice(want, state), [], 'a second pass finds nothing left to do');
        assert.equal(state.privateKey, want.privateKey);
        assert.equal(state.listenPort, want.listenPort);
        const got = new Map(state.peers.map((p) => [p.publicKey, p]));
        assert.deepEqual([...got.keys()].sort(), want.peers.map((p) => p.publicKey).sort());
        for (const p of want.peers) {
          const live = got.get(p.publicKey) as PeerState;
          assert.deepEqual([...live.allowedIPs].sort(), [...p.allowedIPs].sort());
          if (p.endpoint) assert.equal(live.endpoint, p.endpoint);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('property: the difference of a device with itself is empty', () => {
    fc.assert(
      fc.property(liveArb, (live) => {
        fc.pre(live.privateKey !== null);
        const want: DesiredDevice = {
          privateKey: live.privateKey as string,
          listenPort: live.listenPort,
          fwmark: live.fwmark,
          peers: live.peers.map((p) => ({ ...p, allowedIPs: [...p.allowedIPs].reverse() })),
        };
        assert.deepEqual(diffDevice(want, live), []);
      }),
      { numRuns: 1000 },
    );
  });

  test('changing one peer of many is one update_only set for that peer alone', () => {
    const live: DeviceState = {
      privateKey: PRIVATE[0],
      publicKey: publicKeyOf(PRIVATE[0]),
      listenPort: 51820,
      fwmark: 0x4d5,
      peers: KEYS.map((k, i) => ({ ...emptyPeer(k), allowedIPs: [`10.${i}.0.0/24`], endpoint: `198.18.0.${i + 1}:51820` })),
    };
    const want: DesiredDevice = {
      privateKey: PRIVATE[0],
      listenPort: 51820,
      fwmark: 0x4d5,
      peers: live.peers.map((p, i) => ({ publicKey: p.publicKey, allowedIPs: i === 3 ? ['10.3.0.0/24', '10.99.0.0/24'] : p.allowedIPs, endpoint: p.endpoint })),
    };
    const ops = diffDevice(want, live);
    assert.equal(ops.length, 1);
    const lines = encodeSet(opRequest(ops[0]));
    assert.equal(lines.filter((l) => l.startsWith('public_key=')).length, 1, 'touches one peer');
    assert.ok(lines.includes('update_only=true'));
    assert.ok(lines.includes('replace_allowed_ips=true'));
  });

  test('a peer without an endpoint keeps the one it roamed to', () => {
    const live: DeviceState = {
      privateKey: PRIVATE[0],
      publicKey: publicKeyOf(PRIVATE[0]),
      listenPort: 51820,
      fwmark: 0,
      peers: [{ ...emptyPeer(KEYS[0]), allowedIPs: ['10.0.0.0/24'], endpoint: '198.18.7.7:40000' }],
    };
    assert.deepEqual(diffDevice({ privateKey: PRIVATE[0], listenPort: 51820, fwmark: 0, peers: [{ publicKey: KEYS[0], allowedIPs: ['10.0.0.0/24'] }] }, live), []);
  });

  test('a reset device (no key, no port) gets one device set before its peers', () => {
    const live: DeviceState = { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] };
    const ops = diffDevice({ privateKey: PRIVATE[1], listenPort: 51820, fwmark: 0x4d5, peers: [{ publicKey: KEYS[1], allowedIPs: ['10.1.0.0/24'] }] }, live);
    assert.deepEqual(
      ops.map((o) => o.op),
      ['device', 'put'],
    );
  });
});

describe('diffRoutes', () => {
  test('adds what is missing, removes what is not wanted, replaces a route through another device', () => {
    const changes = diffRoutes(
      ['10.1.0.0/24', '10.2.0.0/24', 'fd00:1::/64'],
      [
        { dst: '10.1.0.0/24', dev: 'wg0' },
        { dst: '10.2.0.0/24', dev: 'eth0' },
        { dst: '10.9.0.0/24', dev: 'wg0' },
      ],
      'wg0',
    );
    assert.deepEqual(changes, { add: ['10.2.0.0/24', 'fd00:1::/64'], remove: ['10.9.0.0/24'] });
  });
});

// ---- behaviour pinned by the mutation run (stryker.config.mjs): each of these failed to notice a change ----

describe('diffDevice: every field that differs is set, nothing else', () => {
  const base = (peers: PeerState[], fwmark = 0x4d5): DeviceState => ({ privateKey: PRIVATE[0], publicKey: publicOf(PRIVATE[0]), listenPort: 51820, fwmark, peers });
  const want = (peers: DesiredDevice['peers'], fwmark = 0x4d5): DesiredDevice => ({ privateKey: PRIVATE[0], listenPort: 51820, fwmark, peers });

  test('fwmark drift (another tool changed it) is corrected with one device set of the fwmark alone', () => {
    const ops = diffDevice(want([], 0x4d5), base([], 0));
    assert.deepEqual(ops, [{ op: 'device', fwmark: 0x4d5 }]);
    assert.deepEqual(encodeSet(opRequest(ops[0])), ['fwmark=1237']);
  });

  test('a keepalive change reaches the device; no keepalive means off', () => {
    const live = [{ ...emptyPeer(KEYS[0]), allowedIPs: ['10.0.0.0/24'] }];
    const on = diffDevice(want([{ publicKey: KEYS[0], allowedIPs: ['10.0.0.0/24'], persistentKeepalive: 25 }]), base(live));
    assert.equal(on.length, 1);
    assert.ok(encodeSet(opRequest(on[0])).includes('persistent_keepalive_interval=25'));
    const off = diffDevice(want([{ publicKey: KEYS[0], allowedIPs: ['10.0.0.0/24'] }]), base([{ ...live[0], persistentKeepalive: 25 }]));
    assert.equal(off.length, 1);
    assert.ok(encodeSet(opRequest(off[0])).includes('persistent_keepalive_interval=0'));
  });

  test('a preshared key added or removed reaches the device', () => {
    const psk = 'f4Fqs1hPZ8mcbkzAFJDQi5yOAZgW7p6Y+B6g0gi10ws=';
    const live = { ...emptyPeer(KEYS[0]), allowedIPs: ['10.0.0.0/24'] };
    assert.equal(diffDevice(want([{ publicKey: KEYS[0], allowedIPs: ['10.0.0.0/24'], presharedKey: psk }]), base([live])).length, 1);
    assert.equal(diffDevice(want([{ publicKey: KEYS[0], allowedIPs: ['10.0.0.0/24'] }]), base([{ ...live, presharedKey: psk }])).length, 1);
  });

  test('allowed IPs are compared as sets of CIDRs, not as joined text', () => {
    // "10::/12" + "8::/16" and "10::/128" + "::/16" read the same when run together.
    const live = [{ ...emptyPeer(KEYS[0]), allowedIPs: ['10::/128', '::/16'] }];
    const ops = diffDevice(want([{ publicKey: KEYS[0], allowedIPs: ['10::/12', '8::/16'] }]), base(live));
    assert.deepEqual(
      ops.map((o) => o.op),
      ['put'],
    );
  });

  test('the operations do not depend on the order in which the device or the cluster lists peers', () => {
    const live = KEYS.slice(0, 4).map((k, i) => ({ ...emptyPeer(k), allowedIPs: [`10.${i}.0.0/24`] }));
    const wanted = KEYS.slice(4).map((k, i) => ({ publicKey: k, allowedIPs: [`10.${i + 4}.0.0/24`] }));
    const reference = diffDevice(want(wanted), base(live));
    assert.equal(reference.length, 8);
    assert.deepEqual(diffDevice(want([...wanted].reverse()), base([...live].reverse())), reference);
    assert.deepEqual(diffDevice(want([wanted[2], wanted[0], wanted[3], wanted[1]]), base([live[1], live[3], live[0], live[2]])), reference);
  });
});

describe('diffRoutes: sorted, canonical', () => {
  test('routes to add come out sorted and canonical, whatever order they are wanted in', () => {
    assert.deepEqual(diffRoutes(['fd00:9:0:0::/64', '10.9.0.5/24', '10.1.0.0/24'], [], 'wg0'), { add: ['10.1.0.0/24', '10.9.0.0/24', 'fd00:9::/64'], remove: [] });
  });

  test('routes to remove come out sorted and canonical, whatever order the table lists them in', () => {
    const changes = diffRoutes(
      [],
      [
        { dst: '10.9.0.0/24', dev: 'wg0' },
        { dst: 'fd00:9:0:0::/64', dev: 'wg0' },
        { dst: '10.1.0.0/24', dev: 'eth0' },
      ],
      'wg0',
    );
    assert.deepEqual(changes, { add: [], remove: ['10.1.0.0/24', '10.9.0.0/24', 'fd00:9::/64'] });
  });
});

describe('DeviceMirror: event passes from what was last applied', () => {
  /** Apply operations the way the reconciler does: in batches of `size` peers per set. */
  const applyOps = (state: DeviceState, ops: Parameters<typeof batchOps>[0], size: number): DeviceState => {
    for (const batch of batchOps(ops, size)) state = applySet(state, batchRequest(batch));
    return state;
  };
  const sameDevice = (state: DeviceState, want: DesiredDevice): void => {
    assert.equal(state.privateKey, want.privateKey);
    assert.equal(state.listenPort, want.listenPort);
    assert.equal(state.fwmark, want.fwmark);
    const got = new Map(state.peers.map((p) => [p.publicKey, p]));
    assert.deepEqual([...got.keys()].sort(), want.peers.map((p) => p.publicKey).sort());
    for (const p of want.peers) {
      const live = got.get(p.publicKey) as PeerState;
      assert.deepEqual([...live.allowedIPs].sort(), [...p.allowedIPs].sort());
      assert.equal(live.persistentKeepalive, p.persistentKeepalive ?? 0);
      assert.equal(live.presharedKey, p.presharedKey ?? null);
    }
  };

  test('property: a full pass then any sequence of event passes (objects kept, rebuilt or changed) leaves the device as desired', () => {
    fc.assert(
      fc.property(liveArb, fc.array(fc.tuple(desiredArb, fc.boolean(), fc.boolean()), { minLength: 1, maxLength: 6 }), fc.constantFrom(1, 2, 256), (live, steps, size) => {
        const mirror = new DeviceMirror();
        let state = live;
        let previous: DesiredDevice | null = null;
        for (const [i, [next, keep, sorted]] of steps.entries()) {
          // Half the steps keep the previous step's objects for peers whose value did not change (as the topology engine does);
          // half are sorted by public key (as the topology's are: the merge path), the others in any order (the map path).
          let want = sorted ? { ...next, peers: [...next.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)) } : next;
          if (keep && previous) {
            const old = new Map(previous.peers.map((p) => [p.publicKey, p]));
            want = { ...want, peers: want.peers.map((p) => { const o = old.get(p.publicKey); return o && JSON.stringify(o) === JSON.stringify(p) ? o : p; }) };
          }
          if (i === 0) {
            const plan = planDevice(want, state);
            state = applyOps(state, plan.ops, size);
            mirror.rebuild(want, live, plan, false);
          } else {
            const ops = mirror.diff(want);
            state = applyOps(state, ops, size);
            for (const op of ops) mirror.commit(op);
            mirror.settled(want);
          }
          sameDevice(state, want);
          assert.deepEqual(mirror.diff(want), [], 'nothing left to do');
          assert.deepEqual(diffDevice(want, state), [], 'a full pass would find nothing either');
          assert.deepEqual(mirror.live().peers.map((p) => p.publicKey).sort(), want.peers.map((p) => p.publicKey).sort());
          previous = want;
        }
      }),
      // Each run derives public keys (milliseconds each): 300 runs of up to 6 passes keep it to seconds.
      { numRuns: 300 },
    );
  });

  test('the same peer objects and arrays again are no operation; a deep copy is none either', () => {
    const want: DesiredDevice = { privateKey: PRIVATE[0], listenPort: 51820, fwmark: 0, peers: KEYS.map((k, i) => ({ publicKey: k, allowedIPs: [`10.${i}.0.0/24`] })) };
    const mirror = new DeviceMirror();
    mirror.rebuild(want, { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] }, planDevice(want, { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] }), false);
    assert.deepEqual(mirror.diff(want), []);
    assert.deepEqual(mirror.diff({ ...want, peers: [...want.peers] }), []);
    assert.deepEqual(mirror.diff(structuredClone(want)), []);
    const one = mirror.diff({ ...want, peers: want.peers.map((p, i) => (i === 2 ? { ...p, allowedIPs: ['10.99.0.0/24'] } : p)) });
    assert.deepEqual(one.map((o) => o.op), ['put']);
  });
});

describe('CidrMirror', () => {
  test('property: diffs against what was committed give exactly the set wanted, whatever the spelling or duplicates', () => {
    const cidr = fc.constantFrom('10.1.0.0/24', '10.1.0.7/24', '10.2.0.0/16', 'fd00:1:0:0::/64', 'fd00:1::/64', '10.3.0.0/24');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.array(cidr, { maxLength: 5 }), fc.array(cidr, { maxLength: 3 })), { minLength: 1, maxLength: 8 }), (steps) => {
        const m = new CidrMirror();
        let held = new Set<string>();
        for (const [i, [a, b]] of steps.entries()) {
          // Sorted lists take the merge path, unsorted ones the counting path: both must agree.
          const lists = i % 2 ? [a, b] : [[...a].sort(), [...b].sort()];
          const d = m.diff(lists);
          if (d) {
            for (const c of d.remove) assert.ok(held.delete(c), `${c} removed but not held`);
            for (const c of d.add) {
              assert.ok(!held.has(c), `${c} added twice`);
              held.add(c);
            }
          }
          const want = new Set(lists.flat().map((c) => canonicalCidr(c)));
          assert.deepEqual([...held].sort(), [...want].sort());
          assert.deepEqual(m.values().sort(), [...want].sort());
          assert.equal(m.diff(lists), null, 'the same arrays again: nothing');
          held = new Set(held);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('deviceDrift, describeDrift and planRoutes (what readiness, status --local and diff say)', () => {
  const priv = generatePrivateKey();
  const keys = Array.from({ length: 6 }, () => publicKeyOf(generatePrivateKey())).sort();
  const live = (peers: PeerState[], over: Partial<DeviceState> = {}): DeviceState => ({ privateKey: priv, publicKey: publicKeyOf(priv), listenPort: 51820, fwmark: 0x2000, peers, ...over });
  const state = (publicKey: string, over: Partial<PeerState> = {}): PeerState => ({ ...blankPeerState(publicKey), allowedIPs: ['10.244.1.0/24'], ...over });
  const want = (peers: Array<{ publicKey: string; allowedIPs: string[]; endpoint?: string; kind?: string; name?: string }>): DesiredDevice => ({ privateKey: priv, listenPort: 51820, fwmark: 0x2000, peers });
  const names = new Map([[keys[0], 'Peer/node-a'], [keys[1], 'Peer/node-b'], [keys[2], 'Gateway/gw']]);
  const nameOf = (k: string): string | undefined => names.get(k);

  test('in step: no drift, no sentence', () => {
    const d = deviceDrift(want([{ publicKey: keys[0], allowedIPs: ['10.244.1.0/24'] }]), live([state(keys[0])]));
    assert.deepEqual(d, { settings: [], missing: [], extra: [], different: [] });
    assert.equal(describeDrift(d, nameOf), null);
  });

  test('missing, extra and changed peers, and settings, each named; a private key is named, never shown', () => {
    const d = deviceDrift(
      want([
        { publicKey: keys[0], allowedIPs: ['10.244.1.0/24'] },
        { publicKey: keys[1], allowedIPs: ['10.244.2.0/24'] },
        { publicKey: keys[2], allowedIPs: ['10.244.3.0/24'], endpoint: '198.18.0.3:51820' },
      ]),
      live([state(keys[0], { allowedIPs: ['10.244.9.0/24'] }), state(keys[2], { allowedIPs: ['10.244.3.0/24'], endpoint: '198.18.0.3:51820' }), state(keys[5])], { listenPort: 51821, privateKey: generatePrivateKey() }),
    );
    assert.deepEqual(d.settings, ['privateKey', 'listenPort']);
    assert.deepEqual(d.missing, [keys[1]]);
    assert.deepEqual(d.extra, [keys[5]]);
    assert.deepEqual(d.different, [{ publicKey: keys[0], fields: ['allowedIPs'] }]);
    const text = describeDrift(d, nameOf) ?? '';
    assert.equal(
      text,
      `device differs from the desired state: device settings differ (privateKey, listenPort); 1 peer missing (Peer/node-b); 1 extra peer (key ${keys[5].slice(0, 8)}…); 1 peer configured differently (Peer/node-a: allowedIPs)`,
    );
    assert.ok(!text.includes(priv));
  });

  test('an endpoint alone that differs is roaming: shown as different, not readiness drift', () => {
    const d = deviceDrift(want([{ publicKey: keys[2], allowedIPs: ['10.244.3.0/24'], endpoint: '198.18.0.3:51820' }]), live([state(keys[2], { allowedIPs: ['10.244.3.0/24'], endpoint: '10.0.0.9:40000' })]));
    assert.deepEqual(d.different, [{ publicKey: keys[2], fields: ['endpoint'] }]);
    assert.equal(driftMatters(d), false);
    assert.equal(describeDrift(d, nameOf), null);
  });

  test('many missing peers: three named, the rest counted', () => {
    const d = deviceDrift(want(keys.map((k, i) => ({ publicKey: k, allowedIPs: [`10.244.${i}.0/24`] }))), live([]));
    assert.equal(describeDrift(d, nameOf), `device differs from the desired state: 6 peers missing (Peer/node-a, Peer/node-b, Gateway/gw, and 3 more)`);
  });

  test('peerDifferences names every field the reconciler sets', () => {
    const w = { publicKey: keys[0], allowedIPs: ['10.244.1.0/24'], endpoint: '198.18.0.1:51820', persistentKeepalive: 25, presharedKey: 'x' };
    assert.deepEqual(peerDifferences(w, state(keys[0], { endpoint: null })), ['endpoint', 'persistentKeepalive', 'presharedKey']);
    assert.deepEqual(peerDifferences({ ...w, presharedKey: null, persistentKeepalive: 0 }, state(keys[0], { endpoint: '198.18.0.1:51820' })), []);
  });

  test('planRoutes: only our routes go, another device keeps its own, fallbacks follow every list', () => {
    const plan = planRoutes(
      ['10.244.1.0/24', '10.244.2.0/24', '10.244.7.0/24'],
      [['10.244.1.0/24', '10.244.2.0/24', '10.244.7.0/24'], ['10.244.3.0/24']],
      [
        { dst: '10.244.1.0/24', dev: 'wg0' },
        { dst: '10.244.5.0/24', dev: 'wg0' },
        { dst: '10.244.7.0/24', dev: 'eth1' },
      ],
      new Set(['10.244.1.0/24', '10.244.9.0/24']),
      'wg0',
    );
    assert.deepEqual(plan.add, ['10.244.2.0/24']);
    assert.deepEqual(plan.remove, ['10.244.5.0/24']);
    assert.deepEqual(plan.conflicts, ['10.244.7.0/24 dev eth1']);
    assert.deepEqual(plan.addFallbacks, ['10.244.2.0/24', '10.244.3.0/24', '10.244.7.0/24']);
    assert.deepEqual(plan.removeFallbacks, ['10.244.9.0/24']);
    assert.deepEqual(planRoutes(['10.244.1.0/24'], [['10.244.1.0/24']], [{ dst: '10.244.1.0/24', dev: 'wg0' }], null, 'wg0'), {
      add: [],
      remove: [],
      addFallbacks: [],
      removeFallbacks: [],
      conflicts: [],
      foreign: new Map(),
    });
  });
});
