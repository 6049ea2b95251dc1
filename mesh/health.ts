/**
 * Per-peer health, as a member writes it on its own Peer or Gateway (status.peers): how many
 * desired peers had a handshake within the last 3 minutes, and which ones did not, with the reason
 * (Talos KubeSpan's per-peer state, in the words an operator reads in `wg show`).
 *
 * Handshakes come from what the reconciler's full passes read (start and every resync): an event
 * pass does not read the device, so it re-judges only the peers it changed, as of that last read.
 * One full pass costs O(peers); an event pass costs what it changed plus identity checks (issue 10).
 */
import type { DeviceState, PeerState } from '../native/index.ts';
import { UNHEALTHY_LIMIT } from './crd/schema.ts';
import type { PeerHealth, UnhealthyPeer, UnhealthyReason } from './crd/types.ts';
import { identityDelta } from './delta.ts';
import type { DesiredPeer, ObjectKind, Refusal } from './topology/index.ts';
import { compareText } from './topology/order.ts';

/**
 * A handshake younger than this counts as healthy. WireGuard rejects a session older than 180 s
 * (REJECT_AFTER_TIME) and renews it after 120 s of use (REKEY_AFTER_TIME); with a 25 s keepalive
 * every live pair renews within about 145 s, so 180 s is never missed by a healthy pair.
 */
export const HANDSHAKE_FRESH_SECONDS = 180;

export { UNHEALTHY_LIMIT };

