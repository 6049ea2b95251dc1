/**
 * A member of the mesh, wired: the core that a node's agent (agent/, its own object is the Peer
 * named after its node) and a Konnectivity-side gateway (gateway/, its own object is a Gateway)
 * share. Both have a key, a wireguard-go (spawn or attach), the interface and policy routing, a peer
 * source, the desired state, the reconciler, self-registration and status. What differs is a
 * MemberRole that agent/ (agentRole) or gateway/ (gatewayRole) hands in: this file has no branch
 * on which one it is.
 *
 *   source change ─▶ register own object ─▶ reconciler.trigger ─▶ topology ─▶ diff ─▶ UAPI + routes
 *                                                                      └────▶ status, events
 */
import {
  autoMtu,
  canonicalIp,
  createWireguardGo,
  deleteAddress,
  ensureRule,
  ensureSourceRule,
  flushTable,
  getLink,
  listAddresses,
  loadOrCreatePrivateKey,
  publicKeyOf,
  removeRule,
  removeSourceRule,
  replaceAddress,
  setLinkMtu,
  setLinkUp,
  silentLogger,
} from '../native/index.ts';
import type { DeviceState, Logger, UapiClientOptions, WireguardGo, WireguardMode } from '../native/index.ts';
import { Backoff } from './backoff.ts';
import type { BackoffOptions } from './backoff.ts';
import type { GatewaySpec, MeshStatus, PeerSpec } from './crd/types.ts';
import { checkObject } from './crd/validate.ts';
import { Fallbacks } from './failclosed.ts';
import { compareText } from './topology/order.ts';
import { apiMessage, httpStatus, sameSpec } from './kube.ts';
import type { MeshApi, OwnObjectOutcome } from './kube.ts';
import { Reconciler } from './reconcile/index.ts';
import type { DesiredDevice, DesiredState, SyncResult } from './reconcile/index.ts';
import type { PeerSource, Snapshot } from './source/index.ts';
import { TopologyEngine, allocateMeshIP, meshIPHolders } from './topology/index.ts';
import type { DesiredPeer, MeshIPHolder, MeshSettings, ObjectKind, Refusal, Topology } from './topology/index.ts';
import { identityDelta } from './delta.ts';
import { HealthTracker } from './health.ts';

/** What a role's ownSpec may read: the member's key, its mesh IP (allocated on demand) and the Nodes. */
export interface OwnSpecContext {
  readonly publicKey: string;
  /** The mesh IP this member holds (allocated from the checked path; call only when the spec is otherwise complete). */
  meshIP(): string;
  readonly nodes: Snapshot['nodes'];
  /** The member's persistent keepalive, when it sets one (its own object carries it). */
  readonly persistentKeepalive?: number;
  readonly log: Logger;
}

/** What a role's hooks may use after a pass: the API, the source, and the member's own verdict and write tracking. */
export interface RoleContext {
  readonly api: MeshApi;
  readonly source: PeerSource;
  readonly log: Logger;
  /** Whether the member is fully part of the mesh after this pass (MeshMember.converged). */
  converged(result: SyncResult, topology: Topology): boolean;
  /** Run an API write nobody awaits, so that stop() lets it settle within its deadline. */
  track(write: Promise<unknown>): void;
}

/**
 * Everything that differs between a node's agent and a gateway, given to the member by agent/
 * (agentRole) or gateway/ (gatewayRole). One instance per member: a role may keep state.
 */
export interface MemberRole {
  /** How the desired state and the fail-closed routes see this member: 'node' (its own pods are local) or 'gateway'. */
  readonly self: 'node' | 'gateway';
  /** The kind of this member's own object. */
  readonly kind: ObjectKind;
  /** Who restores the own object, as the Warning event names it ("the agent on node-a", "gateway gw"). */
  readonly owner: string;
  /** CIDRs this member routes into its tunnel beyond what the peers bring (a gateway's --pod-cidr): they fail closed too. */
  readonly podCIDRs?: readonly string[];
  /**
   * A local address whose own packets leave through the main table, ahead of the mesh rule (a
   * gateway pod's IP: kubelet probes it from the node's address inside --pod-cidr, and the answers
   * must not go into the tunnel, where nodes drop them). Connections the member's pod opens itself
   * take the mesh IP as their source (the routes' device address), so they stay in the tunnel.
   */
  readonly replySource?: string;
  /**
   * The routes to hold for a topology's routes. Returning that same array says they are canonical
   * and sorted (merged unparsed into the fallbacks); a new array is parsed and sorted there.
   */
  routes(topologyRoutes: readonly string[]): readonly string[];
  /** The spec this member's own object should have, or null while that cannot be said yet (no Node object). */
  ownSpec(context: OwnSpecContext): PeerSpec | GatewaySpec | null;
  /** After every pass, with an API and not stopped (a node removes its not-ready taint once converged). */
  afterPass?(context: RoleContext, result: SyncResult, topology: Topology): void;
  /** After this member wrote its status (a node writes the trust rules' verdicts on the others). */
  afterStatus?(context: RoleContext, topology: Topology): Promise<void>;
}

