/**
 * The checks the real-node test (e2e/realnode.test.ts) relies on, proven on the namespace cluster
 * (agents as processes) where each outcome can be produced on purpose, so that a check which always
 * passes would fail here:
 * - the "node is clean" checker (sandbox/nodecheck.ts) sees a running member's interface, rule,
 *   routes, fallbacks and socket; after the agent stops (spawn mode: its wireguard-go goes) it still
 *   sees the rule and the `unreachable` fallbacks that blackhole pod traffic; after
 *   `aks-mesh agent --cleanup` it sees nothing, and pod traffic works again over plain host-gw routes;
 * - the ping-loss meter counts zero across an agent restart in attach mode (wireguard-go keeps the
 *   tunnel), and counts the pings lost while the wireguard-go sidecar is down.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MeshCluster } from '../sandbox/cluster.ts';
import { chartMeshSettings, checkNodeClean, formatPingLoss, measurePingLoss, parsePingLoss, ping, routeTo } from '../sandbox/nodecheck.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';

test('parsePingLoss counts sent, distinct replies, the longest loss run and gap', () => {
  const out = [
    'PING 10.244.1.2 (10.244.1.2) 56(84) bytes of data.',
    '[1000.000000] 64 bytes from 10.244.1.2: icmp_seq=1 ttl=62 time=0.4 ms',
    '[1000.200000] 64 bytes from 10.244.1.2: icmp_seq=2 ttl=62 time=0.4 ms',
    '[1000.400000] no answer yet for icmp_seq=3',
    '[1000.600000] no answer yet for icmp_seq=4',
    '[1000.800000] 64 bytes from 10.244.1.2: icmp_seq=5 ttl=62 time=0.4 ms',
    '[1000.800100] 64 bytes from 10.244.1.2: icmp_seq=5 ttl=62 time=0.5 ms (DUP!)',
    '[1001.000000] 64 bytes from 10.244.1.2: icmp_seq=6 ttl=62 time=0.4 ms',
    '',
    '--- 10.244.1.2 ping statistics ---',
    '6 packets transmitted, 4 received, +1 duplicates, 33.3333% packet loss, time 1001ms',
  ].join('\n');
  const l = parsePingLoss(out, { intervalMs: 200, startedMs: 999_990, stoppedMs: 1_001_010 });
  assert.deepEqual(
    { sent: l.sent, received: l.received, lost: l.lost, run: l.longestLossRun, gap: l.longestGapMs, errors: l.errors },
    { sent: 6, received: 4, lost: 2, run: 2, gap: 600, errors: 0 },
  );
  const errors = parsePingLoss('3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 400ms\n', { intervalMs: 200, startedMs: 0, stoppedMs: 600 });
  assert.deepEqual({ lost: errors.lost, run: errors.longestLossRun, gap: errors.longestGapMs, errors: errors.errors }, { lost: 3, run: 3, gap: 600, errors: 3 });
});

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? false;

describe('node checks on the namespace cluster', { skip }, () => {
  let c: MeshCluster;

  before(async () => {
    c = await MeshCluster.start({ nodes: 2, source: 'kube', attach: ['node-1'], resyncSeconds: 5 });
    for (const n of c.nodes) await c.startAgent(n.name);
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });
  after(async () => {
    await c?.stop();
  });

  test('the ping-loss meter: an agent restart in attach mode loses no ping; a wireguard-go outage loses some', async () => {
    const [a, b] = c.nodes;
    // Pods behind node-1 (attach mode) to node-0: node-1's agent restarts, its wireguard-go stays.
    const restart = await measurePingLoss(b.podNs, a.podIp, async () => {
      await c.restartAgent(b.name);
      await c.waitFor('node-1 agent ready after its restart', async () => {
        const res = await fetch(`http://${b.metricsAddress}/readyz`).catch(() => null);
        return res?.ok ?? false;
      }, { timeoutMs: 60_000 });
    }, { track: (child) => c.box.track(child) });
    console.log(`# agent restart (attach mode): ${formatPingLoss(restart.loss)}`);
    assert.ok(restart.loss.sent >= 10, `pinged through the restart: ${formatPingLoss(restart.loss)}`);
    assert.equal(restart.loss.lost, 0, `no ping lost across the agent restart\n${restart.loss.output.slice(-2000)}`);

    // The sidecar's wireguard-go down for a while: pings are lost (and counted), then come back.
    const outage = await measurePingLoss(b.podNs, a.podIp, async () => {
      await c.stopSidecar(b.name);
      await new Promise((r) => setTimeout(r, 2000));
      await c.startSidecar(b.name);
      await c.waitFor('node-1 pod reaches node-0 pod again', async () => (await ping(b.podNs, a.podIp, { count: 1, timeoutMs: 1000 })).ok, { timeoutMs: 60_000 });
    }, { track: (child) => c.box.track(child) });
    console.log(`# wireguard-go outage (2 s): ${formatPingLoss(outage.loss)}`);
    assert.ok(outage.loss.lost >= 5, `the meter counts the outage: ${formatPingLoss(outage.loss)}`);
    assert.ok(outage.loss.longestGapMs >= 2000, `the longest gap covers the outage: ${formatPingLoss(outage.loss)}`);
  });
  test('the clean-node checker sees the mesh, the blackhole a stopped agent leaves, and nothing after --cleanup; pod traffic then takes the plain routes', async () => {
    const [a, b] = c.nodes;
    const settings = chartMeshSettings({ interfaceName: a.interfaceName });
    const running = await checkNodeClean(a.ns, settings, { socketDir: '/var/run/wireguard' });
    const kinds = (problems: string[]) => [...new Set(problems.map((p) => /^(interface|address|socket)/.exec(p)?.[1] ?? (/ip rule/.test(p) ? 'rule' : /unreachable/.test(p) ? 'fallback' : /route/.test(p) ? 'route' : p)))].sort();
    assert.deepEqual(kinds(running.problems), ['address', 'fallback', 'interface', 'route', 'rule', 'socket'], running.problems.join('\n'));

    // Plain routes as a host-gw CNI would have them: the mesh's rule must still win while it runs.
    const plain = await c.addClearPodRoutes();
    try {
      await c.stopAgent(a.name);
      const stopped = await checkNodeClean(a.ns, settings, { socketDir: '/var/run/wireguard' });
      assert.ok(!stopped.problems.some((p) => p.startsWith('interface')), `spawn mode: wireguard-go left with the agent\n${stopped.problems.join('\n')}`);
      assert.deepEqual(kinds(stopped.problems).filter((k) => k === 'rule' || k === 'fallback'), ['fallback', 'rule'], stopped.problems.join('\n'));
      assert.equal((await routeTo(a.podNs, b.podIp)).routable, true, 'the pod itself has a default route');
      assert.equal((await routeTo(a.ns, b.podIp)).routable, false, 'the node refuses pod traffic: the fallback, not the plain route');
      assert.equal((await ping(a.podNs, b.podIp, { count: 2, timeoutMs: 2000 })).received, 0, 'blackholed after a stop without cleanup');

      // As an uninstall does it: every node's agent and wireguard-go stop, then every node cleans up
      // (one node still meshed would send its replies into a tunnel the other no longer has).
      await c.stopAgent(b.name);
      await c.stopSidecar(b.name);
      for (const n of [a, b]) {
        const argv = c.agentCommand(n.name, { extraArgs: ['--cleanup'] });
        await c.box.exec(n.ns, argv[0], argv.slice(1), { timeoutMs: 60_000 });
        const cleaned = await checkNodeClean(n.ns, chartMeshSettings({ interfaceName: n.interfaceName }), { socketDir: '/var/run/wireguard' });
        assert.deepEqual(cleaned.problems, [], `nothing of the mesh is left on ${n.name} after --cleanup`);
      }
      const path = await routeTo(a.ns, b.podIp);
      assert.equal(path.dev, a.underlayInterface, `pod traffic takes the plain route now: ${path.text}`);
      assert.ok((await ping(a.podNs, b.podIp, { count: 3, timeoutMs: 3000 })).ok, 'pod to pod over the plain routes');
    } finally {
      await plain.remove();
    }
  });

});
