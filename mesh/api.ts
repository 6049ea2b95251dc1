/**
 * Writing to the Kubernetes API: a node's own Peer (self-registration), status conditions, and
 * Warning events on refused objects. Reading is the informers' job (source/kube.ts). Only a member
 * that talks to an API server loads this module (and with it @kubernetes/client-node).
 */
import * as k8s from '@kubernetes/client-node';
import { silentLogger } from '../native/index.ts';
import type { Logger } from '../native/index.ts';
import { API_VERSION, GROUP, RESOURCES, VERSION } from './crd/types.ts';
import type { Condition, GatewaySpec, MeshStatus, PeerSpec } from './crd/types.ts';
import type { ObjectKind, Refusal } from './topology/index.ts';
import { compareText } from './topology/order.ts';
import { API_CALL_TIMEOUT_MS, apiMessage, differingKeys, httpStatus, isPlainSpec, ownsSpecField, rfc3339, sameSpec, specWriters } from './kube.ts';
import type { MeshObject, OwnObjectOutcome } from './kube.ts';

const MERGE = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const JSON_PATCH = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);

/** Something client-node's fetch sends through (an undici Dispatcher): destroy() closes its connections. */
interface Closable {
  destroy(err?: Error): unknown;
}

/**
 * The API requests a component has in flight, so that stop can end them all at once: an abort
 * signal for the requests, and their dispatchers (client-node makes one per request), whose
 * connections an abort does not close while they are still being established.
 */
export class InFlight {
  private controller = new AbortController();
  private readonly dispatchers = new Set<Closable>();
  /** Dispatchers kept for abort(): the newest this many (older ones belong to requests long done). */
  private readonly keep: number;

  constructor(keep = 32) {
    this.keep = keep;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Remember a request's dispatcher (a request made after abort() is closed at once). */
  track(dispatcher: unknown): void {
    const d = dispatcher as Closable | undefined;
    if (!d || typeof d.destroy !== 'function') return;
    this.dispatchers.add(d);
    for (const old of this.dispatchers) {
      if (this.dispatchers.size <= this.keep) break;
      this.dispatchers.delete(old);
    }
  }

  /** Abort every request in flight and close its connections; later requests work again. */
  abort(reason: string): void {
    this.controller.abort(new Error(reason));
    this.controller = new AbortController();
    for (const d of this.dispatchers) {
      try {
        void Promise.resolve(d.destroy(new Error(reason))).catch(() => undefined);
      } catch {
        /* already closed */
      }
    }
    this.dispatchers.clear();
  }
}

/**
 * An API client whose every request is bounded: it is aborted after `timeoutMs`, and at once by
 * `inFlight.abort()`, which also closes its connection. client-node's own clients have no timeout:
 * a call to an API server that does not answer waits for the TCP stack.
 */
export function boundedApiClient<T>(kc: k8s.KubeConfig, type: new (config: k8s.Configuration) => T, inFlight: InFlight, timeoutMs = API_CALL_TIMEOUT_MS): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig: no current cluster');
  const config = k8s.createConfiguration({
    baseServer: new k8s.ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        pre: async (ctx: k8s.RequestContext) => {
          ctx.setSignal(AbortSignal.any([inFlight.signal, AbortSignal.timeout(timeoutMs)]));
          inFlight.track(ctx.getDispatcher());
          return ctx;
        },
        post: async (response: k8s.ResponseContext) => response,
      },
    ],
  });
  return new type(config);
}

function setCondition(conditions: readonly Condition[], next: Omit<Condition, 'lastTransitionTime'>, now: Date): Condition[] {
  const current = conditions.find((c) => c.type === next.type);
  const same = current && current.status === next.status && current.reason === next.reason && current.message === next.message;
  if (same && current.observedGeneration === next.observedGeneration) return [...conditions];
  const lastTransitionTime = current && current.status === next.status ? current.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, 'Z');
  return [...conditions.filter((c) => c.type !== next.type), { ...next, lastTransitionTime }];
}

export interface MeshApiOptions {
  /** Who writes (events' reportingInstance, field manager): e.g. the node name. */
  instance: string;
  component: 'aks-mesh-agent' | 'aks-mesh-gateway';
  log?: Logger;
  /** Namespace for events about cluster-scoped objects (default "default", as kubectl looks there). */
  eventNamespace?: string;
  /** Abandon one API call after this long (default API_CALL_TIMEOUT_MS). */
  requestTimeoutMs?: number;
}

export class MeshApi {
  private readonly custom: k8s.CustomObjectsApi;
  private readonly core: k8s.CoreV1Api;
  private readonly o: MeshApiOptions;
  private readonly log: Logger;
  private readonly inFlight = new InFlight();
  /** The field manager of this process's writes: one per member, so managedFields tell members apart. */
  readonly fieldManager: string;
  /** Status writes sent (for tests and metrics: a quiet mesh writes none). */
  statusWrites = 0;
  /** Events already sent by this process, so a refusal is announced once, not on every pass. */
  private readonly announced = new Set<string>();