export interface MemberOptions {
  /** What this member is: agentRole() (agent/) or gatewayRole() (gateway/). */
  role: MemberRole;
  /** The name of this member's own object: the node name (Peer) or the Gateway's name. */
  name: string;
  /** The node this runs on (a gateway's Konnectivity agent node; for a node's agent, the same as name). */
  nodeName: string;
  /** The WireGuard interface (and socket) name; unique per machine. */
  interfaceName: string;
  listenPort: number;
  /** Mesh IPs come from here. */
  meshCIDR: string;
  /** The cluster's service CIDRs (--service-cidr; default: the trust rules' DEFAULT_SERVICE_CIDRS). Same on every member. */
  serviceCIDRs?: readonly string[];
  /** The cluster's pod CIDRs (--cluster-cidr; default DEFAULT_CLUSTER_CIDRS). Same on every member. */
  clusterCIDRs?: readonly string[];
  /** The subnets node addresses come from (--node-cidr; default DEFAULT_NODE_SUBNETS). Same on every member. */
  nodeSubnets?: readonly string[];
  /** Mark on wireguard-go's own packets; they skip the mesh table. */
  fwmark: number;
  /** Routing table for remote pod CIDRs and mesh IPs. */
  table: number;
  /** Priority of the `ip rule` that selects the table. */
  rulePriority: number;
  /** Interface MTU, or 'auto' (underlay MTU - 80). */
  mtu: number | 'auto';
  /** Private key file (created 0600 if missing). */
  keyPath: string;
  wireguard: WireguardMode;
  wireguardBinary?: string;
  socketDir?: string;
  /** Act inside this network namespace (tests and the demo); absent: the agent's own. */
  netns?: string;
  /** Keepalive for peers that set none (0 = off). */
  persistentKeepalive?: number;
  source: PeerSource;
  /** The Kubernetes API for self-registration, status and events; absent in standalone mode. */
  api?: MeshApi;
  resyncMs?: number;
  debounceMs?: number;
  log?: Logger;
  /** Called before every UAPI request (metrics, tests). */
  onRequest?: UapiClientOptions['onRequest'];
  /**
   * How peer changes reach the device (ReconcilerOptions.applyMode): 'incremental' (default) sets
   * only what changed; 'replace' rewrites every peer with replace_peers whenever any differs (the
   * Go prototype's and Kilo's way; the benchmarks' reference).
   */
  applyMode?: 'incremental' | 'replace';
  /** Called after every reconcile pass. */
  onSync?: (result: SyncResult, topology: Topology) => void;
  /** Retries of a failed registration (default: 500 ms doubling to 30 s, jittered). */
  registerBackoff?: BackoffOptions;
  /**
   * How long stop() waits for API calls it has aborted and for writes still settling (default
   * 2 s); whatever is still pending then is abandoned, so a stop never waits on an API server
   * that does not answer.
   */
  stopDeadlineMs?: number;
}

/** Why a Warning event says a member restored its own object. */
export const SPEC_OVERWRITTEN_REASON = 'SpecOverwritten';

/**
 * A status whose Ready condition keeps its status and reason (only counts or the message moved) is
 * written at most this often; a flip of Ready is written at once. Every member's counts change with
 * every Peer added or removed anywhere: written each time, one change would cost the API server a
 * read and a write per member (2,000 requests on a 1,000-node cluster, issue 10).
 */
export const STATUS_MIN_INTERVAL_MS = 10_000;

export class MeshMember {
  readonly o: MemberOptions;
  readonly log: Logger;
  readonly wireguard: WireguardGo;
  readonly reconciler: Reconciler;
  readonly privateKey: string;
  readonly publicKey: string;
  /** The mesh IP this node uses (from its Peer, or allocated). */
  meshIP: string | null = null;
  topology: Topology | null = null;
  private registering: Promise<void> | null = null;
  private registerAgain = false;
  private logged = new Map<string, string>();
  private stopped = false;
  /** The spec this process last wrote to (or found on) its own object: a different one there was written by someone else. */
  private lastWritten: PeerSpec | GatewaySpec | null = null;
  private readonly registerBackoff: Backoff;
  private registerRetry: NodeJS.Timeout | undefined;
  /**
   * When a Warning event last announced a restore, by own object (kind/name). Keyed by the object,
   * not by the writer: a writer chooses its field-manager name and could take a new one per write.
   */
  private readonly announcedRestores = new Map<string, number>();
  /** Objects carrying this member's own public key that were left off the device (each warned about once). */
  private readonly selfKeyWarned = new Set<string>();
  /** When this member last wrote its status, and a counts-only status waiting for STATUS_MIN_INTERVAL_MS. */
  private lastStatusWrite = 0;
  private statusTimer: NodeJS.Timeout | undefined;
  private pendingStatus: { result: SyncResult; topology: Topology; unreadable: boolean } | null = null;
  /**
   * Whether the reconciler's last read of the device failed (a hung or gone wireguard-go). Passes and
   * previews never overlap (the reconciler runs them one at a time), so after a pass this is its own
   * read, or the read of a preview since when the pass read nothing.
   */
  private lastReadFailed = false;
  /** API writes not awaited where they start (status, taint): stop() lets them settle, within its deadline. */
  private readonly writes = new Set<Promise<unknown>>();

