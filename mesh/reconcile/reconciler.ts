/**
 * The reconciler: makes the live device and routing table what the desired state says, with the
 * smallest changes (see diff.ts). Bursts of events are coalesced into one pass; a periodic resync
 * undoes drift (someone ran `wg set` by hand); after any refused `set` the device is re-read and the
 * pass starts over from what is really there (a `set` is not transactional).
 *
 * It never acts without a desired state: while the source is not synced (API server away at
 * start), `desired()` returns null and the device is left exactly as it is.
 */
import { canonicalCidr, deleteFallbacks, deleteRoutes, listFallbacks, listRoutes, replaceFallbacks, replaceRoutes, silentLogger } from '../../native/index.ts';
import type { DeviceState, Logger, SetRequest } from '../../native/index.ts';
import { diffDevice, diffRoutes, opRequest } from './diff.ts';
import type { DesiredDevice, DeviceOp } from './diff.ts';

export interface DesiredState {
  device: DesiredDevice;
  /** Destinations routed through the tunnel. */
  routes: readonly string[];
  /**
   * Destinations that get an `unreachable` fallback in the table (behind any route to them): every
   * route, and also pod CIDRs the mesh does not route now (a refused or unregistered node), so their
   * traffic is refused rather than sent in clear through a CNI's main-table route. Default: routes.
   */
  fallbacks?: readonly string[];
}

/** What the reconciler needs of a device: UapiClient has it. */
export interface DeviceTarget {
  get(): Promise<DeviceState>;
  set(request: SetRequest): Promise<void>;
}

export interface RouteTable {
  table: number;
  /** The tunnel interface the routes go through. */
  dev: string;
  netns?: string;
  /**
   * Keep an `unreachable` fallback behind every route (default true): when the tunnel's routes go
   * with its interface (wireguard-go died), mesh traffic is refused rather than sent in clear.
   */
  failClosed?: boolean;
}

export interface SyncResult {
  at: Date;
  /** UAPI operations applied in this pass (each one `set`). */
  applied: DeviceOp[];
  routesAdded: string[];
  routesRemoved: string[];
  /** The device as re-read at the end of the pass. */
  live: DeviceState | null;
  desired: DesiredState;
  /** Set when the pass could not converge; the next pass retries. */
  error?: Error;
}

export interface ReconcilerOptions {
  device: DeviceTarget;
  routes?: RouteTable;
  desired: () => DesiredState | null;
  log?: Logger;
  /** Wait this long after an event before a pass, so a burst becomes one pass (default 100 ms). */
  debounceMs?: number;
  /** A full pass at least this often, to undo drift (default 60 s; 0 turns it off). */
  resyncMs?: number;
  /** Retry a failed pass after this long (default 2 s). */
  retryMs?: number;
  onSync?: (result: SyncResult) => void;
}

const MAX_ATTEMPTS = 3;

export class Reconciler {
  private readonly o: ReconcilerOptions;
  private readonly log: Logger;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  /** Passes completed (for tests and metrics). */
  passes = 0;
  lastResult: SyncResult | null = null;

  constructor(options: ReconcilerOptions) {
    this.o = options;
    this.log = options.log ?? silentLogger;
  }

  start(): void {
    this.stopped = false;
    const every = this.o.resyncMs ?? 60_000;
    if (every > 0) {
      this.resyncTimer = setInterval(() => this.trigger('resync'), every);
      this.resyncTimer.unref();
    }
    this.trigger('start');
  }

