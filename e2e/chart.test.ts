/**
 * The Helm chart as an operator installs it, with real Helm (scripts/fetch-helm.sh) against our real
 * kube-apiserver 1.20 (TestCluster): it lints clean, installs its CRDs, RBAC and DaemonSet, leaves the
 * node-bound-writes ValidatingAdmissionPolicy out because 1.20 does not serve that API, and
 * `aks-mesh status` then warns that writes are not node-bound (issue 9). Where the API is served
 * (told to `helm template` with --api-versions) the chart renders exactly the policy and binding of
 * config/admission/node-bound-writes.yaml, with the release namespace in the service-account names,
 * and with it (only then) the agent's `patch nodes` of config/admission/agent-node-taint.yaml: on 1.20
 * the agent may not patch Nodes, and `aks-mesh status` says operators remove the not-ready taint.
 *
 * No kubelet or controller-manager runs here, so the DaemonSet gets no pods: the install does not wait
 * for them (`--wait=false`; the chart has no hooks that would need pods).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { AGENT_NOT_READY_TAINT, CRDS, GROUP, NODE_BOUND_POLICY, NODE_TAINT_ROLE, VERSION, agentNodeTaintGrant, nodeBoundWritesPolicy } from '../mesh/index.ts';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';

const ROOT = join(import.meta.dirname, '..');
// AKS_MESH_CHART: another copy of the chart (to check this test catches a broken one).
const CHART = process.env.AKS_MESH_CHART ?? join(ROOT, 'charts', 'aks-mesh');
const CLI = join(ROOT, 'cli', 'main.ts');
const POLICY_FILE = join(ROOT, 'config', 'admission', 'node-bound-writes.yaml');
const GRANT_FILE = join(ROOT, 'config', 'admission', 'agent-node-taint.yaml');
/** The namespace config/admission/node-bound-writes.yaml is generated for (mesh/manifests.ts). */
const CONFIG_NAMESPACE = 'aks-mesh';
const VAP_API = 'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy';

/** Helm: $AKS_MESH_HELM, else the one scripts/fetch-helm.sh cached (that script pins the version). */
function findHelm(): { helm: string } | { missing: string } {
  const fromEnv = process.env.AKS_MESH_HELM;
  if (fromEnv) return { helm: fromEnv };
  try {
    const out = execFileSync(join(ROOT, 'scripts', 'fetch-helm.sh'), ['--cached'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { helm: out.trim() };
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    return { missing: stderr || 'no helm: run scripts/fetch-helm.sh (or set AKS_MESH_HELM=/path/to/helm)' };
  }
}

function unavailable(): string | false {
  const kube = kubeTestsUnavailable();
  if (kube) return kube;
  const found = findHelm();
  if ('missing' in found) {
    // scripts/test (and CI) sets AKS_MESH_REQUIRE_KUBE=1: a missing part is then a failure, never a silent skip.
    if (process.env.AKS_MESH_REQUIRE_KUBE === '1') throw new Error(`chart tests required but Helm is unavailable: ${found.missing}`);
    return found.missing;
  }
  return false;
}

const skip = unavailable();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8', timeout, killSignal: 'SIGKILL', maxBuffer: 16 << 20, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<string, unknown>;

function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest | null)
    .filter((o): o is Manifest => o !== null && typeof o === 'object');
}

function kinds(manifests: Manifest[]): string[] {
  return manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
}