  // Issue 10: an event costs what it changes. Everything a pass and afterSync derive from the
  // snapshot is kept by the identity of what it came from (the sources keep unchanged objects and
  // lists identical, the engine unchanged peers and topologies), so a pass that changes one Peer
  // recomputes what depends on that Peer and does O(N) trivial work (identity checks) elsewhere.
  private readonly engine = new TopologyEngine();
  private readonly meshSettings: MeshSettings;
  private readonly fallbacks: Fallbacks;
  /** leaveOffOwnKey's last input and output (the engine's Topology is never mutated). */
  private ownKeyIn: Topology | null = null;
  private ownKeyOut: Topology | null = null;
  /** The DesiredDevice handed to the reconciler, by the peers it holds. */
  private device: DesiredDevice | null = null;
  /** Mesh IP holders, per raw object (the checked path is a pure function of the object) and per snapshot lists. */
  private readonly holderOf = new WeakMap<object, MeshIPHolder | null>();
  private readonly holdersIndex: HolderIndex = { lists: { Peer: [], Gateway: [] }, byObject: new Map(), byIP: new Map() };
  private allocation: { peers: unknown[]; gateways: unknown[]; last: string | undefined; created: number | undefined; meshIP: string } | null = null;
  private ownFor: { list: unknown[]; own: OwnObject | undefined } | null = null;
  private readonly ownChecked = new WeakMap<object, ReturnType<typeof checkObject>>();
  /** The mesh IP syncAddress last found on (or put on) the interface: an event pass checks nothing more. */
  private addressSynced: string | null = null;
  private loggedRefused: readonly Refusal[] | null = null;
  /** The public keys on the device, by the reconciler's live state (the same object while the device did not change). */
  private liveKeysFor: { live: DeviceState | null; keys: Set<string> } | null = null;
  /** Per-peer health for status.peers (mesh/health.ts): judged again in full only when a full pass read the handshakes. */
  private readonly health: HealthTracker;

  private readonly role: MemberRole;
  /** What the role's hooks get (built once: the API does not change). */
  private readonly roleContext: RoleContext | null;

  constructor(options: MemberOptions) {
    this.o = options;
    this.role = options.role;
    this.log = options.log ?? silentLogger;
    this.registerBackoff = new Backoff({ initialMs: 500, maxMs: 30_000, ...options.registerBackoff });
    this.health = new HealthTracker({ kind: options.role.kind, name: options.name });
    const key = loadOrCreatePrivateKey(options.keyPath);
    if (key.created) this.log.info('created a private key', { path: options.keyPath });
    this.privateKey = key.privateKey;
    this.publicKey = publicKeyOf(key.privateKey);
    this.wireguard = createWireguardGo(options.wireguard, {
      interfaceName: options.interfaceName,
      socketDir: options.socketDir,
      binary: options.wireguardBinary,
      netns: options.netns,
      logger: this.log,
      onRequest: options.onRequest,
      onReady: async (ctx) => {
        this.log.info('wireguard-go ready', { interface: options.interfaceName, reason: ctx.reason });
        await this.setUpLink();
        await this.reconciler.syncNow();
      },
    });
    this.meshSettings = {
      meshCIDR: options.meshCIDR,
      defaultPersistentKeepalive: options.persistentKeepalive,
      ...(options.serviceCIDRs ? { serviceCIDRs: options.serviceCIDRs } : {}),
      ...(options.clusterCIDRs ? { clusterCIDRs: options.clusterCIDRs } : {}),
      ...(options.nodeSubnets ? { nodeSubnets: options.nodeSubnets } : {}),
    };
    this.fallbacks = new Fallbacks({ role: options.role.self, nodeName: options.nodeName, podCIDRs: options.role.podCIDRs, meshCIDR: options.meshCIDR });
    const api = options.api;
    this.roleContext = api
      ? { api, source: options.source, log: this.log, converged: (result, topology) => this.converged(result, topology), track: (write) => this.track(write) }
      : null;
    const client = this.wireguard.client;
    this.reconciler = new Reconciler({
      // Every read goes through here so that health can tell "cannot read the device" from a pass
      // that read it and then failed to set something (whose handshakes are fresh and still judged).
      device: {
        get: () =>
          client.get().then(
            (state) => {
              this.lastReadFailed = false;
              return state;
            },
            (err: unknown) => {
              this.lastReadFailed = true;
              throw err;
            },
          ),
        set: (request) => client.set(request),
      },
      routes: { table: options.table, dev: options.interfaceName, netns: options.netns },
      desired: () => this.desired(),
      log: this.log,
      resyncMs: options.resyncMs,
      debounceMs: options.debounceMs,
      applyMode: options.applyMode,
      onSync: (result) => this.afterSync(result),
    });
  }

