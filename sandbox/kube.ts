/**
 * Helpers for tests that put AKS Mesh objects into a real API server (TestCluster): install the
 * CRDs and RBAC exactly as shipped, create Nodes and Peers, wait for a condition.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, CRDS, GROUP, VERSION } from '../mesh/index.ts';
import type { PeerSpec } from '../mesh/index.ts';
import type { TestCluster } from './apiserver.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Poll until `check` returns a truthy value; fail naming `what` and the last value seen. */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 30_000, intervalMs = 200): Promise<Exclude<T, null | undefined | false | 0 | "">> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await check();
      if (last) return last as Exclude<T, null | undefined | false | 0 | "">;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const shown = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${shown})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Install the Peer and Gateway CRDs and wait until they are served. */
export async function installCrds(cluster: TestCluster): Promise<void> {
  const ext = cluster.kubeConfig().makeApiClient(k8s.ApiextensionsV1Api);
  for (const crd of CRDS) await ext.createCustomResourceDefinition({ body: crd as unknown as k8s.V1CustomResourceDefinition });
  for (const crd of CRDS) {
    const name = (crd.metadata as { name: string }).name;
    await waitFor(`CRD ${name} established`, async () => {
      const got = await ext.readCustomResourceDefinition({ name });
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    });
  }
}

/**
 * Grant a token user exactly the ClusterRole we ship in config/rbac/<component>.yaml (the role,
 * not the ServiceAccount binding): tests then prove the shipped RBAC is enough.
 */
export async function grantShippedRole(cluster: TestCluster, component: 'agent' | 'gateway', user: string): Promise<void> {
  await grantRoleFrom(cluster, join(root, 'config/rbac', `${component}.yaml`), user);
  // The agent's `patch nodes` (its not-ready taint) ships with the node-bound-writes policy, which 1.20
  // cannot serve (e2e/vap.test.ts tests the policy): granted here as on a cluster that has it.
  if (component === 'agent') await grantRoleFrom(cluster, join(root, 'config/admission/agent-node-taint.yaml'), user);
}

async function grantRoleFrom(cluster: TestCluster, file: string, user: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  const role = parseAllDocuments(text)
    .map((d) => d.toJS() as { kind: string; metadata: { name: string } })
    .find((o) => o.kind === 'ClusterRole') as k8s.V1ClusterRole;
  const rbac = cluster.kubeConfig().makeApiClient(k8s.RbacAuthorizationV1Api);
  await rbac.createClusterRole({ body: role }).catch((err: unknown) => {
    if (!(err instanceof k8s.ApiException && err.code === 409)) throw err;
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: `${role.metadata?.name}-${user}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata?.name as string },
      subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }],
    },
  });
}

/** Create a Node with pod CIDRs and an InternalIP (as the kubelet and the node IPAM would). */
export async function createNode(kc: k8s.KubeConfig, name: string, podCIDRs: string[], internalIP: string): Promise<void> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const node = await core.createNode({ body: { metadata: { name }, spec: { podCIDR: podCIDRs[0], podCIDRs } } });
  await core.replaceNodeStatus({ name, body: { ...node, status: { addresses: [{ type: 'InternalIP', address: internalIP }] } } });
}

export function customApi(kc: k8s.KubeConfig): k8s.CustomObjectsApi {
  return kc.makeApiClient(k8s.CustomObjectsApi);
}

export async function createPeer(kc: k8s.KubeConfig, name: string, spec: PeerSpec): Promise<void> {
  await customApi(kc).createClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', body: { apiVersion: API_VERSION, kind: 'Peer', metadata: { name }, spec } });
}

export async function getPeer(kc: k8s.KubeConfig, name: string): Promise<{ metadata: { name: string }; spec: PeerSpec; status?: Record<string, unknown> } | null> {
  try {
    return (await customApi(kc).getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name })) as never;
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return null;
    throw err;
  }
}

export async function deletePeer(kc: k8s.KubeConfig, name: string): Promise<void> {
  await customApi(kc).deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name });
}

/** Replace a Peer's spec (read-modify-write). */
export async function updatePeerSpec(kc: k8s.KubeConfig, name: string, change: (spec: PeerSpec) => PeerSpec): Promise<void> {
  const api = customApi(kc);
  const obj = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name })) as { spec: PeerSpec };
  await api.replaceClusterCustomObject({ group: GROUP, version: VERSION, plural: 'peers', name, body: { ...obj, spec: change(obj.spec) } });
}

/** One peer as `wg show <if> dump` reports it. */
export interface DumpPeer {
  publicKey: string;
  endpoint: string | null;
  allowedIPs: string[];
  persistentKeepalive: number;
}

/** Parse `wg show <if> dump` (the independent reader of what a device holds). */
export function parseDump(text: string): { publicKey: string; listenPort: number; fwmark: number; peers: Map<string, DumpPeer> } {
  const [head, ...rest] = text.trim().split('\n');
  const [, publicKey, listenPort, fwmark] = head.split('\t');
  const peers = new Map<string, DumpPeer>();
  for (const line of rest) {
    const [key, , endpoint, allowed, , , , keepalive] = line.split('\t');
    peers.set(key, {
      publicKey: key,
      endpoint: endpoint === '(none)' ? null : endpoint,
      allowedIPs: allowed === '(none)' ? [] : allowed.split(',').sort(),
      persistentKeepalive: keepalive === 'off' ? 0 : Number(keepalive),
    });
  }
  return { publicKey, listenPort: Number(listenPort), fwmark: fwmark === 'off' ? 0 : Number(fwmark), peers };
}
