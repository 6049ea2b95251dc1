/**
 * Recovery without waiting for WireGuard's timers (issue 9, "Done when" 5): traffic flows only
 * towards one node (pings from another node's pod) while that node's wireguard-go is killed
 * (spawn mode) or its sidecar is restarted (attach mode, a device reset). The peers keep sending on
 * the old session, which the new process cannot decrypt, and the restarted side has nothing to
 * send: unless the restarted side starts the handshakes itself, nothing happens until the peers'
 * rekey timer (10 s + 5 s).
 *
 * What is asserted is the behaviour, on a capture of the underlay: the first handshake initiation
 * between the two nodes after the disruption comes from the restarted node, and the pings resume.
 * How long that took is measured from ping's own timestamps and printed (diagnostics), never
 * asserted. AKS_MESH_RECOVERY_RUNS=5 repeats each case (the numbers in the README come from that).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { CapturedPacket, ClusterNode } from '../sandbox/cluster.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { API_VERSION } from '../mesh/crd/types.ts';
import { STABLE_MS, findWireguardGo, wireguardGoVersion } from '../native/index.ts';

const skip = networkTestsUnavailable() ?? false;
const RUNS = Math.max(1, Number(process.env.AKS_MESH_RECOVERY_RUNS ?? 1) || 1);

/** One ping reply as `ping -D` prints it. */
interface Reply {
  /** Seconds since the epoch (ping's own clock reading, the same clock as the capture's). */
  at: number;
  seq: number;
}

/** A ping running in the background from a namespace, its replies collected as they arrive. */
class Pinger {
  readonly replies: Reply[] = [];
  private readonly child: ChildProcess;
  private readonly done: Promise<void>;

