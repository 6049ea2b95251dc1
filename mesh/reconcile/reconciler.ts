/**
 * The reconciler: makes the live device and routing table what the desired state says, with the
 * smallest changes (see diff.ts). Bursts of events are coalesced into one pass.
 *
 * Two kinds of pass (issue 10: an event costs what it changes):
 * - an event pass (`trigger`) trusts what this reconciler last applied (mirror.ts): it diffs the
 *   desired state against that mirror, short-circuiting on object identity, applies only the
 *   difference and issues no `get` and no route listing;
 * - a full pass reads the device and the table and repairs drift (someone ran `wg set` or `ip route`
 *   by hand, wireguard-go lost its state): at start, on the resync timer, on `syncNow()`
 *   (wireguard-go (re)started, device reset), and after any refused `set` or failed pass (a `set` is
 *   not transactional: the mirror is no longer trusted, the device is re-read and the pass converges
 *   from what is really there).
 *
 * It never acts without a desired state: while the source is not synced (API server away at
 * start), `desired()` returns null and the device is left exactly as it is.
 */
import { PROMPT_KEEPALIVE, listFallbacks, listRoutes, silentLogger } from '../../native/index.ts';
import type { DeviceState, Logger, PeerChange, PeerConfig, PeerState, SetRequest } from '../../native/index.ts';
import { batchOps, batchRequest, deviceDrift, opRequest, peerDifferences, planDevice, planRoutes } from './diff.ts';
import type { DesiredDevice, DeviceDrift, DeviceOp, PeerField, RoutePlan } from './diff.ts';
import { DeviceMirror } from './mirror.ts';
import { applyRouteBatch } from './routes.ts';

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
  /** False for an event pass that read nothing (trusted the mirror); true when it read the device or listed the table (start, resync, syncNow, after a refusal or a failed route change). */
  full: boolean;
  /** UAPI operations applied in this pass (a batch of peers is one `set`; see `sets`). */
  applied: DeviceOp[];
  /** `set` requests sent in this pass, refused ones included. */
  sets: number;
  routesAdded: string[];
  routesRemoved: string[];
  /**
   * The device as this reconciler knows it, DeviceState-shaped: as read by the last full pass with
   * everything applied since (an event pass does not re-read it). Peers, keys and settings are
   * current; handshakes and counters are those of the last full pass (refreshed at each resync).
   * After a failed pass, the device as last read. Do not mutate it: an unchanged device is the same object.
   */
  live: DeviceState | null;
  desired: DesiredState;
  /** Set when the pass could not converge; the next pass (a full one) retries. */
  error?: Error;
  /** Each peer this pass added, updated or removed on the device (in the order applied; none in replace mode). */
  changes?: PeerDecision[];
}

/** One peer a pass added, updated or removed: what a decision log line and the live stream say. */
export interface PeerDecision {
  change: 'added' | 'updated' | 'removed';
  /** The object's kind and name, when the desired state named it (a peer removed after an agent restart may be known by key only). */
  kind?: string;
  name?: string;
  publicKey: string;
  /** For an update: the fields that differed. */
  fields?: PeerField[];
}

/** What a full pass would do now, without doing it (Reconciler.preview: `aks-mesh diff`, `status --local`). */
export interface Preview {
  at: Date;
  desired: DesiredState;
  /** The device as read for this preview. */
  live: DeviceState;
  /** The UAPI operations a full pass would send (in replace mode, the one rewrite). */
  ops: DeviceOp[];
  /** How the device differs from the desired state, peer by peer. */
  drift: DeviceDrift;
  /** What a full pass would change in the routing table; null when this reconciler manages no routes. */
  routes: RoutePlan | null;
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
  /**
   * How peer changes reach the device: 'incremental' (default) sets only the peers that changed,
   * batched; 'replace' rewrites every peer in one `set` with replace_peers whenever any differs (the
   * Go prototype's and Kilo's way, kept as the benchmark reference: every handshake is lost).
   */
  applyMode?: 'incremental' | 'replace';
  /** Peers per `set` when many change at once (default 64). */
  batchSize?: number;
  onSync?: (result: SyncResult) => void;
}

