/**
 * Peers, Gateways and Nodes from the Kubernetes API through @kubernetes/client-node informers
 * (list, then watch; a 410 Gone relists). When the API server goes away, the informer reports an
 * error and stops: we restart it with backoff, and meanwhile keep serving the last complete
 * snapshot, so the device stays as it was during the outage.
 */
import * as k8s from '@kubernetes/client-node';
import { silentLogger } from '../../native/index.ts';
import type { Logger } from '../../native/index.ts';
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
  backoffMs: number;
  restart?: NodeJS.Timeout;
}

export interface KubeSourceOptions {
  log?: Logger;
  /** First retry delay after an error (default 500 ms), doubled up to maxBackoffMs (default 10 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
}

export class KubeSource implements PeerSource {
  private readonly watched: Watched[];
  private readonly listeners: Array<() => void> = [];
  private readonly log: Logger;
  private readonly o: KubeSourceOptions;
  private stopped = false;
  /** Errors seen so far (for health and metrics). */
  errors = 0;
  /** Full lists done so far: one per kind at start, and again after a 410 Gone (watch too old). */
  lists = 0;
  lastError: string | null = null;

  constructor(kc: k8s.KubeConfig, options: KubeSourceOptions = {}) {
    this.o = options;
    this.log = options.log ?? silentLogger;
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const crdPath = (plural: string): string => `/apis/${GROUP}/${VERSION}/${plural}`;
    const listCustom = (plural: string) => async (): Promise<k8s.KubernetesListObject<Obj>> => {
      this.lists++;
      return (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as k8s.KubernetesListObject<Obj>;
    };
    const make = (what: string, path: string, list: () => Promise<k8s.KubernetesListObject<Obj>>): Watched => ({
      what,
      informer: k8s.makeInformer(kc, path, list),
      synced: false,
      failures: 0,
      backoffMs: this.backoff0,
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

  private get backoff0(): number {
    return this.o.backoffMs ?? 500;
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
        w.backoffMs = this.backoff0;
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
    this.log.warn('API server unreachable or watch failed; keeping the last state and retrying', {
      what: w.what,
      error: describe(err),
      retryInMs: w.backoffMs,
    });
    w.restart = setTimeout(() => {
      w.restart = undefined;
      if (!this.stopped) this.begin(w);
    }, w.backoffMs);
    w.backoffMs = Math.min(w.backoffMs * 2, this.o.maxBackoffMs ?? 10_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.watched) {
      clearTimeout(w.restart);
      w.restart = undefined;
      await w.informer.stop();
    }
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

  private emit(): void {
    for (const cb of this.listeners) cb();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0];
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}