  /** The kind of this member's own object. */
  get kind(): ObjectKind {
    return this.role.kind;
  }

  private get ipOpts(): { netns?: string } {
    return { netns: this.o.netns };
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.o.source.onChange(() => {
      // A listener's error is logged, never thrown back into the source (it would end the watch or the process).
      try {
        this.register();
        this.reconciler.trigger('source changed');
      } catch (err) {
        this.log.error('could not handle a change from the source', { error: (err as Error).message });
      }
    });
    try {
      await ensureRule({ table: this.o.table, fwmark: this.o.fwmark, priority: this.o.rulePriority }, this.ipOpts);
      if (this.o.role.replySource) await ensureSourceRule({ from: this.o.role.replySource, priority: this.o.rulePriority - 1 }, this.ipOpts);
      await this.o.source.start();
      this.register();
      await this.wireguard.start();
      this.reconciler.start();
    } catch (err) {
      // Leave nothing running behind a failed start (a spawned wireguard-go, informers).
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Stop acting. In spawn mode wireguard-go stops too (its TUN goes); in attach mode it stays up.
   * API calls in flight are aborted (the informers' lists and watches too), then given stopDeadlineMs
   * to settle: a stop never waits for an API server that does not answer.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.registerRetry);
    clearTimeout(this.statusTimer);
    this.statusTimer = undefined;
    await this.reconciler.stop();
    await this.o.source.stop();
    this.o.api?.abortInFlight();
    const pending = [...this.writes, ...(this.registering ? [this.registering] : [])].map((p) => p.catch(() => undefined));
    let deadline: NodeJS.Timeout | undefined;
    const settled = await Promise.race([
      Promise.all(pending).then(() => true),
      new Promise<boolean>((resolve) => (deadline = setTimeout(() => resolve(false), this.o.stopDeadlineMs ?? 2000))),
    ]);
    clearTimeout(deadline);
    if (!settled) this.log.warn('stopping without waiting for API calls still pending', { pending: pending.length });
    await this.wireguard.stop();
  }

  /** Run an API write that nobody awaits where it starts, so that stop() can let it settle. */
  private track(write: Promise<unknown>): void {
    const p = write.catch(() => undefined).finally(() => this.writes.delete(p));
    this.writes.add(p);
  }

  /**
   * Remove everything this member added: its routes, its rule, the interface address, the peers on a
   * device that stays (attach mode), and its own object.
   * (`aks-mesh agent --cleanup`.) The key file stays: it is the node's identity.
   */
  async cleanup(): Promise<void> {
    await flushTable(this.o.table, this.o.interfaceName, this.ipOpts);
    await removeRule({ table: this.o.table, fwmark: this.o.fwmark, priority: this.o.rulePriority }, this.ipOpts);
    if (this.o.role.replySource) await removeSourceRule({ from: this.o.role.replySource, priority: this.o.rulePriority - 1 }, this.ipOpts);
    if (await getLink(this.o.interfaceName, this.ipOpts)) {
      for (const a of await listAddresses(this.o.interfaceName, this.ipOpts)) await deleteAddress(this.o.interfaceName, a, this.ipOpts);
      // A device that outlives us (attach mode: the sidecar's) keeps no peer we configured.
      await this.wireguard.client.set({ replacePeers: true }).catch((err: Error) => this.log.warn('could not clear the device\'s peers', { error: err.message }));
    }
    if (this.o.api) await this.deleteOwnObject(this.o.api);
  }

  /**
   * The cleanup's last step, best-effort when the API refuses who we are: after `helm uninstall
   * --no-hooks` (or any removal of the agent's RBAC) the token is no longer accepted (401) or no
   * longer allowed to delete (403). The node itself is clean by then, and a cleanup pod that failed
   * here would crash-loop and never report its node done: say what is left instead. Other errors
   * (the API server unreachable, a 5xx) still fail, so the cleanup is retried.
   */
  private async deleteOwnObject(api: MeshApi): Promise<void> {
    try {
      await api.deleteObject(this.kind, this.o.name);
    } catch (err) {
      const status = httpStatus(err);
      if (status !== 401 && status !== 403) throw err;
      this.log.warn(`could not delete ${this.kind} ${this.o.name} (HTTP ${status}: ${apiMessage(err)}); the node is clean, delete the object by hand: kubectl delete ${this.kind.toLowerCase()}s.aksmesh.io ${this.o.name}`, {
        kind: this.kind,
        name: this.o.name,
        status,
      });
    }
  }

  /** What the device and routes should be now, or null when the source has not synced (touch nothing). */
  desired(): DesiredState | null {
    if (!this.o.source.synced()) return null;
    const snapshot = this.o.source.snapshot();
    const computed = this.engine.compute({
      self: { role: this.role.self, name: this.o.name },
      peers: snapshot.peers,
      gateways: snapshot.gateways,
      nodes: snapshot.nodes,
      settings: this.meshSettings,
    });
    // Unusable settings accept nothing: acting on that would empty the device. The reconciler keeps it as it is and says why.
    if (computed.settingsProblems?.length) throw new Error(`the mesh settings are unusable: ${computed.settingsProblems.join('; ')}`);
    const topology = this.leaveOffOwnKey(computed);
    this.topology = topology;
    const routes = this.role.routes(topology.routes);
    // Fail closed for every pod CIDR, not only the routed ones: a node whose Peer is refused or not
    // registered yet has no route here, and its pods must be unreachable rather than reached in clear.
    // The Topology's own routes are canonical and sorted (merged in as they are); a role's own list is parsed.
    const fallbacks = this.fallbacks.compute(snapshot.nodes, routes, routes === topology.routes);
    if (this.device?.peers !== topology.peers) this.device = { privateKey: this.privateKey, listenPort: this.o.listenPort, fwmark: this.o.fwmark, peers: topology.peers };
    return { device: this.device, routes, fallbacks };
  }

  /**
   * Never put a peer with this device's own public key on the device: wireguard-go ignores it, so
   * the device would never match the desired state and every pass would retry the set. Such an
   * object (another object carrying our key, e.g. while our own is refused or not registered) is
   * dropped with its routes, and logged once like a refusal. The engine's Topology is never
   * changed: a copy goes without them (and the same copy comes back while the topology is the same).
   */
  private leaveOffOwnKey(topology: Topology): Topology {
    if (topology === this.ownKeyIn && this.ownKeyOut) return this.ownKeyOut;
    // A plain loop: this runs over every peer whenever the topology changes.
    const mine: DesiredPeer[] = [];
    for (const p of topology.peers) if (p.publicKey === this.publicKey) mine.push(p);
    const names = new Set(mine.map((p) => `${p.kind}/${p.name}`));
    for (const p of mine) {
      const id = `${p.kind}/${p.name}`;
      if (this.selfKeyWarned.has(id)) continue;
      this.selfKeyWarned.add(id);
      this.log.warn('refused', {
        kind: p.kind,
        name: p.name,
        reason: 'OwnPublicKey',
        field: 'spec.publicKey',
        message: `${p.kind} ${p.name}: spec.publicKey is this ${this.kind}'s own public key (${this.o.name}); not configured as a peer`,
      });
    }
    for (const id of [...this.selfKeyWarned]) if (!names.has(id)) this.selfKeyWarned.delete(id);
    let out = topology;
    if (mine.length > 0) {
      const peers = topology.peers.filter((p) => p.publicKey !== this.publicKey);
      out = { ...topology, peers, routes: [...new Set(peers.flatMap((p) => p.allowedIPs))].sort(compareText) };
    }
    this.ownKeyIn = topology;
    this.ownKeyOut = out;
    return out;
  }

  /** The settings every member must share (the trust rules depend on them). */
  settings(): MeshSettings {
    return this.meshSettings;
  }

  /** The mesh IP this member should hold, from what the source says now (kept while it wins). */
  private allocate(): string {
    const snapshot = this.o.source.snapshot();
    const own = this.ownObject();
    const created = time(own?.metadata.creationTimestamp);
    // Once this process has written (or adopted) its own object, the mesh IP it wrote is its current
    // one, not what the object says now: a foreign change of the mesh IP is then restored (and
    // announced) instead of silently adopted. It still moves when an older holder wins that address.
    const last = this.lastWritten?.meshIP;
    const a = this.allocation;
    if (a && a.peers === snapshot.peers && a.gateways === snapshot.gateways && a.last === last && a.created === created) return a.meshIP;
    const index = this.holderIndex(snapshot);
    const isOwn = (h: { kind: string; name: string }): boolean => h.kind === this.kind && h.name === this.o.name;
    const held = own ? index.byObject.get(own) : undefined;
    const ownHolder: MeshIPHolder | undefined = last
      ? { kind: this.kind, name: this.o.name, meshIP: last, ...((held?.created ?? created) === undefined ? {} : { created: held?.created ?? created }) }
      : held;
    const others = (hs: Iterable<MeshIPHolder>): MeshIPHolder[] => [...hs].filter((h) => !isOwn(h));
    const withOwn = (hs: MeshIPHolder[]): MeshIPHolder[] => (ownHolder ? [...hs, ownHolder] : hs);
    const self = { kind: this.kind, name: this.o.name, created };
    // Whether the current address stays depends only on the holders of that same address (the
    // allocator keeps it unless one of them wins over us): ask with those alone first, and go
    // through every holder (which parses every address) only when it has to move.
    let meshIP: string | undefined;
    const canonical = ownHolder ? canonicalOrUndefined(ownHolder.meshIP) : undefined;
    if (canonical !== undefined) {
      const kept = allocateMeshIP(self, this.o.meshCIDR, withOwn(others(index.byIP.get(canonical) ?? [])));
      if (canonicalOrUndefined(kept) === canonical) meshIP = kept;
    }
    meshIP ??= allocateMeshIP(self, this.o.meshCIDR, withOwn(others(index.byObject.values())));
    this.allocation = { peers: snapshot.peers, gateways: snapshot.gateways, last, created, meshIP };
    return meshIP;
  }

  /**
   * Every mesh IP holder through the checked path (meshIPHolders), by object and by address, kept
   * in step with the snapshot's lists: only objects that came or went since the last call (found
   * by identity) are looked at, each checked once while it is the same object.
   */
  private holderIndex(snapshot: Snapshot): HolderIndex {
    const index = this.holdersIndex;
    for (const [kind, list] of [['Peer', snapshot.peers], ['Gateway', snapshot.gateways]] as const) {
      const before = index.lists[kind];
      if (before === list) continue;
      const { gone, added } = identityDelta(before, list as readonly unknown[]);
      for (const raw of gone) {
        const h = index.byObject.get(raw);
        if (!h) continue;
        index.byObject.delete(raw);
        const at = index.byIP.get(h.meshIP);
        at?.delete(h);
        if (at?.size === 0) index.byIP.delete(h.meshIP);
      }
      for (const raw of added) {
        if (raw === null || typeof raw !== 'object') continue;
        let h = this.holderOf.get(raw);
        if (h === undefined) {
          h = (kind === 'Peer' ? meshIPHolders([raw], []) : meshIPHolders([], [raw]))[0] ?? null;
          this.holderOf.set(raw, h);
        }
        if (!h) continue;
        index.byObject.set(raw, h);
        let at = index.byIP.get(h.meshIP);
        if (!at) index.byIP.set(h.meshIP, (at = new Set()));
        at.add(h);
      }
      index.lists[kind] = list as readonly unknown[];
    }
    return index;
  }

  private ownObject(): OwnObject | undefined {
    const snapshot = this.o.source.snapshot();
    const list = this.kind === 'Peer' ? snapshot.peers : snapshot.gateways;
    if (this.ownFor?.list === list) return this.ownFor.own;
    let own: OwnObject | undefined;
    for (const o of list as OwnObject[]) {
      if (o.metadata.name !== this.o.name) continue;
      own = o;
      break;
    }
    this.ownFor = { list, own };
    return own;
  }

  /** The spec this member's own object should have, from what the source says now (null: not yet). */
  ownSpec(): PeerSpec | GatewaySpec | null {
    if (!this.o.source.synced()) return null;
    return this.role.ownSpec({
      publicKey: this.publicKey,
      meshIP: () => this.allocate(),
      nodes: this.o.source.snapshot().nodes,
      ...(this.o.persistentKeepalive ? { persistentKeepalive: this.o.persistentKeepalive } : {}),
      log: this.log,
    });
  }

  /**
   * Create or update this member's own object when the cached one differs from what it should be.
   * One write at a time; a change meanwhile runs again after it; a failure is retried with
   * exponential backoff and jitter. When the object was changed by another writer, the restore is
   * announced: a Warning event on the object and a log line naming that writer (managedFields).
   */
  private register(): void {
    if (!this.o.api || this.stopped) return;
    if (this.registering) {
      this.registerAgain = true;
      return;
    }
    const spec = this.ownSpec();
    if (!spec) return;
    const own = this.ownObject();
    if (own && sameSpec(own.spec, spec)) {
      this.lastWritten ??= spec;
      return;
    }
    const api = this.o.api;
    const lastWritten = this.lastWritten;
    clearTimeout(this.registerRetry);
    this.registering = (async () => {
      const r = await api.ensureOwnObject(this.kind, this.o.name, spec, lastWritten);
      this.lastWritten = spec;
      this.registerBackoff.reset();
      if (r.outcome !== 'unchanged') this.log.info(`own ${this.kind} ${r.outcome}`, { name: this.o.name, meshIP: spec.meshIP });
      if (r.overwrittenBy) await this.announceRestore(api, r, spec);
    })()
      .catch((err: unknown): void => {
        if (this.stopped) return;
        const delay = this.registerBackoff.next();
        this.log.warn(`could not register this ${this.kind}; retrying`, { error: apiMessage(err), retryInMs: delay, failures: this.registerBackoff.failures });
        this.registerRetry = setTimeout(() => this.register(), delay);
        this.registerRetry.unref();
      })
      .finally(() => {
        this.registering = null;
        if (this.registerAgain) {
          this.registerAgain = false;
          this.register();
        }
      });
  }

  /** Say who changed this member's own object (as managedFields name them) and that it was restored. */
  private async announceRestore(api: MeshApi, r: OwnObjectOutcome, spec: PeerSpec | GatewaySpec): Promise<void> {
    const who = r.overwrittenBy;
    if (!who) return;
    const before = (r.previous ?? {}) as Record<string, unknown>;
    const after = spec as unknown as Record<string, unknown>;
    const fields = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => !sameSpec(before[k], after[k])).sort(compareText);
    const owner = this.role.owner;
    const message =
      `${this.kind} ${this.o.name}: spec changed by ${JSON.stringify(who.manager)} (${who.operation}${who.time ? ` at ${who.time}` : ''}), ` +
      `not by its owner; restored by ${owner} (fields ${fields.map((f) => `spec.${f}`).join(', ') || 'none'})`;
    this.log.warn(`own ${this.kind} was changed by another writer; restored`, {
      name: this.o.name,
      changedBy: who.manager,
      operation: who.operation,
      at: who.time ?? 'unknown',
      fields: fields.join(','),
    });
    // One event per writer a minute: a writer that keeps rewriting gets every restore logged, but
    // cannot flood the cluster's events through us.
    const now = Date.now();
    const key = `${this.kind}/${this.o.name}`;
    for (const [k, t] of this.announcedRestores) if (now - t >= 60_000) this.announcedRestores.delete(k);
    if (this.announcedRestores.has(key)) return;
    this.announcedRestores.set(key, now);
    if (r.found) await api.warn(this.kind, r.found, SPEC_OVERWRITTEN_REASON, message);
  }

