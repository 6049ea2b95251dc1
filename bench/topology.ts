/**
 * Desired-state benchmark: how long one computeTopology pass takes as the cluster grows (every
 * agent runs one per change and per resync). N nodes, each with a Node (one pod CIDR, one
 * InternalIP) and its Peer, plus 50 external Peers and 50 hostile ones that are refused.
 *
 *   node bench/topology.ts [--nodes 100,300,1000] [--runs 5]
 *
 * Prints the median of --runs passes per size; never asserts a time. The one check: every node
 * Peer but this node's own is accepted, so a broken setup cannot print plausible numbers.
 */
import { parseArgs } from 'node:util';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';
import type { Gateway, NodeInfo, Peer } from '../mesh/crd/types.ts';
import { computeTopology } from '../mesh/topology/index.ts';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '100,300,1000' }, runs: { type: 'string', default: '5' } } });
const sizes = values.nodes.split(',').map(Number);
const runs = Number(values.runs);
const keys = Array.from({ length: Math.max(...sizes) + 100 }, () => publicKeyOf(generatePrivateKey()));
const at = (i: number): string => `${i >> 8}.${i & 255}`;

console.log('nodes  objects  median ms  accepted  refused');
for (const n of sizes) {
  const nodes: NodeInfo[] = Array.from({ length: n }, (_, i) => ({ name: `node-${i}`, podCIDRs: [`10.${100 + (i >> 8)}.${i & 255}.0/24`], internalIPs: [`198.18.${at(i + 1)}`] }));
  const peers: Peer[] = nodes.map((node, i) => ({
    kind: 'Peer',
    metadata: { name: node.name, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { publicKey: keys[i], endpoint: `198.18.${at(i + 1)}:51820`, allowedIPs: node.podCIDRs, meshIP: `100.96.${at(i + 1)}`, nodeName: node.name },
  }));
  for (let i = 0; i < 50; i++) peers.push({ kind: 'Peer', metadata: { name: `site-${i}` }, spec: { publicKey: keys[n + i], allowedIPs: [`192.168.${i}.0/24`] } });
  for (let i = 0; i < 50; i++) peers.push({ kind: 'Peer', metadata: { name: `hostile-${i}` }, spec: { publicKey: keys[n + 50 + i], allowedIPs: [i % 2 ? '0.0.0.0/0' : `10.${100 + (i % 4)}.0.0/16`] } });
  const gateways: Gateway[] = [];
  const times: number[] = [];
  let accepted = 0;
  let refused = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const t = computeTopology({ self: { role: 'node', name: 'node-0' }, peers, gateways, nodes, settings: { meshCIDR: '100.96.0.0/16', clusterCIDRs: ['10.100.0.0/14'] } });
    times.push(performance.now() - t0);
    accepted = t.peers.length;
    refused = t.refused.length;
  }
  if (accepted !== n - 1 + 50 || refused !== 50) throw new Error(`unexpected verdicts: ${accepted} accepted, ${refused} refused`);
  times.sort((a, b) => a - b);
  console.log(`${String(n).padStart(5)}  ${String(peers.length).padStart(7)}  ${times[Math.floor(runs / 2)].toFixed(1).padStart(9)}  ${String(accepted).padStart(8)}  ${String(refused).padStart(7)}`);
}
