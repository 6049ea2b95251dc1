/**
 * Node-bound writes on the upstream admission code (issue 9, "Done when" 1): the policy we ship in
 * config/admission, loaded as it is into the upstream ValidatingAdmissionPolicy plugin of an API
 * server built from Kubernetes' own server libraries (e2e/kube/vap: apiextensions-apiserver with
 * that plugin, serving our CRDs), with identities presented the way a Kubernetes >= 1.30 API server
 * sees a node-bound service-account token: user system:serviceaccount:aks-mesh:aks-mesh-agent with
 * the user extra authentication.kubernetes.io/node-name, here through front-proxy headers.
 *
 * The policy reaches the plugin through client-go's in-memory clientset, which feeds the plugin's
 * informers in place of admissionregistration objects stored in etcd (the server serves no
 * admissionregistration API); the plugin's source, matcher, CEL compiler and dispatcher are upstream's.
 *
 * What this server cannot show: it serves no core API, so the Node rule (the agent may only remove
 * its own not-ready taint) runs on a stand-in custom resource `nodes` in a test group, with the same
 * expressions as the shipped policy (only the rule's API group differs; at run time a Node reaches
 * CEL as untyped as a custom resource does). It has no RBAC: RBAC is tested on the 1.20 TestCluster.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { installCrds, waitFor } from '../sandbox/kube.ts';
import { startVapServer, vapTestsUnavailable } from './kube/vap/server.ts';
import type { Identity, Reply, VapServer } from './kube/vap/server.ts';
import { AGENT_NOT_READY_TAINT, GROUP, NAMESPACE, NODE_NAME_EXTRA, VERSION } from '../mesh/index.ts';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const POLICY_FILE = join(root, 'config/admission/node-bound-writes.yaml');
/** The stand-in for core/v1 nodes (see the header). */
const NODE_GROUP = 'vap-test.aksmesh.io';
const skip = vapTestsUnavailable() ?? false;

