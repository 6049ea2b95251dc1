/**
 * Review finding 3 on the upstream admission code: a service account bound to the gateway's
 * ClusterRole with `aks-mesh gateway-patch --rbac` (here kube-system/konnectivity-agent) gets the
 * gateway's write rights; listed in the chart value gatewayServiceAccounts, the node-bound-writes
 * policy treats it as a gateway: it writes only Gateways of the node its token is bound to, never
 * Peers, and nothing without a node-bound token. Without the value, the shipped policy leaves that
 * account alone (what the finding was about: RBAC then lets any of its tokens rewrite every Gateway).
 *
 * The same test API server as e2e/vap.test.ts (upstream ValidatingAdmissionPolicy plugin, no RBAC),
 * loaded with the policy mesh/manifests.ts generates for that value (the chart renders the same:
 * e2e/chart.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { GROUP, NAMESPACE, NODE_NAME_EXTRA, VERSION, nodeBoundWritesPolicy } from '../mesh/index.ts';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';
import { installCrds } from '../sandbox/kube.ts';
import { startVapServer, vapTestsUnavailable } from './kube/vap/server.ts';
import type { Identity, Reply, VapServer } from './kube/vap/server.ts';

const skip = vapTestsUnavailable() ?? false;
const ACCOUNT = 'kube-system/konnectivity-agent';
const USER = 'system:serviceaccount:kube-system:konnectivity-agent';

const konnectivityOn = (node?: string): Identity => ({
  user: USER,
  groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
  extra: node === undefined ? {} : { [NODE_NAME_EXTRA]: node },
});
const admin: Identity = { user: 'admin', groups: ['system:masters'] };
const key = () => publicKeyOf(generatePrivateKey());
const gateway = (name: string, nodeName: string, n: number) => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'Gateway',
  metadata: { name },
  spec: { publicKey: key(), meshIP: `100.96.1.${n}`, podCIDRs: ['10.244.0.0/16'], nodeName },
});
const peer = (name: string, n: number) => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'Peer',
  metadata: { name },
  spec: { publicKey: key(), allowedIPs: [`10.244.${n}.0/24`], meshIP: `100.96.0.${n}`, endpoint: `10.0.0.${n}:51820`, nodeName: name },
});
const path = (plural: string, name?: string) => `/apis/${GROUP}/${VERSION}/${plural}${name ? `/${name}` : ''}`;
const allowed = (r: Reply, what: string) => assert.ok(r.status >= 200 && r.status < 300, `${what}: HTTP ${r.status} ${r.body.message ?? ''}`);
const refused = (t: TestContext, r: Reply, message: RegExp, what: string) => {
  assert.equal(r.status, 403, `${what}: expected a refusal, got HTTP ${r.status} ${r.body.message ?? ''}`);
  assert.match(r.body.message ?? '', /ValidatingAdmissionPolicy 'aks-mesh-node-bound-writes' with binding/, what);
  assert.match(r.body.message ?? '', message, what);
  t.diagnostic(`${what}: ${r.body.message}`);
};

/** A VAP server with `policy` (policy and binding), its CRDs installed; stopped and removed after the suite. */
function serverWith(policy: unknown[]): { get: () => VapServer } {
  let server: VapServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aks-mesh-vap-gw-'));
    const file = join(dir, 'policy.yaml');
    await writeFile(file, policy.map((d) => `---\n${stringify(d, { lineWidth: 0 })}`).join(''));
    server = await startVapServer({ policyFiles: [file] });
    await installCrds(server.cluster);
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return { get: () => server };
}

describe('a gateway account listed in gatewayServiceAccounts is node-bound (upstream ValidatingAdmissionPolicy plugin)', { skip }, () => {
  const s = serverWith(nodeBoundWritesPolicy(NAMESPACE, undefined, [ACCOUNT]));
  const call = (who: Identity, method: string, p: string, body?: unknown) => s.get().call(who, method, p, body);

  test('it writes its own node\'s Gateway, not another node\'s, no Peer, nothing without a node-bound token', async (t) => {
    allowed(await call(admin, 'POST', path('gateways'), gateway('gw-b', 'node-b', 2)), 'admin creates gw-b');
    const k = konnectivityOn('node-a');
    allowed(await call(k, 'POST', path('gateways'), gateway('gw-a', 'node-a', 1)), `${ACCOUNT} on node-a creates Gateway gw-a`);
    refused(t, await call(k, 'DELETE', path('gateways', 'gw-b')), new RegExp(`gateway ${USER} on node node-a may only write a Gateway whose spec.nodeName is node-a: Gateway gw-b \\(now spec.nodeName node-b\\)`), `${ACCOUNT} on node-a deletes gw-b`);
    refused(t, await call(k, 'POST', path('gateways'), gateway('gw-x', 'node-b', 3)), /Gateway gw-x would have spec.nodeName node-b/, `${ACCOUNT} on node-a creates a Gateway for node-b`);
    refused(t, await call(k, 'POST', path('peers'), peer('node-a', 1)), new RegExp(`gateway ${USER} may not write Peers`), `${ACCOUNT} creates a Peer`);
    refused(t, await call(konnectivityOn(undefined), 'DELETE', path('gateways', 'gw-b')), new RegExp(`gateway ${USER} may write .* only with a node-bound service-account token`), `${ACCOUNT} without node-name deletes gw-b`);
  });
});

describe('without gatewayServiceAccounts the shipped policy leaves that account alone (why the value exists)', { skip }, () => {
  const s = serverWith(nodeBoundWritesPolicy(NAMESPACE));
  const call = (who: Identity, method: string, p: string, body?: unknown) => s.get().call(who, method, p, body);

  test('its token on node-a deletes node-b\'s Gateway (no RBAC here: on a cluster, --rbac grants exactly this)', async () => {
    allowed(await call(admin, 'POST', path('gateways'), gateway('gw-b', 'node-b', 2)), 'admin creates gw-b');
    allowed(await call(konnectivityOn('node-a'), 'DELETE', path('gateways', 'gw-b')), `${ACCOUNT} on node-a deletes gw-b`);
  });
});
