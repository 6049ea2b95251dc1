/**
 * What `aks-mesh uninstall-hook` does before Helm deletes a release (the chart's pre-delete hook):
 * an agent's stop is not a cleanup (DESIGN §3.5: a restart must lose nothing), so deleting the
 * DaemonSet alone would leave every node's ip rule and unreachable fallbacks behind and blackhole
 * cross-node pod traffic. So:
 *   1. create the cleanup DaemonSet first, "parked" (a nodeSelector no node matches, so no pod runs
 *      yet), built from the agent's own pod template (same image, service account, settings,
 *      volumes), whose init container runs `aks-mesh agent --cleanup` and whose one container then
 *      only sleeps, so a node's pod turns Ready exactly when its cleanup finished. It is the first
 *      write: whatever fails later, the cleanup's recipe stays in the cluster for a rerun, even once
 *      the garbage collector has removed the agent DaemonSet (a rerun that found neither would
 *      otherwise report "nothing to clean" and leave every node blackholed);
 *   2. delete the agent DaemonSet (foreground) and wait until its pods are gone (no agent may re-add
 *      what the cleanup removes);
 *   3. un-park the cleanup DaemonSet (its real nodeSelector);
 *   4. wait until every scheduled cleanup pod is Ready (desiredNumberScheduled == numberReady for the
 *      DaemonSet's current generation);
 *   5. delete the cleanup DaemonSet.
 * Every API call is retried on a transient error (429, 5xx, no answer) until the deadline. On timeout
 * it fails naming the nodes whose cleanup did not finish, and leaves the cleanup DaemonSet in place (a
 * node that comes back still cleans up; a rerun of helm uninstall picks it up). "Nothing to clean" only
 * when no agent DaemonSet, cleanup DaemonSet or agent pod is left and no node that still exists has a
 * Peer its agent wrote.
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
  /** Label selector of the release's own gateway pods in the namespace (default RELEASE_GATEWAY_PODS): Gateways on other nodes are not the release's. */
  releaseGatewayPods?: string;
  log?: Logger;
}

export interface UninstallResult {
  /** Nodes the agent ran on when it was deleted. */
  agentNodes: string[];
  /** What happened, for the log: 'cleaned', or 'nothing to clean'. */
  outcome: 'cleaned' | 'nothing to clean';
  /** desiredNumberScheduled of the cleanup DaemonSet when it finished. */
  cleanedNodes: number;
  /** Gateways this release did not start (warned about: their sidecars outlive the mesh). */
  foreignGateways: string[];
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

/** The nodeSelector key a parked cleanup DaemonSet carries: no node has it, so no pod runs until it is removed. */
export const PARKED_LABEL = 'aksmesh.io/cleanup-parked';
/** On the cleanup DaemonSet: the agent DaemonSet's selector (JSON), to find its pods once it is gone. */
export const AGENT_SELECTOR_ANNOTATION = 'aksmesh.io/agent-selector';
/** The label the agents put on the Peers they write (mesh/api.ts). */
const AGENT_MANAGED = 'app.kubernetes.io/managed-by=aks-mesh-agent';
/** The pods of the chart's own Konnectivity agent Deployment (its gateway sidecar's Gateways are the release's). */
export const RELEASE_GATEWAY_PODS = 'app.kubernetes.io/name=aks-mesh,app.kubernetes.io/component=konnectivity-agent';

/** HTTP statuses worth another try: the API server is busy or briefly unavailable. */
const TRANSIENT = new Set([429, 500, 502, 503, 504]);

/**
 * Run an API call, again on a transient failure (429, 500, 502, 503, 504, or no HTTP status at all:
 * a reset connection, a timeout) with a doubling pause, until `deadline`; any other error (404, 403,
 * 409, ...) at once. One busy moment of the API server must not fail the whole uninstall (the hook
 * Job has one try).
 */
export async function retryTransient<T>(what: string, call: () => Promise<T>, o: { deadline: number; log?: Logger; firstPauseMs?: number }): Promise<T> {
  let pause = o.firstPauseMs ?? 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const status = httpStatus(err);
      if (status !== 0 && !TRANSIENT.has(status)) throw err;
      if (Date.now() + pause >= o.deadline) throw err;
      (o.log ?? silentLogger).warn('API call failed, trying again', { what, status: status || 'no answer', error: apiMessage(err), attempt });
      await sleep(pause);
      pause = Math.min(pause * 2, 10_000);
    }
  }
}

