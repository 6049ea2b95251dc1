/**
 * `aks-mesh inspect --names`: which Peer or Gateway holds each public key, read from the API
 * (--kubeconfig, else $KUBECONFIG, ~/.kube/config or the in-cluster service account). The
 * Kubernetes client is loaded only here, so a plain `inspect` on a node starts without it.
 */
import { loadKubeConfig } from './kubeconfig.ts';

/** public key → "Peer/<name>" / "Gateway/<name>". Two objects claiming one key are both named ("Peer/a, Peer/b"). */
export async function loadPeerNames(kubeconfig: string | undefined): Promise<Map<string, string>> {
  const k8s = await import('@kubernetes/client-node');
  const { GROUP, VERSION, apiMessage } = await import('../mesh/index.ts');
  const api = (await loadKubeConfig(kubeconfig)).makeApiClient(k8s.CustomObjectsApi);
  const names = new Map<string, string>();
  for (const [kind, plural] of [
    ['Peer', 'peers'],
    ['Gateway', 'gateways'],
  ] as const) {
    let items: Array<{ metadata?: { name?: string }; spec?: { publicKey?: unknown } }>;
    try {
      items = ((await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as { items: typeof items }).items;
    } catch (err) {
      throw new Error(`--names: listing ${plural}.${GROUP}: ${apiMessage(err).split('\n')[0]}`);
    }
    for (const o of items) {
      const key = o.spec?.publicKey;
      if (typeof key !== 'string' || !o.metadata?.name) continue;
      const name = `${kind}/${o.metadata.name}`;
      const before = names.get(key);
      names.set(key, before ? `${before}, ${name}` : name);
    }
  }
  return names;
}
