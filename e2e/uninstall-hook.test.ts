/**
 * The chart's pre-delete hook, `aks-mesh uninstall-hook`, against a real kube-apiserver 1.20
 * (TestCluster) with the chart installed by real Helm. This API server runs no kubelet, no
 * controller-manager (so no garbage collector and no DaemonSet controller): the test shows what the
 * API shows (the agent DaemonSet deleted, the hook waiting for its pods, the cleanup DaemonSet created
 * with the agent's settings, the timeout naming the nodes not cleaned, the finish once the cleanup
 * DaemonSet counts every pod Ready) and stands in for those controllers where it must, saying so.
 * The whole flow on real nodes (every node's rule, routes and fallbacks gone) is part of the
 * real-node e2e.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { TestCluster } from '../sandbox/apiserver.ts';
import { waitFor } from '../sandbox/kube.ts';
import { CLEANUP_CONTAINER, DONE_CONTAINER } from '../mesh/uninstall.ts';
import { CHART, ROOT, helmIn, helmTestsUnavailable, parseManifests } from './helm.ts';
import type { Run } from './helm.ts';

const CLI = join(ROOT, 'cli', 'main.ts');
const skip = helmTestsUnavailable();

/** Settings other than the defaults, so the test sees the cleanup get the agent's, not its own defaults. */
const SETTINGS = {
  'mesh.interface': 'wg-uninst',
  'mesh.table': 51999,
  'mesh.fwmark': '0x20000',
  'mesh.rulePriority': 5301,
  'mesh.cidr': '100.97.0.0/16',
  'image.repository': 'localhost/aks-mesh',
  'image.tag': 'uninstall-test',
};
/** SETTINGS as a values file (nested by the dotted keys; numbers stay numbers for the schema). */
function valuesOf(settings: Record<string, unknown>): Record<string, unknown> {
  const values: Record<string, Record<string, unknown>> = {};
  for (const [key, value] of Object.entries(settings)) {
    const [top, leaf] = key.split('.');
    (values[top] ??= {})[leaf] = value;
  }
  return values;
}