const selectorText = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

const isReady = (p: k8s.V1Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
const sorted = (names: Iterable<string>): string[] => [...new Set(names)].sort();
const nodeOf = (p: k8s.V1Pod): string => p.spec?.nodeName ?? `(unscheduled pod ${p.metadata?.name})`;

/**
 * The cleanup DaemonSet for an agent DaemonSet: its pod template's identity and settings, with the
 * agent container's command turned into `... agent --cleanup` (an init container), then a container
 * that only sleeps (Ready = done). Tolerates everything: a node that runs no agent now may still hold
 * what one added. `parked`: its nodeSelector also asks for PARKED_LABEL, which no node has (no pod
 * runs until the hook removes it).
 */
export function cleanupDaemonSetFor(agent: k8s.V1DaemonSet, name: string, options: { parked?: boolean } = {}): k8s.V1DaemonSet {
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
  const nodeSelector = options.parked ? { ...(pod.nodeSelector ?? {}), [PARKED_LABEL]: 'true' } : pod.nodeSelector;
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: {
      name,
      namespace: agent.metadata?.namespace,
      labels: withComponent(agent.metadata?.labels),
      annotations: { 'aksmesh.io/cleanup-of': agent.metadata?.name ?? '', [AGENT_SELECTOR_ANNOTATION]: JSON.stringify(agent.spec?.selector.matchLabels ?? {}) },
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
          nodeSelector,
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

export const isParked = (ds: k8s.V1DaemonSet): boolean => ds.spec?.template.spec?.nodeSelector?.[PARKED_LABEL] !== undefined;

/** Run the uninstall cleanup; throws UninstallError naming the nodes not cleaned. */
export async function runUninstall(kc: k8s.KubeConfig, o: UninstallOptions): Promise<UninstallResult> {
  const log = o.log ?? silentLogger;
  const pollMs = o.pollMs ?? 2000;
  const deadline = Date.now() + o.timeoutMs;
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const { namespace } = o;
  const cleanupName = o.cleanupDaemonSet ?? `${o.daemonSet}-cleanup`;
  const seconds = `${Math.round(o.timeoutMs / 1000)}s`;
  const byHand = 'run `aks-mesh agent --cleanup` on each (with the agent\'s settings: the AKS_MESH_* environment of its DaemonSet)';
  const orSkip = 'or, to remove the release without cleaning them, helm uninstall --no-hooks';
  const retry = <T>(what: string, call: () => Promise<T>) => retryTransient(what, call, { deadline, log });
  /** An API failure as an UninstallError naming the object and what was done to it. */
  const fail = (what: string, err: unknown): never => {
    if (err instanceof UninstallError) throw err;
    throw new UninstallError(`${what}: ${apiMessage(err)}`);
  };

  const read = async (name: string): Promise<k8s.V1DaemonSet | null> => {
    try {
      return await retry(`read DaemonSet ${name}`, () => apps.readNamespacedDaemonSet({ name, namespace }));
    } catch (err) {
      if (httpStatus(err) === 404) return null;
      return fail(`DaemonSet ${namespace}/${name}`, err);
    }
  };
  const remove = async (name: string, propagationPolicy: 'Foreground' | 'Background'): Promise<void> => {
    try {
      await retry(`delete DaemonSet ${name}`, () => apps.deleteNamespacedDaemonSet({ name, namespace, body: { propagationPolicy } }));
    } catch (err) {
      if (httpStatus(err) !== 404) fail(`DaemonSet ${namespace}/${name}: delete`, err);
    }
  };
  /** Pods whose controller is the named DaemonSet (by uid when known: a new one of the same name is another). */
  const podsOf = async (dsName: string, selector: Record<string, string> | undefined, uid?: string): Promise<k8s.V1Pod[]> => {
    const labelSelector = selector && Object.keys(selector).length ? selectorText(selector) : undefined;
    let list: k8s.V1PodList;
    try {
      list = await retry(`list pods of ${dsName}`, () => core.listNamespacedPod({ namespace, ...(labelSelector ? { labelSelector } : {}) }));
    } catch (err) {
      return fail(`pods of DaemonSet ${namespace}/${dsName}: list`, err);
    }
    return list.items.filter((p) => p.metadata?.ownerReferences?.some((r) => r.kind === 'DaemonSet' && r.name === dsName && (!uid || r.uid === uid)));
  };
  /** Wait until the named DaemonSet's pods are gone; on timeout fail naming their nodes. */
  const waitPodsGone = async (dsName: string, selector: Record<string, string> | undefined, uid: string | undefined, why: string): Promise<void> => {
    let logged = '';
    for (;;) {
      const left = await podsOf(dsName, selector, uid);
      if (!left.length) return;
      const nodes = sorted(left.map(nodeOf));
      if (nodes.join(',') !== logged) {
        logged = nodes.join(',');
        log.info(`waiting for the pods of DaemonSet ${dsName} to go`, { namespace, daemonSet: dsName, nodes });
      }
      if (Date.now() >= deadline) throw new UninstallError(why.replace('{nodes}', nodes.join(', ')), nodes);
      await sleep(pollMs);
    }
  };
  const agentGoneMessage = `agent pods of DaemonSet ${namespace}/${o.daemonSet} still running after ${seconds} on node(s) {nodes}: their nodes are not cleaned. The cleanup DaemonSet ${cleanupName} stays parked: once the pods are gone, run helm uninstall again (it runs the cleanup), or ${byHand}; ${orSkip}`;

  const foreignGateways: string[] = [];
  await warnForeignGateways();

  const agent = await read(o.daemonSet);
  let cleanupDs = await read(cleanupName);
  const agentNodes = new Set<string>();

  if (agent) {
    const agentSelector = agent.spec?.selector.matchLabels;
    // Built before anything is written: the agent's pod template is the cleanup's source of truth.
    const desired = cleanupDaemonSetFor(agent, cleanupName, { parked: true });
    for (const p of await podsOf(o.daemonSet, agentSelector, agent.metadata?.uid)) if (p.spec?.nodeName) agentNodes.add(p.spec.nodeName);
    if (cleanupDs) {
      // Left by an earlier run or install (helm uninstall --no-hooks, then a new install): its pods may
      // be Ready from a cleanup that ran before these agents; only a fresh one says these nodes are clean.
      log.info('cleanup DaemonSet from an earlier run found while the agent runs: replacing it', { namespace, daemonSet: cleanupName });
      const old = cleanupDs;
      await remove(cleanupName, 'Background');
      await waitPodsGone(cleanupName, old.spec?.selector.matchLabels, old.metadata?.uid, `the pods of the old cleanup DaemonSet ${namespace}/${cleanupName} are still there after ${seconds} on node(s) {nodes}; nothing was deleted yet: run helm uninstall again once they are gone`);
      for (;;) {
        if (!(await read(cleanupName))) break;
        if (Date.now() >= deadline) throw new UninstallError(`DaemonSet ${namespace}/${cleanupName} (an earlier cleanup) is still there after ${seconds}; nothing was deleted yet: run helm uninstall again once it is gone`);
        await sleep(pollMs);
      }
    }
    try {
      cleanupDs = await retry(`create DaemonSet ${cleanupName}`, () => apps.createNamespacedDaemonSet({ namespace, body: desired }));
    } catch (err) {
      // A create whose answer was lost (then retried) finds its own parked DaemonSet: go on with it.
      const mine = httpStatus(err) === 409 ? await read(cleanupName) : null;
      if (!mine || !isParked(mine) || mine.metadata?.annotations?.['aksmesh.io/cleanup-of'] !== o.daemonSet) return fail(`DaemonSet ${namespace}/${cleanupName}: create`, err);
      cleanupDs = mine;
    }
    log.info('cleanup DaemonSet created, parked until the agents are gone', { namespace, daemonSet: cleanupName });
    log.info('deleting the agent DaemonSet', { namespace, daemonSet: o.daemonSet, nodes: sorted(agentNodes) });
    await remove(o.daemonSet, 'Foreground');
    // Its pods must be gone (their wireguard-go with them) before the cleanup runs: an agent still
    // running would put back what the cleanup removes.
    await waitPodsGone(o.daemonSet, agentSelector, agent.metadata?.uid, agentGoneMessage);
    log.info('agent pods gone', { nodes: sorted(agentNodes) });
  } else if (cleanupDs) {
    log.info('cleanup DaemonSet from an earlier run found (the agent DaemonSet is gone)', { namespace, daemonSet: cleanupName, parked: isParked(cleanupDs) });
    if (isParked(cleanupDs)) {
      let agentSelector: Record<string, string> | undefined;
      try {
        agentSelector = JSON.parse(cleanupDs.metadata?.annotations?.[AGENT_SELECTOR_ANNOTATION] ?? 'null') ?? undefined;
      } catch {
        agentSelector = undefined;
      }
      await waitPodsGone(o.daemonSet, agentSelector, undefined, agentGoneMessage);
    }
  } else {
    // Neither DaemonSet: nothing to clean only if no agent ran here and no node still has a Peer its agent wrote.
    const orphans = await podsOf(o.daemonSet, undefined);
    if (orphans.length) {
      const nodes = sorted(orphans.map(nodeOf));
      throw new UninstallError(
        `agent pods of DaemonSet ${namespace}/${o.daemonSet} are still running on node(s) ${nodes.join(', ')} but neither that DaemonSet nor the cleanup DaemonSet ${cleanupName} exists to clean with: once they are gone, ${byHand}; ${orSkip}`,
        nodes,
      );
    }
    const uncleaned = await nodesWithAgentPeers();
    if (uncleaned.length) {
      throw new UninstallError(
        `no agent DaemonSet ${namespace}/${o.daemonSet} or cleanup DaemonSet ${cleanupName} is left to clean with, but node(s) ${uncleaned.join(', ')} still have a Peer their agent wrote: they may still hold the mesh's ip rule, routes and unreachable fallbacks. ${byHand[0].toUpperCase()}${byHand.slice(1)} (it deletes the node's Peer too), then run helm uninstall again; ${orSkip}`,
        uncleaned,
      );
    }
    log.info('no agent DaemonSet, cleanup DaemonSet, agent pod or node-owned Peer: nothing to clean', { namespace, daemonSet: o.daemonSet });
    return { agentNodes: [], outcome: 'nothing to clean', cleanedNodes: 0, foreignGateways };
  }

  if (cleanupDs && isParked(cleanupDs)) {
    // A JSON merge patch: null removes the key, the rest of the nodeSelector stays.
    try {
      cleanupDs = await retry(`un-park DaemonSet ${cleanupName}`, () =>
        apps.patchNamespacedDaemonSet(
          { name: cleanupName, namespace, body: { spec: { template: { spec: { nodeSelector: { [PARKED_LABEL]: null } } } } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        ),
      );
    } catch (err) {
      return fail(`DaemonSet ${namespace}/${cleanupName}: un-park (remove spec.template.spec.nodeSelector[${PARKED_LABEL}])`, err);
    }
    log.info('cleanup DaemonSet un-parked: every node cleans up', { namespace, daemonSet: cleanupName });
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
      const pods = await podsOf(cleanupName, ds.spec?.selector.matchLabels, ds.metadata?.uid);
      const ready = new Set(pods.filter(isReady).map((p) => p.spec?.nodeName ?? ''));
      const notCleaned = sorted([...pods.filter((p) => !isReady(p)).map(nodeOf), ...[...agentNodes].filter((n) => !ready.has(n))]);
      const counts = observed ? `desired ${s?.desiredNumberScheduled ?? 0}, ready ${s?.numberReady ?? 0}` : 'not yet counted by the DaemonSet controller';
      const where = notCleaned.length ? `on node(s) ${notCleaned.join(', ')}` : 'on every node it was scheduled to';
      throw new UninstallError(
        `the mesh cleanup did not finish within ${seconds} ${where} (DaemonSet ${namespace}/${cleanupName}: ${counts}). ` +
          `See kubectl -n ${namespace} logs <pod> -c ${CLEANUP_CONTAINER}; ${byHand}, or fix the cause and run helm uninstall again. ` +
          `The cleanup DaemonSet stays so that nodes that come back still clean up (kubectl -n ${namespace} delete ds ${cleanupName} once done). ` +
          `If you remove the release with helm uninstall --no-hooks instead, its service account goes and the cleanup pods can no longer start: then delete ds ${cleanupName} and ${byHand} by hand`,
        notCleaned,
      );
    }
    await sleep(pollMs);
  }
  const cleanedNodes = ds.status?.desiredNumberScheduled ?? 0;
  log.info('every node cleaned', { namespace, daemonSet: cleanupName, nodes: cleanedNodes });
  await remove(cleanupName, 'Background');
  return { agentNodes: sorted(agentNodes), outcome: 'cleaned', cleanedNodes, foreignGateways };

  /** Nodes that still exist and still have a Peer their agent wrote (a node's own Peer goes with its cleanup). */
  async function nodesWithAgentPeers(): Promise<string[]> {
    let peers: { items?: { metadata?: { name?: string }; spec?: { nodeName?: string } }[] };
    try {
      peers = (await retry('list Peers', () => custom.listClusterCustomObject({ group: 'aksmesh.io', version: 'v1alpha1', plural: 'peers', labelSelector: AGENT_MANAGED }))) as typeof peers;
    } catch (err) {
      if (httpStatus(err) === 404) return []; // the CRD is gone: no Peer either
      return fail('peers.aksmesh.io: list', err);
    }
    const peerNodes = new Set((peers.items ?? []).map((p) => p.spec?.nodeName).filter((n): n is string => !!n));
    if (!peerNodes.size) return [];
    let nodes: k8s.V1NodeList;
    try {
      nodes = await retry('list Nodes', () => core.listNode());
    } catch (err) {
      return fail('nodes: list', err);
    }
    const existing = new Set(nodes.items.map((n) => n.metadata?.name));
    const gone = [...peerNodes].filter((n) => !existing.has(n));
    if (gone.length) log.warn('Peers of nodes that no longer exist are left (no node to clean)', { nodes: sorted(gone), delete: 'kubectl delete peers.aksmesh.io <name>' });
    return sorted([...peerNodes].filter((n) => existing.has(n)));
  }

  /**
   * A gateway sidecar this release did not start (one added to a Konnectivity agent Deployment with
   * `aks-mesh gateway-patch`) outlives the uninstall: its routes into the mesh then lead nowhere and
   * API-server→pod traffic through that Konnectivity agent is blackholed. The hook cannot remove
   * another owner's container; it says so (the log, and the chart's NOTES).
   */
  async function warnForeignGateways(): Promise<void> {
    let gateways: { items?: { metadata?: { name?: string }; spec?: { nodeName?: string } }[] };
    let releasePods: k8s.V1PodList;
    try {
      gateways = (await retry('list Gateways', () => custom.listClusterCustomObject({ group: 'aksmesh.io', version: 'v1alpha1', plural: 'gateways' }))) as typeof gateways;
      releasePods = await retry('list the release\'s gateway pods', () => core.listNamespacedPod({ namespace, labelSelector: o.releaseGatewayPods ?? RELEASE_GATEWAY_PODS }));
    } catch (err) {
      // Only a warning is at stake: the cleanup goes on.
      if (httpStatus(err) !== 404) log.warn('could not check for gateways this release did not start', { error: apiMessage(err) });
      return;
    }
    const releaseNodes = new Set(releasePods.items.map((p) => p.spec?.nodeName).filter((n): n is string => !!n));
    const foreign = (gateways.items ?? []).filter((g) => !(g.spec?.nodeName && releaseNodes.has(g.spec.nodeName)));
    if (!foreign.length) return;
    const names = sorted(foreign.map((g) => `${g.metadata?.name}${g.spec?.nodeName ? ` (node ${g.spec.nodeName})` : ''}`));
    log.warn(
      `Gateway(s) ${names.join(', ')} not started by this release: if a Deployment (a Konnectivity agent patched with aks-mesh gateway-patch) still runs the aks-mesh-gateway container, remove that container and its volumes from it first (aks-mesh gateway-patch --help), then delete the Gateway: once the mesh is gone its routes lead nowhere and API-server-to-pod traffic through it is blackholed`,
      { gateways: names },
    );
    foreignGateways.push(...names);
  }
}

/** "240s", "4m", "1m30s" or "240" (seconds) in milliseconds; NaN when it is none of these. */
export function parseDuration(text: string): number {
  const t = String(text).trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(t);
  if (!m || t === '') return Number.NaN;
  return ((Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 1000;
}
