/**
 * Prometheus metrics and health endpoints of a mesh member (prom-client, node:http):
 *   GET /metrics  the metrics below
 *   GET /healthz  200 while reconcile passes keep happening and wireguard-go is running or can be
 *                 brought back (liveness: a spawn-mode restart that keeps failing makes it 503)
 *   GET /readyz   200 once the source has synced, the last pass converged, and the live device
 *                 (read at probe time, one read a second shared with the scrapes) is what that pass
 *                 wanted; 503 naming what differs ("1 peer missing (Peer/node-b)") while someone's
 *                 `wg set` by hand or a lost wireguard-go state is not repaired yet (readiness)
 *
 * Per peer, the common WireGuard exporter's series (MindFlavor/prometheus_wireguard_exporter's
 * names and labels, which the public Grafana dashboards query), read from the live device at
 * scrape time: wireguard_sent_bytes_total, wireguard_received_bytes_total,
 * wireguard_latest_handshake_seconds{interface, public_key, allowed_ips, peer}.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DeviceState, WireguardStatus } from '../native/index.ts';
import { describeDrift, deviceDrift } from './reconcile/index.ts';
import type { SyncResult } from './reconcile/index.ts';
import type { Topology } from './topology/index.ts';

/** How long one device read answers scrapes: concurrent scrapes (and the three series of one) share it. */
const DEVICE_READ_TTL_MS = 1000;

/**
 * The least time /healthz gives a member to make its first pass (the first pass needs the
 * informers' first list). A whole DaemonSet starting at once lists every Peer from every node, and
 * an API server that throttles them makes that slow: a restart would only begin the list again.
 */
export const MIN_START_GRACE_MS = 120_000;

/** What /healthz is told by serve(). */
export interface HealthOptions {
  /** Whether the source has synced (/readyz; /healthz names it when no pass has come). */
  synced: () => boolean;
  /** /healthz fails when the last pass is older than this (the member passes every resync). */
  maxSilenceMs: number;
  /** /healthz fails when no pass came this long after serving began (default: maxSilenceMs, at least MIN_START_GRACE_MS). */
  startGraceMs?: number;
  wireguard?: () => WireguardStatus;
  device?: () => Promise<DeviceState>;
  busy?: () => boolean;
}

export class MemberMetrics {
  readonly registry = new Registry();
  private readonly peers: Gauge;
  private readonly handshake: Gauge;
  private readonly rx: Gauge;
  private readonly tx: Gauge;
  private readonly uapi: Counter;
  private readonly uapiDuration: Histogram;
  private readonly passes: Counter;
  private readonly duration: Histogram;
  private readonly routes: Gauge;
  /** What the wireguard-go supervision says (set by serve()); read by /healthz and the restarts counter. */
  private wireguard: (() => WireguardStatus) | null = null;
  lastPass: SyncResult | null = null;
  lastPassAt = 0;
  /** When serve() began answering: /healthz counts a first pass that does not come from then. */
  private servingSince = 0;
  /** Reads the live device for the wireguard_* series (set by serve()); null: those series stay empty. */
  private readDevice: (() => Promise<DeviceState>) | null = null;
  /** The last read, shared by the three series of one scrape and by scrapes within DEVICE_READ_TTL_MS. */
  private deviceRead: { at: number; passAt: number; state: Promise<DeviceState | null>; error: string | null } | null = null;
  private readonly deviceErrors: Counter;
  /** Public key → our `peer` label (kind/name), from the topology of the last pass. */
  private peerNames = new Map<string, string>();
  private namesTopology: Topology | null = null;