describe('Helm chart on kube-apiserver 1.20', { skip }, () => {
  let helm: string;
  let cluster: TestCluster;
  let kubeconfig: string;
  let helmEnv: NodeJS.ProcessEnv;
  // Generated, so parallel runs and leftovers never collide; also proves nothing assumes "aks-mesh".
  const namespace = `am-chart-${randomBytes(3).toString('hex')}`;
  const release = 'mesh';
  let installed = false;

  const h = (args: string[]) => run(helm, [...args], helmEnv);
  const hk = (args: string[]) => h([...args, '--kubeconfig', kubeconfig]);

  before(async () => {
    const found = findHelm();
    if ('missing' in found) throw new Error(found.missing);
    helm = found.helm;
    cluster = await TestCluster.start();
    kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'helm.kubeconfig'));
    // Helm's own state (repositories, cache, plugins) inside the cluster's temp dir, not the user's home.
    const home = join(cluster.dir, 'helm');
    for (const d of ['cache', 'config', 'data']) mkdirSync(join(home, d), { recursive: true });
    helmEnv = { HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  });

  after(async () => {
    // Uninstall even when a test failed half-way; the cluster (etcd, API server, temp dir) goes by pid.
    if (installed && cluster) await hk(['uninstall', release, '--namespace', namespace, '--wait=false']).catch(() => undefined);
    await cluster?.stop();
  });

  test('helm lint --strict passes', async () => {
    const r = await h(['lint', '--strict', CHART]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('installs on 1.20: CRDs, RBAC and DaemonSet, and no ValidatingAdmissionPolicy', async () => {
    // What the user's cluster says first: 1.20 serves no ValidatingAdmissionPolicy at all.
    const resources = await cluster.kubectl(['api-resources', '--api-group', 'admissionregistration.k8s.io', '-o', 'name']);
    assert.equal(resources.code, 0, resources.stderr);
    assert.doesNotMatch(resources.stdout, /validatingadmissionpolicies/);

    const r = await hk(['install', release, CHART, '--namespace', namespace, '--create-namespace', '--wait=false', '--timeout', '2m']);
    assert.equal(r.code, 0, `helm install failed:\n${r.stdout}\n${r.stderr}`);
    installed = true;
    assert.match(r.stdout, /STATUS: deployed/);
    // The chart's NOTES tell the operator the same as `aks-mesh status`.
    assert.match(r.stdout, /WARNING: writes are not node-bound/);

    const kc = cluster.kubeConfig();
    const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
    for (const crd of CRDS) {
      const name = (crd.metadata as { name: string }).name;
      const got = await ext.readCustomResourceDefinition({ name });
      assert.ok(got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'), `CRD ${name} established`);
    }
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    for (const name of ['aks-mesh-agent', 'aks-mesh-gateway']) {
      await core.readNamespacedServiceAccount({ name, namespace });
      await rbac.readClusterRole({ name });
      const binding = await rbac.readClusterRoleBinding({ name });
      assert.deepEqual(binding.subjects?.map((s) => `${s.kind}/${s.namespace}/${s.name}`), [`ServiceAccount/${namespace}/${name}`]);
    }
    const ds = await kc.makeApiClient(k8s.AppsV1Api).readNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace });
    assert.equal(ds.spec?.template.spec?.serviceAccountName, 'aks-mesh-agent');

    // Neither rendered into the release nor sent to the API server.
    const manifest = await hk(['get', 'manifest', release, '--namespace', namespace]);
    assert.equal(manifest.code, 0, manifest.stderr);
    const sent = parseManifests(manifest.stdout);
    assert.ok(sent.some((m) => m.kind === 'DaemonSet'), kinds(sent).join(', '));
    assert.deepEqual(
      sent.filter((m) => m.kind.startsWith('ValidatingAdmissionPolicy')).map((m) => m.kind),
      [],
      'no ValidatingAdmissionPolicy or binding in the release',
    );
    assert.doesNotMatch(manifest.stdout, /ValidatingAdmissionPolicy/);
    // Nor the agent's `patch nodes`: without the policy it would let any agent taint or relabel any Node.
    assert.doesNotMatch(manifest.stdout, new RegExp(NODE_TAINT_ROLE), 'no node-patch grant without the policy');
    const agent = `system:serviceaccount:${namespace}:aks-mesh-agent`;
    const canPatch = await cluster.kubectl(['auth', 'can-i', 'patch', 'nodes', '--as', agent]);
    assert.equal(canPatch.stdout.trim(), 'no', `the agent may not patch nodes on 1.20: ${canPatch.stdout} ${canPatch.stderr}`);
    const canRead = await cluster.kubectl(['auth', 'can-i', 'list', 'nodes', '--as', agent]);
    assert.equal(canRead.stdout.trim(), 'yes', `the agent still reads nodes: ${canRead.stdout} ${canRead.stderr}`);
  });

  test('the agent service account may write any node\'s Peer on 1.20, and aks-mesh status warns about it', async () => {
    assert.ok(installed, 'needs the release from the install test');
    // What the warning is about, shown with the installed RBAC: nothing binds the agent to its node.
    const agent = `system:serviceaccount:${namespace}:aks-mesh-agent`;
    const write = await cluster.kubectl([
      'create', '--as', agent, '--as-group', 'system:serviceaccounts', '--as-group', `system:serviceaccounts:${namespace}`, '-f', '-',
    ], {
      input: JSON.stringify({
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Peer',
        metadata: { name: 'some-other-node' },
        spec: { nodeName: 'some-other-node', publicKey: Buffer.alloc(32, 7).toString('base64'), meshIP: '100.96.0.9', allowedIPs: ['10.244.9.0/24'] },
      }),
    });
    assert.equal(write.code, 0, `the agent's RBAC should allow the write on 1.20 (no policy): ${write.stderr}`);

    const r = await run(process.execPath, [CLI, 'status', '--kubeconfig', kubeconfig], {}, 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: this API server does not serve ValidatingAdmissionPolicy \(admissionregistration\.k8s\.io\/v1, Kubernetes >= 1\.30\), so writes are not node-bound/);
    // ... and who removes the not-ready taint, since the agents may not.
    assert.ok(r.stderr.includes(`cannot remove their Node's not-ready taint (${AGENT_NOT_READY_TAINT.key}) without it: operators remove it`), r.stderr);
    assert.match(r.stdout, /some-other-node/, 'status lists the Peers of the installed CRDs');
  });

  test('where the API is served, helm template renders the policy and binding of config/admission, and the agent\'s node-patch grant with it', async () => {
    const r = await h(['template', release, CHART, '--namespace', namespace, '--api-versions', VAP_API]);
    assert.equal(r.code, 0, r.stderr);
    const all = parseManifests(r.stdout);
    // The grant comes only with the policy that narrows it to the agent's own taint.
    const grant = all.filter((m) => m.metadata.name === NODE_TAINT_ROLE);
    assert.deepEqual(kinds(grant), [`ClusterRole/${NODE_TAINT_ROLE}`, `ClusterRoleBinding/${NODE_TAINT_ROLE}`]);
    assert.deepEqual(grant, agentNodeTaintGrant(namespace));
    const grantFile = parseManifests(readFileSync(GRANT_FILE, 'utf8').replaceAll(`namespace: ${CONFIG_NAMESPACE}`, `namespace: ${namespace}`));
    assert.deepEqual(grant, grantFile, `${GRANT_FILE} is what the chart renders`);
    const rendered = all.filter((m) => m.kind.startsWith('ValidatingAdmissionPolicy'));
    assert.deepEqual(kinds(rendered), [`ValidatingAdmissionPolicy/${NODE_BOUND_POLICY}`, `ValidatingAdmissionPolicyBinding/${NODE_BOUND_POLICY}`]);

    // The shipped file, with the release namespace where it names the service accounts.
    const text = readFileSync(POLICY_FILE, 'utf8');
    const prefix = `system:serviceaccount:${CONFIG_NAMESPACE}:`;
    assert.ok(text.includes(prefix), `${POLICY_FILE} names the service accounts as ${prefix}*`);
    const shipped = parseManifests(text.replaceAll(prefix, `system:serviceaccount:${namespace}:`));
    assert.deepEqual(rendered, shipped);
    // And both are what mesh/manifests.ts generates for that namespace (the file is not stale).
    assert.deepEqual(rendered, nodeBoundWritesPolicy(namespace));

    // Turned off, it is left out even where the API is served.
    const off = await h(['template', release, CHART, '--namespace', namespace, '--api-versions', VAP_API, '--set', 'nodeBoundWrites=false']);
    assert.equal(off.code, 0, off.stderr);
    assert.doesNotMatch(off.stdout, /kind: ValidatingAdmissionPolicy/);
    assert.doesNotMatch(off.stdout, new RegExp(NODE_TAINT_ROLE));
  });

  test('uninstall removes what the release created; the CRDs stay (Helm never deletes crds/)', async () => {
    assert.ok(installed, 'needs the release from the install test');
    const r = await hk(['uninstall', release, '--namespace', namespace, '--wait=false']);
    assert.equal(r.code, 0, r.stderr);
    installed = false;
    const kc = cluster.kubeConfig();
    const gone = async (read: () => Promise<unknown>, what: string) => {
      await assert.rejects(read(), (err: unknown) => err instanceof k8s.ApiException && err.code === 404, `${what} should be gone`);
    };
    const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await gone(() => kc.makeApiClient(k8s.AppsV1Api).readNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace }), 'DaemonSet aks-mesh-agent');
    for (const name of ['aks-mesh-agent', 'aks-mesh-gateway']) {
      await gone(() => rbac.readClusterRole({ name }), `ClusterRole ${name}`);
      await gone(() => rbac.readClusterRoleBinding({ name }), `ClusterRoleBinding ${name}`);
      await gone(() => kc.makeApiClient(k8s.CoreV1Api).readNamespacedServiceAccount({ name, namespace }), `ServiceAccount ${name}`);
    }
    const list = await hk(['list', '--all-namespaces', '-q']);
    assert.equal(list.stdout.trim(), '', 'no release left');
    // The mesh's objects outlive the release: uninstalling the agents must not drop every node's Peer.
    const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
    for (const crd of CRDS) await ext.readCustomResourceDefinition({ name: (crd.metadata as { name: string }).name });
    await kc.makeApiClient(k8s.CustomObjectsApi).getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name: 'some-other-node' });
  });
});
