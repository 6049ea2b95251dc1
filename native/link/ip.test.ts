/**
 * The ip wrapper on real iproute2, inside network namespaces this test creates; and the policy
 * routing of DESIGN §3.5 on a real tunnel: an endpoint inside a routed CIDR does not loop, because
 * wireguard-go's own packets carry the fwmark that skips the mesh table.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../sandbox/sandbox.ts';
import { startTunnel, stopTunnel, waitForPing } from '../../e2e/tunnel.ts';
import type { TunnelNode } from '../../e2e/tunnel.ts';
import {
  autoMtu,
  deleteLink,
  deleteRoutes,
  ensureRule,
  ensureSourceRule,
  flushTable,
  getLink,
  listAddresses,
  listFallbacks,
  listRoutes,
  listRules,
  removeRule,
  removeSourceRule,
  replaceAddress,
  replaceFallbacks,
  replaceRoutes,
  setLinkMtu,
  setLinkUp,
  underlayMtu,
} from './ip.ts';
import { DEFAULT_FWMARK } from './marks.ts';

const skip = networkTestsUnavailable() ?? false;
const TABLE = 51820;
const RULE = { table: TABLE, fwmark: DEFAULT_FWMARK, priority: 5180 };

describe('ip wrapper', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  let dummy: string;
  before(async () => {
    ns = await box.addNamespace('ip');
    dummy = box.ifName('am', 'd');
    // This kernel may lack the dummy driver; a veth pair inside the namespace serves as well.
    await box.ip(ns, 'link', 'add', dummy, 'type', 'veth', 'peer', 'name', box.ifName('am', 'e'));
    await box.ip(ns, 'link', 'set', box.ifName('am', 'e'), 'up');
  });
  after(() => box.cleanup());

  test('links: up, MTU, addresses; a missing link is null', async () => {
    const o = { netns: ns };
    assert.equal(await getLink('nonexistent0', o), null);
    await setLinkMtu(dummy, 1380, o);
    await setLinkUp(dummy, o);
    await replaceAddress(dummy, '100.96.0.7/16', o);
    await replaceAddress(dummy, '100.96.0.7/16', o); // idempotent
    await replaceAddress(dummy, 'fd00:96::7/64', o);
    const link = await getLink(dummy, o);
    assert.equal(link?.mtu, 1380);
    assert.equal(link?.up, true);
    assert.deepEqual((await listAddresses(dummy, o)).sort(), ['100.96.0.7/16', 'fd00:96::7/64']);
    await assert.rejects(setLinkMtu(dummy, 500, o), /MTU 500 .* out of range/);
  });

  test('MTU auto-detection: the default route’s interface minus 80', async () => {
    const o = { netns: ns };
    const far = await box.addNamespace('ipfar');
    const { ifA } = await box.veth(ns, '198.18.9.1/24', far, '198.18.9.2/24', 'm');
    await box.ip(ns, 'link', 'set', ifA, 'mtu', '1400');
    await box.ip(ns, 'route', 'add', 'default', 'via', '198.18.9.2');
    assert.equal(await underlayMtu(o), 1400);
    assert.equal(await autoMtu(o), 1320);
  });

  test('routes: 300 in one batch, both families, listed canonically, deleted exactly', async () => {
    const o = { netns: ns };
    const routes = [
      ...Array.from({ length: 250 }, (_, i) => ({ dst: `10.${i >> 4}.${(i & 15) * 16}.0/20`, dev: dummy })),
      ...Array.from({ length: 49 }, (_, i) => ({ dst: `fd00:${(i + 1).toString(16)}::/64`, dev: dummy })),
      { dst: '100.96.0.9/32', dev: dummy },
    ];
    await replaceRoutes(TABLE, routes, o);
    await replaceRoutes(TABLE, routes, o); // replace is idempotent
    const listed = await listRoutes(TABLE, o);
    const key = (r: { dst: string; dev: string }): string => `${r.dst} ${r.dev}`;
    assert.deepEqual(listed.map(key).sort(), routes.map(key).sort());
    // The main table is untouched.
    assert.ok(!(await box.ip(ns, 'route', 'show', 'table', 'main')).includes('10.0.0.0/20'));
    assert.equal((await deleteRoutes(TABLE, dummy, routes.slice(0, 100).map((r) => r.dst), o)).length, 100);
    assert.equal((await listRoutes(TABLE, o)).length, 200);
    assert.deepEqual(await deleteRoutes(TABLE, dummy, [routes[0].dst], o), [], 'a destination already gone is skipped, not an error');
    assert.equal((await flushTable(TABLE, dummy, o)).routes.length, 200);
    assert.deepEqual(await listRoutes(TABLE, o), []);
    await assert.rejects(replaceRoutes(TABLE, [{ dst: '10.0.0.0/40', dev: dummy }], o), /prefix length/);
  });

  test('the policy rule tests one bit of the mark, is added once per family, replaces an older rule and is removed completely', async () => {
    const o = { netns: ns };
    const ours = async (): Promise<string[]> =>
      (await listRules(o)).filter((r) => r.priority === RULE.priority).map((r) => `${r.family} ${r.table} ${'not' in r ? 'not ' : ''}${r.fwmark}/${r.fwmask ?? 'full'}`).sort();
    // What an older agent left: the old default mark, matched on the whole value.
    for (const family of ['-4', '-6']) await box.ip(ns, family, 'rule', 'add', 'not', 'fwmark', '51820', 'table', String(TABLE), 'priority', String(RULE.priority));
    assert.deepEqual(await ours(), ['4 51820 not 0xca6c/full', '6 51820 not 0xca6c/full']);
    await ensureRule(RULE, o);
    await ensureRule(RULE, o);
    assert.deepEqual(await ours(), ['4 51820 not 0x2000/0x2000', '6 51820 not 0x2000/0x2000'], 'the old rule is replaced, not kept beside the new one');
    // The flag changed: the rule follows, with the new mark's bits as its mask.
    await ensureRule({ ...RULE, fwmark: 0x20000 }, o);
    assert.deepEqual(await ours(), ['4 51820 not 0x20000/0x20000', '6 51820 not 0x20000/0x20000']);
    assert.equal(await removeRule(RULE, o), 2);
    assert.deepEqual(await ours(), []);
  });

  test('a packet of ours that other components mark too still skips the mesh table; any other packet takes it', async () => {
    const o = { netns: ns };
    const tun = box.ifName('am', 'r');
    await box.ip(ns, 'link', 'add', tun, 'type', 'veth', 'peer', 'name', box.ifName('am', 's'));
    await setLinkUp(tun, o);
    await setLinkUp(dummy, o);
    await box.ip(ns, 'route', 'add', '10.78.0.0/16', 'dev', dummy);
    try {
      await replaceRoutes(TABLE, [{ dst: '10.78.1.0/24', dev: tun }], o);
      await ensureRule(RULE, o);
      const via = async (mark: number): Promise<string> => (await box.ip(ns, 'route', 'get', '10.78.1.5', 'mark', String(mark))).trim();
      assert.match(await via(0), new RegExp(`dev ${tun}`), 'unmarked traffic goes into the tunnel');
      assert.match(await via(0x4000), new RegExp(`dev ${tun}`), "kube-proxy's masquerade mark alone does not skip the tunnel");
      assert.match(await via(DEFAULT_FWMARK), new RegExp(`dev ${dummy}`), "wireguard-go's packets skip the mesh table");
      assert.match(await via(DEFAULT_FWMARK | 0x4000 | 0x0e00), new RegExp(`dev ${dummy}`), 'also when kube-proxy or Cilium add their bits');
    } finally {
      await removeRule(RULE, o);
      await flushTable(TABLE, tun, o);
      await box.ip(ns, 'route', 'del', '10.78.0.0/16', 'dev', dummy);
      await deleteLink(tun, o);
    }
  });

  test("a gateway pod's answers from its own IP take the main table; what it opens itself stays in the tunnel", async () => {
    // A gateway pod routes the whole pod CIDR into its tunnel, the node's own address in it included:
    // kubelet probes the pod from there, and the answers (from the pod IP) must not go into the tunnel.
    const o = { netns: ns };
    const tun = box.ifName('am', 'g');
    await box.ip(ns, 'link', 'add', tun, 'type', 'veth', 'peer', 'name', box.ifName('am', 'h'));
    await setLinkUp(tun, o);
    await setLinkUp(dummy, o);
    await box.ip(ns, 'addr', 'add', '10.79.1.7/24', 'dev', dummy); // the pod's IP on its eth0
    await box.ip(ns, 'addr', 'add', '100.96.9.9/32', 'dev', tun); // the gateway's mesh IP
    const source = { from: '10.79.1.7', priority: RULE.priority - 1 };
    try {
      await replaceRoutes(TABLE, [{ dst: '10.79.0.0/16', dev: tun }], o);
      await ensureRule(RULE, o);
      const route = async (...extra: string[]): Promise<string> => (await box.ip(ns, 'route', 'get', '10.79.1.1', ...extra)).trim();
      assert.match(await route('from', '10.79.1.7'), new RegExp(`dev ${tun}`), 'without the rule, an answer to the node goes into the tunnel');
      await ensureSourceRule(source, o);
      await ensureSourceRule(source, o);
      const rules = (await listRules(o)).filter((r) => r.priority === source.priority);
      assert.equal(rules.length, 1, 'added once');
      assert.match(await route('from', '10.79.1.7'), new RegExp(`dev ${dummy}`), 'an answer from the pod IP leaves through the main table');
      assert.match(await route(), new RegExp(`dev ${tun} .*src 100\\.96\\.9\\.9`), 'a connection the pod opens takes the mesh IP and the tunnel');
      await assert.rejects(ensureSourceRule({ from: '10.79.1.7', priority: 0 }, o), /rule priority 0 for replies from 10\.79\.1\.7: must be 1-32765/);
      assert.equal(await removeSourceRule(source, o), 1);
      assert.equal(await removeSourceRule(source, o), 0);
      assert.match(await route('from', '10.79.1.7'), new RegExp(`dev ${tun}`));
    } finally {
      await removeSourceRule(source, o);
      await removeRule(RULE, o);
      await flushTable(TABLE, tun, o);
      await box.ip(ns, 'addr', 'del', '10.79.1.7/24', 'dev', dummy).catch(() => undefined);
      await deleteLink(tun, o);
    }
  });

  test("only our device's routes are removed: another device's route in the same table survives deletion, reconcile-style removals and cleanup, and is not taken over", async () => {
    const o = { netns: ns };
    const tun = box.ifName('am', 'w');
    await box.ip(ns, 'link', 'add', tun, 'type', 'veth', 'peer', 'name', box.ifName('am', 'x'));
    await setLinkUp(tun, o);
    await setLinkUp(dummy, o);
    // The table shared by mistake (wg-quick's default table is 51820 too): someone else's routes, and an unreachable route of theirs.
    await box.ip(ns, 'route', 'add', '10.79.0.0/24', 'dev', dummy, 'table', String(TABLE));
    await box.ip(ns, '-6', 'route', 'add', 'fd00:79::/64', 'dev', dummy, 'table', String(TABLE));
    await box.ip(ns, 'route', 'add', 'unreachable', '10.79.9.0/24', 'table', String(TABLE));
    const theirs = ['10.79.0.0/24 ' + dummy, 'fd00:79::/64 ' + dummy];
    const listed = async (): Promise<string[]> => (await listRoutes(TABLE, o)).map((r) => `${r.dst} ${r.dev}`).sort();
    try {
      // Ours to the same destinations would replace theirs: refused and reported instead.
      const { conflicts } = await replaceRoutes(TABLE, [{ dst: '10.79.0.0/24', dev: tun }, { dst: 'fd00:79::/64', dev: tun }, { dst: '10.79.1.0/24', dev: tun }], o);
      assert.deepEqual(conflicts.map((r) => `${r.dst} ${r.dev}`).sort(), theirs);
      await replaceFallbacks(TABLE, ['10.79.1.0/24'], o);
      assert.deepEqual(await listed(), [`10.79.1.0/24 ${tun}`, ...theirs].sort());
      // What the reconciler removes (every destination it no longer wants), through our device only.
      assert.deepEqual(await deleteRoutes(TABLE, tun, ['10.79.0.0/24', 'fd00:79::/64', '10.79.1.0/24'], o), ['10.79.1.0/24']);
      assert.deepEqual(await listed(), theirs);
      await replaceRoutes(TABLE, [{ dst: '10.79.2.0/24', dev: tun }], o);
      assert.deepEqual(await flushTable(TABLE, tun, o), { routes: ['10.79.2.0/24'], fallbacks: ['10.79.1.0/24'] });
      assert.deepEqual(await listed(), theirs, 'cleanup leaves their routes');
      assert.match(await box.ip(ns, 'route', 'show', 'table', String(TABLE)), /unreachable 10\.79\.9\.0\/24/, 'and their unreachable route');
    } finally {
      await box.ip(ns, 'route', 'flush', 'table', String(TABLE));
      await box.ip(ns, '-6', 'route', 'flush', 'table', String(TABLE));
      await deleteLink(tun, o);
    }
  });

  test("the kernel's tables and a mark of 0 are refused before anything changes; main keeps its default route", async () => {
    const o = { netns: ns };
    const far = await box.addNamespace('ipgw');
    await box.veth(ns, '198.18.10.1/24', far, '198.18.10.2/24', 'g');
    await box.ip(ns, 'route', 'replace', 'default', 'via', '198.18.10.2');
    const before = await box.ip(ns, 'route', 'show', 'table', 'main');
    for (const table of [0, 253, 254, 255]) {
      await assert.rejects(flushTable(table, dummy, o), (err: Error) => err.message.startsWith(`table ${table}: `) && /kernel's|routing table number/.test(err.message));
      await assert.rejects(ensureRule({ ...RULE, table }, o), /kernel's|routing table number/);
    }
    await assert.rejects(deleteRoutes(254, dummy, ['0.0.0.0/0'], o), /table 254: table 254 is the kernel's "main" table/);
    await assert.rejects(ensureRule({ ...RULE, fwmark: 0 }, o), /fwmark 0: the mark must have at least one bit set/);
    await assert.rejects(ensureRule({ ...RULE, priority: 32766 }, o), /rule priority 32766: expected a whole number from 1 to 32765/);
    await assert.rejects(ensureRule({ ...RULE, fwmark: 0x4000, mask: 0x2000 }, o), /no bit inside its mask 0x2000/);
    assert.equal(await box.ip(ns, 'route', 'show', 'table', 'main'), before);
    assert.match(before, /default via 198\.18\.10\.2/);
    assert.deepEqual((await listRules(o)).filter((r) => r.priority === RULE.priority), []);
  });

  test('fallbacks fail closed: when the tunnel device goes, its destinations are unreachable, not routed elsewhere', async () => {
    const o = { netns: ns };
    const tun = box.ifName('am', 't');
    await box.ip(ns, 'link', 'add', tun, 'type', 'veth', 'peer', 'name', box.ifName('am', 'u'));
    await setLinkUp(tun, o);
    // A clear path in the main table, as a CNI's routes would be.
    await box.ip(ns, 'route', 'add', '10.77.0.0/16', 'dev', dummy);
    await box.ip(ns, 'rule', 'add', 'table', String(TABLE), 'priority', '5181');
    try {
      await replaceRoutes(TABLE, [{ dst: '10.77.1.0/24', dev: tun }], o);
      await replaceFallbacks(TABLE, ['10.77.1.0/24', 'fd00:77::/64'], o);
      assert.deepEqual((await listFallbacks(TABLE, o)).sort(), ['10.77.1.0/24', 'fd00:77::/64']);
      assert.deepEqual(await listRoutes(TABLE, o), [{ dst: '10.77.1.0/24', dev: tun }], 'fallbacks are not listed as routes');
      assert.match(await box.ip(ns, 'route', 'get', '10.77.1.5'), new RegExp(`dev ${tun}`), 'the tunnel route wins while it exists');
      await deleteLink(tun, o);
      await assert.rejects(box.ip(ns, 'route', 'get', '10.77.1.5'), /unreachable|No route/i, 'with the device gone the destination is refused, not sent through the main table');
      await flushTable(TABLE, tun, o);
      assert.deepEqual(await listFallbacks(TABLE, o), []);
      assert.match(await box.ip(ns, 'route', 'get', '10.77.1.5'), new RegExp(`dev ${dummy}`), 'after a cleanup the main table applies again');
    } finally {
      await box.ip(ns, 'rule', 'del', 'priority', '5181');
      await box.ip(ns, 'route', 'del', '10.77.0.0/16', 'dev', dummy);
    }
  });

  test('deleteLink removes a link and reports whether there was one', async () => {
    const o = { netns: ns };
    assert.equal(await deleteLink(dummy, o), true);
    assert.equal(await deleteLink(dummy, o), false);
  });
});

describe('policy routing on a real tunnel', { skip }, () => {
  const box = new Sandbox();
  let a: TunnelNode;
  let b: TunnelNode;
  before(async () => {
    ({ a, b } = await startTunnel(box));
  });
  after(async () => {
    if (a && b) await stopTunnel({ a, b });
    await box.cleanup();
  });

  test('an endpoint inside a routed CIDR loops without the fwmark and works with it', async () => {
    const o = { netns: a.ns };
    const underlay = '198.18.0.0/24'; // holds b's endpoint, like a gateway endpoint inside a pod CIDR
    // b's allowed IPs cover the underlay too, and a routes it into the tunnel via the mesh table.
    await a.wg.client.putPeer({
      publicKey: b.publicKey,
      endpoint: `${b.underlayIp}:51820`,
      allowedIPs: [`${b.meshIp}/32`, underlay],
    });
    await replaceRoutes(TABLE, [{ dst: `${b.meshIp}/32`, dev: a.interfaceName }, { dst: underlay, dev: a.interfaceName }], o);
    await ensureRule(RULE, o);

    // Without the mark, wireguard-go's own UDP to b's endpoint is routed back into the tunnel.
    await a.wg.client.set({ fwmark: 0 });
    assert.equal(await waitForPing(box, a.ns, b.meshIp, 3000), false, 'expected the unmarked tunnel to loop');

    // With the mark on wireguard-go's socket, its packets skip the mesh table and reach the underlay.
    await a.wg.client.set({ fwmark: RULE.fwmark });
    assert.equal((await a.wg.client.get()).fwmark, RULE.fwmark);
    // The handshakes sent while the tunnel looped are retried on wireguard-go's own schedule (every
    // 5 s, then backing off): on a loaded machine the first one that gets through can take longer
    // than the default 15 s (seen in CI), so this waits up to 45 s for a behaviour, not a speed.
    assert.ok(await waitForPing(box, a.ns, b.meshIp, 45_000), 'no reply through the tunnel with the fwmark set');

    // Cleanup leaves nothing of ours behind.
    assert.equal(await removeRule(RULE, o), 2);
    await flushTable(TABLE, a.interfaceName, o);
    assert.deepEqual(await listRoutes(TABLE, o), []);
  });
});
