/**
 * What `aks-mesh uninstall-hook` does before Helm deletes a release (the chart's pre-delete hook):
 * an agent's stop is not a cleanup (DESIGN §3.5: a restart must lose nothing), so deleting the
 * DaemonSet alone would leave every node's ip rule and unreachable fallbacks behind and blackhole
 * cross-node pod traffic. So:
 *   1. delete the agent DaemonSet (foreground) and wait until its pods are gone (no agent may re-add
 *      what the cleanup removes);
 *   2. create a cleanup DaemonSet built from the agent's own pod template (same image, service
 *      account, settings, volumes), whose init container runs `aks-mesh agent --cleanup` and whose
 *      one container then only sleeps, so a node's pod turns Ready exactly when its cleanup finished;
 *   3. wait until every scheduled cleanup pod is Ready (desiredNumberScheduled == numberReady for the
 *      DaemonSet's current generation);
 *   4. delete the cleanup DaemonSet.
 * On timeout it fails naming the nodes whose cleanup did not finish, and leaves the cleanup DaemonSet
 * in place (a node that comes back still cleans up; a rerun of helm uninstall picks it up).
 */
import * as k8s from '@kubernetes/client-node';
import { silentLogger } from '../native/index.ts';
import type { Logger } from '../native/index.ts';
import { apiMessage, httpStatus } from './kube.ts';

export const COMPONENT_LABEL = 'app.kubernetes.io/component';
/** The cleanup pods' component label (the agent's selector labels with this component). */
export const CLEANUP_COMPONENT = 'cleanup';
/** The init container that runs the cleanup, and the container that reports it done by being Ready. */
export const CLEANUP_CONTAINER = 'cleanup';
export const DONE_CONTAINER = 'done';

export interface UninstallOptions {
  namespace: string;
  /** The agent DaemonSet. */
  daemonSet: string;
  /** The cleanup DaemonSet (default `<daemonSet>-cleanup`). */
  cleanupDaemonSet?: string;
  /** For the whole run: the agents going, then every node's cleanup. */
  timeoutMs: number;
  /** How often to look (default 2 s). */
  pollMs?: number;
  log?: Logger;
}

export interface UninstallResult {
  /** Nodes the agent ran on when it was deleted. */
  agentNodes: string[];
  /** What happened, for the log: 'cleaned', or 'nothing to clean'. */
  outcome: 'cleaned' | 'nothing to clean';
  /** desiredNumberScheduled of the cleanup DaemonSet when it finished. */
  cleanedNodes: number;
}

