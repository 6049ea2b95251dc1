/**
 * Pods on the real nodes (sandbox/kubenode.ts) as the real-node test needs them: read through
 * kubectl as JSON, their network namespaces found through the node's containerd (the container's
 * pid, in the host's pid namespace), one container killed through containerd as a crash would kill
 * it, and the product image built by scripts/build-image.sh.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { RealNode, RealNodeCluster } from '../sandbox/kubenode.ts';
import { waitFor } from '../sandbox/kube.ts';
import type { NetnsRef } from '../sandbox/nodecheck.ts';

export const ROOT = join(import.meta.dirname, '..');

export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  image: string;
  containerID?: string;
  state?: { running?: unknown; waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number } };
}

export interface Pod {
  metadata: { name: string; namespace: string; uid: string; labels?: Record<string, string> };
  spec: { nodeName?: string; hostNetwork?: boolean; containers: Array<{ name: string; image: string; command?: string[]; args?: string[] }> };
  status: { phase?: string; podIP?: string; conditions?: Array<{ type: string; status: string }>; containerStatuses?: ContainerStatus[] };
}

/** kubectl as admin, JSON out; throws naming the command and kubectl's stderr. */
export async function kubectlJson<T>(real: RealNodeCluster, args: string[]): Promise<T> {
  const r = await real.kubectl([...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

/** kubectl as admin; throws unless it exits 0. */
export async function kubectlOk(real: RealNodeCluster, args: string[], input?: string): Promise<string> {
  const r = await real.kubectl(args, { ...(input === undefined ? {} : { input }), timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export async function podsOf(real: RealNodeCluster, namespace: string, selector: string): Promise<Pod[]> {
  return (await kubectlJson<{ items: Pod[] }>(real, ['get', 'pods', '-n', namespace, '-l', selector])).items;
}

export function podReady(p: Pod): boolean {
  return p.status.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Why a pod is not ready, in a line (for timeouts). */
export function podProblem(p: Pod): string {
  const waiting = (p.status.containerStatuses ?? [])
    .filter((c) => !c.ready)
    .map((c) => `${c.name}: ${c.state?.waiting ? `${c.state.waiting.reason ?? 'waiting'} ${c.state.waiting.message ?? ''}` : c.state?.terminated ? `terminated ${c.state.terminated.reason ?? ''} ${c.state.terminated.exitCode ?? ''}` : 'not ready'} (restarts ${c.restartCount})`);
  return `${p.metadata.name} on ${p.spec.nodeName ?? '?'} ${p.status.phase ?? '?'}${waiting.length ? `: ${waiting.join('; ')}` : ''}`;
}

/** Wait until `count` pods match `selector` and all are ready; returns them. */
export async function waitPodsReady(real: RealNodeCluster, namespace: string, selector: string, count: number, timeoutMs = 180_000): Promise<Pod[]> {
  let last: Pod[] = [];
  try {
    return await waitFor(`${count} ready pods ${selector} in ${namespace}`, async () => {
      last = await podsOf(real, namespace, selector);
      return last.length === count && last.every(podReady) ? last : false;
    }, timeoutMs, 1000);
  } catch (err) {
    throw new Error(`${(err as Error).message}\npods: ${last.map(podProblem).join('\n') || 'none'}`, { cause: err });
  }
}

/** containerd's id of a pod's container ("containerd://<id>" in its status). */
export function containerIdOf(p: Pod, container: string): string {
  const id = p.status.containerStatuses?.find((c) => c.name === container)?.containerID;
  if (!id) throw new Error(`pod ${p.metadata.name}: container ${container} has no containerID yet`);
  return id.replace(/^containerd:\/\//, '');
}

/** The host pid of a running container's task (the nodes share the host's pid namespace). */
export async function containerPid(node: RealNode, containerId: string): Promise<number> {
  const r = await node.exec('ctr', ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'ls']);
  if (r.code !== 0) throw new Error(`${node.name}: ctr tasks ls failed: ${r.stderr.trim()}`);
  for (const line of r.stdout.split('\n')) {
    const [id, pid, status] = line.trim().split(/\s+/);
    if (id === containerId && status === 'RUNNING') return Number(pid);
  }
  throw new Error(`${node.name}: container ${containerId.slice(0, 12)} has no running task`);
}

/** The network namespace of a pod (its node's for a hostNetwork pod), through its first container's pid. */
export async function podNetns(real: RealNodeCluster, p: Pod): Promise<NetnsRef> {
  const node = real.node(p.spec.nodeName ?? '');
  if (p.spec.hostNetwork) return node.netns;
  return { pid: await containerPid(node, containerIdOf(p, p.spec.containers[0].name)) };
}

/** SIGKILL one container's process through containerd, as a crash would end it (kubelet restarts it). */
export async function killContainer(real: RealNodeCluster, p: Pod, container: string): Promise<void> {
  const node = real.node(p.spec.nodeName ?? '');
  const id = containerIdOf(p, container);
  const r = await node.exec('ctr', ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'kill', '--signal', 'SIGKILL', id]);
  if (r.code !== 0) throw new Error(`${node.name}: ctr tasks kill ${id.slice(0, 12)} (pod ${p.metadata.name}, container ${container}) failed: ${r.stderr.trim()}`);
}

/** A pod pinned to a node that only sleeps (an image with `sleep`), a target and source for pings. */
export function sleeperPod(name: string, namespace: string, nodeName: string, image: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: 'realnode-sleeper', 'realnode-sleeper': name } },
    spec: {
      nodeName,
      terminationGracePeriodSeconds: 0,
      containers: [{ name: 'sleep', image, imagePullPolicy: 'Never', command: ['sleep', '1000000'] }],
    },
  };
}

export interface BuiltImage {
  reference: string;
  archive: string;
  /** How long scripts/build-image.sh took (a cache hit when its inputs did not change). */
  ms: number;
}

/** scripts/build-image.sh [args]: the image reference and its docker-archive (the IMAGE contract). */
export function buildProductImage(args: string[] = []): Promise<BuiltImage> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(join(ROOT, 'scripts', 'build-image.sh'), args, { encoding: 'utf8', timeout: 1_800_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`scripts/build-image.sh ${args.join(' ')} failed: ${stderr.trim().split('\n').slice(-15).join('\n') || err.message}`));
      const [reference, archive] = stdout.trim().split('\n');
      if (!reference || !archive) return reject(new Error(`scripts/build-image.sh ${args.join(' ')}: expected a reference and an archive path, got ${JSON.stringify(stdout)}`));
      resolve({ reference, archive, ms: performance.now() - t0 });
    });
  });
}

/** 'localhost/aks-mesh:0.1.0-abc' → { repository: 'localhost/aks-mesh', tag: '0.1.0-abc' }. */
export function splitReference(reference: string): { repository: string; tag: string } {
  const at = reference.lastIndexOf(':');
  if (at <= reference.lastIndexOf('/')) throw new Error(`image reference ${reference} has no tag`);
  return { repository: reference.slice(0, at), tag: reference.slice(at + 1) };
}