  constructor(labels: { role: string; name: string; interface: string }) {
    this.registry.setDefaultLabels(labels);
    // The process's own figures under prom-client's standard names (process_cpu_seconds_total,
    // process_resident_memory_bytes, nodejs_eventloop_lag_seconds, …), which the usual process and
    // Node.js dashboards and alerts query; the default labels (role, name, interface) tell members
    // apart. A prefix would only rename them for no one: the old 'aksmesh_process_' made
    // aksmesh_process_process_cpu_seconds_total.
    collectDefaultMetrics({ register: this.registry });
    const r = [this.registry];
    this.peers = new Gauge({ name: 'aksmesh_peers', help: 'Peers by state: desired, configured, refused, handshake_within_3m', labelNames: ['state'], registers: r });
    this.handshake = new Gauge({ name: 'aksmesh_peer_last_handshake_timestamp_seconds', help: 'Unix time of the last handshake with a peer (0: never)', labelNames: ['peer', 'public_key'], registers: r });
    this.rx = new Gauge({ name: 'aksmesh_peer_received_bytes', help: 'Bytes received from a peer (wireguard-go counter)', labelNames: ['peer'], registers: r });
    this.tx = new Gauge({ name: 'aksmesh_peer_sent_bytes', help: 'Bytes sent to a peer (wireguard-go counter)', labelNames: ['peer'], registers: r });
    this.uapi = new Counter({ name: 'aksmesh_uapi_requests_total', help: 'UAPI requests sent to wireguard-go', labelNames: ['op'], registers: r });
    this.uapiDuration = new Histogram({
      name: 'aksmesh_uapi_request_duration_seconds',
      help: 'How long a UAPI exchange with wireguard-go took, by op and result (ok: an answer came, errno included; error: none did)',
      labelNames: ['op', 'result'],
      // A get of a few peers is well under a millisecond; one of 5,000 peers, or a set of a batch of new peers, is tens to hundreds.
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    });
    this.passes = new Counter({ name: 'aksmesh_reconcile_total', help: 'Reconcile passes by result', labelNames: ['result'], registers: r });
    this.duration = new Histogram({ name: 'aksmesh_reconcile_duration_seconds', help: 'How long a reconcile pass took', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: r });
    this.routes = new Gauge({ name: 'aksmesh_routes', help: 'Routes through the tunnel that this member wants', registers: r });
    this.deviceErrors = new Counter({ name: 'aksmesh_device_read_errors_total', help: 'Scrapes whose UAPI read of the device failed (the wireguard_* series were left out of them)', registers: r });
    this.deviceSeries(r, labels.interface);
    // A counter that follows the supervision's own count when scraped, so nothing has to call us on each restart.
    let counted = 0;
    const status = (): WireguardStatus | undefined => this.wireguard?.();
    new Counter({
      name: 'aksmesh_wireguard_restarts_total',
      help: 'wireguard-go restarts: spawn mode, each attempt to start a new process after one died; attach mode, each sidecar device reset re-applied',
      registers: r,
      collect() {
        const n = status()?.restarts ?? 0;
        if (n > counted) this.inc(n - counted);
        counted = Math.max(counted, n);
      },
    });
  }