  private async setUpLink(): Promise<void> {
    const ifName = this.o.interfaceName;
    const mtu = this.o.mtu === 'auto' ? await autoMtu(this.ipOpts, [ifName]) : this.o.mtu;
    await setLinkMtu(ifName, mtu, this.ipOpts);
    await this.syncAddress();
    await setLinkUp(ifName, this.ipOpts);
  }

  /**
   * The interface holds exactly this node's mesh IP (/32 or /128; mesh routes live in the table).
   * After an event pass, nothing is read when the address wanted is the one last found there (two
   * `ip` processes a pass otherwise); a full pass (start, resync, device reset) looks again.
   */
  private async syncAddress(full = true): Promise<void> {
    const want = this.ownMeshIP();
    this.meshIP = want;
    if (!want) return;
    if (!full && want === this.addressSynced) return;
    this.addressSynced = null;
    if (!(await getLink(this.o.interfaceName, this.ipOpts))) return;
    const cidr = `${want}/${want.includes(':') ? 128 : 32}`;
    const have = await listAddresses(this.o.interfaceName, this.ipOpts);
    for (const a of have) if (a !== cidr && !a.startsWith('fe80:')) await deleteAddress(this.o.interfaceName, a, this.ipOpts);
    if (!have.includes(cidr)) await replaceAddress(this.o.interfaceName, cidr, this.ipOpts);
    this.addressSynced = want;
  }