describe('aks-mesh uninstall-hook on kube-apiserver 1.20', { skip }, () => {
  let cluster: TestCluster;
  let kubeconfig: string;
  let apps: k8s.AppsV1Api;
  let core: k8s.CoreV1Api;
  const namespace = `am-uninst-${randomBytes(3).toString('hex')}`;
  const nodes = [`node-a-${randomBytes(2).toString('hex')}`, `node-b-${randomBytes(2).toString('hex')}`];
  const children = new Set<ReturnType<typeof spawn>>();

  /** The hook as the Job runs it (same flags), with an admin kubeconfig instead of the in-cluster token. */
  function hook(timeout: string): { done: Promise<Run> } {
    const child = spawn(process.execPath, [CLI, 'uninstall-hook', `--namespace=${namespace}`, '--daemonset=aks-mesh-agent', `--timeout=${timeout}`, '--kubeconfig', kubeconfig], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const done = new Promise<Run>((resolve) =>
      child.once('close', (code) => {
        children.delete(child);
        resolve({ code: code ?? 1, stdout, stderr });
      }),
    );
    return { done };
  }

  const readDs = async (name: string) => apps.readNamespacedDaemonSet({ name, namespace }).catch((err: unknown) => (err instanceof k8s.ApiException && err.code === 404 ? null : Promise.reject(err)));

  before(async () => {
    cluster = await TestCluster.start();
    kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'hook.kubeconfig'));
    const kc = cluster.kubeConfig();
    apps = kc.makeApiClient(k8s.AppsV1Api);
    core = kc.makeApiClient(k8s.CoreV1Api);
    const helm = helmIn(cluster.dir);
    const valuesFile = join(cluster.dir, 'uninstall-values.json');
    writeFileSync(valuesFile, JSON.stringify(valuesOf(SETTINGS)));
    const r = await helm(['install', 'mesh', CHART, '--namespace', namespace, '--create-namespace', '--wait=false', '--kubeconfig', kubeconfig, '-f', valuesFile]);
    assert.equal(r.code, 0, `helm install: ${r.stdout}\n${r.stderr}`);
    for (const name of nodes) await core.createNode({ body: { metadata: { name } } });
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await cluster?.stop();
  });

  test('deletes the agent DaemonSet, waits for its pods, creates the cleanup DaemonSet with the agent\'s settings, and on timeout names the nodes not cleaned', async () => {
    const agent = await apps.readNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace });
    const agentContainer = agent.spec?.template.spec?.containers.find((c) => c.name === 'agent');
    assert.ok(agentContainer, 'the chart\'s DaemonSet has an agent container');
    // Stand-ins for the DaemonSet controller and the scheduler (neither runs here): one agent pod per node.
    for (const nodeName of nodes) {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: {
            name: `aks-mesh-agent-${nodeName}`,
            labels: agent.spec?.template.metadata?.labels,
            ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'aks-mesh-agent', uid: agent.metadata?.uid as string, controller: true }],
          },
          spec: { nodeName, containers: [{ name: 'agent', image: agentContainer.image as string }] },
        },
      });
    }

    const run = hook('25s');
    // Foreground deletion: the DaemonSet is marked and stays until its pods are gone.
    await waitFor('the agent DaemonSet marked for deletion', async () => (await readDs('aks-mesh-agent'))?.metadata?.deletionTimestamp);
    const marked = await readDs('aks-mesh-agent');
    assert.ok(marked?.metadata?.finalizers?.includes('foregroundDeletion'), `deleted with foreground propagation: ${JSON.stringify(marked?.metadata?.finalizers)}`);
    // While agent pods remain (an agent would put back what the cleanup removes), no cleanup starts.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await readDs('aks-mesh-agent-cleanup'), null, 'no cleanup DaemonSet while agent pods remain');

    // Stand-in for the garbage collector and the kubelets: the agent pods go.
    for (const nodeName of nodes) await core.deleteNamespacedPod({ name: `aks-mesh-agent-${nodeName}`, namespace, gracePeriodSeconds: 0 });
    const cleanup = await waitFor('the cleanup DaemonSet', () => readDs('aks-mesh-agent-cleanup'));

    // Plain objects (client-node returns class instances) for deepEqual.
    const pod = JSON.parse(JSON.stringify(cleanup.spec?.template.spec)) as k8s.V1PodSpec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.serviceAccountName, 'aks-mesh-agent', 'the agent\'s service account: it deletes the node\'s Peer');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }], 'every node, whatever its taints');
    assert.equal(pod.nodeSelector?.['kubernetes.io/os'], 'linux');
    assert.deepEqual(cleanup.spec?.selector.matchLabels?.['app.kubernetes.io/component'], 'cleanup');
    const [init, ...moreInit] = pod.initContainers ?? [];
    assert.equal(moreInit.length, 0);
    assert.equal(init.name, CLEANUP_CONTAINER);
    assert.equal(init.image, `${SETTINGS['image.repository']}:${SETTINGS['image.tag']}`);
    assert.deepEqual(init.args, ['agent', '--cleanup']);
    const env = Object.fromEntries((init.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
    assert.deepEqual(
      [env.AKS_MESH_INTERFACE, env.AKS_MESH_TABLE, env.AKS_MESH_FWMARK, env.AKS_MESH_RULE_PRIORITY, env.AKS_MESH_MESH_CIDR],
      [SETTINGS['mesh.interface'], String(SETTINGS['mesh.table']), SETTINGS['mesh.fwmark'], String(SETTINGS['mesh.rulePriority']), SETTINGS['mesh.cidr']],
      'the cleanup knows the agent\'s interface, table, fwmark, rule priority and mesh CIDR',
    );
    assert.equal(init.env?.find((e) => e.name === 'AKS_MESH_NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
    assert.deepEqual(init.securityContext?.capabilities, { add: ['NET_ADMIN'], drop: ['ALL'] });
    assert.equal(init.securityContext?.readOnlyRootFilesystem, true);
    const mounts = (init.volumeMounts ?? []).map((m) => m.mountPath).sort();
    assert.ok(mounts.includes('/var/run/secrets/kubernetes.io/serviceaccount'), `the API token for deleting the Peer: ${mounts.join(', ')}`);
    assert.ok(mounts.includes('/var/lib/aks-mesh'), 'the node\'s key folder (the agent reads its key at start)');
    assert.ok(!(pod.volumes ?? []).some((v) => v.hostPath?.path === '/dev/net/tun'), 'no /dev/net/tun: the cleanup creates no interface');
    assert.deepEqual(pod.containers.map((c) => [c.name, c.command]), [[DONE_CONTAINER, ['sleep', 'infinity']]], 'Ready means the init container (the cleanup) succeeded');
    assert.deepEqual(pod.containers[0].securityContext?.capabilities, { drop: ['ALL'] });

    // No DaemonSet controller counts the pods here, so the cleanup never reports done: the hook times out.
    const r = await run.done;
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    const message = r.stderr.split('\n').find((l) => l.startsWith('aks-mesh: ')) ?? '';
    assert.match(message, /the mesh cleanup did not finish within 25s on node\(s\) /, r.stderr);
    for (const node of nodes) assert.ok(message.includes(node), `names ${node}: ${message}`);
    assert.match(message, /run `aks-mesh agent --cleanup` on each/);
    assert.ok(await readDs('aks-mesh-agent-cleanup'), 'the cleanup DaemonSet stays after a timeout (nodes that come back still clean up)');
  });

  test('run again, it waits on the cleanup DaemonSet it left and finishes once every scheduled pod is Ready, deleting it', async () => {
    const run = hook('60s');
    await new Promise((r) => setTimeout(r, 2000));
    // Stand-in for the DaemonSet controller: both nodes' cleanup pods counted Ready for this generation.
    const ds = (await readDs('aks-mesh-agent-cleanup')) as k8s.V1DaemonSet;
    await apps.replaceNamespacedDaemonSetStatus({
      name: 'aks-mesh-agent-cleanup',
      namespace,
      body: { ...ds, status: { observedGeneration: ds.metadata?.generation, desiredNumberScheduled: 2, currentNumberScheduled: 2, numberMisscheduled: 0, numberReady: 2 } },
    });
    const r = await run.done;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /every node is clean/);
    assert.equal(await readDs('aks-mesh-agent-cleanup'), null, 'the cleanup DaemonSet is deleted once done');
  });

  test('with nothing installed it has nothing to clean', async () => {
    // The agent DaemonSet still waits for a garbage collector here: remove its finalizer as one would.
    await apps.patchNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace, body: [{ op: 'remove', path: '/metadata/finalizers' }] }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch)).catch(() => undefined);
    await waitFor('the agent DaemonSet gone', async () => (await readDs('aks-mesh-agent')) === null);
    const r = await hook('10s').done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /nothing to clean/);
  });

  test('the hook\'s RBAC (rendered by the chart) allows what it does in the release namespace and nothing else', async () => {
    const helm = helmIn(cluster.dir);
    const t = await helm(['template', 'mesh', CHART, '--namespace', namespace, '--show-only', 'templates/uninstall-hook.yaml']);
    assert.equal(t.code, 0, t.stderr);
    const rbac = parseManifests(t.stdout).filter((m) => m.kind !== 'Job');
    assert.deepEqual(rbac.map((m) => m.kind).sort(), ['Role', 'RoleBinding', 'ServiceAccount']);
    for (const m of rbac) {
      assert.equal(m.metadata.annotations?.['helm.sh/hook'], 'pre-delete');
      assert.equal(m.metadata.annotations?.['helm.sh/hook-delete-policy'], 'before-hook-creation,hook-succeeded');
      assert.ok(Number(m.metadata.annotations?.['helm.sh/hook-weight']) < 0, `${m.kind} before the Job`);
    }
    const applied = await cluster.kubectl(['apply', '-f', '-'], { input: rbac.map((m) => JSON.stringify(m)).join('\n') });
    assert.equal(applied.code, 0, applied.stderr);
    const as = `system:serviceaccount:${namespace}:aks-mesh-uninstall`;
    const can = async (...args: string[]) => (await cluster.kubectl(['auth', 'can-i', ...args, '--as', as])).stdout.trim();
    for (const verb of ['get', 'list', 'watch', 'create', 'delete']) assert.equal(await can(verb, 'daemonsets.apps', '-n', namespace), 'yes', `${verb} daemonsets`);
    for (const verb of ['get', 'list', 'watch']) assert.equal(await can(verb, 'pods', '-n', namespace), 'yes', `${verb} pods`);
    assert.equal(await can('delete', 'pods', '-n', namespace), 'no');
    assert.equal(await can('update', 'daemonsets.apps', '-n', namespace), 'no');
    assert.equal(await can('get', 'secrets', '-n', namespace), 'no');
    assert.equal(await can('delete', 'daemonsets.apps', '-n', 'kube-system'), 'no', 'only the release namespace');
  });
});