  /**
   * The exporter-compatible per-peer series. They are read at scrape time, not on reconcile passes:
   * byte counters that only moved at each resync would make rate() graphs useless. TYPE stays
   * `counter` (dashboards use rate()/increase() on them): each collect() resets the Counter and
   * adds the device's own count, so the exposition is exactly what wireguard-go reports (a
   * wireguard-go restart resets it to 0, which Prometheus treats as a counter reset).
   */
  private deviceSeries(registers: Registry[], interfaceName: string): void {
    const labelNames = ['interface', 'public_key', 'allowed_ips', 'peer'];
    const read = (): Promise<DeviceState | null> => this.readLiveDevice();
    const labelsOf = (p: DeviceState['peers'][number]): Record<string, string> => ({
      interface: interfaceName,
      public_key: p.publicKey,
      allowed_ips: p.allowedIPs.join(','),
      peer: this.peerNames.get(p.publicKey) ?? '',
    });
    const counter = (name: string, help: string, value: (p: DeviceState['peers'][number]) => bigint): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          const device = await read();
          this.reset();
          for (const p of device?.peers ?? []) this.inc(labelsOf(p), Number(value(p)));
        },
      });
    };
    counter('wireguard_sent_bytes_total', 'Bytes sent to the peer (wireguard-go tx_bytes)', (p) => p.txBytes);
    counter('wireguard_received_bytes_total', 'Bytes received from the peer (wireguard-go rx_bytes)', (p) => p.rxBytes);
    new Gauge({
      name: 'wireguard_latest_handshake_seconds',
      help: 'Unix time of the latest handshake with the peer (0: never)',
      labelNames,
      registers,
      async collect() {
        const device = await read();
        this.reset();
        for (const p of device?.peers ?? []) this.set(labelsOf(p), p.lastHandshake ? Number(p.lastHandshake.sec) : 0);
      },
    });
  }

  /**
   * One UAPI `get` shared for DEVICE_READ_TTL_MS by every series and concurrent scrape (a scrape
   * storm costs wireguard-go one read a second). A failed read counts an error and yields null:
   * the per-peer series are left out of that scrape, the rest of /metrics still answers. The
   * client's own timeout bounds how long a hung wireguard-go can hold a scrape.
   */
  private readLiveDevice(): Promise<DeviceState | null> {
    const read = this.readDevice;
    if (!read) return Promise.resolve(null);
    const now = Date.now();
    if (this.deviceRead && now - this.deviceRead.at < DEVICE_READ_TTL_MS) return this.deviceRead.state;
    const entry: NonNullable<MemberMetrics['deviceRead']> = { at: now, passAt: this.lastPassAt, state: Promise.resolve(null), error: null };
    entry.state = read().then(
      (d) => d,
      (err: Error) => {
        this.deviceErrors.inc();
        entry.error = err.message;
        return null;
      },
    );
    this.deviceRead = entry;
    return entry.state;
  }

  onRequest(op: 'get' | 'set'): void {
    this.uapi.inc({ op });
  }

  /** One UAPI exchange finished (UapiClient.observe). */
  onResponse(op: 'get' | 'set', seconds: number, answered: boolean): void {
    this.uapiDuration.observe({ op, result: answered ? 'ok' : 'error' }, seconds);
  }

  /**
   * Why the live device is not what the last pass wanted, or null when it is (or that cannot be
   * judged now). Read at probe time through the shared read. A read taken while a pass was running
   * or before the last pass ended is no verdict: the device may be half-way between two desired
   * states, which the pass itself is settling.
   */
  async deviceDrift(busy: () => boolean): Promise<string | null> {
    const pass = this.lastPass;
    if (!pass || pass.error || !pass.desired?.device || !this.readDevice) return null;
    const device = await this.readLiveDevice();
    const read = this.deviceRead;
    if (!device) return read?.error ? `cannot read the device: ${read.error}` : null;
    if (busy() || this.lastPass !== pass || (read && read.passAt !== this.lastPassAt)) return null;
    return describeDrift(deviceDrift(pass.desired.device, device), (key) => this.peerNames.get(key));
  }

  /** Whether a pass has written the per-peer series yet (the first pass does, full or not). */
  private perPeerDone = false;
  /** The per-peer series written, by public key (their `peer` label), and the topology they were last checked against. */
  private readonly series = new Map<string, string>();
  private seriesTopology: Topology | null = null;

  /** `unreadable`: the member cannot read its own device (MeshMember.cannotReadDevice): no handshake counts as recent then. */
  record(result: SyncResult, topology: Topology, unreadable = false): void {
    this.lastPass = result;
    this.lastPassAt = Date.now();
    this.passes.inc({ result: result.error ? 'error' : 'ok' });
    this.duration.observe((Date.now() - result.at.getTime()) / 1000);
    this.peers.set({ state: 'desired' }, topology.peers.length);
    this.peers.set({ state: 'refused' }, topology.refused.length);
    this.routes.set(result.desired.routes.length);
    if (topology !== this.namesTopology) {
      this.peerNames = new Map(topology.peers.map((p) => [p.publicKey, `${p.kind}/${p.name}`]));
      this.namesTopology = topology;
    }
    // Per-peer figures come from a read of the device, which only a full pass makes (at start and
    // every resync): an event pass has nothing new to say about handshakes and counters, and
    // rewriting 3 series per peer on every event was O(mesh) work per change (issue 10).
    const livePeers = result.live?.peers ?? [];
    // The last read's handshakes are not news while the device cannot be read: as the status says (DeviceUnreadable), none is recent.
    if (unreadable) {
      this.peers.set({ state: 'handshake_within_3m' }, 0);
      return;
    }
    if (!result.full && this.perPeerDone) {
      // What is configured does change with an event (result.live holds what was applied since).
      const keys = new Set<string>();
      for (const p of livePeers) keys.add(p.publicKey);
      let configured = 0;
      for (const p of topology.peers) if (keys.has(p.publicKey)) configured++;
      this.peers.set({ state: 'configured' }, configured);
      // A peer that left takes its series with it now, not at the next resync (alerts on a peer
      // that no longer exists would keep firing).
      if (topology !== this.seriesTopology) {
        const wanted = new Set<string>();
        for (const p of topology.peers) wanted.add(p.publicKey);
        for (const [key, peer] of this.series) {
          if (wanted.has(key)) continue;
          this.handshake.remove({ peer, public_key: key });
          this.rx.remove({ peer });
          this.tx.remove({ peer });
          this.series.delete(key);
        }
        this.seriesTopology = topology;
      }
      return;
    }
    this.perPeerDone = true;
    this.seriesTopology = topology;
    this.series.clear();
    const live = new Map(livePeers.map((p) => [p.publicKey, p]));
    const now = Date.now() / 1000;
    this.peers.set({ state: 'configured' }, topology.peers.filter((p) => live.has(p.publicKey)).length);
    this.handshake.reset();
    this.rx.reset();
    this.tx.reset();
    let recent = 0;
    for (const p of topology.peers) {
      const state = live.get(p.publicKey);
      if (!state) continue;
      const peer = `${p.kind}/${p.name}`;
      const sec = state.lastHandshake ? Number(state.lastHandshake.sec) : 0;
      if (sec && now - sec < 180) recent++;
      this.series.set(p.publicKey, peer);
      this.handshake.set({ peer, public_key: p.publicKey }, sec);
      this.rx.set({ peer }, Number(state.rxBytes));
      this.tx.set({ peer }, Number(state.txBytes));
    }
    this.peers.set({ state: 'handshake_within_3m' }, recent);
  }

  /**
   * Why /healthz fails for want of passes, or null. After a pass: none for maxSilenceMs (a member
   * passes every resync). Before the first: none for the start grace since serving began, so a
   * member stuck at its start (a source that never syncs, a first pass that never ends) is restarted
   * rather than left looking alive. In attach mode the wait for the sidecar's wireguard-go does not
   * count: restarting this process would not bring the sidecar back (its own container restarts
   * do), and the grace starts again once it is there.
   */
  private passesStopped(health: HealthOptions, wg: WireguardStatus | undefined): string | null {
    const now = Date.now();
    if (this.lastPassAt) {
      const silent = now - this.lastPassAt;
      return silent > health.maxSilenceMs ? `no reconcile pass for ${Math.round(silent / 1000)} s` : null;
    }
    if (wg?.mode === 'attach' && (wg.state === 'starting' || wg.state === 'waiting')) return null;
    const from = wg?.mode === 'attach' ? Math.max(this.servingSince, wg.since.getTime()) : this.servingSince;
    const grace = health.startGraceMs ?? Math.max(health.maxSilenceMs, MIN_START_GRACE_MS);
    const waited = now - from;
    if (waited <= grace) return null;
    const since = from === this.servingSince ? 'since start' : 'since the wireguard-go sidecar answered';
    return `no reconcile pass in ${Math.round(waited / 1000)} s ${since}${health.synced() ? '' : ': the source has not synced (Peers and Gateways not read yet)'}`;
  }

  /**
   * Serve /metrics, /healthz and /readyz on `host:port`. `synced` says whether the source has
   * synced; `wireguard` (the member's wireguard.status()) lets /healthz fail while wireguard-go is
   * down and cannot be brought back, and feeds aksmesh_wireguard_restarts_total. `device` (the
   * member's `wireguard.client.get()`) feeds the wireguard_* per-peer series at scrape time.
   */
  serve(address: string, health: HealthOptions): Promise<Server> {
    this.servingSince = Date.now();
    this.wireguard = health.wireguard ?? null;
    this.readDevice = health.device ?? null;
    this.deviceRead = null;
    const m = /^(.*):(\d+)$/.exec(address);
    if (!m) throw new Error(`--metrics-address ${JSON.stringify(address)}: expected host:port, e.g. 0.0.0.0:9586`);
    const host = m[1].replace(/^\[|\]$/g, '') || '0.0.0.0';
    const server = createServer((req, res) => {
      const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
        res.writeHead(code, { 'content-type': type });
        res.end(body);
      };
      const url = (req.url ?? '/').split('?')[0];
      if (url === '/metrics') {
        this.registry.metrics().then((text) => send(200, text, this.registry.contentType), (err: Error) => send(500, err.message));
      } else if (url === '/healthz') {
        const wg = health.wireguard?.();
        const stopped = this.passesStopped(health, wg);
        if (stopped) send(503, `${stopped}\n`);
        else if (wg && !wg.healthy) {
          const down = Math.round((Date.now() - wg.since.getTime()) / 1000);
          send(503, `wireguard-go is not running (${wg.state} for ${down} s, ${wg.failures} failed restarts): ${wg.lastError ?? 'unknown'}\n`);
        } else send(200, 'ok\n');
      } else if (url === '/readyz') {
        if (!health.synced()) send(503, 'source not synced yet\n');
        else if (!this.lastPass) send(503, 'no reconcile pass yet\n');
        else if (this.lastPass.error) send(503, `last reconcile failed: ${this.lastPass.error.message}\n`);
        else {
          this.deviceDrift(health.busy ?? (() => false)).then(
            (drift) => (drift ? send(503, `${drift}\n`) : send(200, 'ok\n')),
            (err: Error) => send(503, `cannot compare the device with the desired state: ${err.message}\n`),
          );
        }
      } else {
        send(404, 'not found: try /metrics, /healthz, /readyz\n');
      }
    });
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`metrics server on ${address}: ${err.message}`)));
      server.listen(Number(m[2]), host, () => resolve(server));
    });
  }
}
