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
/**
 * The Helm chart as an operator installs it, with real Helm (scripts/fetch-helm.sh) against our real
 * kube-apiserver 1.20 (TestCluster):
 * - `helm lint --strict` and `helm template` pass with the default values and with every documented
 *   option (VALUE_SETS), and every rendered object of each is accepted by `kubectl apply
 *   --dry-run=server`; every object carries the standard labels, every container is hardened and has
 *   resources, every pod runs only on Linux;
 * - values.schema.json refuses a bad port, CIDR (IPv4 and IPv6), mode or mark with a message naming the value;
 * - the agent DaemonSet keeps the API token out of the wireguard-go container;
 * - the chart's gateway sidecar is exactly what `aks-mesh gateway-patch` prints (gateway/sidecar.ts),
 *   and the metrics-server sidecar patch applies to a metrics-server Deployment;
 * - installed, it leaves the node-bound-writes ValidatingAdmissionPolicy out because 1.20 does not
 *   serve that API, and `aks-mesh status` then warns that writes are not node-bound (issue 9). Where the
 *   API is served (told to `helm template` with --api-versions) the chart renders exactly the policy
 *   and binding of config/admission/node-bound-writes.yaml, and with it (only then) the agent's `patch
 *   nodes` of config/admission/agent-node-taint.yaml.
 *
 * No kubelet or controller-manager runs here, so the DaemonSet gets no pods: the install does not wait
 * for them (`--wait=false`) and the uninstall skips the pre-delete hook (`--no-hooks`: its Job would
 * never run); e2e/uninstall-hook.test.ts tests the hook against this API server, the real-node e2e
 * the whole uninstall.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { AGENT_NOT_READY_TAINT, CRDS, GROUP, NODE_BOUND_POLICY, NODE_TAINT_ROLE, VERSION, agentNodeTaintGrant, nodeBoundWritesPolicy } from '../mesh/index.ts';
import { gatewaySidecar } from '../gateway/sidecar.ts';
import { TestCluster } from '../sandbox/apiserver.ts';
import { CHART, ROOT, helmIn, helmTestsUnavailable, kinds, parseManifests, run } from './helm.ts';
import type { Manifest, Run } from './helm.ts';

const CLI = join(ROOT, 'cli', 'main.ts');
const POLICY_FILE = join(ROOT, 'config', 'admission', 'node-bound-writes.yaml');
const GRANT_FILE = join(ROOT, 'config', 'admission', 'agent-node-taint.yaml');
/** The namespace config/admission/node-bound-writes.yaml is generated for (mesh/manifests.ts). */
const CONFIG_NAMESPACE = 'aks-mesh';
const VAP_API = 'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy';

const skip = helmTestsUnavailable();

const STANDARD_LABELS = ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/component', 'app.kubernetes.io/part-of', 'app.kubernetes.io/managed-by', 'helm.sh/chart'];
// Name and component only: the agent DaemonSet's selector since the first chart, and spec.selector is
// immutable (a new key would fail every helm upgrade; the upgrade test below shows it).
const SELECTOR_LABELS = ['app.kubernetes.io/component', 'app.kubernetes.io/name'];
/** The chart as of commit 3080606 (issue 10's), for the upgrade test. */
const OLD_CHART_COMMIT = '3080606';

const res = (cpu: string, memory: string) => ({ requests: { cpu, memory }, limits: { memory } });
/** Every documented option, each in at least one set (README "Chart values"). */
const VALUE_SETS: Record<string, Record<string, unknown>> = {
  defaults: {},
  'spawn mode': { agent: { wireguardMode: 'spawn' } },
  'konnectivity with the gateway sidecar': { konnectivity: { enabled: true, replicas: 2, gateway: { podCIDRs: ['10.244.0.0/16', '10.245.0.0/16'] } } },
  // What the real-node test sets: a stand-in for the Konnectivity agent image, no hostPort.
  'konnectivity stand-in': {
    konnectivity: { enabled: true, name: 'konn-standin', agent: { image: 'localhost/standin:1', command: ['/bin/sh', '-c'], args: ['sleep infinity'], tokenAudience: 'test' }, gateway: { listenPort: 51999, hostPort: false } },
  },
  'metrics-server sidecar': { metricsServer: { konnectivitySidecar: { enabled: true, namespace: 'monitoring', deployment: 'metrics-server' } } },
  'nodeBoundWrites off': { nodeBoundWrites: false },
  'custom CIDRs, marks and ports (IPv6 mesh)': {
    mesh: {
      cidr: 'fd00:96::/64',
      listenPort: 51900,
      interface: 'wg-custom',
      table: 1234,
      fwmark: '0x20000',
      rulePriority: 6000,
      mtu: 1380,
      keepalive: 25,
      resyncSeconds: 30,
      serviceCIDRs: ['10.96.0.0/12', 'fd00:10::/108'],
      clusterCIDRs: ['10.200.0.0/16', 'fd00:200::/56'],
      nodeCIDRs: ['192.168.0.0/16'],
    },
    agent: { metricsPort: 9600, logLevel: 'debug', logFormat: 'text', keyDir: '/var/lib/mesh-keys', maxUnavailable: '20%', podAnnotations: { team: 'net' } },
  },
  'extra nodeSelector, tolerations and affinity': {
    agent: {
      nodeSelector: { 'node-pool': 'mesh' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mesh', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64', 'arm64'] }] }] } } },
      priorityClassName: 'system-cluster-critical',
    },
    konnectivity: { enabled: true, nodeSelector: { 'node-pool': 'system' }, tolerations: [{ operator: 'Exists', effect: 'NoSchedule' }] },
  },
  resources: {
    agent: { resources: res('50m', '128Mi'), wireguardResources: res('30m', '48Mi') },
    uninstall: { resources: res('5m', '48Mi'), timeoutSeconds: 600 },
    konnectivity: { enabled: true, agent: { resources: res('15m', '40Mi') }, gateway: { resources: res('25m', '96Mi') } },
    metricsServer: { konnectivitySidecar: { enabled: true, resources: res('5m', '24Mi') } },
  },
  'uninstall cleanup off': { uninstall: { cleanup: false } },
  'stream on another port': { agent: { stream: { port: 9700 } } },
  'stream off': { agent: { stream: { enabled: false } } },
  // GitOps: the operator's Secret (no lookup there, so a generated token would change on every render).
  'stream token from an existing Secret, required': { agent: { stream: { existingSecret: 'my-stream-token', required: true } }, konnectivity: { enabled: true } },
  'image and pull secrets': { image: { repository: 'localhost/aks-mesh', tag: '0.1.0-abcdef123456', pullPolicy: 'Never' }, imagePullSecrets: [{ name: 'regcred' }] },
};

