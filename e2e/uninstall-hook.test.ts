/**
 * The chart's pre-delete hook, `aks-mesh uninstall-hook`, against a real kube-apiserver 1.20
 * (TestCluster) with the chart installed by real Helm. This API server runs no kubelet, no
 * controller-manager (so no garbage collector and no DaemonSet controller): the test shows what the
 * API shows (the cleanup DaemonSet created parked before anything is deleted, the agent DaemonSet
 * deleted, the hook waiting for its pods before un-parking, the timeout naming the nodes not cleaned,
 * the finish once the cleanup DaemonSet counts every pod Ready, reruns after each way a first run can
 * stop) and stands in for those controllers where it must, saying so. The steps share one install
 * and run in order inside one test: each starts from the state the one before left, as reruns of
 * helm uninstall do.
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
import { CLEANUP_CONTAINER, DONE_CONTAINER, PARKED_LABEL, isParked } from '../mesh/uninstall.ts';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';
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
  let custom: k8s.CustomObjectsApi;
  const namespace = `am-uninst-${randomBytes(3).toString('hex')}`;
  const nodes = [`node-a-${randomBytes(2).toString('hex')}`, `node-b-${randomBytes(2).toString('hex')}`];
  const children = new Set<ReturnType<typeof spawn>>();

  /** The hook as the Job runs it (same flags), with an admin kubeconfig instead of the in-cluster token. `log()` is its stderr so far. */
  function hook(timeout: string): { done: Promise<Run>; log: () => string } {
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
    return { done, log: () => stderr };
  }
  const logLines = (text: string, pattern: RegExp) => text.split('\n').filter((l) => pattern.test(l));
  const failure = (r: Run) => r.stderr.split('\n').find((l) => l.startsWith('aks-mesh: ')) ?? '';

  const readDs = async (name: string) => apps.readNamespacedDaemonSet({ name, namespace }).catch((err: unknown) => (err instanceof k8s.ApiException && err.code === 404 ? null : Promise.reject(err)));

  /** Stand-ins for the DaemonSet controller and the scheduler (neither runs here): one agent pod per node. */
  async function agentPods(agent: k8s.V1DaemonSet): Promise<void> {
    const image = agent.spec?.template.spec?.containers.find((c) => c.name === 'agent')?.image as string;
    for (const nodeName of nodes) {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: {
            name: `aks-mesh-agent-${nodeName}`,
            labels: agent.spec?.template.metadata?.labels,
            ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'aks-mesh-agent', uid: agent.metadata?.uid as string, controller: true }],
          },
          spec: { nodeName, containers: [{ name: 'agent', image }] },
        },
      });
    }
  }
  /** Stand-in for the garbage collector and the kubelets: a pod goes at once. */
  const podGone = (nodeName: string) => core.deleteNamespacedPod({ name: `aks-mesh-agent-${nodeName}`, namespace, gracePeriodSeconds: 0 });
  /** Stand-in for the DaemonSet controller: every node's cleanup pod counted Ready for the DaemonSet's current generation. */
  async function cleanupReady(ds: k8s.V1DaemonSet): Promise<void> {
    await apps.replaceNamespacedDaemonSetStatus({
      name: 'aks-mesh-agent-cleanup',
      namespace,
      body: { ...ds, status: { observedGeneration: ds.metadata?.generation, desiredNumberScheduled: 2, currentNumberScheduled: 2, numberMisscheduled: 0, numberReady: 2 } },
    });
  }
  const unparked = () => waitFor('the cleanup DaemonSet un-parked', async () => {
    const ds = await readDs('aks-mesh-agent-cleanup');
    return ds && !isParked(ds) ? ds : null;
  });

  before(async () => {
    cluster = await TestCluster.start();
    kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'hook.kubeconfig'));
    const kc = cluster.kubeConfig();
    apps = kc.makeApiClient(k8s.AppsV1Api);
    core = kc.makeApiClient(k8s.CoreV1Api);
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const helm = helmIn(cluster.dir);
    const valuesFile = join(cluster.dir, 'uninstall-values.json');
    writeFileSync(valuesFile, JSON.stringify(valuesOf(SETTINGS)));
    const r = await helm(['install', 'mesh', CHART, '--namespace', namespace, '--create-namespace', '--wait=false', '--kubeconfig', kubeconfig, '-f', valuesFile]);
    assert.equal(r.code, 0, `helm install: ${r.stdout}\n${r.stderr}`);
    // What an operator reads after install: the uninstall's caveats.
    assert.match(r.stdout, /gateway-patch[\s\S]*BEFORE the uninstall/, 'NOTES: a gateway sidecar added with gateway-patch must go before the uninstall');
    assert.match(r.stdout, /Avoid --no-hooks/, r.stdout);
    for (const name of nodes) await core.createNode({ body: { metadata: { name } } });
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await cluster?.stop();
  });

  test('the hook on one install, as reruns of helm uninstall meet it', async (t) => {
    let agent = await apps.readNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace });

    await t.test('1. the cleanup DaemonSet is created parked before the agent DaemonSet is deleted, un-parked only once every agent pod is gone; a timeout names the nodes not cleaned; a Gateway not started by the release is warned about', async () => {
      // A Gateway as a sidecar added with gateway-patch writes it: no pod of the release runs on its node.
      const foreign = `gw-${randomBytes(3).toString('hex')}`;
      await custom.createClusterCustomObject({
        group: 'aksmesh.io',
        version: 'v1alpha1',
        plural: 'gateways',
        body: { apiVersion: 'aksmesh.io/v1alpha1', kind: 'Gateway', metadata: { name: foreign }, spec: { publicKey: publicKeyOf(generatePrivateKey()), meshIP: '100.97.255.1', podCIDRs: ['10.250.0.0/24'], nodeName: nodes[0] } },
      });
      await agentPods(agent);
      const run = hook('45s');
      await waitFor('the hook waiting for both agent pods', () => logLines(run.log(), /waiting for the pods of DaemonSet aks-mesh-agent to go/).some((l) => nodes.every((n) => l.includes(n))));
      const log = run.log();
      assert.ok(log.indexOf('cleanup DaemonSet created') >= 0 && log.indexOf('cleanup DaemonSet created') < log.indexOf('deleting the agent DaemonSet'), `the cleanup DaemonSet is the first write:\n${log}`);
      const parked = await readDs('aks-mesh-agent-cleanup');
      assert.ok(parked && isParked(parked), `parked: ${JSON.stringify(parked?.spec?.template.spec?.nodeSelector)}`);
      // Foreground deletion: the DaemonSet is marked and stays until its pods are gone.
      const marked = await readDs('aks-mesh-agent');
      assert.ok(marked?.metadata?.deletionTimestamp && marked.metadata.finalizers?.includes('foregroundDeletion'), `deleted with foreground propagation: ${JSON.stringify(marked?.metadata?.finalizers)}`);
      assert.match(log, new RegExp(`Gateway\\(s\\) ${foreign} \\(node ${nodes[0]}\\) not started by this release.*remove that container`), log);

      // One agent pod goes: the hook says it still waits for the other (a new log line), and has not un-parked.
      await podGone(nodes[0]);
      await waitFor('the hook waiting for the last agent pod', () => logLines(run.log(), /waiting for the pods of DaemonSet aks-mesh-agent to go/).some((l) => l.includes(nodes[1]) && !l.includes(nodes[0])));
      assert.ok(isParked((await readDs('aks-mesh-agent-cleanup')) as k8s.V1DaemonSet), 'still parked while an agent pod remains');
      assert.doesNotMatch(run.log(), /un-parked/);

      await podGone(nodes[1]);
      const cleanup = await unparked();
      // The hook logs the un-park after the API accepted it: the object can be seen before the line is.
      await waitFor('the hook saying it un-parked', () => run.log().includes('un-parked'));
      assert.ok(run.log().indexOf('agent pods gone') < run.log().indexOf('un-parked'), run.log());
      // Plain objects (client-node returns class instances) for deepEqual.
      const pod = JSON.parse(JSON.stringify(cleanup.spec?.template.spec)) as k8s.V1PodSpec;
      assert.equal(pod.hostNetwork, true);
      assert.equal(pod.serviceAccountName, 'aks-mesh-agent', 'the agent\'s service account: it deletes the node\'s Peer');
      assert.equal(pod.automountServiceAccountToken, false);
      assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }], 'every node, whatever its taints');
      assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' }, `the agent's nodeSelector, ${PARKED_LABEL} gone`);
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
      const message = failure(r);
      assert.match(message, /the mesh cleanup did not finish within 45s on node\(s\) /, r.stderr);
      for (const node of nodes) assert.ok(message.includes(node), `names ${node}: ${message}`);
      assert.match(message, /run `aks-mesh agent --cleanup` on each/);
      assert.match(message, /--no-hooks.*delete ds aks-mesh-agent-cleanup/, 'what to do after --no-hooks');
      assert.ok(await readDs('aks-mesh-agent-cleanup'), 'the cleanup DaemonSet stays after a timeout (nodes that come back still clean up)');
      await custom.deleteClusterCustomObject({ group: 'aksmesh.io', version: 'v1alpha1', plural: 'gateways', name: foreign });
    });

    await t.test('2. run again while the agent DaemonSet is still there: an earlier cleanup DaemonSet, Ready or not, is replaced by a fresh one, and the hook finishes once every pod of that one is Ready', async () => {
      // The agent DaemonSet still waits for a garbage collector (foreground), as after a reinstall
      // following --no-hooks an agent DaemonSet would be there: an old cleanup's Ready pods must not count.
      assert.ok(await readDs('aks-mesh-agent'));
      const old = (await readDs('aks-mesh-agent-cleanup')) as k8s.V1DaemonSet;
      await cleanupReady(old);
      const run = hook('60s');
      const fresh = await waitFor('a new cleanup DaemonSet un-parked', async () => {
        const ds = await readDs('aks-mesh-agent-cleanup');
        return ds && ds.metadata?.uid !== old.metadata?.uid && !isParked(ds) ? ds : null;
      });
      assert.doesNotMatch(run.log(), /every node (is )?clean(ed)?\b/, 'not done on the old DaemonSet\'s Ready pods');
      await cleanupReady(fresh);
      const r = await run.done;
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /replacing it/);
      assert.match(r.stderr, /every node is clean/);
      assert.equal(await readDs('aks-mesh-agent-cleanup'), null, 'the cleanup DaemonSet is deleted once done');
    });

    await t.test('3. a first run stopped while agent pods remained, then the agent DaemonSet went (garbage collector): the rerun cleans, it does not report "nothing to clean"', async () => {
      agent = (await readDs('aks-mesh-agent')) as k8s.V1DaemonSet;
      await agentPods(agent);
      const first = await hook('8s').done;
      assert.equal(first.code, 1, first.stderr);
      assert.match(failure(first), /agent pods of DaemonSet .*aks-mesh-agent still running after 8s on node\(s\) .*stays parked.*run helm uninstall again/, first.stderr);
      const parked = await readDs('aks-mesh-agent-cleanup');
      assert.ok(parked && isParked(parked), 'the cleanup DaemonSet stays, parked');
      // Stand-in for the kubelets and the garbage collector: the pods go, then the DaemonSet.
      for (const n of nodes) await podGone(n);
      await apps.patchNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace, body: [{ op: 'remove', path: '/metadata/finalizers' }] }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch));
      await waitFor('the agent DaemonSet gone', async () => (await readDs('aks-mesh-agent')) === null);

      const run = hook('60s');
      const ds = await unparked();
      assert.equal(ds.metadata?.uid, parked.metadata?.uid, 'the one the first run left');
      await cleanupReady(ds);
      const r = await run.done;
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /nothing to clean/);
      assert.match(r.stderr, /every node is clean/);
    });

    await t.test('4. with no DaemonSet left, a node that still has the Peer its agent wrote fails the hook naming it; only then is there nothing to clean', async () => {
      const peer = (nodeName: string) => ({
        apiVersion: 'aksmesh.io/v1alpha1',
        kind: 'Peer',
        metadata: { name: nodeName, labels: { 'app.kubernetes.io/managed-by': 'aks-mesh-agent' } },
        spec: { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.251.0.0/24'], nodeName },
      });
      const gone = `node-gone-${randomBytes(2).toString('hex')}`;
      for (const name of [nodes[0], gone]) await custom.createClusterCustomObject({ group: 'aksmesh.io', version: 'v1alpha1', plural: 'peers', body: peer(name) });
      const r = await hook('10s').done;
      assert.equal(r.code, 1, r.stderr);
      const message = failure(r);
      assert.match(message, new RegExp(`node\\(s\\) ${nodes[0]} still have a Peer`), r.stderr);
      assert.ok(!message.includes(gone), `a Peer whose Node is gone names no node to clean: ${message}`);

      await custom.deleteClusterCustomObject({ group: 'aksmesh.io', version: 'v1alpha1', plural: 'peers', name: nodes[0] });
      const again = await hook('10s').done;
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /nothing to clean/);
      assert.ok(again.stderr.includes(gone), `the left-over Peer of a deleted node is mentioned: ${again.stderr}`);
    });

    await t.test('5. the API server away for a moment (connection refused) does not fail the hook: it tries again until its timeout', async () => {
      await cluster.stopApiServer({ graceMs: 0 });
      let run: ReturnType<typeof hook>;
      try {
        run = hook('90s');
        await waitFor('the hook trying again', () => /API call failed, trying again/.test(run.log()));
      } finally {
        await cluster.startApiServer();
      }
      const r = await run.done;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /nothing to clean/);
    });
  });

  test('the hook\'s RBAC (rendered by the chart) allows what it does and nothing else; it goes even when the hook fails; the Job runs on no dead node', async () => {
    const helm = helmIn(cluster.dir);
    const t = await helm(['template', 'mesh', CHART, '--namespace', namespace, '--show-only', 'templates/uninstall-hook.yaml']);
    assert.equal(t.code, 0, t.stderr);
    const manifests = parseManifests(t.stdout);
    const rbac = manifests.filter((m) => m.kind !== 'Job');
    assert.deepEqual(rbac.map((m) => m.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount']);
    for (const m of rbac) {
      assert.equal(m.metadata.annotations?.['helm.sh/hook'], 'pre-delete');
      assert.equal(m.metadata.annotations?.['helm.sh/hook-delete-policy'], 'before-hook-creation,hook-succeeded,hook-failed', `${m.kind}: its rights do not outlive a failed hook`);
      assert.ok(Number(m.metadata.annotations?.['helm.sh/hook-weight']) < 0, `${m.kind} before the Job`);
    }
    const job = manifests.find((m) => m.kind === 'Job') as unknown as k8s.V1Job;
    assert.equal(job.metadata?.annotations?.['helm.sh/hook-delete-policy'], 'before-hook-creation,hook-succeeded', 'the Job (its log) stays after a failure');
    const jobPod = job.spec?.template.spec;
    assert.deepEqual(jobPod?.tolerations, [{ key: 'aksmesh.io/agent-not-ready', operator: 'Exists', effect: 'NoSchedule' }], 'not unreachable/not-ready nodes');
    assert.equal(jobPod?.priorityClassName, 'system-cluster-critical');

    const applied = await cluster.kubectl(['apply', '-f', '-'], { input: rbac.map((m) => JSON.stringify(m)).join('\n') });
    assert.equal(applied.code, 0, applied.stderr);
    const as = `system:serviceaccount:${namespace}:aks-mesh-uninstall`;
    const can = async (...args: string[]) => (await cluster.kubectl(['auth', 'can-i', ...args, '--as', as])).stdout.trim();
    for (const name of ['aks-mesh-agent', 'aks-mesh-agent-cleanup']) {
      for (const verb of ['get', 'patch', 'delete']) assert.equal(await can(verb, `daemonsets.apps/${name}`, '-n', namespace), 'yes', `${verb} ${name}`);
    }
    assert.equal(await can('create', 'daemonsets.apps', '-n', namespace), 'yes');
    assert.equal(await can('list', 'pods', '-n', namespace), 'yes');
    for (const what of ['peers.aksmesh.io', 'gateways.aksmesh.io', 'nodes']) assert.equal(await can('list', what), 'yes', `list ${what}`);
    for (const [verb, what] of [['delete', 'daemonsets.apps/kube-proxy'], ['patch', 'daemonsets.apps/kube-proxy'], ['get', 'daemonsets.apps/kube-proxy'], ['list', 'daemonsets.apps'], ['update', 'daemonsets.apps/aks-mesh-agent'], ['delete', 'pods'], ['get', 'secrets']]) {
      assert.equal(await can(verb, what, '-n', namespace), 'no', `${verb} ${what}`);
    }
    for (const [verb, what] of [['delete', 'peers.aksmesh.io'], ['update', 'gateways.aksmesh.io'], ['patch', 'nodes']]) assert.equal(await can(verb, what), 'no', `${verb} ${what}`);
    assert.equal(await can('delete', 'daemonsets.apps/aks-mesh-agent', '-n', 'kube-system'), 'no', 'only the release namespace');
  });
});
