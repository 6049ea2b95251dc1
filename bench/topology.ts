/**
 * Desired-state benchmark (issue 10): the CPU time of one whole desired-state pass as the cluster
 * grows, ours (computeTopology) beside the function it replaced (bench/reference/topology.ts, frozen
 * at 7e998a4), and the CPU time of one single-Peer change through a TopologyEngine that keeps the
 * last state (what an agent pays per event).
 *
 *   node bench/topology.ts [--nodes 10,1000,5000] [--runs 7] [--changes 200] [--reference-limit 20]
 *
 * Setup: N nodes, each with a Node (one pod CIDR, one InternalIP) and its Peer (pod CIDR + mesh IP),
 * plus 50 external Peers that are accepted and 50 hostile ones that are refused (default-route
 * space, another node's pod space). This node is node-0. After one untimed pass of each, --runs
 * full passes per size, ours and the reference alternately (median and p95 of the process's CPU
 * time per pass, GC threads included); the reference is skipped at a size where its first pass took
 * more than --reference-limit seconds (the table says so). Then
 * --changes single-Peer changes (a Peer replaced by a new object with another endpoint, as an
 * informer hands it over) through one TopologyEngine: the CPU time of compute() alone, in µs; then
 * --changes / 4 Node changes (one Node's InternalIP replaced) through the same engine. The first
 * 20 changes of each kind are not counted (compiling the code paths).
 *
 * Never asserts a time. What it checks, so that a broken setup cannot print plausible numbers:
 * every node Peer but this node's own and every external one is accepted and every hostile one
 * refused; ours equals the reference on the same input (deep-equal); after the changes the engine
 * equals a fresh computeTopology of the final input, and each changed endpoint reached its peer.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { Gateway, NodeInfo, Peer } from '../mesh/crd/types.ts';
import { TopologyEngine, computeTopology } from '../mesh/topology/index.ts';
import type { Topology, TopologyInput } from '../mesh/topology/index.ts';
import { summarize, ratio, table } from './lib/stats.ts';
import { referenceTopology } from './reference/topology.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '10,1000,5000' },
    runs: { type: 'string', default: '7' },
    changes: { type: 'string', default: '200' },
    'reference-limit': { type: 'string', default: '20' },
  },
});
const sizes = values.nodes.split(',').map(Number);
const runs = Number(values.runs);
const changes = Number(values.changes);
const referenceLimitMs = Number(values['reference-limit']) * 1000;

// Random 32-byte keys in base64: the shape of a public key, which is all the desired state checks
// (deriving real ones from private keys costs more than the passes measured here).
const key = (): string => randomBytes(32).toString('base64');
const at = (i: number): string => `${i >> 8}.${i & 255}`;

function setup(n: number): TopologyInput {
  const nodes: NodeInfo[] = Array.from({ length: n }, (_, i) => ({ name: `node-${i}`, podCIDRs: [`10.${100 + (i >> 8)}.${i & 255}.0/24`], internalIPs: [`198.18.${at(i + 1)}`] }));
  const peers: Peer[] = nodes.map((node, i) => ({
    kind: 'Peer',
    metadata: { name: node.name, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { publicKey: key(), endpoint: `198.18.${at(i + 1)}:51820`, allowedIPs: node.podCIDRs, meshIP: `100.96.${at(i + 1)}`, nodeName: node.name },
  }));
  for (let i = 0; i < 50; i++) peers.push({ kind: 'Peer', metadata: { name: `site-${i}` }, spec: { publicKey: key(), allowedIPs: [`192.168.${i}.0/24`] } });
  for (let i = 0; i < 50; i++) peers.push({ kind: 'Peer', metadata: { name: `hostile-${i}` }, spec: { publicKey: key(), allowedIPs: [i % 2 ? '0.0.0.0/0' : `10.${100 + (i % 4)}.0.0/16`] } });
  const gateways: Gateway[] = [];
  return { self: { role: 'node', name: 'node-0' }, peers, gateways, nodes, settings: { meshCIDR: '100.96.0.0/16', clusterCIDRs: ['10.100.0.0/14'] } };
}

/** CPU time (user + system, every thread of the process) of `f`, in ms. */
function cpu<T>(f: () => T): { ms: number; value: T } {
  const start = process.cpuUsage();
  const value = f();
  const used = process.cpuUsage(start);
  return { ms: (used.user + used.system) / 1000, value };
}