/** A timeout or a refusal, with the nodes not cleaned (empty when none are known). */
export class UninstallError extends Error {
  readonly nodes: string[];
  constructor(message: string, nodes: string[] = []) {
    super(message);
    this.name = 'UninstallError';
    this.nodes = nodes;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pods owned by a DaemonSet (by uid), found through its selector. */
async function ownedPods(core: k8s.CoreV1Api, ds: k8s.V1DaemonSet): Promise<k8s.V1Pod[]> {
  const namespace = ds.metadata?.namespace ?? '';
  const labels = ds.spec?.selector.matchLabels ?? {};
  const labelSelector = Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const list = await core.listNamespacedPod({ namespace, labelSelector });
  return list.items.filter((p) => p.metadata?.ownerReferences?.some((o) => o.uid === ds.metadata?.uid));
}

const isReady = (p: k8s.V1Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
const sorted = (names: Iterable<string>): string[] => [...new Set(names)].sort();

/**
 * The cleanup DaemonSet for an agent DaemonSet: its pod template's identity and settings, with the
 * agent container's command turned into `... agent --cleanup` (an init container), then a container
 * that only sleeps (Ready = done). Tolerates everything: a node that runs no agent now may still hold
 * what one added.
 */
export function cleanupDaemonSetFor(agent: k8s.V1DaemonSet, name: string): k8s.V1DaemonSet {
  const what = `DaemonSet ${agent.metadata?.namespace}/${agent.metadata?.name}`;
  const pod = agent.spec?.template.spec;
  if (!pod) throw new UninstallError(`${what}: spec.template.spec is missing`);
  const container = pod.containers.find((c) => c.name === 'agent') ?? pod.containers.find((c) => [...(c.command ?? []), ...(c.args ?? [])].some((a) => /(^|\/)agent$/.test(a)));
  if (!container) throw new UninstallError(`${what}: spec.template.spec.containers has no agent container (named "agent", or running "agent")`);
  if (!container.image) throw new UninstallError(`${what}: spec.template.spec.containers[${container.name}].image is missing`);
  const withComponent = (labels: Record<string, string> | undefined) => ({ ...(labels ?? {}), [COMPONENT_LABEL]: CLEANUP_COMPONENT });
  const selector = withComponent(agent.spec?.selector.matchLabels);
  // Only the volumes the agent container mounts (its key folder, socket folder, API token), not /dev/net/tun.
  const mounted = new Set((container.volumeMounts ?? []).map((m) => m.name));
  const securityContext = container.securityContext;
  const cleanup: k8s.V1Container = {
    name: CLEANUP_CONTAINER,
    image: container.image,
    imagePullPolicy: container.imagePullPolicy,
    ...(container.command ? { command: container.command } : {}),
    args: [...(container.args ?? []), '--cleanup'],
    env: container.env,
    envFrom: container.envFrom,
    securityContext,
    volumeMounts: container.volumeMounts,
    resources: container.resources,
  };
  const done: k8s.V1Container = {
    name: DONE_CONTAINER,
    image: container.image,
    imagePullPolicy: container.imagePullPolicy,
    // Only reached once the cleanup succeeded; it holds nothing and needs nothing.
    command: ['sleep', 'infinity'],
    securityContext: { ...securityContext, capabilities: { drop: ['ALL'] } },
    resources: { requests: { cpu: '1m', memory: '8Mi' }, limits: { memory: '32Mi' } },
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: {
      name,
      namespace: agent.metadata?.namespace,
      labels: withComponent(agent.metadata?.labels),
      annotations: { 'aksmesh.io/cleanup-of': agent.metadata?.name ?? '' },
    },
    spec: {
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: withComponent(agent.spec?.template.metadata?.labels) },
        spec: {
          serviceAccountName: pod.serviceAccountName,
          automountServiceAccountToken: pod.automountServiceAccountToken,
          hostNetwork: true,
          dnsPolicy: pod.dnsPolicy,
          priorityClassName: pod.priorityClassName,
          imagePullSecrets: pod.imagePullSecrets,
          securityContext: pod.securityContext,
          nodeSelector: pod.nodeSelector,
          affinity: pod.affinity,
          tolerations: [{ operator: 'Exists' }],
          terminationGracePeriodSeconds: 5,
          initContainers: [cleanup],
          containers: [done],
          volumes: (pod.volumes ?? []).filter((v) => mounted.has(v.name)),
        },
      },
    },
  };
}

/** Run the uninstall cleanup; throws UninstallError naming the nodes not cleaned. */
export async function runUninstall(kc: k8s.KubeConfig, o: UninstallOptions): Promise<UninstallResult> {
  const log = o.log ?? silentLogger;
  const pollMs = o.pollMs ?? 2000;
  const deadline = Date.now() + o.timeoutMs;
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const { namespace } = o;
  const cleanupName = o.cleanupDaemonSet ?? `${o.daemonSet}-cleanup`;
  const seconds = `${Math.round(o.timeoutMs / 1000)}s`;
  const byHand = 'run `aks-mesh agent --cleanup` on each (with the agent\'s settings: the AKS_MESH_* environment of its DaemonSet)';
  const orSkip = 'or, to remove the release without cleaning them, helm uninstall --no-hooks';

  const read = async (name: string): Promise<k8s.V1DaemonSet | null> => {
    try {
      return await apps.readNamespacedDaemonSet({ name, namespace });
    } catch (err) {
      if (httpStatus(err) === 404) return null;
      throw new UninstallError(`DaemonSet ${namespace}/${name}: ${apiMessage(err)}`);
    }
  };

  const agent = await read(o.daemonSet);
  let cleanupDs = await read(cleanupName);
  const agentNodes = new Set<string>();
  if (!agent && !cleanupDs) {
    log.info('no agent DaemonSet and no cleanup DaemonSet: nothing to clean', { namespace, daemonSet: o.daemonSet });
    return { agentNodes: [], outcome: 'nothing to clean', cleanedNodes: 0 };
  }

  if (agent) {
    // Built before the agent goes: its pod template is the cleanup's source of truth.
    const desired = cleanupDaemonSetFor(agent, cleanupName);
    for (const p of await ownedPods(core, agent)) if (p.spec?.nodeName) agentNodes.add(p.spec.nodeName);
    log.info('deleting the agent DaemonSet', { namespace, daemonSet: o.daemonSet, nodes: sorted(agentNodes) });
    try {
      await apps.deleteNamespacedDaemonSet({ name: o.daemonSet, namespace, body: { propagationPolicy: 'Foreground' } });
    } catch (err) {
      if (httpStatus(err) !== 404) throw new UninstallError(`DaemonSet ${namespace}/${o.daemonSet}: delete: ${apiMessage(err)}`);
    }
    // Its pods must be gone (their wireguard-go with them) before the cleanup runs: an agent still
    // running would put back what the cleanup removes.
    for (;;) {
      const left = await ownedPods(core, agent);
      if (!left.length) break;
      if (Date.now() >= deadline) {
        const nodes = sorted(left.map((p) => p.spec?.nodeName ?? `(unscheduled pod ${p.metadata?.name})`));
        throw new UninstallError(
          `agent pods of DaemonSet ${namespace}/${o.daemonSet} still running after ${seconds} on node(s) ${nodes.join(', ')}: their nodes are not cleaned. Once the pods are gone, ${byHand}, or run helm uninstall again; ${orSkip}`,
          nodes,
        );
      }
      await sleep(pollMs);
    }
    log.info('agent pods gone', { nodes: sorted(agentNodes) });
    if (!cleanupDs) {
      try {
        cleanupDs = await apps.createNamespacedDaemonSet({ namespace, body: desired });
      } catch (err) {
        throw new UninstallError(`DaemonSet ${namespace}/${cleanupName}: create: ${apiMessage(err)}`);
      }
      log.info('cleanup DaemonSet created', { namespace, daemonSet: cleanupName });
    } else {
      log.info('cleanup DaemonSet from an earlier run found: waiting for it', { namespace, daemonSet: cleanupName });
    }
  }

  // Every scheduled cleanup pod Ready, as the DaemonSet controller counts it for this generation.
  let ds = cleanupDs as k8s.V1DaemonSet;
  for (;;) {
    const current = await read(cleanupName);
    if (!current) throw new UninstallError(`DaemonSet ${namespace}/${cleanupName} was deleted while the cleanup ran: the nodes may not be clean; ${byHand}`, sorted(agentNodes));
    ds = current;
    const s = ds.status;
    const observed = (s?.observedGeneration ?? 0) >= (ds.metadata?.generation ?? 1);
    if (observed && s && s.desiredNumberScheduled === s.numberReady) break;
    if (Date.now() >= deadline) {
      const pods = await ownedPods(core, ds);
      const ready = new Set(pods.filter(isReady).map((p) => p.spec?.nodeName ?? ''));
      const notCleaned = sorted([...pods.filter((p) => !isReady(p)).map((p) => p.spec?.nodeName ?? `(unscheduled pod ${p.metadata?.name})`), ...[...agentNodes].filter((n) => !ready.has(n))]);
      const counts = observed ? `desired ${s?.desiredNumberScheduled ?? 0}, ready ${s?.numberReady ?? 0}` : 'not yet counted by the DaemonSet controller';
      const where = notCleaned.length ? `on node(s) ${notCleaned.join(', ')}` : 'on every node it was scheduled to';
      throw new UninstallError(
        `the mesh cleanup did not finish within ${seconds} ${where} (DaemonSet ${namespace}/${cleanupName}: ${counts}). ` +
          `See kubectl -n ${namespace} logs <pod> -c ${CLEANUP_CONTAINER}; ${byHand}, or fix the cause and run helm uninstall again; ${orSkip}. ` +
          `The cleanup DaemonSet stays so that nodes that come back still clean up: kubectl -n ${namespace} delete ds ${cleanupName} once done`,
        notCleaned,
      );
    }
    await sleep(pollMs);
  }
  const cleanedNodes = ds.status?.desiredNumberScheduled ?? 0;
  log.info('every node cleaned', { namespace, daemonSet: cleanupName, nodes: cleanedNodes });
  try {
    await apps.deleteNamespacedDaemonSet({ name: cleanupName, namespace, body: { propagationPolicy: 'Background' } });
  } catch (err) {
    if (httpStatus(err) !== 404) throw new UninstallError(`DaemonSet ${namespace}/${cleanupName}: delete: ${apiMessage(err)}`);
  }
  return { agentNodes: sorted(agentNodes), outcome: 'cleaned', cleanedNodes };
}

/** "240s", "4m", "1m30s" or "240" (seconds) in milliseconds; NaN when it is none of these. */
export function parseDuration(text: string): number {
  const t = String(text).trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(t);
  if (!m || t === '') return Number.NaN;
  return ((Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 1000;
}
