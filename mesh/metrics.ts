/**
 * Prometheus metrics and health endpoints of a mesh member (prom-client, node:http):
 *   GET /metrics  the metrics below
 *   GET /healthz  200 while reconcile passes keep happening and wireguard-go is running or can be
 *                 brought back (liveness: a spawn-mode restart that keeps failing makes it 503)
 *   GET /readyz   200 once the source has synced and the last pass converged (readiness)
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WireguardStatus } from '../native/index.ts';
import type { SyncResult } from './reconcile/index.ts';
import type { Topology } from './topology/index.ts';

export class MemberMetrics {
  readonly registry = new Registry();
  private readonly peers: Gauge;
  private readonly handshake: Gauge;
  private readonly rx: Gauge;
  private readonly tx: Gauge;
  private readonly uapi: Counter;
  private readonly passes: Counter;
  private readonly duration: Histogram;
  private readonly routes: Gauge;
  /** What the wireguard-go supervision says (set by serve()); read by /healthz and the restarts counter. */
  private wireguard: (() => WireguardStatus) | null = null;
  lastPass: SyncResult | null = null;
  lastPassAt = 0;

  constructor(labels: { role: string; name: string; interface: string }) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry, prefix: 'aksmesh_process_' });
    const r = [this.registry];
    this.peers = new Gauge({ name: 'aksmesh_peers', help: 'Peers by state: desired, configured, refused, handshake_within_3m', labelNames: ['state'], registers: r });
    this.handshake = new Gauge({ name: 'aksmesh_peer_last_handshake_timestamp_seconds', help: 'Unix time of the last handshake with a peer (0: never)', labelNames: ['peer', 'public_key'], registers: r });
    this.rx = new Gauge({ name: 'aksmesh_peer_received_bytes', help: 'Bytes received from a peer (wireguard-go counter)', labelNames: ['peer'], registers: r });
    this.tx = new Gauge({ name: 'aksmesh_peer_sent_bytes', help: 'Bytes sent to a peer (wireguard-go counter)', labelNames: ['peer'], registers: r });
    this.uapi = new Counter({ name: 'aksmesh_uapi_requests_total', help: 'UAPI requests sent to wireguard-go', labelNames: ['op'], registers: r });
    this.passes = new Counter({ name: 'aksmesh_reconcile_total', help: 'Reconcile passes by result', labelNames: ['result'], registers: r });
    this.duration = new Histogram({ name: 'aksmesh_reconcile_duration_seconds', help: 'How long a reconcile pass took', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: r });
    this.routes = new Gauge({ name: 'aksmesh_routes', help: 'Routes through the tunnel that this member wants', registers: r });
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

  onRequest(op: 'get' | 'set'): void {
    this.uapi.inc({ op });
  }

  /** Whether a pass has written the per-peer series yet (the first pass does, full or not). */
  private perPeerDone = false;
  /** The per-peer series written, by public key (their `peer` label), and the topology they were last checked against. */
  private readonly series = new Map<string, string>();
  private seriesTopology: Topology | null = null;

  record(result: SyncResult, topology: Topology): void {
    this.lastPass = result;
    this.lastPassAt = Date.now();
    this.passes.inc({ result: result.error ? 'error' : 'ok' });
    this.duration.observe((Date.now() - result.at.getTime()) / 1000);
    this.peers.set({ state: 'desired' }, topology.peers.length);
    this.peers.set({ state: 'refused' }, topology.refused.length);
    this.routes.set(result.desired.routes.length);
    // Per-peer figures come from a read of the device, which only a full pass makes (at start and
    // every resync): an event pass has nothing new to say about handshakes and counters, and
    // rewriting 3 series per peer on every event was O(mesh) work per change (issue 10).
    const livePeers = result.live?.peers ?? [];
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
   * Serve /metrics, /healthz and /readyz on `host:port`. `synced` says whether the source has
   * synced; `wireguard` (the member's wireguard.status()) lets /healthz fail while wireguard-go is
   * down and cannot be brought back, and feeds aksmesh_wireguard_restarts_total.
   */
  serve(address: string, health: { synced: () => boolean; maxSilenceMs: number; wireguard?: () => WireguardStatus }): Promise<Server> {
    this.wireguard = health.wireguard ?? null;
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
        const silent = this.lastPassAt ? Date.now() - this.lastPassAt : 0;
        const wg = health.wireguard?.();
        if (silent > health.maxSilenceMs) send(503, `no reconcile pass for ${Math.round(silent / 1000)} s\n`);
        else if (wg && !wg.healthy) {
          const down = Math.round((Date.now() - wg.since.getTime()) / 1000);
          send(503, `wireguard-go is not running (${wg.state} for ${down} s, ${wg.failures} failed restarts): ${wg.lastError ?? 'unknown'}\n`);
        } else send(200, 'ok\n');
      } else if (url === '/readyz') {
        if (!health.synced()) send(503, 'source not synced yet\n');
        else if (!this.lastPass) send(503, 'no reconcile pass yet\n');
        else if (this.lastPass.error) send(503, `last reconcile failed: ${this.lastPass.error.message}\n`);
        else send(200, 'ok\n');
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