function checkVerdicts(t: Topology, n: number): void {
  if (t.peers.length !== n - 1 + 50 || t.refused.length !== 50) throw new Error(`unexpected verdicts at ${n} nodes: ${t.peers.length} accepted, ${t.refused.length} refused`);
}

const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
const full: Array<Array<string | number>> = [['nodes', 'objects', 'ours median ms', 'ours p95 ms', 'reference median ms', 'reference p95 ms', 'reference / ours']];
const single: Array<Array<string | number>> = [['nodes', 'changes', 'engine median µs', 'engine p95 µs', 'reference full pass median µs', 'reference / engine', 'Node change median µs', 'Node change p95 µs']];

console.log(`desired state: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}, ${runs} full passes and ${changes} single-Peer changes per size`);
for (const n of sizes) {
  const input = setup(n);
  // One untimed pass each (compiling the code), then the two alternately, so that neither runs on a
  // warmer machine than the other.
  checkVerdicts(computeTopology(input), n);
  const first = cpu(() => referenceTopology(input));
  assert.deepStrictEqual(computeTopology(input), first.value, `ours differs from the reference at ${n} nodes`);
  const skipped = first.ms > referenceLimitMs ? `(1 pass: ${round(first.ms / 1000)} s, skipped)` : '';
  const ours: number[] = [];
  const reference: number[] = [];
  for (let r = 0; r < runs; r++) {
    const { ms, value } = cpu(() => computeTopology(input));
    checkVerdicts(value, n);
    ours.push(ms);
    if (!skipped) reference.push(cpu(() => referenceTopology(input)).ms);
  }
  const o = summarize(ours);
  const ref = summarize(reference);
  full.push([n, input.peers.length, round(o.p50), round(o.p95), skipped ? skipped : round(ref.p50), skipped ? '-' : round(ref.p95), ratio(ref.p50, o.p50)]);

  // One Peer at a time replaced by a new object with another endpoint, through one engine.
  const engine = new TopologyEngine();
  checkVerdicts(engine.compute(input), n);
  let current = input;
  const costs: number[] = [];
  // The first 20 changes of each kind are not counted (compiling the code paths).
  const warm = 20;
  for (let c = -warm; c < changes; c++) {
    const i = ((c + warm) * 7919) % n;
    const peers = [...current.peers];
    const was = peers[i];
    const endpoint = `203.0.113.${(c + warm) % 250}:${51820 + ((c + warm) % 1000)}`;
    peers[i] = { ...was, spec: { ...was.spec, endpoint } };
    current = { ...current, peers };
    const { ms, value } = cpu(() => engine.compute(current));
    if (c >= 0) costs.push(ms * 1000);
    checkVerdicts(value, n);
    if (i !== 0 && value.peers.find((p) => p.name === `node-${i}`)?.endpoint !== endpoint) throw new Error(`the change to node-${i} did not reach its peer`);
  }
  // One Node at a time given another InternalIP (a node's address changing): its Peer and the
  // external Peers are checked again.
  const nodeCosts: number[] = [];
  for (let c = -warm; c < Math.max(1, changes >> 2); c++) {
    const i = ((c + warm) * 104729) % n;
    const nodes = [...current.nodes];
    nodes[i] = { ...nodes[i], internalIPs: [`198.19.${at(c + warm + 1)}`] };
    current = { ...current, nodes };
    const { ms, value } = cpu(() => engine.compute(current));
    if (c >= 0) nodeCosts.push(ms * 1000);
    checkVerdicts(value, n);
  }
  assert.deepStrictEqual(engine.compute(current), computeTopology(current), `the engine differs from a fresh pass at ${n} nodes`);
  const s = summarize(costs);
  const nc = summarize(nodeCosts);
  single.push([n, changes, Math.round(s.p50), Math.round(s.p95), skipped ? '-' : Math.round(ref.p50 * 1000), skipped ? '-' : ratio(ref.p50 * 1000, s.p50), Math.round(nc.p50), Math.round(nc.p95)]);
}
console.log('\nFull pass (CPU per pass)');
console.log(table(full));
console.log('\nOne single-Peer change through TopologyEngine (CPU of compute()); before, every change was a full pass');
console.log(table(single));
