/**
 * Peers, Gateways and Nodes from the Kubernetes API through @kubernetes/client-node informers
 * (list, then watch; a 410 Gone relists). When the API server goes away, the informer reports an
 * error and stops: we restart it with backoff and jitter, and meanwhile keep serving the last
 * complete snapshot, so the device stays as it was during the outage.
 *
 * stop() abandons whatever is in flight at once: the lists go through bounded clients whose calls
 * it aborts, and the watches' connections (which client-node's stop cannot reach while they are
 * still connecting) are closed by destroying their dispatchers.
 *
 * Memory and CPU follow what the mesh reads (issue 10): every object is cut down to those fields
 * as it arrives, before the informer caches it (a Node's status carries images, conditions and
 * heartbeats: kilobytes the mesh never reads); lists come in pages of LIST_PAGE objects, so a
 * 5,000-Node list is never one response in memory; a Node is kept as its NodeInfo, which keeps its
 * identity while its name, pod CIDRs and InternalIPs are unchanged; and snapshot() returns the same
 * Snapshot and arrays while nothing changed (a kind's array is rebuilt only after a change to it).
 */
import * as k8s from '@kubernetes/client-node';
import { silentLogger } from '../../native/index.ts';
import type { Logger } from '../../native/index.ts';
import { Backoff } from '../backoff.ts';
import { InFlight, boundedApiClient } from '../api.ts';
import { GROUP, RESOURCES, VERSION } from '../crd/types.ts';
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import { nodeInfo } from './types.ts';
import type { PeerSource, Snapshot } from './types.ts';

type Obj = k8s.KubernetesObject;

/** Objects per list request: the API server's pages (its own default for reflectors is 500). */
export const LIST_PAGE = 500;

interface Watched {
  what: 'peers' | 'gateways' | 'nodes';
  informer: k8s.Informer<Obj> & k8s.ObjectCache<Obj>;
  synced: boolean;
  /** Errors reported so far; start() resolves even when its list failed, so this tells the two apart. */
  failures: number;
  backoff: Backoff;
  restart?: NodeJS.Timeout;
  /** What the snapshot holds of each object, by uid (or name): the slim object, or a Node's NodeInfo. */
  items: Map<string, unknown>;
  /** What each object looked like to the mesh when last seen (peers and gateways: spec, creation, deletion). */
  fingerprints: Map<string, string>;
  /** The array snapshot() hands out for this kind, until the next change to it. */
  array: unknown[] | null;
}

/** The metadata the mesh reads (trust rules: name, age, deletion; status writes: generation; informer: resourceVersion). */
function slimMetadata(m: k8s.V1ObjectMeta | undefined): k8s.V1ObjectMeta {
  const out: k8s.V1ObjectMeta = { name: m?.name };
  if (m?.uid !== undefined) out.uid = m.uid;
  if (m?.resourceVersion !== undefined) out.resourceVersion = m.resourceVersion;
  if (m?.generation !== undefined) out.generation = m.generation;
  if (m?.creationTimestamp !== undefined) out.creationTimestamp = m.creationTimestamp;
  if (m?.deletionTimestamp !== undefined) out.deletionTimestamp = m.deletionTimestamp;
  return out;
}

/**
 * An object cut down to what the mesh reads, before anything keeps it: a Peer or Gateway keeps its
 * spec and status (the member compares its own status with it before writing) but not its
 * managedFields or annotations; a Node keeps its pod CIDRs and its InternalIPs, nothing of its
 * status' images, conditions or heartbeats.
 */
export function slimObject(what: Watched['what'], obj: Obj): Obj {
  const o = obj as Obj & { spec?: Record<string, unknown>; status?: Record<string, unknown> };
  if (what === 'nodes') {
    const spec: Record<string, unknown> = {};
    if (o.spec?.podCIDR !== undefined) spec.podCIDR = o.spec.podCIDR;
    if (o.spec?.podCIDRs !== undefined) spec.podCIDRs = o.spec.podCIDRs;
    const addresses = o.status?.addresses;
    const internal = Array.isArray(addresses) ? addresses.filter((a: unknown) => (a as { type?: unknown } | null)?.type === 'InternalIP') : addresses;
    return { apiVersion: o.apiVersion, kind: o.kind, metadata: slimMetadata(o.metadata), spec, status: internal === undefined ? {} : { addresses: internal } } as Obj;
  }
  const out: Obj & { spec?: unknown; status?: unknown } = { apiVersion: o.apiVersion, kind: o.kind, metadata: slimMetadata(o.metadata) };
  if (o.spec !== undefined) out.spec = o.spec;
  if (o.status !== undefined) out.status = o.status;
  return out;
}

