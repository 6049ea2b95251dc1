/**
 * Peers, Gateways and Nodes from the Kubernetes API through @kubernetes/client-node informers
 * (list, then watch; a 410 Gone relists). When the API server goes away, the informer reports an
 * error and stops: we restart it with backoff and jitter, and meanwhile keep serving the last
 * complete snapshot, so the device stays as it was during the outage.
 *
 * stop() abandons whatever is in flight at once: the lists go through bounded clients whose calls
 * it aborts, and the watches' connections (which client-node's stop cannot reach while they are
 * still connecting) are closed by destroying their dispatchers.
 */
import * as k8s from '@kubernetes/client-node';
import { silentLogger } from '../../native/index.ts';
import type { Logger } from '../../native/index.ts';
import { Backoff } from '../backoff.ts';
import { InFlight, boundedApiClient } from '../api.ts';
import { GROUP, RESOURCES, VERSION } from '../crd/types.ts';
import type { Gateway, Peer } from '../crd/types.ts';
import { nodeInfo } from './types.ts';
import type { PeerSource, Snapshot } from './types.ts';

type Obj = k8s.KubernetesObject;

interface Watched {
  what: string;
  informer: k8s.Informer<Obj> & k8s.ObjectCache<Obj>;
  synced: boolean;
  /** Errors reported so far; start() resolves even when its list failed, so this tells the two apart. */
  failures: number;
  backoff: Backoff;
  restart?: NodeJS.Timeout;
}

export interface KubeSourceOptions {
  log?: Logger;
  /** First retry delay after an error (default 500 ms), doubled up to maxBackoffMs (default 10 s); each delay jittered down to half. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Abandon one list call after this long (default API_CALL_TIMEOUT_MS). */
  requestTimeoutMs?: number;
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
    const crdPath = (plural: string): string => `/apis/${GROUP}/${VERSION}/${plural}`;
    const listCustom = (plural: string) => async (): Promise<k8s.KubernetesListObject<Obj>> => {
      this.lists++;
      return (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as k8s.KubernetesListObject<Obj>;
    };
    const make = (what: string, path: string, list: () => Promise<k8s.KubernetesListObject<Obj>>): Watched => ({
      what,
      informer: new k8s.ListWatch<Obj>(path, watch, list, false),
      synced: false,
      failures: 0,
      backoff: new Backoff({ initialMs: options.backoffMs ?? 500, maxMs: options.maxBackoffMs ?? 10_000 }),
    });
    this.watched = [
      make('peers', crdPath(RESOURCES.Peer.plural), listCustom(RESOURCES.Peer.plural)),
      make('gateways', crdPath(RESOURCES.Gateway.plural), listCustom(RESOURCES.Gateway.plural)),
      make('nodes', '/api/v1/nodes', async () => {
        this.lists++;
        return (await core.listNode()) as k8s.KubernetesListObject<Obj>;
      }),
    ];
  }

  async start(): Promise<void> {
    this.stopped = false;
    for (const w of this.watched) {
      // Only what the desired state reads counts as a change: status writes (every member writes its
      // own) and Node heartbeats would otherwise wake every agent for nothing.
      const seen = new Map<string, string>();
      const relevant = (obj: Obj): string =>
        w.what === 'nodes'
          ? JSON.stringify(nodeInfo(obj as k8s.V1Node))
          : JSON.stringify([(obj as { spec?: unknown }).spec, obj.metadata?.creationTimestamp, obj.metadata?.deletionTimestamp]);
      const changed = (obj: Obj): void => {
        w.backoff.reset();
        const key = obj.metadata?.uid ?? obj.metadata?.name ?? '';
        const fingerprint = relevant(obj);
        if (seen.get(key) === fingerprint) return;
        seen.set(key, fingerprint);
        this.emit();
      };
      w.informer.on('add', changed);
      w.informer.on('update', changed);
      w.informer.on('delete', (obj: Obj) => {
        seen.delete(obj.metadata?.uid ?? obj.metadata?.name ?? '');
        this.emit();
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

  snapshot(): Snapshot {
    const [peers, gateways, nodes] = this.watched.map((w) => w.informer.list());
    return {
      peers: peers as unknown as Peer[],
      gateways: gateways as unknown as Gateway[],
      nodes: (nodes as k8s.V1Node[]).map(nodeInfo),
    };
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
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