type Container = k8s.V1Container;
type PodSpec = k8s.V1PodSpec;

/** Pod specs of the rendered workloads (DaemonSet, Deployment, Job), by kind/name. */
function podSpecs(manifests: Manifest[]): Map<string, PodSpec> {
  const specs = new Map<string, PodSpec>();
  for (const m of manifests) {
    const spec = (m as { spec?: { template?: { spec?: PodSpec } } }).spec?.template?.spec;
    if (spec) specs.set(`${m.kind}/${m.metadata.name}`, spec);
  }
  return specs;
}

/** Problems with a container's hardening and resources, each naming the container ([] when none). */
function hardeningProblems(where: string, c: Container, pod: PodSpec): string[] {
  const problems: string[] = [];
  const sc = c.securityContext ?? {};
  const at = `${where} container ${c.name}`;
  const seccomp = sc.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type;
  if (seccomp !== 'RuntimeDefault') problems.push(`${at}: seccompProfile ${seccomp}`);
  if (sc.readOnlyRootFilesystem !== true) problems.push(`${at}: readOnlyRootFilesystem not true`);
  if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation not false`);
  if (sc.privileged) problems.push(`${at}: privileged`);
  if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]') problems.push(`${at}: capabilities.drop ${JSON.stringify(sc.capabilities?.drop)}`);
  const extra = (sc.capabilities?.add ?? []).filter((cap) => cap !== 'NET_ADMIN');
  if (extra.length) problems.push(`${at}: capabilities beyond NET_ADMIN: ${extra.join(', ')}`);
  if (!c.resources?.requests || !c.resources.limits) problems.push(`${at}: resources ${JSON.stringify(c.resources)}`);
  return problems;
}

function workloadProblems(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  for (const [where, pod] of podSpecs(manifests)) {
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) problems.push(...hardeningProblems(where, c, pod));
    if (pod.nodeSelector?.['kubernetes.io/os'] !== 'linux') problems.push(`${where}: nodeSelector ${JSON.stringify(pod.nodeSelector)} lacks kubernetes.io/os: linux`);
  }
  return problems;
}

function labelProblems(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  for (const m of manifests) {
    const missing = STANDARD_LABELS.filter((l) => !m.metadata.labels?.[l]);
    if (missing.length) problems.push(`${m.kind}/${m.metadata.name}: no ${missing.join(', ')}`);
    const spec = (m as { spec?: { selector?: { matchLabels?: Record<string, string> }; template?: { metadata?: { labels?: Record<string, string> } } } }).spec;
    if (spec?.selector) {
      const keys = Object.keys(spec.selector.matchLabels ?? {}).sort();
      if (JSON.stringify(keys) !== JSON.stringify(SELECTOR_LABELS)) problems.push(`${m.kind}/${m.metadata.name}: selector on ${keys.join(', ')}`);
      const missingInPod = STANDARD_LABELS.filter((l) => !spec.template?.metadata?.labels?.[l]);
      if (missingInPod.length) problems.push(`${m.kind}/${m.metadata.name} pod template: no ${missingInPod.join(', ')}`);
    }
  }
  return problems;
}

/** The container of the metrics-server patch (the ConfigMap's patch.yaml). */
function metricsServerPatch(manifests: Manifest[]): { patch: string; container: Container } | null {
  const cm = manifests.find((m) => m.kind === 'ConfigMap' && m.metadata.name === 'aks-mesh-metrics-server-sidecar') as (Manifest & { data: Record<string, string> }) | undefined;
  if (!cm) return null;
  const patch = cm.data['patch.yaml'];
  const parsed = parseYaml(patch) as { spec: { template: { spec: PodSpec } } };
  return { patch, container: parsed.spec.template.spec.containers[0] };
}

describe('Helm chart on kube-apiserver 1.20', { skip }, () => {
  let cluster: TestCluster;
  let kubeconfig: string;
  let h: (args: string[]) => Promise<Run>;
  // Generated, so parallel runs and leftovers never collide; also proves nothing assumes "aks-mesh".
  const namespace = `am-chart-${randomBytes(3).toString('hex')}`;
  const release = 'mesh';
  let installed = false;
  const valuesFiles = new Map<string, string>();

  const hk = (args: string[]) => h([...args, '--kubeconfig', kubeconfig]);
  const template = async (values: string[], extra: string[] = []): Promise<Manifest[]> => {
    const r = await h(['template', release, CHART, '--namespace', namespace, ...values, ...extra]);
    assert.equal(r.code, 0, `helm template ${values.join(' ')}: ${r.stderr}`);
    return parseManifests(r.stdout);
  };
  const setFile = (name: string) => ['-f', valuesFiles.get(name) as string];

  before(async () => {
    cluster = await TestCluster.start();
    kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'helm.kubeconfig'));
    h = helmIn(cluster.dir);
    for (const [i, [name, values]] of Object.entries(VALUE_SETS).entries()) {
      const file = join(cluster.dir, `values-${i}.json`);
      writeFileSync(file, JSON.stringify(values));
      valuesFiles.set(name, file);
    }
    // The dry-runs of namespaced objects need their namespace; the metrics-server patch a Deployment to patch.
    const ns = await cluster.kubectl(['create', 'namespace', namespace]);
    assert.equal(ns.code, 0, ns.stderr);
  });

  after(async () => {
    // Uninstall even when a test failed half-way; the cluster (etcd, API server, temp dir) goes by pid.
    if (installed && cluster) await hk(['uninstall', release, '--namespace', namespace, '--wait=false', '--no-hooks']).catch(() => undefined);
    await cluster?.stop();
  });

  test('helm lint --strict passes with the default values and with every documented option', async () => {
    for (const name of Object.keys(VALUE_SETS)) {
      const r = await h(['lint', '--strict', CHART, ...setFile(name)]);
      assert.equal(r.code, 0, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, name);
    }
  });

  test('helm template with every value set: each object is accepted by kubectl apply --dry-run=server, labelled, hardened and Linux-only', async () => {
    for (const name of Object.keys(VALUE_SETS)) {
      const objects = await template(setFile(name));
      assert.deepEqual(labelProblems(objects), [], `${name}: standard labels`);
      assert.deepEqual(workloadProblems(objects), [], `${name}: hardening, resources and nodeSelector`);
      const patch = metricsServerPatch(objects);
      if (patch) assert.deepEqual(hardeningProblems('metrics-server patch', patch.container, {} as PodSpec).filter((p) => !p.includes('seccompProfile')), [], name);
      const r = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: objects.map((o) => JSON.stringify(o)).join('\n') });
      assert.equal(r.code, 0, `${name}: kubectl apply --dry-run=server refused:\n${r.stderr}`);
      const accepted = r.stdout.split('\n').filter((l) => /\(server dry run\)$/.test(l));
      assert.equal(accepted.length, objects.length, `${name}: every object accepted (${kinds(objects).join(', ')}):\n${r.stdout}`);
    }
    // The options show where they should.
    const byName = async (name: string) => template(setFile(name));
    const ds = (objects: Manifest[]) => podSpecs(objects).get('DaemonSet/aks-mesh-agent') as PodSpec;
    assert.deepEqual(ds(await byName('spawn mode')).containers.map((c) => c.name), ['agent'], 'spawn: one container');
    assert.deepEqual(ds(await byName('defaults')).containers.map((c) => c.name), ['wireguard-go', 'agent'], 'attach (default): wireguard-go sidecar');
    const scheduling = ds(await byName('extra nodeSelector, tolerations and affinity'));
    assert.deepEqual(scheduling.nodeSelector, { 'kubernetes.io/os': 'linux', 'node-pool': 'mesh' }, 'the Linux selector merged with the user\'s');
    assert.ok(scheduling.tolerations?.some((t) => t.key === 'dedicated'));
    assert.ok(scheduling.tolerations?.some((t) => t.key === AGENT_NOT_READY_TAINT.key), 'the not-ready taint is tolerated whatever agent.tolerations says');
    assert.equal((await byName('uninstall cleanup off')).some((m) => m.kind === 'Job'), false, 'no hook Job with uninstall.cleanup=false');
    assert.deepEqual(kinds((await byName('konnectivity stand-in')).filter((m) => m.kind === 'Deployment')), ['Deployment/konn-standin']);
  });

  test('values.schema.json refuses a bad port, CIDR, mode or mark, naming the value', async () => {
    const cases: Array<[string, RegExp]> = [
      ['mesh.listenPort=70000', /mesh\.listenPort: Must be less than or equal to 65535/],
      ['agent.metricsPort=0', /agent\.metricsPort: Must be greater than or equal to 1/],
      ['konnectivity.gateway.listenPort=65536', /konnectivity\.gateway\.listenPort: Must be less than or equal to 65535/],
      ['mesh.cidr=100.96.0.0/33', /mesh\.cidr: Does not match pattern/],
      ['mesh.cidr=100.96.0.300/16', /mesh\.cidr: Does not match pattern/],
      ['mesh.serviceCIDRs={fd00::/129}', /mesh\.serviceCIDRs\.0: Does not match pattern/],
      ['mesh.clusterCIDRs={10.244.0.0/16,fd00:::1/64}', /mesh\.clusterCIDRs\.1: Does not match pattern/],
      ['agent.wireguardMode=sidecar', /agent\.wireguardMode: agent\.wireguardMode must be one of the following: "attach", "spawn"/],
      ['agent.logFormat=xml', /agent\.logFormat: agent\.logFormat must be one of the following: "json", "text"/],
      ['agent.logLevel=trace', /agent\.logLevel: agent\.logLevel must be one of the following/],
      ['mesh.fwmark=0x4000', /mesh\.fwmark: mesh\.fwmark must be one of the following: "0x1"/],
      ['mesh.fwmark=0x8000', /mesh\.fwmark: mesh\.fwmark must be one of the following/],
      ['mesh.fwmark=0x0', /mesh\.fwmark: mesh\.fwmark must be one of the following/],
      ['mesh.fwmark=0x3000', /mesh\.fwmark: mesh\.fwmark must be one of the following/],
      ['mesh.table=254', /mesh\.table: Must not validate the schema/],
      ['mesh.rulePriority=32766', /mesh\.rulePriority: Must be less than or equal to 32765/],
      ['agent.wireguardmode=spawn', /agent: Additional property wireguardmode is not allowed/],
      ['agent.stream.port=70000', /agent\.stream\.port: Must be less than or equal to 65535/],
      ['agent.stream.enabled=maybe', /agent\.stream\.enabled: Invalid type/],
      ['agent.stream.required=maybe', /agent\.stream\.required: Invalid type/],
      ['agent.stream.existingSecret=My_Secret', /agent\.stream\.existingSecret: Does not match pattern/],
      // A read-write DirectoryOrCreate hostPath: never the node's root or configuration.
      ['agent.keyDir=/', /agent\.keyDir: Does not match pattern/],
      ['agent.keyDir=/etc', /agent\.keyDir: Does not match pattern/],
      ['agent.keyDir=/var/lib/../../etc', /agent\.keyDir: Does not match pattern/],
      ['agent.keyDir=/var/lib/kubelet', /agent\.keyDir: Must not validate the schema/],
      // Spliced into the admission policy's CEL list: nothing but NAMESPACE/NAME.
      ["gatewayServiceAccounts={kube-system/x']}", /gatewayServiceAccounts\.0: Does not match pattern/],
    ];
    for (const [set, message] of cases) {
      for (const command of [['lint', '--strict', CHART], ['template', release, CHART]]) {
        const r = await h([...command, '--set', set]);
        assert.notEqual(r.code, 0, `helm ${command[0]} --set ${set} should fail`);
        assert.match(r.stdout + r.stderr, message, `helm ${command[0]} --set ${set}`);
      }
    }
    // Both listen on the node (hostNetwork): the same port could never start. (A template `fail`:
    // helm install and template refuse; helm lint only logs it.)
    const clash = await h(['template', release, CHART, '--set', 'agent.stream.port=9586']);
    assert.notEqual(clash.code, 0);
    assert.match(clash.stderr, /agent\.stream\.port \(9586\) must differ from agent\.metricsPort \(9586\)/);
    // The refused marks are the agent's own refusals; its default and other free bits pass.
    for (const ok of ['mesh.fwmark=0x2000', 'mesh.fwmark=0x10000', 'mesh.cidr=fd00:96::/48', 'agent.keyDir=/var/lib/mesh-keys', 'agent.keyDir=/run/aks-mesh']) {
      const r = await h(['template', release, CHART, '--set', ok]);
      assert.equal(r.code, 0, `${ok}: ${r.stderr}`);
    }
  });

  test('the agent DaemonSet: no API token in the wireguard-go container, only NET_ADMIN, seccomp, read-only root, Linux nodes, resources', async () => {
    for (const name of ['defaults', 'spawn mode']) {
      const pod = podSpecs(await template(setFile(name))).get('DaemonSet/aks-mesh-agent') as PodSpec;
      assert.equal(pod.automountServiceAccountToken, false, `${name}: no token mounted by default`);
      assert.equal(pod.hostNetwork, true);
      const token = '/var/run/secrets/kubernetes.io/serviceaccount';
      const agent = pod.containers.find((c) => c.name === 'agent') as Container;
      assert.deepEqual(agent.volumeMounts?.filter((m) => m.mountPath === token).map((m) => [m.name, m.readOnly]), [['kube-api-access', true]], `${name}: the agent gets the token`);
      const projected = pod.volumes?.find((v) => v.name === 'kube-api-access')?.projected?.sources ?? [];
      assert.ok(projected.some((s) => s.serviceAccountToken?.path === 'token'));
      assert.ok(projected.some((s) => s.configMap?.name === 'kube-root-ca.crt' && s.configMap.items?.[0]?.key === 'ca.crt'));
      assert.ok(projected.some((s) => s.downwardAPI?.items?.[0]?.path === 'namespace'));
      for (const c of pod.containers) {
        assert.deepEqual(c.securityContext?.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] }, `${name} ${c.name}`);
        assert.equal(c.securityContext?.seccompProfile?.type, 'RuntimeDefault');
        assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
        assert.equal(c.securityContext?.runAsUser, 0, 'root, documented: netlink and /dev/net/tun');
        assert.ok(c.resources?.requests && c.resources.limits, `${name} ${c.name}: resources`);
        // Where the program writes, a volume: the socket folder (and the key folder, /tmp for the agent).
        assert.ok(c.volumeMounts?.some((m) => m.mountPath === '/var/run/wireguard'), `${name} ${c.name}: /var/run/wireguard writable`);
      }
      const wg = pod.containers.find((c) => c.name === 'wireguard-go');
      if (wg) {
        assert.ok(!wg.volumeMounts?.some((m) => m.mountPath.startsWith('/var/run/secrets')), 'no service-account token in the wireguard-go container');
        assert.ok(wg.volumeMounts?.some((m) => m.mountPath === '/dev/net/tun'));
      } else {
        assert.ok(agent.volumeMounts?.some((m) => m.mountPath === '/dev/net/tun'), 'spawn: the agent opens /dev/net/tun');
      }
      assert.equal(pod.volumes?.find((v) => v.name === 'dev-net-tun')?.hostPath?.type, 'CharDevice');
      assert.equal(pod.nodeSelector?.['kubernetes.io/os'], 'linux');
    }
  });

  test("the agent's live stream: on the node's loopback, its token from a generated Secret, only in the agent container; off when disabled", async () => {
    const envOf = (c: Container | undefined) => new Map((c?.env ?? []).map((e) => [e.name, e]));
    const tokens: string[] = [];
    for (const [name, port] of [['defaults', 9587], ['stream on another port', 9700], ['spawn mode', 9587]] as const) {
      const objects = await template(setFile(name));
      const secret = objects.find((m) => m.kind === 'Secret' && m.metadata.name === 'aks-mesh-stream-token') as (Manifest & { data?: Record<string, string> }) | undefined;
      assert.ok(secret, `${name}: Secret aks-mesh-stream-token: ${kinds(objects).join(', ')}`);
      assert.equal(secret.metadata.namespace, namespace);
      const token = Buffer.from(secret.data?.token ?? '', 'base64').toString();
      assert.match(token, /^[A-Za-z0-9]{48}$/, `${name}: a 48-character random token`);
      tokens.push(token);
      const pod = podSpecs(objects).get('DaemonSet/aks-mesh-agent') as PodSpec;
      const env = envOf(pod.containers.find((c) => c.name === 'agent'));
      assert.equal(env.get('AKS_MESH_STREAM_ADDRESS')?.value, `127.0.0.1:${port}`, `${name}: loopback only`);
      assert.equal(env.get('AKS_MESH_STREAM_REQUIRED')?.value, 'false', `${name}: a port taken on the node leaves the agent running without its stream`);
      assert.deepEqual(env.get('AKS_MESH_STREAM_TOKEN')?.valueFrom?.secretKeyRef, { name: 'aks-mesh-stream-token', key: 'token' });
      assert.equal(env.get('AKS_MESH_STREAM_TOKEN')?.value, undefined, 'never the token itself in the pod spec');
      assert.equal(env.get('AKS_MESH_LOG_FORMAT')?.value, 'json', 'JSON logs in the cluster');
      // Nobody else gets it: not wireguard-go, not the uninstall hook's cleanup agents.
      for (const [where, spec] of podSpecs(objects)) {
        for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
          if (where === 'DaemonSet/aks-mesh-agent' && c.name === 'agent') continue;
          assert.ok(!(c.env ?? []).some((e) => e.valueFrom?.secretKeyRef?.name === 'aks-mesh-stream-token'), `${where} ${c.name} has the stream token`);
        }
      }
      assert.doesNotMatch(JSON.stringify(objects.filter((m) => m.kind !== 'Secret')), new RegExp(token), 'the token appears only in its Secret');
    }
    assert.equal(new Set(tokens).size, tokens.length, 'a fresh token per install (none baked into the chart)');
    const off = await template(setFile('stream off'));
    assert.ok(!off.some((m) => m.kind === 'Secret'), 'stream off: no Secret');
    const env = envOf((podSpecs(off).get('DaemonSet/aks-mesh-agent') as PodSpec).containers.find((c) => c.name === 'agent'));
    assert.equal(env.get('AKS_MESH_STREAM_ADDRESS')?.value, 'off');
    assert.equal(env.has('AKS_MESH_STREAM_TOKEN'), false);

    // GitOps: the operator's Secret, none rendered (a render without lookup would otherwise make a new
    // token each time, which running agents do not see); required makes a taken port stop the agent.
    const gitops = await template(setFile('stream token from an existing Secret, required'));
    assert.ok(!gitops.some((m) => m.kind === 'Secret'), 'no generated Secret beside the existing one');
    const specs = podSpecs(gitops);
    const agentEnv = envOf((specs.get('DaemonSet/aks-mesh-agent') as PodSpec).containers.find((c) => c.name === 'agent'));
    assert.deepEqual(agentEnv.get('AKS_MESH_STREAM_TOKEN')?.valueFrom?.secretKeyRef, { name: 'my-stream-token', key: 'token' });
    assert.equal(agentEnv.get('AKS_MESH_STREAM_REQUIRED')?.value, 'true');
    const konn = specs.get('Deployment/konnectivity-agent') as PodSpec;
    assert.deepEqual(konn.volumes?.find((v) => v.name === 'aks-mesh-gateway-stream')?.secret, { secretName: 'my-stream-token', defaultMode: 0o400, items: [{ key: 'token', path: 'token' }] }, 'the gateway sidecar: the same Secret');
    // Mounted into the gateway container only, never the third-party Konnectivity agent.
    const mounting = konn.containers.filter((c) => c.volumeMounts?.some((m) => m.name === 'aks-mesh-gateway-stream')).map((c) => c.name);
    assert.deepEqual(mounting, ['aks-mesh-gateway']);
    const notes = await hk(['install', `${release}-notes`, CHART, '--namespace', namespace, '--dry-run=client', ...setFile('stream token from an existing Secret, required')]);
    assert.equal(notes.code, 0, notes.stderr);
    for (const line of [`get secret my-stream-token -o jsonpath`, 'The agents read the token only when they start: after Secret my-stream-token changes, restart them', `kubectl -n ${namespace} rollout restart ds/aks-mesh-agent`, `kubectl -n ${namespace} rollout restart deploy/konnectivity-agent`]) {
      assert.ok(notes.stdout.includes(line), `NOTES say: ${line}\n${notes.stdout}`);
    }
  });

  test('the chart\'s gateway sidecar is the container and volumes `aks-mesh gateway-patch` prints (gateway/sidecar.ts)', async () => {
    for (const name of ['konnectivity with the gateway sidecar', 'konnectivity stand-in', 'custom CIDRs, marks and ports (IPv6 mesh)', 'resources', 'stream off', 'stream token from an existing Secret, required']) {
      const values = VALUE_SETS[name] as {
        konnectivity?: { gateway?: { podCIDRs?: string[]; listenPort?: number; hostPort?: boolean; resources?: unknown } };
        mesh?: Record<string, unknown>;
        agent?: { stream?: { enabled?: boolean; existingSecret?: string }; logLevel?: 'error' | 'warn' | 'info' | 'debug'; logFormat?: 'json' | 'text' };
      };
      // The chart's Deployment is in the release namespace, so its sidecar's stream takes the agents' token Secret (off with the stream).
      const streamTokenSecret = values.agent?.stream?.enabled === false ? undefined : (values.agent?.stream?.existingSecret ?? 'aks-mesh-stream-token');
      const objects = await template([...setFile(name), '--set', 'konnectivity.enabled=true', '--set', 'image.tag=sidecar-test']);
      const deployment = [...podSpecs(objects)].find(([k]) => k.startsWith('Deployment/'))?.[1] as PodSpec;
      const rendered = deployment.containers.find((c) => c.name === 'aks-mesh-gateway');
      // values.yaml's defaults, then the set's: every one the agents get that the gateway must share.
      const mesh = { cidr: '100.96.0.0/16', serviceCIDRs: ['10.0.0.0/16'], clusterCIDRs: ['10.244.0.0/16'], nodeCIDRs: ['10.224.0.0/12'], fwmark: '0x2000', table: 51820, rulePriority: 5280, keepalive: 25, resyncSeconds: 60, ...values.mesh } as {
        cidr: string;
        serviceCIDRs: string[];
        clusterCIDRs: string[];
        nodeCIDRs: string[];
        fwmark: string;
        table: number;
        rulePriority: number;
        keepalive: number;
        resyncSeconds: number;
      };
      const logLevel = values.agent?.logLevel ?? 'info';
      const logFormat = values.agent?.logFormat ?? 'json';
      const gw = values.konnectivity?.gateway ?? {};
      const podCIDRs = gw.podCIDRs ?? mesh.clusterCIDRs;
      const args = ['gateway-patch', '--image', 'ghcr.io/aks-mesh/aks-mesh:sidecar-test', '--pod-cidr', podCIDRs.join(','), '--mesh-cidr', mesh.cidr, '--listen-port', String(gw.listenPort ?? 51821), '-o', 'json'];
      for (const [flag, list] of [['--service-cidr', mesh.serviceCIDRs], ['--cluster-cidr', mesh.clusterCIDRs], ['--node-cidr', mesh.nodeCIDRs]] as const) args.push(flag, list.join(','));
      args.push('--fwmark', mesh.fwmark, '--table', String(mesh.table), '--rule-priority', String(mesh.rulePriority), '--keepalive', String(mesh.keepalive), '--resync', String(mesh.resyncSeconds), '--log-level', logLevel, '--log-format', logFormat);
      if (gw.hostPort === false) args.push('--no-host-port');
      if (streamTokenSecret) args.push('--stream-token-secret', streamTokenSecret);
      const printed = await run(process.execPath, [CLI, ...args], {}, 60_000);
      assert.equal(printed.code, 0, printed.stderr);
      const patch = JSON.parse(printed.stdout) as { spec: { template: { spec: { containers: Container[]; volumes: k8s.V1Volume[] } } } };
      const [expected] = patch.spec.template.spec.containers;
      // The chart's resources are a value (defaults: the sidecar's); the patch prints the defaults.
      const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
      if (gw.resources) assert.deepEqual(rendered?.resources, gw.resources, `${name}: konnectivity.gateway.resources`);
      assert.deepEqual(plain({ ...rendered, resources: undefined }), plain({ ...expected, resources: undefined }), `${name}: the chart renders the patch's container`);
      if (!gw.resources) assert.deepEqual(rendered?.resources, expected.resources);
      const volumes = deployment.volumes?.filter((v) => v.name.startsWith('aks-mesh-gateway-'));
      assert.deepEqual(plain(volumes), plain(patch.spec.template.spec.volumes), `${name}: and its volumes`);
      // And the library function the command prints.
      const fromLibrary = gatewaySidecar({ image: 'ghcr.io/aks-mesh/aks-mesh:sidecar-test', podCIDRs, meshCIDR: mesh.cidr, listenPort: gw.listenPort, hostPort: gw.hostPort, serviceCIDRs: mesh.serviceCIDRs, clusterCIDRs: mesh.clusterCIDRs, nodeCIDRs: mesh.nodeCIDRs, streamTokenSecret, fwmark: mesh.fwmark, table: mesh.table, rulePriority: mesh.rulePriority, keepalive: mesh.keepalive, resync: mesh.resyncSeconds, logLevel, logFormat });
      assert.deepEqual(plain({ ...fromLibrary.container, resources: undefined }), plain({ ...rendered, resources: undefined }));
      assert.equal(deployment.serviceAccountName, 'aks-mesh-gateway', 'the gateway\'s own RBAC');
    }
  });

  test("a non-default mesh.fwmark, mesh.keepalive and the log settings reach the gateway sidecar as they reach the agents (audit12 #3)", async () => {
    const objects = await template(['--set', 'konnectivity.enabled=true', '--set', 'mesh.fwmark=0x1000', '--set', 'mesh.keepalive=10', '--set', 'mesh.table=1234', '--set', 'mesh.rulePriority=6000', '--set', 'mesh.resyncSeconds=30', '--set', 'agent.logLevel=debug', '--set', 'agent.logFormat=text']);
    const specs = podSpecs(objects);
    const envOf = (c: Container | undefined) => Object.fromEntries((c?.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
    const gateway = envOf((specs.get('Deployment/konnectivity-agent') as PodSpec).containers.find((c) => c.name === 'aks-mesh-gateway'));
    const agent = envOf((specs.get('DaemonSet/aks-mesh-agent') as PodSpec).containers.find((c) => c.name === 'agent'));
    const shared = ['AKS_MESH_FWMARK', 'AKS_MESH_KEEPALIVE', 'AKS_MESH_TABLE', 'AKS_MESH_RULE_PRIORITY', 'AKS_MESH_RESYNC', 'AKS_MESH_LOG_LEVEL', 'AKS_MESH_LOG_FORMAT', 'AKS_MESH_MESH_CIDR', 'AKS_MESH_SERVICE_CIDR', 'AKS_MESH_CLUSTER_CIDR', 'AKS_MESH_NODE_CIDR'];
    assert.deepEqual(shared.map((k) => gateway[k]), ['0x1000', '10', '1234', '6000', '30', 'debug', 'text', '100.96.0.0/16', '10.0.0.0/16', '10.244.0.0/16', '10.224.0.0/12']);
    assert.deepEqual(shared.map((k) => gateway[k]), shared.map((k) => agent[k]), 'the gateway and the agents agree');
  });

  test('a stored stream token the agents would refuse (under 16 characters, no key token) fails the install naming the Secret; a good one is kept (audit12 #9)', async () => {
    // lookup reads the cluster only with --dry-run=server (or a real install): in a namespace of its own.
    const ns = `${namespace}-tok`;
    const created = await cluster.kubectl(['create', 'namespace', ns]);
    assert.equal(created.code, 0, created.stderr);
    const secret = async (name: string, data: Record<string, string>) => {
      const r = await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: data }) });
      assert.equal(r.code, 0, r.stderr);
    };
    const render = (extra: string[] = []) => hk(['template', release, CHART, '--namespace', ns, '--dry-run=server', ...extra]);
    await secret('aks-mesh-stream-token', { token: 'short' });
    const short = await render();
    assert.notEqual(short.code, 0, 'a 5-character token is refused');
    assert.match(short.stderr, new RegExp(`Secret ${ns}/aks-mesh-stream-token key "token" holds 5 characters; the agents refuse a stream token under 16 and would crash-loop`));
    assert.match(short.stderr, new RegExp(`or delete the Secret \\(kubectl -n ${ns} delete secret aks-mesh-stream-token\\)`));
    await secret('aks-mesh-stream-token', { token: 'a-good-token-of-32-characters-00' });
    const good = await render();
    assert.equal(good.code, 0, good.stderr);
    const kept = parseManifests(good.stdout).find((m) => m.kind === 'Secret') as Manifest & { data: { token: string } };
    assert.equal(Buffer.from(kept.data.token, 'base64').toString(), 'a-good-token-of-32-characters-00', 'lookup keeps a good token');
    // agent.stream.existingSecret: checked the same way where lookup can read it.
    await secret('gitops-token', { token: 'tiny' });
    const mine = await render(['--set', 'agent.stream.existingSecret=gitops-token']);
    assert.notEqual(mine.code, 0);
    assert.match(mine.stderr, new RegExp(`Secret ${ns}/gitops-token key "token" holds 4 characters.*\\(agent\\.stream\\.existingSecret names it\\)`));
    await secret('no-key', { other: 'a-good-token-of-32-characters-00' });
    const noKey = await render(['--set', 'agent.stream.existingSecret=no-key']);
    assert.notEqual(noKey.code, 0);
    assert.match(noKey.stderr, new RegExp(`Secret ${ns}/no-key has no key "token"`));
    // Not there yet (created by another tool after the install): nothing to check, the install goes on.
    const absent = await render(['--set', 'agent.stream.existingSecret=made-later']);
    assert.equal(absent.code, 0, absent.stderr);
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  test('the Konnectivity pod: the gateway\'s token only in the gateway container, one pod per node, and a gateway port the agents do not hold', async () => {
    const objects = await template(setFile('konnectivity with the gateway sidecar'));
    const deployment = objects.find((m) => m.kind === 'Deployment') as Manifest & { spec: { selector: { matchLabels: Record<string, string> }; strategy: unknown; template: { spec: PodSpec } } };
    const pod = deployment.spec.template.spec;
    // The gateway's token may write Gateways: the Konnectivity agent (a third party's image) never gets it.
    assert.equal(pod.automountServiceAccountToken, false, 'no token mounted into every container');
    const byName = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
    const tokensOf = (c: Container) => (c.volumeMounts ?? []).flatMap((m) => (byName.get(m.name)?.projected?.sources ?? []).filter((src) => src.serviceAccountToken).map((src) => ({ mountPath: m.mountPath, audience: src.serviceAccountToken?.audience })));
    const konn = pod.containers.find((c) => c.name === 'konnectivity-agent') as Container;
    const gateway = pod.containers.find((c) => c.name === 'aks-mesh-gateway') as Container;
    assert.deepEqual(tokensOf(konn), [{ mountPath: '/var/run/secrets/tokens', audience: 'system:konnectivity-server' }], 'the Konnectivity agent: its Konnectivity-server token only');
    assert.ok(konn.volumeMounts?.some((m) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount' && byName.get(m.name)?.projected?.sources?.some((src) => src.configMap?.name === 'kube-root-ca.crt')), 'and the CA its default --ca-cert names');
    assert.deepEqual(tokensOf(gateway), [{ mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', audience: undefined }], 'the gateway: its API token');
    // Two gateways on one node would write the same Gateway (named after the node).
    assert.deepEqual(pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution, [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: deployment.spec.selector.matchLabels } }]);
    assert.deepEqual(deployment.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } }, 'a rollout where every node has a pod does not wait for a node forever');

    // The agents hold mesh.listenPort on every node's address: the same hostPort fits on no node.
    // (A template `fail`: helm install and template refuse; helm lint only logs it.)
    for (const set of ['konnectivity.gateway.listenPort=51820', 'mesh.listenPort=51821']) {
      const r = await h(['template', release, CHART, '--set', 'konnectivity.enabled=true', '--set', set]);
      assert.notEqual(r.code, 0, `${set} should be refused`);
      assert.match(r.stdout + r.stderr, /konnectivity\.gateway\.listenPort \((51820|51821)\) must differ from mesh\.listenPort \((51820|51821)\) while konnectivity\.gateway\.hostPort is true/, set);
    }
    const noHostPort = await h(['template', release, CHART, '--set', 'konnectivity.enabled=true', '--set', 'konnectivity.gateway.listenPort=51820', '--set', 'konnectivity.gateway.hostPort=false']);
    assert.equal(noHostPort.code, 0, `without hostPort the same number is the pod's own: ${noHostPort.stderr}`);
  });

  test('the metrics-server sidecar patch applies to a metrics-server Deployment (dry run) and registers the pod IP', async () => {
    const objects = await template([...setFile('metrics-server sidecar'), '--set', `metricsServer.konnectivitySidecar.namespace=${namespace}`]);
    const found = metricsServerPatch(objects);
    assert.ok(found, 'the ConfigMap with patch.yaml is rendered');
    assert.ok(found.container.args?.includes('--agent-identifiers=ipv4=$(POD_IP)'), JSON.stringify(found.container.args));
    assert.equal(found.container.env?.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
    // A stand-in for metrics-server's Deployment (its image cannot be fetched here; the patch does not care).
    const standIn = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'metrics-server', namespace },
      spec: {
        selector: { matchLabels: { k8s_app: 'metrics-server' } },
        template: { metadata: { labels: { k8s_app: 'metrics-server' } }, spec: { containers: [{ name: 'metrics-server', image: 'localhost/metrics-server:test' }] } },
      },
    };
    const created = await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(standIn) });
    assert.equal(created.code, 0, created.stderr);
    const patched = await cluster.kubectl(['-n', namespace, 'patch', 'deployment', 'metrics-server', '--dry-run=server', '--patch', found.patch, '-o', 'json']);
    assert.equal(patched.code, 0, patched.stderr);
    const result = JSON.parse(patched.stdout) as { spec: { template: { spec: PodSpec } } };
    assert.deepEqual(result.spec.template.spec.containers.map((c) => c.name).sort(), ['konnectivity-agent', 'metrics-server'], 'metrics-server keeps its container; the sidecar is added');
    // The NOTES print the command that applies it.
    const notes = await h(['template', release, CHART, '--namespace', namespace, ...setFile('metrics-server sidecar'), '--show-only', 'templates/metrics-server-sidecar.yaml']);
    assert.match(notes.stdout, /kubectl -n monitoring patch deployment metrics-server --patch/);
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
    // ... and how to check the mesh, and what uninstall does and keeps.
    for (const line of [`kubectl -n ${namespace} rollout status ds/aks-mesh-agent`, 'kubectl get mp', 'kubectl get mgw', 'aks-mesh status', `kubectl -n ${namespace} logs ds/aks-mesh-agent -c agent`, 'aks-mesh agent --cleanup', 'kubectl delete crd peers.aksmesh.io gateways.aksmesh.io', `kubectl -n ${namespace} get secret aks-mesh-stream-token -o jsonpath='{.data.token}' | base64 -d > stream.token`, `kubectl -n ${namespace} port-forward`, 'aks-mesh inspect --url ws://127.0.0.1:9587 --token-file stream.token --watch',
      // The observation side (issue 12): health at a glance, one node's own view through its control socket, the live page.
      'kubectl get mp -o wide', 'aks-mesh dashboard', `kubectl -n ${namespace} exec "$POD" -c agent -- aks-mesh status --local`, `kubectl -n ${namespace} exec "$POD" -c agent -- aks-mesh diff`, `kubectl -n ${namespace} exec "$POD" -c agent -- aks-mesh reconcile`,
      'GitOps caveat', 'agent.stream.existingSecret']) {
      assert.ok(r.stdout.includes(line), `NOTES say: ${line}\n${r.stdout}`);
    }

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

  test('helm upgrade keeps the stream token the agents and operators hold (read back with lookup)', async () => {
    assert.ok(installed, 'needs the release from the install test');
    const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
    const read = async () => (await core.readNamespacedSecret({ name: 'aks-mesh-stream-token', namespace })).data?.token ?? '';
    const before = await read();
    assert.match(Buffer.from(before, 'base64').toString(), /^[A-Za-z0-9]{48}$/);
    const r = await hk(['upgrade', release, CHART, '--namespace', namespace, '--reuse-values', '--wait=false', '--timeout', '2m']);
    assert.equal(r.code, 0, `helm upgrade:\n${r.stdout}\n${r.stderr}`);
    assert.equal(await read(), before, 'the same token after the upgrade');
  });

  test('where the API is served, helm template renders the policy and binding of config/admission, and the agent\'s node-patch grant with it', async () => {
    const r = await h(['template', release, CHART, '--namespace', namespace, '--api-versions', VAP_API]);
    assert.equal(r.code, 0, r.stderr);
    const all = parseManifests(r.stdout);
    // The grant comes only with the policy that narrows it to the agent's own taint.
    const grant = all.filter((m) => m.metadata.name === NODE_TAINT_ROLE);
    assert.deepEqual(kinds(grant), [`ClusterRole/${NODE_TAINT_ROLE}`, `ClusterRoleBinding/${NODE_TAINT_ROLE}`]);
    // The same objects but for the labels: the chart's are its standard set, config/'s the two fixed ones.
    assert.deepEqual(labelProblems(all), [], 'standard labels on the policy and grant too');
    const unlabelled = (ms: unknown[]) => (ms as Manifest[]).map((m) => ({ ...m, metadata: { ...m.metadata, labels: undefined } }));
    assert.deepEqual(unlabelled(grant), unlabelled(agentNodeTaintGrant(namespace)));
    const grantFile = parseManifests(readFileSync(GRANT_FILE, 'utf8').replaceAll(`namespace: ${CONFIG_NAMESPACE}`, `namespace: ${namespace}`));
    assert.deepEqual(unlabelled(grant), unlabelled(grantFile), `${GRANT_FILE} is what the chart renders`);
    const rendered = all.filter((m) => m.kind.startsWith('ValidatingAdmissionPolicy'));
    assert.deepEqual(kinds(rendered), [`ValidatingAdmissionPolicy/${NODE_BOUND_POLICY}`, `ValidatingAdmissionPolicyBinding/${NODE_BOUND_POLICY}`]);

    // The shipped file, with the release namespace where it names the service accounts.
    const text = readFileSync(POLICY_FILE, 'utf8');
    const prefix = `system:serviceaccount:${CONFIG_NAMESPACE}:`;
    assert.ok(text.includes(prefix), `${POLICY_FILE} names the service accounts as ${prefix}*`);
    const shipped = parseManifests(text.replaceAll(prefix, `system:serviceaccount:${namespace}:`));
    assert.deepEqual(unlabelled(rendered), unlabelled(shipped));
    // And both are what mesh/manifests.ts generates for that namespace (the file is not stale).
    assert.deepEqual(unlabelled(rendered), unlabelled(nodeBoundWritesPolicy(namespace)));

    // Further gateway accounts (gateway-patch --rbac) are node-bound too, exactly as the library says.
    const accounts = ['kube-system/konnectivity-agent', 'other/konn-2'];
    const withAccounts = await h(['template', release, CHART, '--namespace', namespace, '--api-versions', VAP_API, '--set', `gatewayServiceAccounts={${accounts.join(',')}}`]);
    assert.equal(withAccounts.code, 0, withAccounts.stderr);
    const policyWith = parseManifests(withAccounts.stdout).filter((m) => m.kind.startsWith('ValidatingAdmissionPolicy'));
    assert.deepEqual(unlabelled(policyWith), unlabelled(nodeBoundWritesPolicy(namespace, undefined, accounts)));
    assert.match(withAccounts.stdout, /'system:serviceaccount:kube-system:konnectivity-agent', 'system:serviceaccount:other:konn-2'\]/);

    // Turned off, it is left out even where the API is served.
    const off = await h(['template', release, CHART, '--namespace', namespace, '--api-versions', VAP_API, '--set', 'nodeBoundWrites=false']);
    assert.equal(off.code, 0, off.stderr);
    assert.doesNotMatch(off.stdout, /kind: ValidatingAdmissionPolicy/);
    assert.doesNotMatch(off.stdout, new RegExp(NODE_TAINT_ROLE));
  });

  test('uninstall (without its hook) removes what the release created; the CRDs stay (Helm never deletes crds/)', async () => {
    assert.ok(installed, 'needs the release from the install test');
    // --no-hooks: the pre-delete hook's Job needs a kubelet (e2e/uninstall-hook.test.ts tests the hook here).
    const r = await hk(['uninstall', release, '--namespace', namespace, '--wait=false', '--no-hooks']);
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

  test(`helm upgrade from the chart of ${OLD_CHART_COMMIT} keeps the agent DaemonSet (its immutable selector unchanged)`, async () => {
    assert.equal(installed, false, 'runs after the uninstall: the chart\'s cluster-scoped objects allow one release');
    // That commit's chart, as an operator who installed it has it.
    const old = join(cluster.dir, 'old-chart');
    const tarball = execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', OLD_CHART_COMMIT, 'charts/aks-mesh']);
    mkdirSync(old);
    execFileSync('tar', ['-x', '-C', old], { input: tarball });
    const ns = `${namespace}-up`;
    const up = 'mesh-up';
    const installedOld = await hk(['install', up, join(old, 'charts', 'aks-mesh'), '--namespace', ns, '--create-namespace', '--wait=false', '--timeout', '2m']);
    assert.equal(installedOld.code, 0, `helm install of the ${OLD_CHART_COMMIT} chart:\n${installedOld.stdout}\n${installedOld.stderr}`);
    try {
      const apps = cluster.kubeConfig().makeApiClient(k8s.AppsV1Api);
      const before = await apps.readNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace: ns });
      const upgraded = await hk(['upgrade', up, CHART, '--namespace', ns, '--wait=false', '--timeout', '2m']);
      assert.equal(upgraded.code, 0, `helm upgrade to this chart:\n${upgraded.stdout}\n${upgraded.stderr}`);
      const after = await apps.readNamespacedDaemonSet({ name: 'aks-mesh-agent', namespace: ns });
      assert.deepEqual(after.spec?.selector.matchLabels, before.spec?.selector.matchLabels, 'the selector is the one installed');
      assert.equal(after.metadata?.uid, before.metadata?.uid, 'the same DaemonSet, updated in place');
      assert.equal(after.spec?.template.metadata?.labels?.['app.kubernetes.io/instance'], up, 'the pods carry the new standard labels');
    } finally {
      await hk(['uninstall', up, '--namespace', ns, '--wait=false', '--no-hooks']);
    }
  });
});