/** RFC 3339 in whole seconds, as every other time on our status. */
function rfc3339(sec: number): string {
  return new Date(sec * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * One desired peer's verdict as of `nowSec` (unix seconds): null when healthy, else the reason.
 * `state` is the peer on the device, undefined when it is not there.
 */
export function peerVerdict(state: PeerState | undefined, nowSec: number): { reason: UnhealthyReason; lastHandshake?: string } | null {
  if (!state) return { reason: 'NotConfigured' };
  const hs = state.lastHandshake;
  const sec = hs === null ? null : Number(hs.sec);
  // wireguard-go reports 0 for "never" on some paths; a handshake in 1970 is none.
  const last = sec !== null && sec > 0 ? sec : null;
  if (last !== null && nowSec - last < HANDSHAKE_FRESH_SECONDS) return null;
  const when = last === null ? {} : { lastHandshake: rfc3339(last) };
  // Without an endpoint this side cannot start a handshake: only the peer can (a roaming peer).
  if (state.endpoint === null) return { reason: 'NoEndpoint', ...when };
  return last === null ? { reason: 'NoHandshake' } : { reason: 'StaleHandshake', ...when };
}

/** Sorted by kind then name (locale-free, the same on every member). */
export function compareUnhealthy(a: UnhealthyPeer, b: UnhealthyPeer): number {
  return compareText(a.kind, b.kind) || compareText(a.name, b.name);
}

/**
 * The list's order: this member's own pairs (NoHandshake, StaleHandshake, NoEndpoint, NotConfigured, DeviceUnreadable)
 * first, then the objects the trust rules refused, each part by kind then name. Refused objects are
 * the cluster's (every member lists the same ones, and each carries its own Accepted=False), so when
 * the bounded list is cut it is refusals that go: 40 refused objects never hide the one broken pair.
 * A reader can tell from the list alone: once a Refused entry is listed, every pair entry is.
 */
export function compareListed(a: UnhealthyPeer, b: UnhealthyPeer): number {
  return Number(a.reason === 'Refused') - Number(b.reason === 'Refused') || compareUnhealthy(a, b);
}

/** The status.peers a member writes, from its unhealthy entries (any order) and its counts. */
export function peerHealth(desired: number, configured: number, healthy: number, entries: readonly UnhealthyPeer[], limit = UNHEALTHY_LIMIT): PeerHealth {
  const sorted = [...entries].sort(compareListed);
  const list = sorted.slice(0, limit);
  const omitted = sorted.length - list.length;
  return {
    desired,
    configured,
    handshakeWithin3m: healthy,
    healthy,
    summary: `${healthy}/${desired}`,
    ...(list.length > 0 ? { unhealthy: list } : {}),
    ...(omitted > 0 ? { unhealthyOmitted: omitted } : {}),
  };
}

interface Judged {
  peer: DesiredPeer;
  configured: boolean;
  entry: UnhealthyPeer | null;
}

export interface HealthInput {
  /** The desired peers (topology.peers: unique public keys). */
  peers: readonly DesiredPeer[];
  /** The device as the reconciler knows it (SyncResult.live); null: none. */
  live: DeviceState | null;
  /** Objects the trust rules refused (topology.refused). */
  refused: readonly Refusal[];
  /** Whether the pass read the device (its handshakes are fresh): everything is judged again. */
  full: boolean;
  /** When the pass ran (the handshakes of a full pass are judged as of then). */
  at: Date;
  /**
   * The member cannot read its own device now (its last full pass failed to read it, or there is no
   * live state): every desired peer is listed DeviceUnreadable and none counts as healthy, rather
   * than keep the count of an old read (a hung wireguard-go would otherwise read healthy for 3 minutes).
   */
  unreadable?: boolean;
}

/**
 * Keeps one member's health from pass to pass. A full pass judges every peer as of its read; an
 * event pass finds what changed by identity (the topology engine keeps unchanged peers, the mirror
 * unchanged peer states, as the same objects) and judges only those. The result is the same object
 * while nothing in it changed, so a caller can tell a change by `!==`.
 */
export class HealthTracker {
  private readonly self: { kind: ObjectKind; name: string };
  private peers: readonly DesiredPeer[] = [];
  private livePeers: readonly PeerState[] = [];
  private readonly liveByKey = new Map<string, PeerState>();
  private readonly judged = new Map<string, Judged>();
  /** The unhealthy entries among the desired peers, by public key (what the list is built from: O(unhealthy), not O(peers)). */
  private readonly unhealthy = new Map<string, UnhealthyPeer>();
  private refusedFrom: readonly Refusal[] | null = null;
  private refusedEntries: UnhealthyPeer[] = [];
  /** When the handshakes judged were read (unix seconds). */
  private readAt = 0;
  private configured = 0;
  private healthy = 0;
  private started = false;
  /** The unhealthy entries changed since the list was last built (counts alone need no sort). */
  private dirty = true;
  private out: PeerHealth | null = null;

  constructor(self: { kind: ObjectKind; name: string }) {
    this.self = self;
  }

  update(input: HealthInput): PeerHealth {
    this.refused(input.refused);
    if (input.unreadable || input.live === null) return this.unreadable(input);
    const livePeers = input.live.peers;
    if (input.full || !this.started) this.rebuild(input.peers, livePeers, Math.floor(input.at.getTime() / 1000));
    else this.step(input.peers, livePeers);
    this.started = true;
    const out = this.out;
    if (this.dirty || !out) {
      const entries: UnhealthyPeer[] = [...this.unhealthy.values(), ...this.refusedEntries];
      const next = peerHealth(this.peers.length, this.configured, this.healthy, entries);
      if (!out || !sameHealth(out, next)) this.out = next;
      this.dirty = false;
    } else if (out.desired !== this.peers.length || out.configured !== this.configured || out.healthy !== this.healthy) {
      const { unhealthy, unhealthyOmitted } = out;
      this.out = {
        ...peerHealth(this.peers.length, this.configured, this.healthy, []),
        ...(unhealthy ? { unhealthy } : {}),
        ...(unhealthyOmitted ? { unhealthyOmitted } : {}),
      };
    }
    return this.out as PeerHealth;
  }

  /**
   * The device cannot be read: nothing about a pair can be judged, so every desired peer is listed
   * with the last handshake known (if any) and none counts as healthy. `configured` stays what the
   * reconciler last knew (Ready is already False with the read's error). The next update judges
   * every peer again from a fresh read (the reconciler's next pass after a failure is a full one).
   */
  private unreadable(input: HealthInput): PeerHealth {
    const known = new Map((input.live?.peers ?? []).map((s) => [s.publicKey, s]));
    let configured = 0;
    const entries: UnhealthyPeer[] = [];
    for (const p of input.peers) {
      const state = known.get(p.publicKey);
      if (state) configured++;
      const sec = state?.lastHandshake ? Number(state.lastHandshake.sec) : 0;
      entries.push({ kind: p.kind, name: p.name, reason: 'DeviceUnreadable', ...(sec > 0 ? { lastHandshake: rfc3339(sec) } : {}) });
    }
    this.started = false;
    this.dirty = true;
    const next = peerHealth(input.peers.length, configured, 0, [...entries, ...this.refusedEntries]);
    if (!this.out || !sameHealth(this.out, next)) this.out = next;
    return this.out;
  }

  /** The refused objects' entries, rebuilt only when the topology's refusals are another list. */
  private refused(refused: readonly Refusal[]): void {
    if (refused !== this.refusedFrom) {
      this.refusedFrom = refused;
      const seen = new Set<string>();
      const entries: UnhealthyPeer[] = [];
      for (const r of refused) {
        // A member refused itself shows that on its Ready condition, not as one of its peers.
        if (r.kind === this.self.kind && r.name === this.self.name) continue;
        const id = `${r.kind}/${r.name}`;
        if (seen.has(id)) continue;
        seen.add(id);
        entries.push({ kind: r.kind, name: r.name, reason: 'Refused' });
      }
      if (!sameEntries(entries, this.refusedEntries)) {
        this.refusedEntries = entries;
        this.dirty = true;
      }
    }
  }

  /** Judge every peer again against a fresh read. */
  private rebuild(peers: readonly DesiredPeer[], livePeers: readonly PeerState[], at: number): void {
    this.readAt = at;
    this.liveByKey.clear();
    for (const s of livePeers) this.liveByKey.set(s.publicKey, s);
    this.livePeers = livePeers;
    this.judged.clear();
    this.unhealthy.clear();
    this.configured = this.healthy = 0;
    this.peers = peers;
    for (const p of peers) this.judge(p);
    this.dirty = true;
  }

  /** An event pass: only the peers that came, went or changed on either side are judged again. */
  private step(peers: readonly DesiredPeer[], livePeers: readonly PeerState[]): void {
    const touched = new Set<string>();
    if (livePeers !== this.livePeers) {
      const { gone, added } = identityDelta(this.livePeers, livePeers);
      for (const s of gone as PeerState[]) if (this.liveByKey.get(s.publicKey) === s) this.liveByKey.delete(s.publicKey);
      for (const s of added as PeerState[]) this.liveByKey.set(s.publicKey, s);
      for (const s of [...(gone as PeerState[]), ...(added as PeerState[])]) touched.add(s.publicKey);
      this.livePeers = livePeers;
    }
    if (peers !== this.peers) {
      const { gone, added } = identityDelta(this.peers, peers);
      for (const p of gone as DesiredPeer[]) {
        const j = this.judged.get(p.publicKey);
        if (j?.peer === p) this.forget(p.publicKey, j);
      }
      for (const p of added as DesiredPeer[]) {
        const j = this.judged.get(p.publicKey);
        if (j) this.forget(p.publicKey, j);
        this.judge(p);
        touched.delete(p.publicKey);
      }
      this.peers = peers;
    }
    for (const key of touched) {
      const j = this.judged.get(key);
      if (!j) continue;
      this.forget(key, j);
      this.judge(j.peer);
    }
  }

  private judge(p: DesiredPeer): void {
    const state = this.liveByKey.get(p.publicKey);
    const verdict = peerVerdict(state, this.readAt);
    const entry: UnhealthyPeer | null = verdict ? { kind: p.kind, name: p.name, ...verdict } : null;
    this.judged.set(p.publicKey, { peer: p, configured: state !== undefined, entry });
    if (state) this.configured++;
    if (entry) {
      this.unhealthy.set(p.publicKey, entry);
      this.dirty = true;
    } else this.healthy++;
  }

  private forget(key: string, j: Judged): void {
    this.judged.delete(key);
    if (j.configured) this.configured--;
    if (j.entry) {
      this.unhealthy.delete(key);
      this.dirty = true;
    } else this.healthy--;
  }
}

function sameEntries(a: readonly UnhealthyPeer[], b: readonly UnhealthyPeer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (compareUnhealthy(a[i], b[i]) !== 0 || a[i].reason !== b[i].reason || a[i].lastHandshake !== b[i].lastHandshake) return false;
  return true;
}

function sameHealth(a: PeerHealth, b: PeerHealth): boolean {
  return (
    a.desired === b.desired &&
    a.configured === b.configured &&
    a.healthy === b.healthy &&
    a.handshakeWithin3m === b.handshakeWithin3m &&
    a.unhealthyOmitted === b.unhealthyOmitted &&
    sameEntries(a.unhealthy ?? [], b.unhealthy ?? [])
  );
}
