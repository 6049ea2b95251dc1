/**
 * `aks-mesh gateway-patch` against a real kube-apiserver (TestCluster): the printed patch, applied with
 * `kubectl patch --patch-file` to a Konnectivity agent Deployment, leaves that Deployment holding the
 * sidecar exactly as gateway/sidecar.ts returns it (nothing defaulted or dropped by the API server),
 * keeps the agent's own container and volumes, and a second patch changes nothing; `--rbac` gives
 * the Deployment's service account the gateway's ClusterRole, and nothing of the agent's.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { gatewaySidecar } from '../gateway/sidecar.ts';
import { rbacObjects } from '../mesh/manifests.ts';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(import.meta.dirname, 'main.ts'), ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const IMAGE = 'localhost/aks-mesh:0.0.0-test';
const POD_CIDRS = ['10.244.0.0/16', '10.245.0.0/24'];

test('refuses a bad --pod-cidr naming the value, and a missing --image', async () => {
  const bad = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', '10.244.0.0/16,10.300.0.0/16']);
  assert.notEqual(bad.code, 0);
  assert.equal(bad.stdout, '', 'no half a patch');
  assert.match(bad.stderr, /--pod-cidr "10\.300\.0\.0\/16"/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
  const noImage = await cli(['gateway-patch', '--pod-cidr', '10.244.0.0/16']);
  assert.equal(noImage.code, 2);
  assert.match(noImage.stderr, /--image: required/);
  const badAccount = await cli(['gateway-patch', '--rbac', '--service-account', 'konnectivity-agent']);
  assert.equal(badAccount.code, 2);
  assert.match(badAccount.stderr, /--service-account "konnectivity-agent": expected NAMESPACE\/NAME/);
});

test("the agents' safety and log settings: flags with the chart's defaults, written into the sidecar; a bad one named (audit12 #3)", async () => {
  const envOf = (stdout: string) => {
    const c = (JSON.parse(stdout) as { spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } } }).spec.template.spec.containers[0];
    return Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  };
  const keys = ['AKS_MESH_FWMARK', 'AKS_MESH_TABLE', 'AKS_MESH_RULE_PRIORITY', 'AKS_MESH_KEEPALIVE', 'AKS_MESH_RESYNC', 'AKS_MESH_LOG_FORMAT', 'AKS_MESH_LOG_LEVEL'];
  const plain = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS[0], '-o', 'json']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(keys.map((k) => envOf(plain.stdout)[k]), ['0x2000', '51820', '5280', '25', '60', 'json', 'info'], "the chart's defaults");
  const set = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS[0], '-o', 'json', '--fwmark', '0x1000', '--table', '1234', '--rule-priority', '6000', '--keepalive', '10', '--resync', '30', '--log-format', 'text', '--log-level', 'debug']);
  assert.equal(set.code, 0, set.stderr);
  assert.deepEqual(keys.map((k) => envOf(set.stdout)[k]), ['0x1000', '1234', '6000', '10', '30', 'text', 'debug']);
  for (const [flag, value, message] of [['--fwmark', '0x4000', /--fwmark 16384 \(0x4000\) has kube-proxy's masquerade bit/], ['--table', '254', /--table 254: /], ['--keepalive', '-3', /--keepalive -3: expected 0 \(off\) to 65535/], ['--resync', '0', /--resync 0: expected a whole number of seconds/]] as const) {
    const bad = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS[0], flag, value]);
    assert.equal(bad.code, 2, `${flag} ${value}: ${bad.stderr}`);
    assert.match(bad.stderr, message);
    assert.equal(bad.stdout, '', 'no half a patch');
  }
  const help = await cli(['gateway-patch', '--help']);
  for (const flag of ['--fwmark', '--table', '--rule-priority', '--keepalive', '--resync', '--log-level', '--log-format']) assert.match(help.stdout, new RegExp(`${flag}\\s`));
});

test('--help explains the patch with an example', async () => {
  const r = await cli(['gateway-patch', '--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--image', '--pod-cidr', '--container-name', '--deployment', '--service-account', '--rbac', '--output']) assert.match(r.stdout, new RegExp(`${flag}\\s`));
  assert.match(r.stdout, /kubectl -n kube-system patch deployment konnectivity-agent --patch-file patch\.yaml/);
});

test('--rbac for another account than aks-mesh-gateway warns that the admission policy does not bind it to its node, and prints the value that does (review finding 3)', async () => {
  const other = await cli(['gateway-patch', '--rbac', '--service-account', 'kube-system/konnectivity-agent']);
  assert.equal(other.code, 0, other.stderr);
  assert.equal((parse(other.stdout) as { kind: string }).kind, 'ClusterRoleBinding', 'stdout stays the binding alone (| kubectl apply -f -)');
  assert.match(other.stderr, /^warning: kube-system\/konnectivity-agent is not the chart's aks-mesh-gateway account, so the node-bound-writes admission policy does not bind its writes to its node/m);
  assert.ok(other.stderr.includes("--set 'gatewayServiceAccounts={kube-system/konnectivity-agent}'"), other.stderr);
  assert.match(other.stderr, /may rewrite every Gateway/);
  const own = await cli(['gateway-patch', '--rbac', '--service-account', 'aks-mesh/aks-mesh-gateway']);
  assert.equal(own.code, 0, own.stderr);
  assert.doesNotMatch(own.stderr, /warning/);
});

test('--help says which value covers the account, and one gateway pod per node (review findings 3, 13)', async () => {
  const r = await cli(['gateway-patch', '--help']);
  const text = r.stdout.replace(/\s+/g, ' ');
  assert.ok(text.includes('gatewayServiceAccounts'), text);
  assert.ok(text.includes('podAntiAffinity on kubernetes.io/hostname'), text);
  assert.ok(text.includes('automountServiceAccountToken: false'), text);
});

const skip = kubeTestsUnavailable() ?? false;

describe('gateway-patch on a real API server', { skip }, () => {
  let cluster: TestCluster;
  let dir: string;
  const ns = `konn-${randomBytes(3).toString('hex')}`;
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'konnectivity-agent', namespace: ns },
    spec: {
      replicas: 1,
      selector: { matchLabels: { k8s_app: 'konnectivity-agent' } },
      template: {
        metadata: { labels: { k8s_app: 'konnectivity-agent' } },
        spec: {
          serviceAccountName: 'konnectivity-agent',
          containers: [{ name: 'konnectivity-agent', image: 'stand-in:1', command: ['/proxy-agent'], volumeMounts: [{ name: 'agent-token', mountPath: '/var/run/secrets/tokens' }] }],
          volumes: [{ name: 'agent-token', emptyDir: {} }],
        },
      },
    },
  };

  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const r = await cluster.kubectl(args, input === undefined ? {} : { input });
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const get = async (): Promise<typeof deployment & { metadata: { generation: number } }> => JSON.parse(await kubectl(['-n', ns, 'get', 'deployment', 'konnectivity-agent', '-o', 'json']));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aks-mesh-gateway-patch-'));
    cluster = await TestCluster.start();
    await kubectl(['create', 'namespace', ns]);
    await kubectl(['apply', '-f', '-'], JSON.stringify(deployment));
  });
  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the patch adds the sidecar exactly as gateway/sidecar.ts returns it; a second patch changes nothing', async () => {
    const printed = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS[0], '--pod-cidr', POD_CIDRS[1], '--deployment', 'konnectivity-agent', '--namespace', ns]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stderr, new RegExp(`kubectl -n ${ns} patch deployment konnectivity-agent --patch-file`));
    const file = join(dir, 'patch.yaml');
    await writeFile(file, printed.stdout);
    await kubectl(['-n', ns, 'patch', 'deployment', 'konnectivity-agent', '--patch-file', file]);

    const after1 = await get();
    const want = gatewaySidecar({ image: IMAGE, podCIDRs: POD_CIDRS });
    const pod = after1.spec.template.spec as unknown as { containers: Array<{ name: string }>; volumes: Array<{ name: string }> };
    // A strategic merge puts a new list item first: `kubectl logs` then needs -c konnectivity-agent.
    assert.deepEqual(pod.containers.map((c) => c.name).sort(), ['aks-mesh-gateway', 'konnectivity-agent']);
    const agent = pod.containers.find((c) => c.name === 'konnectivity-agent') as unknown as { image: string; command: string[]; volumeMounts: unknown[] };
    assert.deepEqual([agent.image, agent.command, agent.volumeMounts], ['stand-in:1', ['/proxy-agent'], [{ name: 'agent-token', mountPath: '/var/run/secrets/tokens' }]], "the agent's own container is untouched");
    assert.deepEqual(
      pod.containers.find((c) => c.name === 'aks-mesh-gateway'),
      want.container,
      'the stored sidecar is the one gateway/sidecar.ts returns, field for field',
    );
    assert.deepEqual(
      (want.container as { args: string[] }).args,
      ['--node-name=$(NODE_NAME)', '--gateway-endpoint=$(NODE_IP)', '--pod-cidr=10.244.0.0/16,10.245.0.0/24'],
      "the seed's args",
    );
    assert.deepEqual(pod.volumes.map((v) => v.name).sort(), ['agent-token', ...want.volumes.map((v) => v.name)].sort());
    for (const v of want.volumes) assert.deepEqual(pod.volumes.find((x) => x.name === v.name), v);

    // Applied again (a pipeline that runs on every deploy): nothing changes, no new rollout.
    await kubectl(['-n', ns, 'patch', 'deployment', 'konnectivity-agent', '--patch-file', file]);
    const after2 = await get();
    assert.equal(after2.metadata.generation, after1.metadata.generation, 'a second patch is a no-op');

    // JSON output is the same patch.
    const json = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS.join(','), '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { spec: { template: { spec: { containers: [want.container], volumes: want.volumes } } } });
    assert.match(json.stderr, /the live stream is off \(no --stream-token-secret\)/);

    // With --stream-token-secret the stream asks for that Secret's token; the API server stores it as printed.
    const withToken = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS.join(','), '--stream-token-secret', 'aks-mesh-stream-token', '--namespace', ns, '-o', 'json']);
    assert.equal(withToken.code, 0, withToken.stderr);
    assert.match(withToken.stderr, new RegExp(`the pod needs Secret aks-mesh-stream-token \\(key token\\) in ${ns} before it starts`));
    const wantToken = gatewaySidecar({ image: IMAGE, podCIDRs: POD_CIDRS, streamTokenSecret: 'aks-mesh-stream-token' });
    assert.deepEqual(JSON.parse(withToken.stdout), { spec: { template: { spec: { containers: [wantToken.container], volumes: wantToken.volumes } } } });
    const tokenFile = join(dir, 'patch-token.json');
    await writeFile(tokenFile, withToken.stdout);
    const stored = JSON.parse(await kubectl(['-n', ns, 'patch', 'deployment', 'konnectivity-agent', '--dry-run=server', '--patch-file', tokenFile, '-o', 'json'])) as { spec: { template: { spec: { containers: Array<{ name: string }> } } } };
    assert.deepEqual(stored.spec.template.spec.containers.find((c) => c.name === 'aks-mesh-gateway'), wantToken.container);
    const bad = await cli(['gateway-patch', '--image', IMAGE, '--pod-cidr', POD_CIDRS[0], '--stream-token-secret', 'Bad_Name']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--stream-token-secret "Bad_Name": expected a Secret name/);
  });

  test("--rbac binds the Deployment's service account to the gateway's ClusterRole, and to nothing of the agent's", async () => {
    // The CRDs (kubectl auth can-i resolves the resource through discovery) and the gateway's
    // ClusterRole as the chart and config/rbac install it.
    const crds = await cli(['crds', '--print']);
    assert.equal(crds.code, 0, crds.stderr);
    await kubectl(['apply', '-f', '-'], crds.stdout);
    await kubectl(['wait', '--for=condition=established', '--timeout=30s', 'crd/gateways.aksmesh.io', 'crd/peers.aksmesh.io']);
    const role = rbacObjects(ns).find((o) => (o as { kind: string; metadata: { name: string } }).kind === 'ClusterRole' && (o as { metadata: { name: string } }).metadata.name === 'aks-mesh-gateway');
    assert.ok(role, 'mesh/manifests.ts still names the gateway ClusterRole aks-mesh-gateway');
    await kubectl(['apply', '-f', '-'], stringify(role));
    const binding = await cli(['gateway-patch', '--rbac', '--service-account', `${ns}/konnectivity-agent`]);
    assert.equal(binding.code, 0, binding.stderr);
    await kubectl(['apply', '--dry-run=server', '-f', '-'], binding.stdout);
    await kubectl(['apply', '-f', '-'], binding.stdout);
    const as = `system:serviceaccount:${ns}:konnectivity-agent`;
    const can = async (verb: string, resource: string): Promise<string> => {
      const r = await cluster.kubectl(['auth', 'can-i', verb, resource, '--as', as]);
      return r.stdout.trim();
    };
    assert.equal(await can('create', 'gateways.aksmesh.io'), 'yes');
    assert.equal(await can('update', 'gateways.aksmesh.io/status'), 'yes');
    assert.equal(await can('list', 'nodes'), 'yes');
    assert.equal(await can('create', 'peers.aksmesh.io'), 'no', "the agent's Peers are not the gateway's to write");
    assert.equal(await can('patch', 'nodes'), 'no');
  });
});