  /**
   * The address to put on the interface: only the mesh IP this member wants (allocated from the
   * checked path), and only once its own object, read through the same check, carries it with its
   * key. The raw object's meshIP is never used: a foreign writer could put any address there (a
   * link-local one, or "100.96.0.010", which `ip` would read as octal) before the restore lands.
   */
  private ownMeshIP(): string | null {
    if (!this.o.source.synced()) return null;
    const own = this.ownObject();
    if (!own) return null;
    let checked = this.ownChecked.get(own);
    if (!checked) {
      checked = checkObject(this.kind, own);
      this.ownChecked.set(own, checked);
    }
    if (!checked.ok || checked.object.spec.publicKey !== this.publicKey || checked.object.spec.meshIP === null) return null;
    const want = this.ownSpec()?.meshIP;
    return want !== undefined && checked.object.spec.meshIP === want ? want : null;
  }

  private afterSync(result: SyncResult): void {
    const topology = this.topology;
    if (!topology) return;
    try {
      this.o.onSync?.(result, topology);
    } catch (err) {
      this.log.error('an onSync listener failed', { error: (err as Error).message });
    }
    this.register();
    void this.syncAddress(result.full).catch((err: Error) => this.log.warn('could not set the interface address', { error: err.message }));
    this.logRefusals(topology.refused);
    if (!this.o.api || this.stopped) return;
    this.track(this.writeStatus(result, topology, this.cannotReadDevice(result)).catch((err: unknown) => this.log.warn('could not write status', { error: apiMessage(err) })));
    if (this.roleContext) this.role.afterPass?.(this.roleContext, result, topology);
  }

