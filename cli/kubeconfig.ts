import type { KubeConfig } from '@kubernetes/client-node';

/**
 * The Kubernetes client config for a command: `--kubeconfig`, else $KUBECONFIG, ~/.kube/config or
 * the in-cluster service account. Loads @kubernetes/client-node only when called.
 */
export async function loadKubeConfig(path: string | undefined): Promise<KubeConfig> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(`--kubeconfig ${path ?? '(default)'}: cannot load: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes API configured: pass --kubeconfig, or run in a pod');
  return kc;
}
