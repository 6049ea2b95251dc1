/**
 * A stop deadline (issue 9): an agent whose API server has become unreachable (packets to it are
 * silently lost: its address resolves to a MAC nobody has, so connections neither fail nor answer)
 * still stops on SIGTERM, exit 0, on its own: it aborts its API calls and closes its watches rather
 * than waiting for the network. The harness's grace period is long (60 s) so that it never decides
 * the outcome; the time taken is reported, not asserted (measured here: about 1.1 s; before the
 * stop deadline, 7.6 to 9.8 s, the process waiting for its fetches to time out).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { MeshCluster } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { getPeer } from '../sandbox/kube.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? false;

describe('stopping with the API server unreachable', { skip }, () => {
  let c: MeshCluster;

  /** From inside a member's namespace, the API server's address leads nowhere (and the rest of the underlay still works). */
  async function blackholeApiServer(name: string): Promise<void> {
    const m = c.member(name);
    await c.box.ip(m.ns, 'neigh', 'replace', c.underlay.hostIp, 'lladdr', '02:00:00:00:00:01', 'nud', 'permanent', 'dev', m.underlayInterface);
  }

  before(async () => {
    c = await MeshCluster.start({ nodes: 2, source: 'kube', resyncSeconds: 2 });
  });
  after(async () => {
    await c?.stop();
  });

  test('a converged agent, its watches open: SIGTERM ends it (exit 0, not killed) while the API server stays unreachable', async (t) => {
    const n = c.nodes[0];
    await c.startAgent(n.name);
    await c.startAgent(c.nodes[1].name);
    await c.waitForMatrix({ timeoutMs: 60_000 });
    await c.waitFor(`${n.name}'s Peer`, () => getPeer(c.kubeConfig(), n.name));
    await blackholeApiServer(n.name);
    // Resync passes (every 2 s) and their status writes run on while it is cut off.
    await new Promise((r) => setTimeout(r, 3000));
    const t0 = performance.now();
    const exit = await c.stopAgent(n.name, 'SIGTERM', { graceMs: 60_000 });
    const ms = performance.now() - t0;
    t.diagnostic(`stopped in ${Math.round(ms)} ms with the API server unreachable`);
    assert.deepEqual(exit, { code: 0, signal: null, forced: false }, c.logTail(n.name));
    assert.match(await readFile(n.logFile, 'utf8'), /\[agent\] stopped/);
  });

  test('an agent that never reached the API server (lists in flight): SIGTERM ends it the same way', async (t) => {
    const n = c.nodes[1];
    await c.stopAgent(n.name);
    await blackholeApiServer(n.name);
    await c.startAgent(n.name);
    await c.waitFor(`${n.name}'s second agent started`, async () => (await readFile(n.logFile, 'utf8')).split('\n').filter((l) => /\[agent\] starting /.test(l)).length >= 2);
    await new Promise((r) => setTimeout(r, 3000));
    const t0 = performance.now();
    const exit = await c.stopAgent(n.name, 'SIGTERM', { graceMs: 60_000 });
    t.diagnostic(`stopped in ${Math.round(performance.now() - t0)} ms with the API server unreachable from the start`);
    assert.deepEqual(exit, { code: 0, signal: null, forced: false }, c.logTail(n.name));
  });
});