  /**
   * Whether this member is fully part of the mesh now: the source synced, its own object registered
   * as it should be and accepted by the trust rules, and the last pass left the device and routes as
   * desired (every peer configured).
   */
  converged(result: SyncResult, topology: Topology): boolean {
    if (result.error || !this.o.source.synced()) return false;
    const own = this.ownObject();
    const spec = this.ownSpec();
    if (!own || !spec || !sameSpec(own.spec, spec)) return false;
    if (topology.refused.some((r) => r.kind === this.kind && r.name === this.o.name)) return false;
    const live = this.liveKeys(result.live);
    return topology.peers.every((p) => live.has(p.publicKey));
  }

  /**
   * Whether, after this pass, the member cannot read its own device: the reconciler has no live state,
   * or the pass failed and the last read was the one that failed. Its peers' health is then unknown
   * (DeviceUnreadable), not what an old read said. A pass that read the device and failed later (a
   * refused `set`) still judges the handshakes it read.
   */
  cannotReadDevice(result: SyncResult): boolean {
    return result.live === null || (result.error !== undefined && this.lastReadFailed);
  }

  /** The public keys on the device (rebuilt only when the reconciler's live state is another object). */
  private liveKeys(live: DeviceState | null): Set<string> {
    if (!this.liveKeysFor || this.liveKeysFor.live !== live) this.liveKeysFor = { live, keys: new Set((live?.peers ?? []).map((p) => p.publicKey)) };
    return this.liveKeysFor.keys;
  }