function sameNodeInfo(a: NodeInfo, b: NodeInfo): boolean {
  const same = (x: readonly string[], y: readonly string[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  return a.name === b.name && a.creationTimestamp === b.creationTimestamp && same(a.podCIDRs, b.podCIDRs) && same(a.internalIPs, b.internalIPs);
}

export interface KubeSourceOptions {
  log?: Logger;
  /** First retry delay after an error (default 500 ms), doubled up to maxBackoffMs (default 10 s); each delay jittered down to half. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Abandon one list call after this long (default API_CALL_TIMEOUT_MS). */
  requestTimeoutMs?: number;
  /** Objects per list request (default LIST_PAGE). */
  listPage?: number;
}

export class KubeSource implements PeerSource {
  private readonly watched: Watched[];
  private readonly listeners: Array<() => void> = [];
  private readonly log: Logger;
  private readonly o: KubeSourceOptions;
  private stopped = false;
  /** Lists and watches in flight (ended at stop). */
  private readonly inFlight = new InFlight();
  /** Errors seen so far (for health and metrics). */
  errors = 0;
  /** Full lists done so far: one per kind at start, and again after a 410 Gone (watch too old). */
  lists = 0;
  lastError: string | null = null;
  /** The Snapshot last handed out (reused while no kind changed). */
  private last: Snapshot | null = null;
  private emitQueued = false;

  constructor(kc: k8s.KubeConfig, options: KubeSourceOptions = {}) {
    this.o = options;
    this.log = options.log ?? silentLogger;
    const custom = boundedApiClient(kc, k8s.CustomObjectsApi, this.inFlight, options.requestTimeoutMs);
    const core = boundedApiClient(kc, k8s.CoreV1Api, this.inFlight, options.requestTimeoutMs);
    // The watches: client-node's Watch with a KubeConfig whose authentication step also records the
    // request's dispatcher, so stop() can close a watch that is still connecting.
    const watchConfig = Object.create(kc) as k8s.KubeConfig;
    watchConfig.applySecurityAuthentication = async (ctx: k8s.RequestContext): Promise<void> => {
      await kc.applySecurityAuthentication(ctx);
      const dispatcher = ctx.getDispatcher() as { destroy(err?: Error): unknown } | undefined;
      if (this.stopped) {
        void Promise.resolve(dispatcher?.destroy(new Error('stopping'))).catch(() => undefined);
        return;
      }
      this.inFlight.track(dispatcher);
    };
    const watch = new k8s.Watch(watchConfig);
    // Each watch event's object is cut down before the informer caches it (and the full one, parsed
    // from that line of the stream, is garbage at once).
    const slimWatch = (what: Watched['what']): k8s.Watch =>
      ({
        watch: (path: string, query: Record<string, string | number | boolean | undefined>, callback: (phase: string, obj: Obj, raw: unknown) => void, done: (err: unknown) => void) =>
          watch.watch(path, query, (phase: string, obj: Obj, raw: unknown) => callback(phase, phase === 'ERROR' || !obj?.metadata ? obj : slimObject(what, obj), raw), done),
      }) as unknown as k8s.Watch;
    const crdPath = (plural: string): string => `/apis/${GROUP}/${VERSION}/${plural}`;
    type Page = { metadata?: { resourceVersion?: string; _continue?: string; continue?: string }; items: Obj[] };
    // A list in pages, each cut down before the next is asked for; the resourceVersion is the first
    // page's (a continued list is the same consistent snapshot).
    const paged = (what: Watched['what'], page: (cont: string | undefined) => Promise<Page>) => async (): Promise<k8s.KubernetesListObject<Obj>> => {
      this.lists++;
      const items: Obj[] = [];
      let resourceVersion: string | undefined;
      let cont: string | undefined;
      do {
        const p = await page(cont);
        resourceVersion ??= p.metadata?.resourceVersion;
        for (const obj of p.items ?? []) items.push(slimObject(what, obj));
        cont = p.metadata?._continue ?? p.metadata?.continue;
      } while (cont);
      return { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion }, items };
    };
    const listCustom = (what: Watched['what'], plural: string) =>
      paged(what, async (cont) => (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural, limit: options.listPage ?? LIST_PAGE, _continue: cont })) as Page);
    const make = (what: Watched['what'], path: string, list: () => Promise<k8s.KubernetesListObject<Obj>>): Watched => ({
      what,
      informer: new k8s.ListWatch<Obj>(path, slimWatch(what), list, false),
      synced: false,
      failures: 0,
      backoff: new Backoff({ initialMs: options.backoffMs ?? 500, maxMs: options.maxBackoffMs ?? 10_000 }),
      items: new Map(),
      fingerprints: new Map(),
      array: null,
    });
    this.watched = [
      make('peers', crdPath(RESOURCES.Peer.plural), listCustom('peers', RESOURCES.Peer.plural)),
      make('gateways', crdPath(RESOURCES.Gateway.plural), listCustom('gateways', RESOURCES.Gateway.plural)),
      make('nodes', '/api/v1/nodes', paged('nodes', async (cont) => (await core.listNode({ limit: options.listPage ?? LIST_PAGE, _continue: cont })) as unknown as Page)),
    ];
  }

  async start(): Promise<void> {
    this.stopped = false;
    for (const w of this.watched) {
      // By name, as the informer's own cache: these kinds are cluster-scoped, and an object deleted and
      // recreated under its name while the watch was down comes back from the relist as an update of
      // that name with a new uid (keyed by uid, the old object would stay in the snapshot for good).
      const keyOf = (obj: Obj): string => obj.metadata?.name ?? '';
      // Only what the desired state reads counts as a change: status writes (every member writes its
      // own) and Node heartbeats would otherwise wake every agent for nothing. A status write still
      // replaces the object in the snapshot (the member reads its own status there), quietly.
      const changed = (obj: Obj): void => {
        w.backoff.reset();
        const key = keyOf(obj);
        if (w.what === 'nodes') {
          const info = nodeInfo(obj);
          const old = w.items.get(key) as NodeInfo | undefined;
          if (old && sameNodeInfo(old, info)) return; // a heartbeat, a label: nothing the mesh reads
          w.items.set(key, info);
          w.array = null;
          this.changedSoon();
          return;
        }
        const fingerprint = JSON.stringify([(obj as { spec?: unknown }).spec, obj.metadata?.creationTimestamp, obj.metadata?.deletionTimestamp]);
        w.items.set(key, obj);
        w.array = null;
        if (w.fingerprints.get(key) === fingerprint) return;
        w.fingerprints.set(key, fingerprint);
        this.changedSoon();
      };
      w.informer.on('add', changed);
      w.informer.on('update', changed);
      w.informer.on('delete', (obj: Obj) => {
        const key = keyOf(obj);
        w.fingerprints.delete(key);
        if (!w.items.delete(key)) return;
        w.array = null;
        this.changedSoon();
      });
      // CONNECT fires before each list/watch; the first successful list is the first add or an empty cache.
      w.informer.on('connect', () => this.log.debug('watching', { what: w.what }));
      w.informer.on('error', (err: unknown) => this.failed(w, err));
      this.begin(w);
    }
  }

  private begin(w: Watched): void {
    const failuresBefore = w.failures;
    w.informer.start().then(
      () => {
        // start() resolves after the list and the opening of the watch, or after reporting an error.
        if (w.failures !== failuresBefore) return;
        if (!w.synced) {
          w.synced = true;
          this.log.info('synced', { what: w.what, objects: w.informer.list().length });
          this.emit();
        }
      },
      (err: unknown) => this.failed(w, err),
    );
  }

  private failed(w: Watched, err: unknown): void {
    w.failures++;
    if (this.stopped || w.restart) return;
    this.errors++;
    this.lastError = `${w.what}: ${describe(err)}`;
    const delay = w.backoff.next();
    this.log.warn('API server unreachable or watch failed; keeping the last state and retrying', {
      what: w.what,
      error: describe(err),
      retryInMs: delay,
    });
    w.restart = setTimeout(() => {
      w.restart = undefined;
      if (!this.stopped) this.begin(w);
    }, delay);
  }

  /** Stop watching. Never waits for the API server: lists in flight are aborted, open watches closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.watched) {
      clearTimeout(w.restart);
      w.restart = undefined;
      await w.informer.stop();
    }
    this.inFlight.abort('stopping: lists and watches abandoned');
  }

  synced(): boolean {
    return this.watched.every((w) => w.synced);
  }

  /** The same Snapshot (and arrays) while nothing changed; a kind's array is rebuilt only after a change to that kind. */
  snapshot(): Snapshot {
    const [peers, gateways, nodes] = this.watched;
    if (this.last && peers.array && gateways.array && nodes.array) return this.last;
    for (const w of this.watched) w.array ??= [...w.items.values()];
    this.last = { peers: peers.array as Peer[], gateways: gateways.array as Gateway[], nodes: nodes.array as NodeInfo[] };
    return this.last;
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /**
   * One emit for everything that changed in this turn of the event loop: a list delivers every
   * object in one synchronous loop (5,000 adds), which is one change to the mesh, not 5,000.
   */
  private changedSoon(): void {
    if (this.emitQueued) return;
    this.emitQueued = true;
    queueMicrotask(() => {
      this.emitQueued = false;
      this.emit();
    });
  }

  /** A listener's error is logged, never thrown into the informer (where it would end the process or the watch). */
  private emit(): void {
    for (const cb of this.listeners) {
      try {
        cb();
      } catch (err) {
        this.log.error('a change listener failed', { error: describe(err) });
      }
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0];
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}