const MAX_ATTEMPTS = 3;
/**
 * 64 peers make a `set` of about 17 KB (a public key, a few flags, allowed IPs, an endpoint each).
 * wireguard-go reads a `set` line by line with no overall limit and answers with one errno line,
 * but it does real work per new peer while it holds the device (keys precomputed, a handshake
 * started for a peer with an endpoint and a keepalive): on this shared, loaded machine 256 new
 * peers took 150-900 ms and 128 up to 1.1 s, and each size once passed the client's 5 s timeout,
 * after which the batch goes again one peer per `set`. 64 keeps each request well inside it; 5,000
 * new peers are 79 round trips instead of 5,000, about 0.2 ms of agent CPU each.
 */
const DEFAULT_BATCH = 64;
/** At most this many new peers of one event pass get a handshake prompt (greet()). */
const GREET_LIMIT = 16;
/**
 * A pass that changes at most this many peers logs each at info ("peer added" Peer/node-b ...);
 * a bigger one (a start-up on a 5,000-peer mesh) logs them at debug, and its 'reconciled' summary
 * line says how many: the info log stays a few lines per pass whatever the mesh size.
 */
export const DECISION_LOG_LIMIT = 16;

/** The kind and name a desired peer carries (a DesiredPeer does; a bare PeerConfig does not). */
function nameOf(peer: PeerConfig | undefined): { kind?: string; name?: string } {
  const p = peer as { kind?: unknown; name?: unknown } | undefined;
  return typeof p?.kind === 'string' && typeof p.name === 'string' ? { kind: p.kind, name: p.name } : {};
}

