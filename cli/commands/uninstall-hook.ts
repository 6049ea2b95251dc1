/**
 * `aks-mesh uninstall-hook`: the chart's pre-delete hook (mesh/uninstall.ts). It runs in a Job of
 * helm uninstall, before Helm deletes anything, so that every node is clean when the release is gone.
 */
import type { Argv } from 'yargs';
import { UsageError } from '../format.ts';
import { loadKubeConfig } from '../kubeconfig.ts';

interface UninstallHookArgs {
  namespace: string;
  daemonset: string;
  'cleanup-daemonset'?: string;
  'release-gateway-pods'?: string;
  timeout: string;
  kubeconfig?: string;
  'log-format': 'text' | 'json';
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function uninstallHookCommand(y: Argv): Argv {
  return y.command<UninstallHookArgs>(
    'uninstall-hook',
    "Before helm uninstall removes the release: delete the agent DaemonSet, run `aks-mesh agent --cleanup` on every node and wait until each is clean",
    (c) =>
      c
        .usage(
          '$0 uninstall-hook --namespace <ns> --daemonset <agent DaemonSet> [--timeout 240s]\n\n' +
            "The chart's pre-delete hook Job runs this. It first creates a cleanup DaemonSet from the agent's pod template (same " +
            "image, service account and AKS_MESH_* settings; every node tolerated), parked: a nodeSelector no node matches " +
            '(aksmesh.io/cleanup-parked), so the recipe for the cleanup is in the cluster before anything is deleted. It then ' +
            'deletes the agent DaemonSet (foreground) and waits until its pods are gone, un-parks the cleanup DaemonSet, whose init ' +
            'container runs `aks-mesh agent --cleanup` on every node (interface address, ip rule, mesh routes and their unreachable ' +
            "fallbacks, the node's Peer), waits until every scheduled cleanup pod is Ready, then deletes it. API calls are retried on " +
            '429, 5xx and network errors until the timeout.\n\n' +
            'Run again (a second helm uninstall) it picks up what the first left: a parked cleanup DaemonSet is un-parked once the ' +
            'agent pods are gone; a cleanup DaemonSet found next to a running agent DaemonSet is replaced by a fresh one. It reports ' +
            '"nothing to clean" only when no agent DaemonSet, cleanup DaemonSet or agent pod is left and no existing node has a Peer ' +
            'its agent wrote; otherwise it fails naming those nodes.\n\n' +
            'It warns about Gateways the release did not start (a gateway sidecar added with `aks-mesh gateway-patch`): remove that ' +
            'container from its Deployment before the uninstall, or API-server-to-pod traffic through it is blackholed.\n\n' +
            'On timeout it exits 1 naming the nodes not cleaned and leaves the cleanup DaemonSet in place: run helm uninstall again ' +
            'once those nodes are back, or run `aks-mesh agent --cleanup` on them. After helm uninstall --no-hooks the agent\'s ' +
            'service account is gone and the cleanup pods cannot start: delete ds aks-mesh-agent-cleanup and run ' +
            '`aks-mesh agent --cleanup` on each node by hand.',
        )
        .option('namespace', { type: 'string', demandOption: true, describe: 'Namespace of the agent DaemonSet (the release namespace)' })
        .option('daemonset', { type: 'string', demandOption: true, describe: 'The agent DaemonSet (the chart names it aks-mesh-agent)' })
        .option('cleanup-daemonset', { type: 'string', describe: 'Name of the cleanup DaemonSet (default <daemonset>-cleanup)' })
        .option('timeout', { type: 'string', default: '240s', describe: 'How long to wait in all (240s, 4m, 1m30s or plain seconds); keep helm uninstall --timeout above it' })
        .option('release-gateway-pods', { type: 'string', describe: "Label selector of the release's own gateway pods in --namespace (default: the chart's Konnectivity agent pods); Gateways on other nodes are warned about" })
        .option('kubeconfig', { type: 'string', describe: 'kubeconfig file (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)' })
        .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as const, describe: 'Log format on stderr' })
        .check((a) => {
          for (const k of ['namespace', 'daemonset', 'cleanup-daemonset'] as const) {
            const v = a[k];
            if (v !== undefined && (!DNS_LABEL.test(v) || v.length > 63)) throw new UsageError(`--${k} ${JSON.stringify(v)}: not a Kubernetes name (lower case letters, digits and '-', at most 63)`);
          }
          return true;
        }) as unknown as Argv<UninstallHookArgs>,
    async (a) => {
      const [{ createLogger }, { parseDuration, runUninstall }] = await Promise.all([import('../../native/index.ts'), import('../../mesh/uninstall.ts')]);
      const timeoutMs = parseDuration(a.timeout);
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new UsageError(`--timeout ${JSON.stringify(a.timeout)}: expected a duration such as 240s, 4m or 1m30s`);
      const log = createLogger({ format: a['log-format'], component: 'uninstall-hook' });
      const kc = await loadKubeConfig(a.kubeconfig);
      const result = await runUninstall(kc, { namespace: a.namespace, daemonSet: a.daemonset, cleanupDaemonSet: a['cleanup-daemonset'], releaseGatewayPods: a['release-gateway-pods'], timeoutMs, log });
      log.info(result.outcome === 'cleaned' ? 'uninstall cleanup done: every node is clean' : 'uninstall cleanup: nothing to clean', { ...result });
    },
  );
}
