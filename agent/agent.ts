/**
 * The node agent, wired: key, wireguard-go (spawn or attach), the interface and policy routing,
 * a peer source, the desired state, the reconciler, self-registration and status.
 *
 *   source change ─▶ register own Peer ─▶ reconciler.trigger ─▶ topology ─▶ diff ─▶ UAPI + routes
 *                                                                   └────▶ status, events
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
import { Reconciler, allocateMeshIP, apiMessage, computeTopology } from '../mesh/index.ts';
import type { DesiredState, MeshApi, PeerSource, PeerSpec, Refusal, SyncResult, Topology } from '../mesh/index.ts';

export interface AgentOptions {
  nodeName: string;
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
  /** This node's endpoint; default: its Node's first InternalIP and the listen port. */
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

export class Agent {
  readonly o: AgentOptions;
  readonly log: Logger;
  readonly wireguard: WireguardGo;
  readonly reconciler: Reconciler;
  readonly privateKey: string;
  readonly publicKey: string;
  /** The mesh IP this node uses (from its Peer, or allocated). */
  meshIP: string | null = null;
  topology: Topology | null = null;
  private registering: Promise<void> | null = null;
  private reported = new Map<string, string>();
  private stopped = false;

  constructor(options: AgentOptions) {
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

  private get ipOpts(): { netns?: string } {
    return { netns: this.o.netns };
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.o.source.onChange(() => {
      this.register();
      this.reconciler.trigger('source changed');
    });
    await ensureRule({ table: this.o.table, fwmark: this.o.fwmark, priority: this.o.rulePriority }, this.ipOpts);
    await this.o.source.start();
    this.register();
    await this.wireguard.start();
    this.reconciler.start();
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
   * Remove everything this agent added: its routes, its rule, the interface address, and its Peer.
   * (`aks-mesh agent --cleanup`.) The key file stays: it is the node's identity.
   */
  async cleanup(): Promise<void> {
    await flushTable(this.o.table, this.ipOpts);
    await removeRule({ table: this.o.table, fwmark: this.o.fwmark, priority: this.o.rulePriority }, this.ipOpts);
    if (await getLink(this.o.interfaceName, this.ipOpts)) {
      for (const a of await listAddresses(this.o.interfaceName, this.ipOpts)) await deleteAddress(this.o.interfaceName, a, this.ipOpts);
    }
    if (this.o.api) await this.o.api.deleteObject('Peer', this.o.nodeName);
  }

  /** What the device and routes should be now, or null when the source has not synced (touch nothing). */
  desired(): DesiredState | null {
    if (!this.o.source.synced()) return null;
    const snapshot = this.o.source.snapshot();
    const topology = computeTopology({
      self: { role: 'node', name: this.o.nodeName },
      peers: snapshot.peers,
      gateways: snapshot.gateways,
      nodes: snapshot.nodes,
      settings: { meshCIDR: this.o.meshCIDR, defaultPersistentKeepalive: this.o.persistentKeepalive },
    });
    this.topology = topology;
    return {
      device: { privateKey: this.privateKey, listenPort: this.o.listenPort, fwmark: this.o.fwmark, peers: topology.peers },
      routes: topology.routes,
    };
  }

  /** The spec this node's own Peer should have, from what the source says now. */
  ownPeerSpec(): PeerSpec | null {
    if (!this.o.source.synced()) return null;
    const snapshot = this.o.source.snapshot();
    const node = snapshot.nodes.find((n) => n.name === this.o.nodeName);
    if (!node) {
      this.log.warn('no Node object for this node yet; not registering', { node: this.o.nodeName });
      return null;
    }
    const own = snapshot.peers.find((p) => p.metadata.name === this.o.nodeName);
    const holders = [
      ...snapshot.peers.filter((p) => p.spec?.meshIP).map((p) => ({ kind: 'Peer' as const, name: p.metadata.name, meshIP: p.spec.meshIP as string, created: time(p.metadata.creationTimestamp) })),
      ...snapshot.gateways.filter((g) => g.spec?.meshIP).map((g) => ({ kind: 'Gateway' as const, name: g.metadata.name, meshIP: g.spec.meshIP, created: time(g.metadata.creationTimestamp) })),
    ];
    const meshIP = allocateMeshIP({ name: this.o.nodeName, created: time(own?.metadata.creationTimestamp) }, this.o.meshCIDR, holders);
    const endpointIp = node.internalIPs[0];
    const endpoint = this.o.endpoint ?? (endpointIp ? (endpointIp.includes(':') ? `[${endpointIp}]:${this.o.listenPort}` : `${endpointIp}:${this.o.listenPort}`) : undefined);
    const spec: PeerSpec = {
      publicKey: this.publicKey,
      allowedIPs: [...node.podCIDRs].sort(),
      meshIP,
      nodeName: this.o.nodeName,
    };
    if (endpoint) spec.endpoint = endpoint;
    if (this.o.persistentKeepalive) spec.persistentKeepalive = this.o.persistentKeepalive;
    return spec;
  }

  /** Create or update this node's Peer (one at a time; a change meanwhile triggers another pass). */
  private register(): void {
    if (!this.o.api || this.stopped) return;
    if (this.registering) return;
    const api = this.o.api;
    this.registering = (async () => {
      const spec = this.ownPeerSpec();
      if (!spec) return;
      const outcome = await api.ensurePeer(this.o.nodeName, spec);
      if (outcome !== 'unchanged') this.log.info(`own Peer ${outcome}`, { node: this.o.nodeName, meshIP: spec.meshIP });
    })()
      .catch((err: unknown): void => {
        this.log.warn("could not register this node's Peer; will retry on the next change", { error: apiMessage(err) });
      })
      .finally(() => (this.registering = null));
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
    const own = this.o.source.snapshot().peers.find((p) => p.metadata.name === this.o.nodeName && p.spec?.publicKey === this.publicKey);
    return own?.spec.meshIP ?? null;
  }

  private afterSync(result: SyncResult): void {
    const topology = this.topology;
    if (!topology) return;
    this.o.onSync?.(result, topology);
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
    const ok = !result.error && configured === topology.peers.length;
    const ownRefusal = topology.refused.find((r) => r.kind === 'Peer' && r.name === this.o.nodeName);
    await api.updateStatus(
      'Peer',
      this.o.nodeName,
      { listenPort: this.o.listenPort, peers: { desired: topology.peers.length, configured, handshakeWithin3m }, lastSyncTime: result.at.toISOString().replace(/\.\d+Z$/, 'Z') },
      ok
        ? { type: 'Ready', status: 'True', reason: 'Configured', message: `${configured} of ${topology.peers.length} peers configured on ${this.o.interfaceName}` }
        : { type: 'Ready', status: 'False', reason: result.error ? 'ReconcileFailed' : 'Converging', message: result.error?.message ?? `${configured} of ${topology.peers.length} peers configured` },
    );
    if (ownRefusal) this.log.warn('this node\'s own Peer is refused by the trust rules', { reason: ownRefusal.message });
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
