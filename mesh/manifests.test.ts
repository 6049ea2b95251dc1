import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { driftedManifests } from '../cli/commands/crds.ts';
import { canonicalEndpoint, generatePrivateKey, keyProblem, publicKeyOf } from '../native/index.ts';
import { PATTERNS } from './crd/schema.ts';
import { AGENT_NOT_READY_TAINT, NODE_BOUND_POLICY, NODE_TAINT_ROLE, VAP_API, generatedManifests, nodeBoundWritesPolicy } from './manifests.ts';
import { valuesSchema } from './values-schema.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

test('config/ and the chart hold exactly what `aks-mesh crds` generates (run it after changing mesh/crd)', async () => {
  assert.deepEqual(await driftedManifests(root), []);
});

interface Doc {
  kind: string;
  metadata: { name: string };
  spec: {
    policyName: string;
    validationActions: string[];
    failurePolicy: string;
    matchConstraints: { resourceRules: Array<{ resources: string[] }> };
    matchConditions: Array<{ expression: string }>;
    validations: Array<{ message?: string; messageExpression?: string }>;
  };
  rules?: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
}
const docs = (text: string) => parseAllDocuments(text).map((d) => d.toJS() as Doc);

test('the node-bound-writes policy: Deny, fail closed, main resources only, for exactly the two service accounts', () => {
  const [policy, binding, ...rest] = docs(readFileSync(resolve(root, 'config/admission/node-bound-writes.yaml'), 'utf8'));
  assert.equal(rest.length, 0);
  assert.deepEqual([policy.kind, policy.metadata.name], ['ValidatingAdmissionPolicy', NODE_BOUND_POLICY]);
  assert.deepEqual([binding.kind, binding.spec.policyName, binding.spec.validationActions], ['ValidatingAdmissionPolicyBinding', NODE_BOUND_POLICY, ['Deny']]);
  assert.equal(policy.spec.failurePolicy, 'Fail', 'an expression that cannot be evaluated refuses the write');
  const resources = policy.spec.matchConstraints.resourceRules.flatMap((r) => r.resources);
  assert.deepEqual(resources.sort(), ['gateways', 'nodes', 'peers'], 'no status subresource: any agent may write the Accepted condition');
  assert.match(policy.spec.matchConditions[0].expression, /\['system:serviceaccount:aks-mesh:aks-mesh-agent', 'system:serviceaccount:aks-mesh:aks-mesh-gateway'\]/);
  assert.ok(policy.spec.validations.every((v) => v.message || v.messageExpression), 'every refusal says why');
});

test('the chart installs the same policy, in the release namespace, only where the API server serves it', () => {
  const files = generatedManifests();
  const chart = files.get('charts/aks-mesh/templates/admission.yaml') as string;
  const lines = chart.trimEnd().split('\n');
  assert.equal(lines[0], `{{- if and .Values.nodeBoundWrites (.Capabilities.APIVersions.Has "${VAP_API}") }}`);
  assert.equal(lines.at(-1), '{{- end }}');
  // Rendered as Helm would in namespace aks-mesh, the body is config/admission's two files: the policy
  // and the agent's `patch nodes`, which must never be installed without it.
  // The chart's standard labels helper stands where config/ has its two fixed labels.
  const body = `${lines.slice(1, -1).join('\n')}\n`
    .replaceAll('{{ .Release.Namespace }}', 'aks-mesh')
    // gatewayServiceAccounts, empty by default: the range renders nothing.
    .replace(/\{\{ range \.Values\.gatewayServiceAccounts \}\}.*?\{\{ end \}\}/g, '')
    .replace(/^( *)\{\{- include "aks-mesh\.labels" \(dict "ctx" \$ "component" "[a-z-]+"\) \| nindent \d+ \}\}$/gm, '$1app.kubernetes.io/name: aks-mesh\n$1app.kubernetes.io/part-of: aks-mesh');
  const shipped = ['node-bound-writes.yaml', 'agent-node-taint.yaml'].flatMap((f) => docs(files.get(`config/admission/${f}`) as string));
  assert.deepEqual(docs(body), shipped);
  assert.match(readFileSync(resolve(root, 'charts/aks-mesh/values.yaml'), 'utf8'), /^nodeBoundWrites: true$/m);
});

test('the agent may patch Nodes (its not-ready taint) only with the admission policy; its DaemonSet tolerates that taint whatever agent.tolerations says', () => {
  const writesNodes = (r: { apiGroups: string[]; resources: string[]; verbs: string[] }) =>
    r.apiGroups.includes('') && r.resources.includes('nodes') && r.verbs.some((v) => v !== 'get' && v !== 'list' && v !== 'watch');
  // Without the policy `patch nodes` would let any agent taint (evict) or relabel every Node.
  const agentRules = docs(readFileSync(resolve(root, 'config/rbac/agent.yaml'), 'utf8')).find((d) => d.kind === 'ClusterRole')?.rules ?? [];
  assert.ok(!agentRules.some(writesNodes), 'config/rbac/agent.yaml grants no write on nodes');
  const [role, binding, ...rest] = docs(readFileSync(resolve(root, 'config/admission/agent-node-taint.yaml'), 'utf8')) as Array<Doc & { roleRef?: { name: string }; subjects?: unknown[] }>;
  assert.equal(rest.length, 0);
  assert.deepEqual([role.kind, role.metadata.name, role.rules], ['ClusterRole', NODE_TAINT_ROLE, [{ apiGroups: [''], resources: ['nodes'], verbs: ['patch'] }]]);
  assert.deepEqual(
    [binding.kind, binding.roleRef?.name, binding.subjects],
    ['ClusterRoleBinding', NODE_TAINT_ROLE, [{ kind: 'ServiceAccount', name: 'aks-mesh-agent', namespace: 'aks-mesh' }]],
  );
  // The chart's copy sits inside the policy's condition (admission.yaml), not in rbac.yaml.
  assert.doesNotMatch(readFileSync(resolve(root, 'charts/aks-mesh/templates/rbac.yaml'), 'utf8'), new RegExp(NODE_TAINT_ROLE));
  const gatewayRules = docs(readFileSync(resolve(root, 'config/rbac/gateway.yaml'), 'utf8')).find((d) => d.kind === 'ClusterRole')?.rules ?? [];
  assert.ok(!gatewayRules.some(writesNodes));
  const daemonset = readFileSync(resolve(root, 'charts/aks-mesh/templates/daemonset.yaml'), 'utf8');
  const tolerations = daemonset.slice(daemonset.indexOf('tolerations:'), daemonset.indexOf('{{- with .Values.agent.tolerations }}'));
  assert.ok(tolerations.includes(`{key: ${AGENT_NOT_READY_TAINT.key}, operator: Exists, effect: ${AGENT_NOT_READY_TAINT.effect}}`), tolerations);
});