  /** Ask for a pass soon; many calls in a burst give one pass. */
  trigger(reason = 'event', delayMs = this.o.debounceMs ?? 100): void {
    if (this.stopped) return;
    this.dirty = true;
    this.log.debug('reconcile requested', { reason });
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.loop().finally(() => {
        this.running = null;
        if (this.dirty && !this.stopped) this.trigger('pending', 0);
      });
    }, delayMs);
  }

  /** Run one pass now and wait for it (wireguard-go (re)started, tests). Never concurrent with another pass. */
  syncNow(): Promise<SyncResult | null> {
    return this.exclusive(() => this.pass());
  }

  /** Passes run one at a time, whoever asks: two at once would both apply the same difference. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Wait until no pass is running or scheduled. */
  async idle(): Promise<void> {
    while (this.running || this.timer) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.resyncTimer);
    if (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    while (this.dirty && !this.stopped) {
      this.dirty = false;
      const result = await this.exclusive(() => this.pass());
      if (result?.error && !this.stopped) {
        // Try again later rather than spin: wireguard-go may be restarting.
        setTimeout(() => this.trigger('retry', 0), this.o.retryMs ?? 2000).unref();
      }
    }
  }

  private async pass(): Promise<SyncResult | null> {
    let desired: DesiredState | null;
    try {
      desired = this.o.desired();
    } catch (err) {
      // Never crash on what the cluster says: keep the device as it is and say why.
      this.log.error('cannot compute the desired state; leaving the device as it is', { error: (err as Error).message });
      if (!this.stopped) setTimeout(() => this.trigger('retry', 0), this.o.retryMs ?? 2000).unref();
      return null;
    }
    if (!desired) {
      this.log.debug('no desired state yet (source not synced): leaving the device as it is');
      return null;
    }
    const result: SyncResult = { at: new Date(), applied: [], routesAdded: [], routesRemoved: [], live: null, desired };
    let live: DeviceState | null = null;
    try {
      live = await this.o.device.get();
      let lastRefusal: Error | null = null;
      for (let attempt = 1; ; attempt++) {
        const ops = diffDevice(desired.device, live);
        if (ops.length === 0) break;
        if (attempt > MAX_ATTEMPTS) {
          throw new Error(`device still differs after ${MAX_ATTEMPTS} attempts (${ops.length} operations left): ${lastRefusal?.message ?? 'no refusal seen'}`);
        }
        // Each operation is its own set: one refused peer does not keep the others from being applied.
        for (const op of ops) {
          try {
            await this.o.device.set(opRequest(op));
            result.applied.push(op);
          } catch (err) {
            lastRefusal = err as Error;
            this.log.warn('UAPI set refused', { op: op.op, error: lastRefusal.message, attempt });
          }
        }
        // Lines before a refused one stay applied, and others may write too: go on from what is really there.
        live = await this.o.device.get();
      }
      result.live = live;
      if (this.o.routes) {
        const { table, dev, netns } = this.o.routes;
        const current = await listRoutes(table, { netns });
        const changes = diffRoutes(desired.routes, current, dev);
        // Only routes through our own device are deleted (deleteRoutes names the device): whatever else
        // is in this table (a --table shared by mistake with another tool) is left alone.
        result.routesRemoved = await deleteRoutes(table, dev, changes.remove, { netns });
        const { conflicts } = await replaceRoutes(table, changes.add.map((dst) => ({ dst, dev })), { netns });
        const taken = new Set(conflicts.map((r) => r.dst));
        result.routesAdded = changes.add.filter((c) => !taken.has(c));
        if (conflicts.length) {
          this.log.warn('routes in the mesh table belong to another device; left alone (is --table shared with another tool?)', {
            table,
            routes: conflicts.map((r) => `${r.dst} dev ${r.dev}`).join(', '),
          });
        }
        if (this.o.routes.failClosed ?? true) {
          const fallbacks = new Set(await listFallbacks(table, { netns }));
          const wanted = new Set([...desired.routes, ...(desired.fallbacks ?? [])].map((c) => canonicalCidr(c)));
          await deleteFallbacks(table, [...fallbacks].filter((c) => !wanted.has(c)), { netns });
          await replaceFallbacks(table, [...wanted].filter((c) => !fallbacks.has(c)).sort(), { netns });
        }
      }
      if (result.applied.length || result.routesAdded.length || result.routesRemoved.length) {
        this.log.info('reconciled', {
          sets: result.applied.length,
          peersPut: result.applied.filter((o) => o.op === 'put').length,
          peersRemoved: result.applied.filter((o) => o.op === 'remove').length,
          routesAdded: result.routesAdded.length,
          routesRemoved: result.routesRemoved.length,
        });
      }
    } catch (err) {
      result.live = live;
      result.error = err as Error;
      this.log.warn('reconcile pass failed; will retry', { error: result.error.message });
    }
    this.passes++;
    this.lastResult = result;
    try {
      this.o.onSync?.(result);
    } catch (err) {
      // A listener's error must not end the pass loop (an unhandled rejection ends the process).
      this.log.error('an onSync listener failed', { error: (err as Error).message });
    }
    return result;
  }
}