/** Whether the logger would print debug lines: winston formats a line before its transport drops it, so skip the call when not. */
function debugEnabled(log: Logger): boolean {
  const check = (log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled;
  return typeof check === 'function' ? check.call(log, 'debug') : true;
}

export class Reconciler {
  private readonly o: ReconcilerOptions;
  private readonly log: Logger;
  private readonly debug: boolean;
  private readonly mirror = new DeviceMirror();
  private dirty = false;
  /** The next pass reads everything (set by the resync timer, a refusal, an error). */
  private fullNext = true;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  /** The device as last read (what a failed pass reports). */
  private lastRead: DeviceState | null = null;
  /** Whether a pass is running now (between its desired state and its onSync). */
  private passing = false;
  /** Passes completed (for tests and metrics). */
  passes = 0;
  lastResult: SyncResult | null = null;

  constructor(options: ReconcilerOptions) {
    this.o = options;
    this.log = options.log ?? silentLogger;
    this.debug = debugEnabled(this.log);
  }

  start(): void {
    this.stopped = false;
    const every = this.o.resyncMs ?? 60_000;
    if (every > 0) {
      this.resyncTimer = setInterval(() => this.resync('resync'), every);
      this.resyncTimer.unref();
    }
    this.resync('start');
  }

  /** Ask for a full pass soon (reads the device and the table). */
  resync(reason = 'resync'): void {
    this.fullNext = true;
    this.trigger(reason);
  }

  /** Ask for a pass soon; many calls in a burst give one pass. An event pass unless a full one is due. */
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

  /**
   * Run one pass now and wait for it; never concurrent with another pass. A full pass (for when
   * wireguard-go (re)started or the device was reset: nothing applied can be trusted) unless `{ full: false }`.
   */
  syncNow(options: { full?: boolean } = {}): Promise<SyncResult | null> {
    return this.exclusive(() => this.pass(options.full ?? true));
  }

  /** Passes run one at a time, whoever asks: two at once would both apply the same difference. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Whether a pass is running: the device may be half-way between two desired states, so a reader
   * comparing it with the last pass's desired state (readiness) must not call that drift.
   */
  get busy(): boolean {
    return this.passing;
  }

  /**
   * What a full pass would change now, without changing anything: the desired state, the device
   * read once, the routing table listed once, and the plan diff.ts makes from them. Runs between
   * passes (never during one). Null while there is no desired state (the source has not synced).
   */
  preview(): Promise<Preview | null> {
    return this.exclusive(async () => {
      const desired = this.o.desired();
      if (!desired) return null;
      const live = await this.o.device.get();
      const plan = planDevice(desired.device, live);
      let routes: RoutePlan | null = null;
      if (this.o.routes) {
        const { table, dev, netns } = this.o.routes;
        const current = await listRoutes(table, { netns });
        const held = (this.o.routes.failClosed ?? true) ? new Set(await listFallbacks(table, { netns })) : null;
        routes = planRoutes(desired.routes, this.fallbackLists(desired), current, held, dev);
      }
      return { at: new Date(), desired, live, ops: this.forMode(plan.ops, desired.device, false), drift: deviceDrift(desired.device, live), routes };
    });
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
      const result = await this.exclusive(() => this.pass(false));
      if (result?.error && !this.stopped) {
        // Try again later rather than spin: wireguard-go may be restarting.
        setTimeout(() => this.trigger('retry', 0), this.o.retryMs ?? 2000).unref();
      }
    }
  }

  private async pass(forceFull: boolean): Promise<SyncResult | null> {
    this.passing = true;
    try {
      return await this.passOnce(forceFull);
    } finally {
      this.passing = false;
    }
  }

  private async passOnce(forceFull: boolean): Promise<SyncResult | null> {
    const cpuAtStart = process.cpuUsage();
    // A full pass asked for (wireguard-go restarted, the device reset) stays due even when this one
    // cannot run (no desired state yet, or it cannot be computed): the next pass must not trust a
    // mirror of a device that is gone.
    if (forceFull) {
      this.fullNext = true;
      this.mirror.distrust();
    }
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
    const full = forceFull || this.fullNext || !this.mirror.trusted;
    this.fullNext = false;
    const result: SyncResult = { at: new Date(), full, applied: [], sets: 0, routesAdded: [], routesRemoved: [], live: null, desired, changes: [] };
    try {
      if (full || !(await this.eventDevice(desired.device, result))) {
        result.full = true;
        await this.fullDevice(desired.device, result);
      }
      if (this.o.routes) {
        if (result.full || !(await this.eventRoutes(desired, this.o.routes, result))) {
          // An event pass whose route batch failed lists the table too: it is no longer one that read nothing.
          result.full = true;
          await this.fullRoutes(desired, this.o.routes, result);
        }
      }
      result.live = this.mirror.live();
      if (result.applied.length || result.routesAdded.length || result.routesRemoved.length) {
        let put = 0;
        let removed = 0;
        for (const op of result.applied) {
          if (op.op === 'put') put++;
          else if (op.op === 'remove') removed++;
          else if (op.op === 'replace') put += op.peers.length;
        }
        this.logDecisions(result.changes ?? []);
        const cpu = process.cpuUsage(cpuAtStart);
        this.log.info('reconciled', {
          // The process's CPU over the pass, desired state included (whatever else ran meanwhile too).
          cpuMs: Math.round((cpu.user + cpu.system) / 1000),
          full: result.full,
          sets: result.sets,
          peersPut: put,
          peersAdded: result.changes?.filter((c) => c.change === 'added').length ?? 0,
          peersUpdated: result.changes?.filter((c) => c.change === 'updated').length ?? 0,
          peersRemoved: removed,
          routesAdded: result.routesAdded.length,
          routesRemoved: result.routesRemoved.length,
        });
      }
    } catch (err) {
      this.mirror.distrust();
      result.live = this.lastRead;
      result.error = err as Error;
      // What did land before the failure is still worth a line each.
      this.logDecisions(result.changes ?? []);
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

  /**
   * Apply the difference between `want` and the mirror. Returns false when a `set` was refused:
   * the mirror is then untrusted and the caller converges with a full pass.
   */
  private async eventDevice(want: DesiredDevice, result: SyncResult): Promise<boolean> {
    const ops = this.mirror.diff(want);
    if (ops.length === 0) return true;
    const refused = await this.apply(this.forMode(ops, want), result, 1, true, (key) => this.mirror.peer(key)?.state);
    if (refused) {
      this.mirror.distrust();
      return false;
    }
    this.mirror.settled(want);
    await this.greet(ops);
    return true;
  }

  /**
   * Peers an event pass created get a handshake initiation from us at once. A new node starts
   * sending before the others know its key: its first initiation is dropped, and WireGuard tries
   * again only after 5 s (REKEY_TIMEOUT), so its first packets would wait that long. wireguard-go
   * sends a keepalive, and so an initiation, when a `set` turns a peer's persistent keepalive from 0
   * to non-zero (native/wireguard-go/prompt.ts): one `set` turns it on and off again for each new
   * peer with an endpoint (two blocks of the same peer; the first is acted on before the second is
   * read). A peer created with a keepalive already got one. Only a few at a time (GREET_LIMIT): a
   * start-up or a burst of many new peers is not worth a storm of handshakes. Best effort: a failure
   * is logged, and the mirror is no longer trusted (a keepalive may be left on) until a full pass.
   */
  private async greet(ops: readonly DeviceOp[]): Promise<void> {
    if (this.o.applyMode === 'replace') return;
    const peers: PeerChange[] = [];
    for (const op of ops) {
      if (op.op !== 'put' || !op.created || !op.peer.endpoint || (op.peer.persistentKeepalive ?? 0) > 0) continue;
      peers.push({ publicKey: op.peer.publicKey, updateOnly: true, persistentKeepalive: PROMPT_KEEPALIVE }, { publicKey: op.peer.publicKey, updateOnly: true, persistentKeepalive: 0 });
    }
    if (peers.length === 0 || peers.length > 2 * GREET_LIMIT) return;
    try {
      await this.o.device.set({ peers });
    } catch (err) {
      // The keepalive may be left on (a timeout after the first block): the next pass is full and repairs it.
      this.mirror.distrust();
      this.log.debug('could not prompt a handshake with new peers', { peers: peers.length / 2, error: (err as Error).message });
    }
  }

  /** Read the device, apply the difference, and re-read only after a refusal (up to MAX_ATTEMPTS). */
  private async fullDevice(want: DesiredDevice, result: SyncResult): Promise<void> {
    this.mirror.distrust();
    let live = await this.readDevice();
    let lastRefusal: Error | null = null;
    for (let attempt = 1; ; attempt++) {
      const plan = planDevice(want, live);
      const ops = this.forMode(plan.ops, want);
      const have = plan.have;
      if (ops.length && attempt > MAX_ATTEMPTS) {
        throw new Error(`device still differs after ${MAX_ATTEMPTS} attempts (${ops.length} operations left): ${lastRefusal?.message ?? 'no refusal seen'}`);
      }
      const refused = ops.length ? await this.apply(ops, result, attempt, false, (key) => have.get(key)) : null;
      if (!refused) {
        this.mirror.rebuild(want, live, plan, ops.some((o) => o.op === 'replace'));
        return;
      }
      lastRefusal = refused;
      // Lines before a refused one stay applied, and others may write too: go on from what is really there.
      live = await this.readDevice();
    }
  }

  private async readDevice(): Promise<DeviceState> {
    const live = await this.o.device.get();
    this.lastRead = live;
    return live;
  }

  /** In replace mode, any peer difference becomes one rewrite of every desired peer. */
  private forMode(ops: DeviceOp[], want: DesiredDevice, logged = true): DeviceOp[] {
    if (this.o.applyMode !== 'replace' || !ops.some((o) => o.op === 'put' || o.op === 'remove')) return ops;
    // The convergence benchmark matches a change to the rewrite that carries it by these keys (a preview carries nothing).
    if (this.debug && logged) this.log.debug('replace carries', { publicKeys: ops.flatMap((o) => (o.op === 'put' ? [o.peer.publicKey] : o.op === 'remove' ? [o.publicKey] : [])) });
    return [...ops.filter((o) => o.op === 'device'), { op: 'replace', peers: want.peers }];
  }

  /**
   * Send the operations in batches. A `set` is not transactional: when a batch is refused, its
   * operations are sent again one per `set`, so one bad peer does not keep the others out. Returns
   * the last refusal, or null when every `set` was accepted.
   */
  private async apply(ops: readonly DeviceOp[], result: SyncResult, attempt: number, commit: boolean, before: (publicKey: string) => PeerState | undefined): Promise<Error | null> {
    let refused: Error | null = null;
    for (const batch of batchOps(ops, this.o.batchSize ?? DEFAULT_BATCH)) {
      try {
        result.sets++;
        await this.o.device.set(batchRequest(batch));
        for (const op of batch) this.applied(op, result, commit, before);
        continue;
      } catch (err) {
        refused = err as Error;
        this.log.warn('UAPI set refused', { op: batch[0].op, peers: batch.length, error: refused.message, attempt });
      }
      if (batch.length === 1) continue;
      for (const op of batch) {
        try {
          result.sets++;
          await this.o.device.set(opRequest(op));
          this.applied(op, result, commit, before);
        } catch (err) {
          refused = err as Error;
          this.log.warn('UAPI set refused', { op: op.op, publicKey: op.op === 'put' ? op.peer.publicKey : op.op === 'remove' ? op.publicKey : undefined, error: refused.message, attempt });
        }
      }
    }
    return refused;
  }

  /** One operation landed: record it, and log it (the convergence benchmark matches these lines by public key). */
  private applied(op: DeviceOp, result: SyncResult, commit: boolean, before: (publicKey: string) => PeerState | undefined): void {
    result.applied.push(op);
    // Described before the mirror takes the operation: the mirror still knows what it replaces.
    if (op.op === 'put') {
      const was = op.created ? undefined : before(op.peer.publicKey);
      const decision: PeerDecision = { change: op.created ? 'added' : 'updated', ...nameOf(op.peer), publicKey: op.peer.publicKey };
      if (was) decision.fields = peerDifferences(op.peer, was);
      result.changes?.push(decision);
    } else if (op.op === 'remove') {
      result.changes?.push({ change: 'removed', ...nameOf(this.mirror.peer(op.publicKey)?.from), publicKey: op.publicKey });
    }
    if (commit) this.mirror.commit(op);
    if (!this.debug) return;
    switch (op.op) {
      case 'put':
        this.log.debug('applied', { op: 'put', publicKey: op.peer.publicKey });
        return;
      case 'remove':
        this.log.debug('applied', { op: 'remove', publicKey: op.publicKey });
        return;
      case 'replace':
        this.log.debug('applied', { op: 'replace', peers: op.peers.length });
        return;
      case 'device':
        this.log.debug('applied', { op: 'device' });
        return;
    }
  }

  /**
   * One line per peer the pass changed, naming it (kind/name and public key) and, for an update,
   * the fields: at info for a pass of at most DECISION_LOG_LIMIT changes, else at debug (the
   * 'reconciled' summary line counts them). Keys and settings are never logged here: a peer's
   * allowed IPs and endpoint are, as what an operator needs to see what moved.
   */
  private logDecisions(changes: readonly PeerDecision[]): void {
    if (changes.length === 0) return;
    const loud = changes.length <= DECISION_LOG_LIMIT;
    if (!loud && !this.debug) return;
    for (const c of changes) {
      const meta: Record<string, unknown> = { peer: c.kind && c.name ? `${c.kind}/${c.name}` : '(unknown)', publicKey: c.publicKey };
      if (c.fields) meta.fields = c.fields.join(',');
      const message = `peer ${c.change}`;
      if (loud) this.log.info(message, meta);
      else this.log.debug(message, meta);
    }
  }

  /** The union the fallbacks cover: every route and every extra fallback. */
  private fallbackLists(desired: DesiredState): ReadonlyArray<readonly string[]> {
    return desired.fallbacks ? [desired.routes, desired.fallbacks] : [desired.routes];
  }

  /**
   * Route changes against the mirror, in one `ip -batch`, without listing the table. Returns false
   * when the batch failed (the table is not what was last applied): the caller repairs with a full listing.
   */
  private async eventRoutes(desired: DesiredState, rt: RouteTable, result: SyncResult): Promise<boolean> {
    const failClosed = rt.failClosed ?? true;
    const lists = this.fallbackLists(desired);
    const routes = this.mirror.routes.diff([desired.routes]);
    const fallbacks = failClosed ? this.mirror.fallbacks.diff(lists) : null;
    if (!routes && !fallbacks) return true;
    // A destination held by another device at the last listing is never ours to add or delete.
    const foreign = this.mirror.foreign;
    const add: string[] = [];
    const conflicts: string[] = [];
    for (const c of routes?.add ?? []) {
      const other = foreign.get(c);
      if (other === undefined) add.push(c);
      else conflicts.push(`${c} dev ${other}`);
    }
    const remove = foreign.size ? (routes?.remove ?? []).filter((c) => !foreign.has(c)) : (routes?.remove ?? []);
    try {
      await applyRouteBatch(
        { table: rt.table, dev: rt.dev, addRoutes: add, removeRoutes: remove, addFallbacks: fallbacks?.add ?? [], removeFallbacks: fallbacks?.remove ?? [] },
        { netns: rt.netns },
      );
    } catch (err) {
      this.log.warn('route changes failed; listing the table to repair', { table: rt.table, error: (err as Error).message });
      return false;
    }
    result.routesAdded = add.sort();
    result.routesRemoved = [...remove].sort();
    if (conflicts.length) this.warnConflicts(rt.table, conflicts);
    return true;
  }

  /**
   * List the table once (routes, then fallbacks) and make it hold the desired routes and fallbacks
   * in one `ip -batch`; rebuild the route mirrors from it. Only routes through our own device are
   * deleted (each line names it), and a destination another device holds in this table (a --table
   * shared by mistake with another tool) is left alone and reported.
   */
  private async fullRoutes(desired: DesiredState, rt: RouteTable, result: SyncResult): Promise<void> {
    const { table, dev, netns } = rt;
    const failClosed = rt.failClosed ?? true;
    this.mirror.routes.reset();
    this.mirror.fallbacks.reset();
    const current = await listRoutes(table, { netns });
    const held = failClosed ? new Set(await listFallbacks(table, { netns })) : null;
    const lists = this.fallbackLists(desired);
    const { add, remove, addFallbacks, removeFallbacks, conflicts, foreign } = planRoutes(desired.routes, lists, current, held, dev);
    await applyRouteBatch({ table, dev, addRoutes: add, addVerb: 'replace', removeRoutes: remove, addFallbacks, removeFallbacks }, { netns });
    result.routesAdded = add;
    result.routesRemoved = remove;
    if (conflicts.length) this.warnConflicts(table, conflicts);
    this.mirror.foreign = foreign;
    this.mirror.routes.replace([desired.routes]);
    if (held) this.mirror.fallbacks.replace(lists);
  }

  private warnConflicts(table: number, routes: string[]): void {
    this.log.warn('routes in the mesh table belong to another device; left alone (is --table shared with another tool?)', { table, routes: routes.join(', ') });
  }
}