test('the schema key pattern accepts exactly what our key parser accepts', () => {
  const re = new RegExp(PATTERNS.key);
  for (let i = 0; i < 200; i++) assert.ok(re.test(publicKeyOf(generatePrivateKey())));
  fc.assert(
    fc.property(fc.string({ minLength: 40, maxLength: 46 }), (s) => {
      assert.equal(re.test(s), keyProblem(s) === null, s);
    }),
  );
});

test('the schema endpoint pattern accepts exactly the endpoints our parser accepts (port 1-65535)', () => {
  const re = new RegExp(PATTERNS.endpoint);
  const octet = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('01', '00', '256'));
  const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
  const v6 = fc.constantFrom('fd00::1', '::1', '::', 'fe80::1:2:3', '2001:db8::8a2e:370:7334', 'fd00:::1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', 'gg::1');
  const port = fc.oneof(fc.integer({ min: 0, max: 70000 }).map(String), fc.constantFrom('051820', '', '-1'));
  const endpoint = fc.oneof(
    fc.tuple(v4, port).map(([h, p]) => `${h}:${p}`),
    fc.tuple(v6, port).map(([h, p]) => `[${h}]:${p}`),
    fc.tuple(v6, port).map(([h, p]) => `${h}:${p}`),
  );
  fc.assert(
    fc.property(endpoint, (e) => {
      let ours: boolean;
      try {
        ours = !canonicalEndpoint(e).endsWith(':0');
      } catch {
        ours = false;
      }
      assert.equal(re.test(e), ours, e);
    }),
    { numRuns: 3000 },
  );
});

test('gateway service accounts bound with `gateway-patch --rbac` are node-bound like aks-mesh-gateway (review finding 3)', () => {
  const [policy] = nodeBoundWritesPolicy('mesh-ns', undefined, ['kube-system/konnectivity-agent']) as Array<Doc & { spec: { variables: Array<{ name: string; expression: string }> } }>;
  assert.equal(
    policy.spec.matchConditions[0].expression,
    "request.userInfo.username in ['system:serviceaccount:mesh-ns:aks-mesh-agent', 'system:serviceaccount:mesh-ns:aks-mesh-gateway', 'system:serviceaccount:kube-system:konnectivity-agent']",
  );
  // Not the agent: every gateway rule applies to it; refusals name it.
  assert.equal(policy.spec.variables.find((v) => v.name === 'agent')?.expression, "request.userInfo.username == 'system:serviceaccount:mesh-ns:aks-mesh-agent'");
  assert.match(policy.spec.variables.find((v) => v.name === 'who')?.expression ?? '', /'gateway ' \+ request\.userInfo\.username/);
  // Nothing a CEL string could be broken out of.
  assert.throws(() => nodeBoundWritesPolicy('mesh-ns', undefined, ["kube-system/x'] || true || ['"]), /gatewayServiceAccounts "kube-system\/x'\] \|\| true \|\| \['": expected NAMESPACE\/NAME/);
  // The chart renders the value into the same list.
  const chart = generatedManifests().get('charts/aks-mesh/templates/admission.yaml') as string;
  assert.ok(chart.includes("'system:serviceaccount:{{ .Release.Namespace }}:aks-mesh-gateway'{{ range .Values.gatewayServiceAccounts }}, 'system:serviceaccount:{{ replace `/` `:` . }}'{{ end }}]"), 'the chart lists gatewayServiceAccounts');
  assert.match(readFileSync(resolve(root, 'charts/aks-mesh/values.yaml'), 'utf8'), /^gatewayServiceAccounts: \[\]/m);
});

test('values.schema.json: agent.keyDir is a folder of its own under /var/lib or /run, never /, /etc, .. or kubelet\'s (review finding 12)', () => {
  const schema = valuesSchema() as { properties: { agent: { properties: { keyDir: { pattern: string; not: { pattern: string } } } } } };
  const { pattern, not } = schema.properties.agent.properties.keyDir;
  const ok = (dir: string) => new RegExp(pattern).test(dir) && !new RegExp(not.pattern).test(dir);
  for (const dir of ['/var/lib/aks-mesh', '/var/lib/mesh-keys', '/var/lib/a/b.c', '/run/aks-mesh']) assert.ok(ok(dir), dir);
  for (const dir of ['/', '/etc', '/root', '/var/lib', '/var/lib/', '/run', '/var/lib/../../etc', '/var/lib/./x', '/var/lib/a/..', '/var/lib/kubelet', '/var/lib/kubelet/pki', '/var/lib/containerd', '/run/containerd', '/var/lib/a b', '/var/lib//x']) {
    assert.ok(!ok(dir), dir);
  }
});