  constructor(c: MeshCluster, ns: string, ip: string) {
    // -i 0.05: the resume time is known to within 50 ms; -W 1 so a lost reply does not hold up the rest.
    this.child = c.box.spawn(ns, 'ping', ['-n', '-D', '-i', '0.05', '-W', '1', ip], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = createInterface({ input: this.child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      const m = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/.exec(line);
      if (m) this.replies.push({ at: Number(m[1]), seq: Number(m[2]) });
    });
    this.done = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** The first reply that can only have come after the disruption at `t0`: a later sequence than any answered before it, past the one in flight. */
  resumedAfter(t0: number): Reply | undefined {
    const before = this.replies.filter((r) => r.at <= t0).reduce((max, r) => Math.max(max, r.seq), -1);
    return this.replies.find((r) => r.at > t0 && r.seq > before + 1);
  }

  async stop(): Promise<void> {
    this.child.kill('SIGINT');
    await this.done;
  }
}

describe('recovery after wireguard-go restarts: the restarted side starts the handshakes', { skip }, () => {
  let c: MeshCluster;
  const measured: Record<string, number[]> = {};
  let lastKill = 0;

  before(async () => {
    // The directory source: this is about the data path, and it spares the machine an API server.
    c = await MeshCluster.start({ nodes: 3, source: 'dir', attach: ['node-2'], resyncSeconds: 30 });
    // Without an API server nobody registers: the Peers are files, as an administrator would write them.
    c.writePeersFile(
      'peers.yaml',
      c.nodes.map((n, i) => ({
        apiVersion: API_VERSION,
        kind: 'Peer',
        metadata: { name: n.name },
        spec: { publicKey: n.publicKey, endpoint: n.endpoint, allowedIPs: [n.podCIDR], meshIP: `100.96.0.${i + 1}`, nodeName: n.name },
      })),
    );
    for (const n of c.nodes) await c.startAgent(n.name);
    await c.waitForMatrix({ timeoutMs: 60_000 });
  });
  after(async () => {
    for (const [what, runs] of Object.entries(measured)) {
      console.log(`# recovery ${what}, wireguard-go ${wireguardGoVersion(findWireguardGo())}: pings resumed after ${runs.map((s) => s.toFixed(2)).join(', ')} s (${runs.length} runs)`);
    }
    await c?.stop();
  });

  /**
   * Ping `target`'s pod from `from`'s pod only, disrupt `target`'s wireguard-go, and return the
   * handshake initiations between the two nodes after the disruption and when the pings resumed.
   */
  async function disruptWhilePinging(t: TestContext, from: ClusterNode, target: ClusterNode, disrupt: () => Promise<void>): Promise<{ initiations: CapturedPacket[]; resumeSeconds: number }> {
    const capture = await c.startCapture({ filter: ['udp', 'and', 'host', from.underlayIp, 'and', 'host', target.underlayIp] });
    const pinger = new Pinger(c, from.podNs, target.podIp);
    let t0 = 0;
    try {
      await c.waitFor('pings to flow before the disruption', () => pinger.replies.length >= 10, { timeoutMs: 10_000, intervalMs: 50 });
      t0 = Date.now() / 1000;
      await disrupt();
      // A liveness bound only: without the prompt the pings come back after the peers' 15 s rekey.
      await c.waitFor(`pings from ${from.name}'s pod to ${target.name}'s pod to resume`, () => pinger.resumedAfter(t0), { timeoutMs: 40_000, intervalMs: 50 });
    } finally {
      await pinger.stop();
    }
    const packets = await capture.stop();
    const resumed = pinger.resumedAfter(t0) as Reply;
    const resumeSeconds = resumed.at - t0;
    t.diagnostic(`pings resumed ${resumeSeconds.toFixed(2)} s after the disruption (icmp_seq ${resumed.seq})`);
    const initiations = packets.filter((p) => p.wireguard === 'handshake-initiation' && p.time > t0);
    return { initiations, resumeSeconds };
  }

  function assertRestartedSideFirst(initiations: CapturedPacket[], from: ClusterNode, target: ClusterNode): void {
    const describe = initiations.map((p) => `${p.time.toFixed(3)} ${p.src} -> ${p.dst}`).join('\n');
    assert.ok(initiations.length > 0, 'a handshake after the disruption');
    assert.equal(
      initiations[0].src,
      target.underlayIp,
      `the first handshake initiation after the restart must come from the restarted ${target.name} (${target.underlayIp}), not from ${from.name} (${from.underlayIp}) on its rekey timer:\n${describe}`,
    );
    assert.equal(initiations[0].dst, from.underlayIp);
  }

  for (let run = 1; run <= RUNS; run++) {
    test(`spawn mode, kill -9 of node-0's wireguard-go while only node-1 pings node-0${RUNS > 1 ? ` (run ${run})` : ''}`, async (t) => {
      const [target, from] = [c.node('node-0'), c.node('node-1')];
      // Measure the kill of a wireguard-go that has been serving, not one still under the crash-loop
      // backoff of the previous run (kills closer together than STABLE_MS wait longer on purpose).
      if (lastKill) await new Promise((r) => setTimeout(r, Math.max(0, lastKill + STABLE_MS + 1000 - Date.now())));
      const pid = c.wireguardGoPid(target.name);
      assert.ok(pid, `${target.name}'s wireguard-go runs`);
      const { initiations, resumeSeconds } = await disruptWhilePinging(t, from, target, async () => {
        process.kill(pid, 'SIGKILL');
        lastKill = Date.now();
      });
      assertRestartedSideFirst(initiations, from, target);
      (measured['spawn kill -9'] ??= []).push(resumeSeconds);
      assert.match(c.logTail(target.name, 200), /prompted handshakes/, 'the agent says it prompted the handshakes');
    });
  }

  for (let run = 1; run <= RUNS; run++) {
    test(`attach mode, node-2's sidecar wireguard-go restarted (a device reset) while only node-1 pings node-2${RUNS > 1 ? ` (run ${run})` : ''}`, async (t) => {
      const [target, from] = [c.node('node-2'), c.node('node-1')];
      const { initiations, resumeSeconds } = await disruptWhilePinging(t, from, target, async () => {
        await c.stopSidecar(target.name, 'SIGKILL');
        await c.startSidecar(target.name);
      });
      assertRestartedSideFirst(initiations, from, target);
      (measured['attach sidecar restart'] ??= []).push(resumeSeconds);
      assert.match(c.logTail(target.name, 200), /prompted handshakes.*device reset/, 'the agent re-applied the reset device and prompted the handshakes');
    });
  }
});