  private async writeStatus(result: SyncResult, topology: Topology, unreadable: boolean): Promise<void> {
    if (this.stopped) return;
    const api = this.o.api as MeshApi;
    // Every peer judged again on a full pass (which re-read the handshakes); an event pass judges
    // only the peers it changed, as of the last read (its live state carries those handshakes).
    const health = this.health.update({ peers: topology.peers, live: result.live, refused: topology.refused, full: result.full, at: result.at, unreadable });
    const { configured } = health;
    const ownRefused = topology.refused.find((r) => r.kind === this.kind && r.name === this.o.name);
    // Refused by the trust rules, this member is not part of the mesh, however well its device is set up.
    const ok = !result.error && configured === topology.peers.length && !ownRefused;
    const own = this.ownObject() as { metadata: { generation?: number }; status?: MeshStatus } | undefined;
    const ready = ok
      ? { type: 'Ready', status: 'True' as const, reason: 'Configured', message: `${configured} of ${topology.peers.length} peers configured on ${this.o.interfaceName}` }
      : ownRefused
        ? { type: 'Ready', status: 'False' as const, reason: 'Refused', message: ownRefused.message }
        : { type: 'Ready', status: 'False' as const, reason: result.error ? 'ReconcileFailed' : 'Converging', message: result.error?.message ?? `${configured} of ${topology.peers.length} peers configured` };
    const was = own?.status?.conditions?.find((c) => c.type === 'Ready');
    const sinceWrite = Date.now() - this.lastStatusWrite;
    if (was && was.status === ready.status && was.reason === ready.reason && sinceWrite < STATUS_MIN_INTERVAL_MS) {
      // Only counts or the unhealthy list moved: the latest of them goes out once the interval is
      // over (a node joining changes every member's list; written at once, a burst of joins would
      // cost each member a write per join).
      this.pendingStatus = { result, topology, unreadable };
      if (!this.statusTimer) {
        this.statusTimer = setTimeout(() => {
          this.statusTimer = undefined;
          const p = this.pendingStatus;
          this.pendingStatus = null;
          if (p && !this.stopped) this.track(this.writeStatus(p.result, p.topology, p.unreadable).catch((err: unknown) => this.log.warn('could not write status', { error: apiMessage(err) })));
        }, STATUS_MIN_INTERVAL_MS - sinceWrite);
        this.statusTimer.unref();
      }
    } else {
      this.pendingStatus = null;
      const wrote = await api.updateStatus(
        this.kind,
        this.o.name,
        { listenPort: this.o.listenPort, peers: health, lastSyncTime: result.at.toISOString().replace(/\.\d+Z$/, 'Z') },
        ready,
        { cached: own?.status, generation: own?.metadata.generation },
      );
      if (wrote) this.lastStatusWrite = Date.now();
    }
    if (ownRefused) this.log.warn(`this member's own ${this.kind} is refused by the trust rules`, { reason: ownRefused.message });
    if (this.roleContext) await this.role.afterStatus?.(this.roleContext, topology);
  }

  /** Each refusal is logged once per distinct message, in every mode: with --peers-dir the log is where refusals show. */
  private logRefusals(refused: readonly Refusal[]): void {
    if (refused === this.loggedRefused) return;
    this.loggedRefused = refused;
    const current = new Map(refused.map((r) => [`${r.kind}/${r.name}`, r]));
    for (const [key, r] of current) {
      if (this.logged.get(key) === r.message) continue;
      this.log.warn('refused', { kind: r.kind, name: r.name, reason: r.reason, field: r.field, message: r.message });
      this.logged.set(key, r.message);
    }
    for (const key of [...this.logged.keys()]) if (!current.has(key)) this.logged.delete(key);
  }
}

/** An IP in canonical form, or undefined when it is not one. */
function canonicalOrUndefined(ip: string): string | undefined {
  try {
    return canonicalIp(ip);
  } catch {
    return undefined;
  }
}

/** Mesh IP holders by raw object and by (canonical) address, with the lists they were taken from. */
interface HolderIndex {
  lists: Record<ObjectKind, readonly unknown[]>;
  byObject: Map<unknown, MeshIPHolder>;
  byIP: Map<string, Set<MeshIPHolder>>;
}

type OwnObject = { metadata: { name: string; creationTimestamp?: string | Date }; spec: { publicKey: string; meshIP?: string } };

function time(t: string | Date | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}
