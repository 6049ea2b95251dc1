/**
 * A member of the mesh, wired: a node's agent (role 'node', its own object is the Peer named after
 * its node) or a Konnectivity-side gateway (role 'gateway', its own object is a Gateway). Both have
 * a key, a wireguard-go (spawn or attach), the interface and policy routing, a peer source, the
 * desired state, the reconciler, self-registration and status. agent/ and gateway/ give the flags.
 *
 *   source change ─▶ register own object ─▶ reconciler.trigger ─▶ topology ─▶ diff ─▶ UAPI + routes
 *                                                                      └────▶ status, events
 */
import {
  autoMtu,
  createWireguardGo,
  deleteAddress,
  ensureRule,
  flushTable,
  getLink,
  listAddresses,
  loadOrCreatePrivateKey,
  publicKeyOf,
  removeRule,
  replaceAddress,
  setLinkMtu,
  setLinkUp,
  silentLogger,
} from '../native/index.ts';
import type { DeviceState, Logger, UapiClientOptions, WireguardGo, WireguardMode } from '../native/index.ts';
import type { GatewaySpec, MeshStatus, PeerSpec } from './crd/types.ts';
import { apiMessage, sameSpec } from './kube.ts';
import type { MeshApi } from './kube.ts';
import { Reconciler } from './reconcile/index.ts';
import type { DesiredState, SyncResult } from './reconcile/index.ts';
import type { PeerSource } from './source/index.ts';
import { allocateMeshIP, computeTopology } from './topology/index.ts';
import type { ObjectKind, Refusal, Topology } from './topology/index.ts';

