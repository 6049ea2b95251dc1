/**
 * Helper process for e2e/kube/node.test.ts (not a test): starts one real node with a running pod,
 * prints what it made as one JSON line, then waits to be SIGKILLed, so that the test can check what a
 * run killed without any hook leaves, and that the next run's sweep removes it.
 */
import { RealNodeCluster } from '../../sandbox/kubenode.ts';

const archive = process.argv[2];
const image = process.argv[3];
const cluster = await RealNodeCluster.start({ nodes: 1, images: [archive] });
const node = cluster.nodes[0];
const pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'orphan', namespace: 'default' },
  spec: { nodeName: node.name, containers: [{ name: 'main', image, imagePullPolicy: 'Never', command: ['/bin/sleep', '100000'] }] },
};
const applied = await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
if (applied.code !== 0) throw new Error(applied.stderr);
const ready = await cluster.kubectl(['wait', '--for=condition=Ready', 'pod/orphan', '--timeout=90s'], { timeoutMs: 100_000 });
if (ready.code !== 0) throw new Error(ready.stderr);
const tasks = await node.exec('ctr', ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'ls', '-q']);
const pids = (await node.exec('ctr', ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'ls'])).stdout
  .split('\n')
  .slice(1)
  .map((l) => Number(l.trim().split(/\s+/)[1]))
  .filter((p) => p > 0);
console.log(JSON.stringify({ dir: cluster.dir, cgroupRoot: node.cgroupRoot, netns: node.netns, underlayNetns: cluster.mesh.underlay.ns, hostLink: cluster.mesh.underlay.hostInterface, tasks: tasks.stdout.trim().split('\n').length, containerPids: pids }));
setInterval(() => undefined, 60_000);