  constructor(kc: k8s.KubeConfig, options: MeshApiOptions) {
    this.custom = boundedApiClient(kc, k8s.CustomObjectsApi, this.inFlight, options.requestTimeoutMs);
    this.core = boundedApiClient(kc, k8s.CoreV1Api, this.inFlight, options.requestTimeoutMs);
    this.o = options;
    this.log = options.log ?? silentLogger;
    this.fieldManager = `${options.component}/${options.instance}`.slice(0, 128);
  }

  /** Abort every API call in flight (stop: nothing may wait for an API server that does not answer). Later calls work again. */
  abortInFlight(): void {
    this.inFlight.abort('stopping: API call abandoned');
  }

  private plural(kind: ObjectKind): string {
    return RESOURCES[kind].plural;
  }

  async getObject(kind: ObjectKind, name: string): Promise<MeshObject | null> {
    try {
      return (await this.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: this.plural(kind), name })) as MeshObject;
    } catch (err) {
      if (httpStatus(err) === 404) return null;
      throw err;
    }
  }

  /**
   * Create or update a member's own object (a node's Peer, a gateway's Gateway) so its spec is
   * exactly `spec`. Returns what changed.
   */
  async ensureObject(kind: ObjectKind, name: string, spec: PeerSpec | GatewaySpec): Promise<'created' | 'updated' | 'unchanged'> {
    return (await this.ensureOwnObject(kind, name, spec, null)).outcome;
  }

  /**
   * ensureObject, and tell whether the spec it replaced was another writer's: it differs from
   * `lastWritten` (what this process last wrote), or, when this process has written nothing yet,
   * the newest spec writer in managedFields is not this member's field manager.
   */
  async ensureOwnObject(kind: ObjectKind, name: string, spec: PeerSpec | GatewaySpec, lastWritten: unknown): Promise<OwnObjectOutcome> {
    const current = await this.getObject(kind, name);
    const fieldManager = this.fieldManager;
    if (!current) {
      await this.custom.createClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: this.plural(kind),
        body: { apiVersion: API_VERSION, kind, metadata: { name, labels: { 'app.kubernetes.io/managed-by': this.o.component } }, spec },
        fieldManager,
      });
      return { outcome: 'created', overwrittenBy: null };
    }
    if (sameSpec(current.spec, spec)) return { outcome: 'unchanged', overwrittenBy: null };
    const writers = specWriters(current.metadata.managedFields);
    const other = writers.find((w) => w.manager !== fieldManager) ?? null;
    const foreign = lastWritten !== null && lastWritten !== undefined ? !sameSpec(current.spec, lastWritten) : writers.length > 0 && writers[0].manager !== fieldManager;
    // Replace the spec whole (with the resourceVersion we read): fields we no longer set go away.
    await this.custom.replaceClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: this.plural(kind),
      name,
      body: { ...current, spec },
      fieldManager,
    });
    // A field manager is whatever the writer says it is: when the newest spec writer bears our name but
    // this process did not write that spec, say so rather than blame an older writer.
    const newest = writers[0];
    // managedFields times have a one-second grain: when our own last write ties with another
    // writer's, the newest is ambiguous. The writer who now owns a field that differs from what we
    // last wrote is the one who changed it.
    const changed = lastWritten !== null && typeof lastWritten === 'object' && isPlainSpec(current.spec) ? differingKeys(current.spec, lastWritten as Record<string, unknown>) : [];
    const owners = (current.metadata.managedFields ?? []).filter((f) => f.manager !== fieldManager && ownsSpecField(f, changed));
    const changer = specWriters(owners)[0];
    const writer = !foreign
      ? null
      : changer
        ? changer
        : newest?.manager === fieldManager
        ? { ...newest, manager: `${fieldManager} (not this process)` }
        : (other ?? { manager: '(unknown writer)', operation: 'Update', time: null });
    return { outcome: 'updated', overwrittenBy: writer, previous: current.spec, found: current };
  }

  /**
   * Remove one taint from a Node, and nothing else: a JSON patch whose `test` op carries the taints
   * as read, so a taint someone adds or changes meanwhile is never lost (the patch fails and is
   * redone on the new list). 'absent' when the Node does not carry it.
   */
  async removeNodeTaint(nodeName: string, taint: { key: string; effect: string }): Promise<'removed' | 'absent'> {
    for (let attempt = 1; ; attempt++) {
      const node = await this.core.readNode({ name: nodeName });
      const taints = (node.spec?.taints ?? []).map(plainTaint);
      const rest = taints.filter((t) => !(t.key === taint.key && t.effect === taint.effect));
      if (rest.length === taints.length) return 'absent';
      const ops = [
        { op: 'test', path: '/spec/taints', value: taints },
        rest.length ? { op: 'replace', path: '/spec/taints', value: rest } : { op: 'remove', path: '/spec/taints' },
      ];
      try {
        await this.core.patchNode({ name: nodeName, body: ops }, JSON_PATCH);
        return 'removed';
      } catch (err) {
        // The taints changed between our read and our patch (the test op failed): read again.
        if (attempt >= 5 || ![409, 422].includes(httpStatus(err))) throw err;
      }
    }
  }

  async deleteObject(kind: ObjectKind, name: string): Promise<boolean> {
    try {
      await this.custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: this.plural(kind), name });
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false;
      throw err;
    }
  }

  /**
   * Merge `status` and one condition into an object's status, keeping conditions others wrote.
   * Writes nothing when nothing would change (lastSyncTime alone is refreshed at most once per
   * `heartbeatMs`), so status writes do not feed back into watch events and passes. `cached` is the
   * status the informer holds: when it already matches, not even a read is sent. Retried on a conflict.
   */
  async updateStatus(
    kind: ObjectKind,
    name: string,
    patch: Omit<MeshStatus, 'conditions'>,
    condition?: Omit<Condition, 'lastTransitionTime'>,
    options: { cached?: MeshStatus; generation?: number; heartbeatMs?: number } = {},
  ): Promise<boolean> {
    const heartbeatMs = options.heartbeatMs ?? 60_000;
    const nextOf = (old: MeshStatus, generation: number | undefined): MeshStatus => {
      const conditions = condition ? setCondition(old.conditions ?? [], { ...condition, observedGeneration: generation }, new Date()) : old.conditions;
      const next: MeshStatus = { ...old, ...patch, ...(conditions ? { conditions } : {}) };
      const fresh = old.lastSyncTime && Date.now() - new Date(old.lastSyncTime).getTime() < heartbeatMs;
      if (fresh) next.lastSyncTime = old.lastSyncTime;
      return next;
    };
    const same = (a: MeshStatus, b: MeshStatus): boolean => sameSpec(withoutTransitions(a), withoutTransitions(b));
    if (options.cached && same(nextOf(options.cached, options.generation), options.cached)) return false;
    for (let attempt = 0; attempt < 3; attempt++) {
      const obj = await this.getObject(kind, name);
      if (!obj) return false;
      const old = obj.status ?? {};
      const next = nextOf(old, obj.metadata.generation);
      if (same(next, old)) return false;
      try {
        await this.custom.replaceClusterCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          plural: this.plural(kind),
          name,
          body: { ...obj, status: next },
          fieldManager: this.fieldManager,
        });
        this.statusWrites++;
        return true;
      } catch (err) {
        if (httpStatus(err) !== 409) throw err;
      }
    }
    return false;
  }

  /** Mark a refused object (condition Accepted=False on its status) and announce it with a Warning event, once. */
  async reportRefusal(r: Refusal): Promise<void> {
    const obj = await this.getObject(r.kind, r.name);
    if (!obj) return; // refused objects from elsewhere (a directory) have no status to write
    await this.updateStatus(r.kind, r.name, {}, { type: 'Accepted', status: 'False', reason: r.reason, message: r.message });
    const key = `${obj.metadata.uid}/${obj.metadata.generation}/${r.reason}`;
    if (this.announced.has(key)) return;
    this.announced.add(key);
    await this.warn(r.kind, obj, r.reason, r.message);
  }

  /** Clear an earlier refusal once the object is accepted (only if a refusal is recorded). */
  async reportAccepted(kind: ObjectKind, name: string, status: MeshStatus | undefined): Promise<void> {
    const accepted = status?.conditions?.find((c) => c.type === 'Accepted');
    if (!accepted || accepted.status === 'True') return;
    await this.updateStatus(kind, name, {}, { type: 'Accepted', status: 'True', reason: 'Accepted', message: `${kind} ${name} passes the trust rules` });
  }

  async warn(kind: ObjectKind, obj: MeshObject, reason: string, message: string): Promise<void> {
    const namespace = this.o.eventNamespace ?? 'default';
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${obj.metadata.name}.`, namespace },
          involvedObject: { apiVersion: API_VERSION, kind, name: obj.metadata.name, uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion },
          type: 'Warning',
          reason,
          message,
          source: { component: this.o.component, host: this.o.instance },
          reportingComponent: this.o.component,
          reportingInstance: this.o.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (err) {
      this.log.warn('could not write a Warning event', { kind, name: obj.metadata.name, reason, error: apiMessage(err) });
    }
  }

  /** Merge-patch a spec (for tests and tools). */
  async patchSpec(kind: ObjectKind, name: string, spec: Record<string, unknown>): Promise<void> {
    await this.custom.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: this.plural(kind), name, body: { spec } }, MERGE);
  }
}

/** A status without the transition times setCondition keeps anyway (conditions sorted by type). */
function withoutTransitions(s: MeshStatus): unknown {
  return { ...s, conditions: s.conditions?.map((c) => ({ ...c, lastTransitionTime: undefined })).sort((a, b) => compareText(a.type, b.type)) };
}

/** A taint as the API server stores it (JSON), for the patch's `test` op to compare exactly. */
function plainTaint(t: k8s.V1Taint): { key: string; effect: string; value?: string; timeAdded?: string } {
  const out: { key: string; effect: string; value?: string; timeAdded?: string } = { key: t.key, effect: t.effect };
  if (t.value !== undefined && t.value !== null) out.value = t.value;
  const added = rfc3339(t.timeAdded as unknown as string | Date | undefined);
  if (added) out.timeAdded = added;
  return out;
}