export interface MemberOptions {
  /** 'node': a node's agent; 'gateway': the Konnectivity-side gateway. */
  role: 'node' | 'gateway';
  /** The name of this member's own object: the node name (Peer) or the Gateway's name. */
  name: string;
  /** The node this runs on (a gateway's Konnectivity agent node; for role node, the same as name). */
  nodeName: string;
  /** Gateway only: the pod CIDRs it routes into the mesh (--pod-cidr). */
  podCIDRs?: string[];
  /** The WireGuard interface (and socket) name; unique per machine. */
  interfaceName: string;
  listenPort: number;
  /** Mesh IPs come from here. */
  meshCIDR: string;
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
  /** This member's endpoint; default (nodes): its Node's first InternalIP and the listen port. */
  endpoint?: string;
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
  /** Called after every reconcile pass. */
  onSync?: (result: SyncResult, topology: Topology) => void;
}

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
  private reported = new Map<string, string>();
  private stopped = false;

  constructor(options: MemberOptions) {
    this.o = options;
    this.log = options.log ?? silentLogger;
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
    this.reconciler = new Reconciler({
      device: this.wireguard.client,
      routes: { table: options.table, dev: options.interfaceName, netns: options.netns },
      desired: () => this.desired(),
      log: this.log,
      resyncMs: options.resyncMs,
      debounceMs: options.debounceMs,
      onSync: (result) => this.afterSync(result),
    });
  }

  /** The kind of this member's own object. */
  get kind(): ObjectKind {
    return this.o.role === 'node' ? 'Peer' : 'Gateway';
  }

  private get ipOpts(): { netns?: string } {
    return { netns: this.o.netns };
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.o.source.onChange(() => {
      this.register();
      this.reconciler.trigger('source changed');
    });
    try {
      await ensureRule({ table: this.o.table, fwmark: this.o.fwmark, priority: this.o.rulePriority }, this.ipOpts);
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

  /** Stop acting. In spawn mode wireguard-go stops too (its TUN goes); in attach mode it stays up. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.reconciler.stop();
    await this.o.source.stop();
    if (this.registering) await this.registering.catch(() => undefined);
    await this.wireguard.stop();
  }

  /**
   * Remove everything this member added: its routes, its rule, the interface address, the peers on a
   * device that stays (attach mode), and its own object.
   * (`aks-mesh agent --cleanup`.) The key file stays: it is the node's identity.
   */
  async cleanup(): Promise<void> {
    await flushTable(this.o.table, this.ipOpts);
    await removeRule({ table: this.o.table, fwmark: this.o.fwmark, priority: this.o.rulePriority }, this.ipOpts);
    if (await getLink(this.o.interfaceName, this.ipOpts)) {
      for (const a of await listAddresses(this.o.interfaceName, this.ipOpts)) await deleteAddress(this.o.interfaceName, a, this.ipOpts);
      // A device that outlives us (attach mode: the sidecar's) keeps no peer we configured.
      await this.wireguard.client.set({ replacePeers: true }).catch((err: Error) => this.log.warn('could not clear the device\'s peers', { error: err.message }));
    }
    if (this.o.api) await this.o.api.deleteObject(this.kind, this.o.name);
  }

  /** What the device and routes should be now, or null when the source has not synced (touch nothing). */
  desired(): DesiredState | null {
    if (!this.o.source.synced()) return null;
    const snapshot = this.o.source.snapshot();
    const topology = computeTopology({
      self: { role: this.o.role, name: this.o.name },
      peers: snapshot.peers,
      gateways: snapshot.gateways,
      nodes: snapshot.nodes,
      settings: { meshCIDR: this.o.meshCIDR, defaultPersistentKeepalive: this.o.persistentKeepalive },
    });
    this.topology = topology;
    // A gateway routes all of its pod CIDRs into the tunnel, even parts no node has yet: pod traffic
    // must never leave through the underlay in clear.
    const routes = this.o.role === 'gateway' ? [...new Set([...topology.routes, ...(this.o.podCIDRs ?? [])])].sort() : topology.routes;
    return {
      device: { privateKey: this.privateKey, listenPort: this.o.listenPort, fwmark: this.o.fwmark, peers: topology.peers },
      routes,
    };
  }

  /** The mesh IP this member should hold, from what the source says now (kept while it wins). */
  private allocate(): string {
    const snapshot = this.o.source.snapshot();
    const holders = [
      ...snapshot.peers.filter((p) => p.spec?.meshIP).map((p) => ({ kind: 'Peer' as const, name: p.metadata.name, meshIP: p.spec.meshIP as string, created: time(p.metadata.creationTimestamp) })),
      ...snapshot.gateways.filter((g) => g.spec?.meshIP).map((g) => ({ kind: 'Gateway' as const, name: g.metadata.name, meshIP: g.spec.meshIP, created: time(g.metadata.creationTimestamp) })),
    ];
    const own = this.ownObject();
    return allocateMeshIP({ kind: this.kind, name: this.o.name, created: time(own?.metadata.creationTimestamp) }, this.o.meshCIDR, holders);
  }

  private ownObject(): { metadata: { name: string; creationTimestamp?: string | Date }; spec: { publicKey: string; meshIP?: string } } | undefined {
    const snapshot = this.o.source.snapshot();
    const list = this.o.role === 'node' ? snapshot.peers : snapshot.gateways;
    return list.find((o) => o.metadata.name === this.o.name);
  }

  /** The spec this member's own object should have, from what the source says now (null: not yet). */
  ownSpec(): PeerSpec | GatewaySpec | null {
    if (!this.o.source.synced()) return null;
    const keepalive = this.o.persistentKeepalive ? { persistentKeepalive: this.o.persistentKeepalive } : {};
    if (this.o.role === 'gateway') {
      const spec: GatewaySpec = {
        publicKey: this.publicKey,
        meshIP: this.allocate(),
        nodeName: this.o.nodeName,
        podCIDRs: [...(this.o.podCIDRs ?? [])].sort(),
        ...keepalive,
      };
      if (this.o.endpoint) spec.endpoint = this.o.endpoint;
      return spec;
    }
    const node = this.o.source.snapshot().nodes.find((n) => n.name === this.o.nodeName);
    if (!node) {
      this.log.warn('no Node object for this node yet; not registering', { node: this.o.nodeName });
      return null;
    }
    const endpointIp = node.internalIPs[0];
    const endpoint = this.o.endpoint ?? (endpointIp ? (endpointIp.includes(':') ? `[${endpointIp}]:${this.o.listenPort}` : `${endpointIp}:${this.o.listenPort}`) : undefined);
    const spec: PeerSpec = { publicKey: this.publicKey, allowedIPs: [...node.podCIDRs].sort(), meshIP: this.allocate(), nodeName: this.o.nodeName, ...keepalive };
    if (endpoint) spec.endpoint = endpoint;
    return spec;
  }

  /**
   * Create or update this member's own object when the cached one differs from what it should be.
   * One write at a time; a change meanwhile runs again after it; a failure is retried after 2 s.
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
    if (own && sameSpec(own.spec, spec)) return;
    const api = this.o.api;
    this.registering = (async () => {
      const outcome = await api.ensureObject(this.kind, this.o.name, spec);
      if (outcome !== 'unchanged') this.log.info(`own ${this.kind} ${outcome}`, { name: this.o.name, meshIP: spec.meshIP });
    })()
      .catch((err: unknown): void => {
        this.log.warn(`could not register this ${this.kind}; retrying in 2 s`, { error: apiMessage(err) });
        setTimeout(() => this.register(), 2000).unref();
      })
      .finally(() => {
        this.registering = null;
        if (this.registerAgain) {
          this.registerAgain = false;
          this.register();
        }
      });
  }

  private async setUpLink(): Promise<void> {
    const ifName = this.o.interfaceName;
    const mtu = this.o.mtu === 'auto' ? await autoMtu(this.ipOpts, [ifName]) : this.o.mtu;
    await setLinkMtu(ifName, mtu, this.ipOpts);
    await this.syncAddress();
    await setLinkUp(ifName, this.ipOpts);
  }

  /** The interface holds exactly this node's mesh IP (/32 or /128; mesh routes live in the table). */
  private async syncAddress(): Promise<void> {
    const want = this.ownMeshIP();
    this.meshIP = want;
    if (!want || !(await getLink(this.o.interfaceName, this.ipOpts))) return;
    const cidr = `${want}/${want.includes(':') ? 128 : 32}`;
    const have = await listAddresses(this.o.interfaceName, this.ipOpts);
    for (const a of have) if (a !== cidr && !a.startsWith('fe80:')) await deleteAddress(this.o.interfaceName, a, this.ipOpts);
    if (!have.includes(cidr)) await replaceAddress(this.o.interfaceName, cidr, this.ipOpts);
  }

  private ownMeshIP(): string | null {
    if (!this.o.source.synced()) return null;
    const own = this.ownObject();
    return own && own.spec?.publicKey === this.publicKey ? (own.spec.meshIP ?? null) : null;
  }

  private afterSync(result: SyncResult): void {
    const topology = this.topology;
    if (!topology) return;
    this.o.onSync?.(result, topology);
    this.register();
    void this.syncAddress().catch((err: Error) => this.log.warn('could not set the interface address', { error: err.message }));
    if (!this.o.api) return;
    void this.writeStatus(result, topology).catch((err: unknown) => this.log.warn('could not write status', { error: apiMessage(err) }));
  }

  private async writeStatus(result: SyncResult, topology: Topology): Promise<void> {
    const api = this.o.api as MeshApi;
    const live: DeviceState | null = result.live;
    const now = Math.floor(Date.now() / 1000);
    const byKey = new Map((live?.peers ?? []).map((p) => [p.publicKey, p]));
    const configured = topology.peers.filter((p) => byKey.has(p.publicKey)).length;
    const handshakeWithin3m = topology.peers.filter((p) => {
      const hs = byKey.get(p.publicKey)?.lastHandshake;
      return hs !== null && hs !== undefined && now - Number(hs.sec) < 180;
    }).length;
    const ownRefused = topology.refused.find((r) => r.kind === this.kind && r.name === this.o.name);
    // Refused by the trust rules, this member is not part of the mesh, however well its device is set up.
    const ok = !result.error && configured === topology.peers.length && !ownRefused;
    const own = this.ownObject() as { metadata: { generation?: number }; status?: MeshStatus } | undefined;
    await api.updateStatus(
      this.kind,
      this.o.name,
      { listenPort: this.o.listenPort, peers: { desired: topology.peers.length, configured, handshakeWithin3m }, lastSyncTime: result.at.toISOString().replace(/\.\d+Z$/, 'Z') },
      ok
        ? { type: 'Ready', status: 'True', reason: 'Configured', message: `${configured} of ${topology.peers.length} peers configured on ${this.o.interfaceName}` }
        : ownRefused
          ? { type: 'Ready', status: 'False', reason: 'Refused', message: ownRefused.message }
          : { type: 'Ready', status: 'False', reason: result.error ? 'ReconcileFailed' : 'Converging', message: result.error?.message ?? `${configured} of ${topology.peers.length} peers configured` },
      { cached: own?.status, generation: own?.metadata.generation },
    );
    if (ownRefused) this.log.warn(`this member's own ${this.kind} is refused by the trust rules`, { reason: ownRefused.message });
    await this.reportRefusals(api, topology.refused);
  }

  /** Each refusal is written once per distinct message by this agent; an accepted object's old refusal is cleared. */
  private async reportRefusals(api: MeshApi, refused: readonly Refusal[]): Promise<void> {
    const current = new Map(refused.map((r) => [`${r.kind}/${r.name}`, r]));
    for (const [key, r] of current) {
      if (this.reported.get(key) === r.message) continue;
      this.log.warn('refused', { kind: r.kind, name: r.name, reason: r.reason, field: r.field, message: r.message });
      await api.reportRefusal(r);
      this.reported.set(key, r.message);
    }
    for (const key of [...this.reported.keys()]) if (!current.has(key)) this.reported.delete(key);
    // An object refused before (by anyone) and accepted now gets its Accepted condition back to True.
    const snapshot = this.o.source.snapshot();
    const all = [...snapshot.peers.map((o) => ['Peer', o] as const), ...snapshot.gateways.map((o) => ['Gateway', o] as const)];
    for (const [kind, obj] of all) {
      if (current.has(`${kind}/${obj.metadata.name}`)) continue;
      await api.reportAccepted(kind, obj.metadata.name, obj.status);
    }
  }
}

function time(t: string | Date | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}