/** A service account of ours; `node`: the node its token is bound to (none: a token that is not node-bound). */
const serviceAccount = (name: string, node?: string): Identity => ({
  user: `system:serviceaccount:${NAMESPACE}:${name}`,
  groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`, 'system:authenticated'],
  extra: node === undefined ? {} : { [NODE_NAME_EXTRA]: node },
});
const agentOn = (node?: string) => serviceAccount('aks-mesh-agent', node);
const gatewayOn = (node?: string) => serviceAccount('aks-mesh-gateway', node);

/** A custom resource as JSON, loosely: the tests change fields the schema allows and read them back. */
interface Obj {
  metadata: { name: string; resourceVersion?: string };
  spec: Record<string, unknown>;
  status?: unknown;
}

interface Rule {
  apiGroups: string[];
  apiVersions: string[];
  resources: string[];
}
interface AdmissionDoc {
  metadata: { name: string };
  spec: { matchConstraints: { resourceRules: Rule[] }; policyName: string };
}

const key = () => publicKeyOf(generatePrivateKey());
const peer = (name: string, spec: Record<string, unknown>) => ({ apiVersion: `${GROUP}/${VERSION}`, kind: 'Peer', metadata: { name }, spec });
const gateway = (name: string, spec: Record<string, unknown>) => ({ apiVersion: `${GROUP}/${VERSION}`, kind: 'Gateway', metadata: { name }, spec });
const peerSpec = (nodeName: string | undefined, n: number) => ({
  publicKey: key(),
  allowedIPs: [`10.244.${n}.0/24`],
  meshIP: `100.96.0.${n}`,
  endpoint: `10.0.0.${n}:51820`,
  ...(nodeName ? { nodeName } : {}),
});
const gatewaySpec = (nodeName: string, n: number) => ({ publicKey: key(), meshIP: `100.96.1.${n}`, podCIDRs: ['10.244.0.0/16'], nodeName });

describe('node-bound writes, enforced by the upstream ValidatingAdmissionPolicy plugin', { skip }, () => {
  let server: VapServer;
  let dir: string;
  const call = (who: Identity, method: string, path: string, body?: unknown, contentType?: string) => server.call(who, method, path, body, contentType);
  const admin: Identity = { user: 'admin', groups: ['system:masters'] };
  const path = (plural: string, name?: string, group = GROUP, version = VERSION) => `/apis/${group}/${version}/${plural}${name ? `/${name}` : ''}`;
  const create = (who: Identity, plural: string, obj: unknown) => call(who, 'POST', path(plural), obj);
  const get = async (plural: string, name: string, group = GROUP, version = VERSION) => (await call(admin, 'GET', path(plural, name, group, version))).body as unknown as Obj;
  /** Read as admin, change, write back as `who` (a full update with the current resourceVersion). */
  const update = async (who: Identity, plural: string, name: string, change: (o: Obj) => void): Promise<Reply> => {
    const current = await get(plural, name);
    change(current);
    return call(who, 'PUT', path(plural, name), current);
  };
  const remove = (who: Identity, plural: string, name: string) => call(who, 'DELETE', path(plural, name));

  /** Allowed: 2xx, or fail with what the server said. */
  const allowed = (r: Reply, what: string) => assert.ok(r.status >= 200 && r.status < 300, `${what}: HTTP ${r.status} ${r.body.message ?? ''}`);
  /** Refused by our policy (HTTP 403 naming it), with `message`; the message is shown in the test output. */
  const refused = (t: TestContext, r: Reply, message: RegExp, what: string) => {
    assert.equal(r.status, 403, `${what}: expected a refusal, got HTTP ${r.status} ${r.body.message ?? ''}`);
    assert.match(r.body.message ?? '', /ValidatingAdmissionPolicy 'aks-mesh-node-bound-writes(-nodes-stand-in)?' with binding/, what);
    assert.match(r.body.message ?? '', message, what);
    t.diagnostic(`${what}: ${r.body.message}`);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aks-mesh-vap-'));
    // The Node rule, for the stand-in: the shipped policy's nodes rule with only its API group changed.
    const [policy, binding] = parseAllDocuments(await readFile(POLICY_FILE, 'utf8')).map((d) => d.toJS() as AdmissionDoc);
    const nodeRule = policy.spec.matchConstraints.resourceRules.find((r) => r.resources.includes('nodes'));
    assert.ok(nodeRule, 'the shipped policy has a rule for nodes');
    const standIn = structuredClone(policy);
    standIn.metadata.name = `${policy.metadata.name}-nodes-stand-in`;
    standIn.spec.matchConstraints.resourceRules = [{ ...nodeRule, apiGroups: [NODE_GROUP], apiVersions: ['v1'] }];
    const standInBinding = { ...binding, metadata: { name: standIn.metadata.name }, spec: { ...binding.spec, policyName: standIn.metadata.name } };
    const standInFile = join(dir, 'stand-in.yaml');
    await writeFile(standInFile, `---\n${stringify(standIn)}---\n${stringify(standInBinding)}`);

    server = await startVapServer({ policyFiles: [POLICY_FILE, standInFile] });
    await installCrds(server.cluster);
    allowed(await call(admin, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', nodeStandInCrd()), 'admin creates the stand-in Node CRD');
    await waitFor('the stand-in Node CRD established', async () => {
      const crd = (await call(admin, 'GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodes.${NODE_GROUP}`)).body as { status?: { conditions?: Array<{ type: string; status: string }> } };
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('starts with the policy loaded and serves our CRDs', async (t) => {
    const { timings } = server.cluster;
    t.diagnostic(`startup: etcd ${Math.round(timings.etcdMs)} ms, test API server to /readyz ${Math.round(timings.apiServerMs)} ms, total with certificates ${Math.round(timings.totalMs)} ms`);
    const log = readFileSync(server.cluster.apiServerLog, 'utf8');
    assert.match(log, /enforcing 4 admission objects/);
    assert.match(log, /Loaded 1 validating admission controller\(s\) successfully in the following order: ValidatingAdmissionPolicy/);
    assert.equal((await call(admin, 'GET', path('peers'))).status, 200);
  });

  test('an agent bound to node A writes its own Peer; node B\'s Peer it can neither update nor delete', async (t) => {
    allowed(await create(admin, 'peers', peer('node-b', peerSpec('node-b', 2))), 'admin creates node-b');
    const a = agentOn('node-a');
    allowed(await create(a, 'peers', peer('node-a', peerSpec('node-a', 1))), 'agent on node-a creates Peer node-a');
    allowed(await update(a, 'peers', 'node-a', (o) => (o.spec.endpoint = '10.0.0.11:51820')), 'agent on node-a updates Peer node-a');
    assert.equal((await get('peers', 'node-a')).spec.endpoint, '10.0.0.11:51820');

    const stolenKey = key();
    refused(t, await update(a, 'peers', 'node-b', (o) => ((o.spec.publicKey = stolenKey), (o.spec.endpoint = '10.0.0.66:51820'))), /aks-mesh-agent on node node-a may only write the Peer named node-a, not Peer node-b/, 'agent on node-a updates Peer node-b');
    refused(t, await remove(a, 'peers', 'node-b'), /may only write the Peer named node-a, not Peer node-b/, 'agent on node-a deletes Peer node-b');
    const b = await get('peers', 'node-b');
    assert.notEqual(b.spec.publicKey, stolenKey, "node-b's key is unchanged");
    assert.equal(b.spec.endpoint, '10.0.0.2:51820');
    // The refusal is per node, not per kind: node-b's own agent still may.
    allowed(await update(agentOn('node-b'), 'peers', 'node-b', (o) => (o.spec.persistentKeepalive = 25)), 'agent on node-b updates Peer node-b');
  });

  test('an agent cannot create a Peer without nodeName, nor move its own Peer to another node', async (t) => {
    const c = agentOn('node-c');
    refused(t, await create(c, 'peers', peer('node-c', peerSpec(undefined, 3))), /aks-mesh-agent on node node-c may only write a Peer whose spec.nodeName is node-c: Peer node-c would have no spec.nodeName/, 'agent on node-c creates Peer node-c without nodeName');
    refused(t, await create(c, 'peers', peer('outside', peerSpec(undefined, 4))), /may only write the Peer named node-c, not Peer outside/, 'agent on node-c creates an external Peer');
    refused(t, await create(c, 'peers', peer('node-c', peerSpec('node-b', 3))), /would have spec.nodeName node-b/, 'agent on node-c creates Peer node-c claiming node-b');
    allowed(await create(c, 'peers', peer('node-c', peerSpec('node-c', 3))), 'agent on node-c creates Peer node-c');
    refused(t, await update(c, 'peers', 'node-c', (o) => (o.spec.nodeName = 'node-b')), /would have spec.nodeName node-b \(now spec.nodeName node-c\)/, 'agent on node-c moves Peer node-c to node-b');
    refused(t, await update(c, 'peers', 'node-c', (o) => delete o.spec.nodeName), /would have no spec.nodeName/, 'agent on node-c drops nodeName from Peer node-c');
    // An administrator's external Peer that happens to carry the node's name is not the agent's either.
    allowed(await create(admin, 'peers', peer('node-d', peerSpec(undefined, 5))), 'admin creates an external Peer named node-d');
    refused(t, await update(agentOn('node-d'), 'peers', 'node-d', (o) => (o.spec.nodeName = 'node-d')), /\(now no spec.nodeName\)/, 'agent on node-d takes over the external Peer node-d');
    refused(t, await remove(agentOn('node-d'), 'peers', 'node-d'), /Peer node-d \(now no spec.nodeName\)/, 'agent on node-d deletes the external Peer node-d');
    allowed(await remove(c, 'peers', 'node-c'), 'agent on node-c deletes its own Peer');
  });

  test('a token that is not node-bound writes nothing, whatever it names', async (t) => {
    refused(t, await create(agentOn(undefined), 'peers', peer('node-e', peerSpec('node-e', 6))), /aks-mesh-agent may write peers, gateways and nodes only with a node-bound service-account token/, 'agent without node-name creates Peer node-e');
    refused(t, await create(gatewayOn(undefined), 'gateways', gateway('gw-e', gatewaySpec('node-e', 6))), /aks-mesh-gateway may write .* only with a node-bound service-account token/, 'gateway without node-name creates Gateway gw-e');
  });

  test('a gateway writes only its own Gateway, and no Peer; an agent writes no Gateway', async (t) => {
    allowed(await create(admin, 'gateways', gateway('gw-b', gatewaySpec('node-b', 2))), 'admin creates gw-b');
    const g = gatewayOn('node-a');
    allowed(await create(g, 'gateways', gateway('gw-a', gatewaySpec('node-a', 1))), 'gateway on node-a creates Gateway gw-a');
    allowed(await update(g, 'gateways', 'gw-a', (o) => (o.spec.endpoint = '10.0.0.21:51820')), 'gateway on node-a updates Gateway gw-a');
    refused(t, await update(g, 'gateways', 'gw-b', (o) => (o.spec.podCIDRs = ['0.0.0.0/1'])), /aks-mesh-gateway on node node-a may only write a Gateway whose spec.nodeName is node-a: Gateway gw-b would have spec.nodeName node-b/, 'gateway on node-a updates Gateway gw-b');
    refused(t, await remove(g, 'gateways', 'gw-b'), /Gateway gw-b \(now spec.nodeName node-b\)/, 'gateway on node-a deletes Gateway gw-b');
    refused(t, await update(g, 'gateways', 'gw-a', (o) => (o.spec.nodeName = 'node-b')), /would have spec.nodeName node-b \(now spec.nodeName node-a\)/, 'gateway on node-a moves gw-a to node-b');
    refused(t, await create(g, 'gateways', gateway('gw-x', gatewaySpec('node-b', 7))), /Gateway gw-x would have spec.nodeName node-b/, 'gateway on node-a creates a Gateway for node-b');
    refused(t, await create(g, 'peers', peer('node-a', peerSpec('node-a', 1))), /aks-mesh-gateway may not write Peers/, 'gateway on node-a creates a Peer');
    refused(t, await create(agentOn('node-a'), 'gateways', gateway('gw-z', gatewaySpec('node-a', 8))), /aks-mesh-agent may not write Gateways/, 'agent on node-a creates a Gateway');
    allowed(await remove(g, 'gateways', 'gw-a'), 'gateway on node-a deletes its own Gateway');
  });

  test('status writes stay open: an agent may set the Accepted condition of another node\'s Peer', async () => {
    const current = await get('peers', 'node-b');
    const condition = { type: 'Accepted', status: 'False', reason: 'Test', message: 'refused by node-a', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') };
    const r = await call(agentOn('node-a'), 'PUT', `${path('peers', 'node-b')}/status`, { ...current, status: { conditions: [condition] } });
    allowed(r, 'agent on node-a writes the status of Peer node-b');
  });

  test('administrators and other users are not this policy\'s business', async () => {
    allowed(await update(admin, 'peers', 'node-b', (o) => (o.spec.endpoint = '10.0.0.12:51820')), 'admin updates node-b');
    allowed(await create({ user: 'someone', groups: ['system:authenticated'] }, 'peers', peer('external-1', peerSpec(undefined, 9))), 'another user creates an external Peer');
  });

  test('the agent may only remove its own not-ready taint from its own Node, and change nothing else (stand-in Node)', async (t) => {
    const taint = { ...AGENT_NOT_READY_TAINT };
    const other = { key: 'node.kubernetes.io/not-ready', effect: 'NoSchedule' };
    const node = (name: string) => ({ apiVersion: `${NODE_GROUP}/v1`, kind: 'Node', metadata: { name, labels: { zone: '1' } }, spec: { podCIDRs: ['10.244.1.0/24'], taints: [other, taint] } });
    for (const name of ['node-a', 'node-b']) allowed(await call(admin, 'POST', path('nodes', undefined, NODE_GROUP, 'v1'), node(name)), `admin creates Node ${name}`);
    const a = agentOn('node-a');
    const patch = (who: Identity, name: string, ops: unknown[]) => call(who, 'PATCH', path('nodes', name, NODE_GROUP, 'v1'), ops, 'application/json-patch+json');
    const ours = [{ op: 'test', path: '/spec/taints/1/key', value: taint.key }, { op: 'remove', path: '/spec/taints/1' }];

    refused(t, await patch(a, 'node-b', ours), /aks-mesh-agent on node node-a may only update its own Node node-a, not UPDATE Node node-b/, 'agent on node-a removes the taint of Node node-b');
    refused(t, await patch(a, 'node-a', [{ op: 'remove', path: '/spec/taints/0' }]), /may only remove the taint aksmesh.io\/agent-not-ready:NoSchedule from its Node/, 'agent on node-a removes another taint');
    refused(t, await patch(a, 'node-a', [...ours, { op: 'replace', path: '/metadata/labels/zone', value: '2' }]), /any other change to Node node-a is refused/, 'agent on node-a also changes a label');
    refused(t, await patch(a, 'node-a', [...ours, { op: 'replace', path: '/spec/podCIDRs', value: ['10.244.0.0/16'] }]), /any other change to Node node-a is refused/, 'agent on node-a also changes podCIDRs');
    refused(t, await patch(gatewayOn('node-a'), 'node-a', ours), /aks-mesh-gateway may not write Nodes/, 'gateway on node-a removes the taint');
    allowed(await patch(a, 'node-a', ours), 'agent on node-a removes its own not-ready taint');
    const after = await get('nodes', 'node-a', NODE_GROUP, 'v1');
    assert.deepEqual(after.spec.taints, [other]);
  });
});

/** A cluster-scoped `nodes` custom resource shaped like core/v1 Node where the policy looks (see the header). */
function nodeStandInCrd(): unknown {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `nodes.${NODE_GROUP}` },
    spec: {
      group: NODE_GROUP,
      scope: 'Cluster',
      names: { plural: 'nodes', singular: 'node', kind: 'Node', listKind: 'NodeList' },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } } } }],
    },
  };
}
