/**
 * Per-peer health benchmark (issue 12): the CPU time a member spends on its status's health
 * (mesh/health.ts HealthTracker) per reconcile pass, as the mesh grows. Ours on an event pass (one
 * peer changed: judged alone, the rest recognised by identity) beside the reference: judging every
 * peer again on every pass, as a full pass does (and as the counting loop before issue 12 did).
 *
 *   node bench/health.ts [--peers 10,1000,5000] [--runs 200] [--stale-every 7]
 *
 * Setup: N desired peers on the device with handshakes 30 s old, except every --stale-every-th one
 * at 400 s (StaleHandshake). One untimed full pass, then --runs passes of each kind, alternately
 * (median and p95 of wall time per pass on this one thread; the first 20 of each are not counted).
 * An event pass replaces one random peer's desired object and device state by new objects (as the
 * topology engine and the reconciler's mirror hand them over after a change).
 *
 * Never asserts a time. What it checks, so that a broken setup cannot print plausible numbers: the
 * status says healthy = N - stale, lists at most 32 unhealthy peers and counts the rest as omitted,
 * and the event-pass tracker agrees with a fresh full judgement of the final state.
 */
import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { HealthTracker, UNHEALTHY_LIMIT } from '../mesh/health.ts';
import type { DeviceState } from '../native/index.ts';
import type { DesiredPeer } from '../mesh/topology/index.ts';
import { prng, ratio, summarize, table } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    peers: { type: 'string', default: '10,1000,5000' },
    runs: { type: 'string', default: '200' },
    'stale-every': { type: 'string', default: '7' },
  },
});
const sizes = values.peers.split(',').map(Number);
const runs = Number(values.runs);
const staleEvery = Number(values['stale-every']);
const WARMUP = 20;

type PeerState = DeviceState['peers'][number];

function setup(n: number, now: number): { peers: DesiredPeer[]; states: PeerState[] } {
  const peers: DesiredPeer[] = [];
  const states: PeerState[] = [];
  for (let i = 0; i < n; i++) {
    const publicKey = Buffer.alloc(32, 0).fill(i % 256, 0, 1).fill(Math.floor(i / 256) % 256, 1, 2).toString('base64');
    peers.push({ kind: 'Peer', name: `node-${i}`, publicKey, allowedIPs: [], endpoint: `10.0.${Math.floor(i / 250)}.${i % 250}:51820` } as unknown as DesiredPeer);
    states.push({
      publicKey,
      presharedKey: null,
      endpoint: `10.0.${Math.floor(i / 250)}.${i % 250}:51820`,
      allowedIPs: [],
      persistentKeepalive: 25,
      lastHandshake: { sec: BigInt(now - (i % staleEvery === 0 ? 400 : 30)), nsec: 0 },
      rxBytes: 0n,
      txBytes: 0n,
      protocolVersion: 1,
    } as unknown as PeerState);
  }
  return { peers, states };
}

const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;
const rows: Array<Array<string | number>> = [['peers', 'ours: event pass p50 ms', 'p95', 'reference: every peer again p50 ms', 'p95', 'ours / reference']];
for (const n of sizes) {
  const now = Math.floor(Date.now() / 1000);
  const at = new Date(now * 1000);
  const { peers, states } = setup(n, now);
  const stale = Math.ceil(n / staleEvery);
  const ours = new HealthTracker({ kind: 'Peer', name: 'self' });
  const reference = new HealthTracker({ kind: 'Peer', name: 'self' });
  let cur = peers;
  let live: DeviceState = { peers: states } as unknown as DeviceState;
  const first = ours.update({ peers: cur, live, refused: [], full: true, at });
  reference.update({ peers: cur, live, refused: [], full: true, at });
  assert.equal(first.healthy, n - stale, 'healthy = peers - stale');
  assert.equal(first.unhealthy?.length ?? 0, Math.min(stale, UNHEALTHY_LIMIT), 'the list is bounded');
  assert.equal(first.unhealthyOmitted ?? 0, Math.max(0, stale - UNHEALTHY_LIMIT), 'the rest are counted');
  const random = prng(n);
  const event: number[] = [];
  const full: number[] = [];
  for (let r = 0; r < runs + WARMUP; r++) {
    // One peer changed: a new desired object and a new state for it (same verdict, another endpoint).
    const j = Math.floor(random() * n);
    const nextPeers = [...cur];
    nextPeers[j] = { ...cur[j], endpoint: `10.1.0.${r % 250}:51820` } as DesiredPeer;
    const nextStates = [...live.peers];
    nextStates[j] = { ...live.peers[j], endpoint: `10.1.0.${r % 250}:51820` } as PeerState;
    cur = nextPeers;
    live = { peers: nextStates } as unknown as DeviceState;
    let t = process.hrtime.bigint();
    ours.update({ peers: cur, live, refused: [], full: false, at });
    const e = ms(t);
    t = process.hrtime.bigint();
    reference.update({ peers: cur, live, refused: [], full: true, at });
    const f = ms(t);
    if (r >= WARMUP) {
      event.push(e);
      full.push(f);
    }
  }
  const fresh = new HealthTracker({ kind: 'Peer', name: 'self' }).update({ peers: cur, live, refused: [], full: true, at });
  assert.deepEqual(ours.update({ peers: cur, live, refused: [], full: false, at }), fresh, 'event passes agree with a fresh judgement');
  const e = summarize(event);
  const f = summarize(full);
  const round = (x: number): number => Math.round(x * 1000) / 1000;
  rows.push([n, round(e.p50), round(e.p95), round(f.p50), round(f.p95), ratio(e.p50, f.p50)]);
}
process.stdout.write(`Per-peer health per pass (${runs} passes each, 1 in ${staleEvery} peers stale; wall time on one thread, includes no API write)\n`);
process.stdout.write(`${table(rows)}\n`);
