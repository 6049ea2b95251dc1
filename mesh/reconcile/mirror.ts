/**
 * What this reconciler last applied: the device settings, every peer (with the desired object it
 * was applied from, so an unchanged peer is recognised by identity, `===`, before any value is
 * compared), and the routes and fallbacks it put in the table. Event passes diff the desired state
 * against this mirror instead of reading the device and the table again, so an event costs what it
 * changes. Full passes (start, resync, after a refused set or any error, a device reset) read
 * everything and rebuild the mirror from what is really there.
 */
import { publicKeyOf } from '../../native/index.ts';
import type { DeviceState, PeerConfig, PeerState } from '../../native/index.ts';
import { canonical, samePeerConfig } from './diff.ts';
import type { DesiredDevice, DeviceOp, DevicePlan } from './diff.ts';
import { sharedEnds } from '../delta.ts';

interface MirrorPeer {
  /** The desired object this peer was last applied from (or found matching on the device). */
  from: PeerConfig;
  /** The peer as the last full pass read it, with what was applied since (handshakes and counters as read). */
  state: PeerState;
  /** Generation stamp of the last diff that found it wanted: the sweep for removals needs no Set. */
  seen: number;
}


/**
 * The occurrences that differ between two lists of the same strings: `removed` from `before`, `added`
 * in `after`. Sorted lists (the topology's are) are merged in one walk of plain comparisons; others
 * fall back to counting with a Map.
 */
function listDelta(before: readonly string[], after: readonly string[]): { added: string[]; removed: string[] } {
  const added: string[] = [];
  const removed: string[] = [];
  if (before === after) return { added, removed };
  // What both share at the start and at the end is no change, whatever the order: only the middle
  // is merged (string equality is cheap; the ordering comparisons of a merge are not, in V8).
  const { start: lo, endBefore: endA, endAfter: endB } = sharedEnds(before, after);
  let i = lo;
  let j = lo;
  let sorted = true;
  while (i < endA || j < endB) {
    const a = before[i];
    const b = after[j];
    if ((i > lo && i < endA && a < before[i - 1]) || (j > lo && j < endB && b < after[j - 1])) {
      sorted = false;
      break;
    }
    if (i < endA && j < endB && a === b) {
      i++;
      j++;
    } else if (j >= endB || (i < endA && a < b)) {
      removed.push(a);
      i++;
    } else {
      added.push(b);
      j++;
    }
  }
  if (sorted) return { added, removed };
  const delta = new Map<string, number>();
  for (const a of before) delta.set(a, (delta.get(a) ?? 0) - 1);
  for (const b of after) delta.set(b, (delta.get(b) ?? 0) + 1);
  added.length = 0;
  removed.length = 0;
  for (const [text, d] of delta) {
    for (let k = 0; k < d; k++) added.push(text);
    for (let k = 0; k > d; k--) removed.push(text);
  }
  return { added, removed };
}

/**
 * The CIDRs this reconciler wants in the table (routes, or fallbacks), as the union of the desired
 * lists it last applied: each canonical CIDR counts its occurrences in those lists, so a CIDR that
 * leaves one list but stays in another (a route that keeps its fallback) is no change.
 */
export class CidrMirror {
  /** The desired lists last applied. */
  private from: ReadonlyArray<readonly string[]> = [];
  /** Canonical CIDR -> occurrences in `from`. */
  private readonly count = new Map<string, number>();

  /** Forget everything (a full pass will list the table). */
  reset(): void {
    this.from = [];
    this.count.clear();
  }

  /** The canonical CIDRs held now. */
  values(): string[] {
    return [...this.count.keys()];
  }

  /** After a full pass: the table holds the union of `lists`. */
  replace(lists: ReadonlyArray<readonly string[]>): void {
    this.count.clear();
    for (const list of lists) for (const text of list) this.bump(canonical.get(text), 1);
    this.from = lists;
  }

  private bump(c: string, by: number): number {
    const n = (this.count.get(c) ?? 0) + by;
    if (n > 0) this.count.set(c, n);
    else this.count.delete(c);
    return n;
  }

  /**
   * What to add to and remove from the table so it holds the union of `lists`, recorded at once (a
   * caller whose change then fails must reset and list the table); null when nothing changed. Each
   * list is compared with the one it replaces: the same array, or the same strings in the same
   * order, costs no lookup; a changed sorted list is merged; only what differs is parsed.
   */
  diff(lists: ReadonlyArray<readonly string[]>): { add: string[]; remove: string[] } | null {
    const added: string[] = [];
    const removed: string[] = [];
    const n = Math.max(lists.length, this.from.length);
    for (let k = 0; k < n; k++) {
      const d = listDelta(this.from[k] ?? [], lists[k] ?? []);
      for (const text of d.added) added.push(canonical.get(text));
      for (const text of d.removed) removed.push(canonical.get(text));
    }
    this.from = lists;
    if (added.length === 0 && removed.length === 0) return null;
    // Additions first: a CIDR that moves from one list to another never drops to zero.
    const add: string[] = [];
    const remove: string[] = [];
    for (const c of added) if (this.bump(c, 1) === 1) add.push(c);
    for (const c of removed) if (this.bump(c, -1) === 0) remove.push(c);
    // Counts only rise before they fall, so a CIDR is never both added and removed here.
    return add.length || remove.length ? { add, remove } : null;
  }
}

/** The device's settings as last read or applied. */
interface Settings {
  privateKey: string | null;
  publicKey: string | null;
  listenPort: number;
  fwmark: number;
}

/** The peer state a `set` leaves: the desired fields, and what was known of the session (kept by an update, lost by a replace). */
function appliedState(peer: PeerConfig, before: PeerState | undefined): PeerState {
  return {
    publicKey: peer.publicKey,
    presharedKey: peer.presharedKey ?? null,
    // wireguard-go keeps an endpoint it learned when we set none.
    endpoint: peer.endpoint ?? before?.endpoint ?? null,
    allowedIPs: peer.allowedIPs.map((c) => canonical.get(c)),
    persistentKeepalive: peer.persistentKeepalive ?? 0,
    lastHandshake: before?.lastHandshake ?? null,
    rxBytes: before?.rxBytes ?? 0n,
    txBytes: before?.txBytes ?? 0n,
    protocolVersion: before?.protocolVersion ?? 1,
  };
}

export class DeviceMirror {
  /** False until a full pass has read the device, and again after any refused set or failed pass. */
  trusted = false;
  readonly routes = new CidrMirror();
  readonly fallbacks = new CidrMirror();
  /** Routes through other devices in our table at the last full pass (destination -> device): never taken over. */
  foreign = new Map<string, string>();
  private settings: Settings = { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0 };
  private peers = new Map<string, MirrorPeer>();
  /** The desired peer array last applied in full: the same array again means no peer changed. */
  private peersFrom: readonly PeerConfig[] | null = null;
  private gen = 0;
  private view: DeviceState | null = null;

  /** Forget the device (a full pass reads it again). */
  distrust(): void {
    this.trusted = false;
  }

  /**
   * The operations that take the device from what was last applied to `want`, smallest first:
   * device settings, removals, puts. Unchanged peers are recognised by identity, then by value.
   */
  diff(want: DesiredDevice): DeviceOp[] {
    const ops: DeviceOp[] = [];
    const device: Extract<DeviceOp, { op: 'device' }> = { op: 'device' };
    const s = this.settings;
    if (s.privateKey !== want.privateKey) device.privateKey = want.privateKey;
    if (s.listenPort !== want.listenPort) device.listenPort = want.listenPort;
    if (s.fwmark !== want.fwmark) device.fwmark = want.fwmark;
    if (device.privateKey !== undefined || device.listenPort !== undefined || device.fwmark !== undefined) ops.push(device);
    if (want.peers === this.peersFrom) return ops;

    const peerOps = (this.peersFrom && this.mergeDiff(this.peersFrom, want.peers)) ?? this.mapDiff(want.peers);
    for (const op of peerOps) ops.push(op);
    if (ops.length === 0) this.peersFrom = want.peers;
    return ops;
  }

  /**
   * The peer operations between the array last applied and `want`, when both are sorted by public
   * key without repeats (the topology's are): one walk comparing objects, then keys, no lookups.
   * Null when either is not sorted (mapDiff then decides).
   */
  private mergeDiff(before: readonly PeerConfig[], after: readonly PeerConfig[]): DeviceOp[] | null {
    const removes: DeviceOp[] = [];
    const puts: DeviceOp[] = [];
    // The same objects at the start and at the end are unchanged peers: only the middle is merged.
    const { start: lo, endBefore: endA, endAfter: endB } = sharedEnds(before, after);
    let i = lo;
    let j = lo;
    while (i < endA || j < endB) {
      const a = i < endA ? before[i] : undefined;
      const b = j < endB ? after[j] : undefined;
      if ((a !== undefined && i > lo && a.publicKey <= before[i - 1].publicKey) || (b !== undefined && j > lo && b.publicKey <= after[j - 1].publicKey)) return null;
      if (a !== undefined && b !== undefined && a.publicKey === b.publicKey) {
        if (a === b || samePeerConfig(a, b)) {
          // Rebuilt with the same content: remember the new object so the next pass short-circuits on it.
          const m = this.peers.get(b.publicKey);
          if (m) m.from = b;
        } else {
          puts.push({ op: 'put', peer: b, created: false });
        }
        i++;
        j++;
      } else if (b === undefined || (a !== undefined && a.publicKey < b.publicKey)) {
        removes.push({ op: 'remove', publicKey: (a as PeerConfig).publicKey });
        i++;
      } else {
        puts.push({ op: 'put', peer: b, created: true });
        j++;
      }
    }
    return removes.concat(puts);
  }

  /** The peer operations for `want` in any order, against the mirror's map (generation stamps mark what is still wanted). */
  private mapDiff(want: readonly PeerConfig[]): DeviceOp[] {
    const ops: DeviceOp[] = [];
    const gen = ++this.gen;
    let kept = 0;
    const puts: DeviceOp[] = [];
    let fresh: Map<string, PeerConfig> | undefined;
    for (const p of want) {
      const m = this.peers.get(p.publicKey);
      if (m === undefined) {
        (fresh ??= new Map()).set(p.publicKey, p);
        continue;
      }
      if (m.seen !== gen) {
        m.seen = gen;
        kept++;
      }
      if (m.from === p) continue;
      if (samePeerConfig(m.from, p)) {
        m.from = p;
        continue;
      }
      puts.push({ op: 'put', peer: p, created: false });
    }
    if (kept < this.peers.size) for (const [key, m] of this.peers) if (m.seen !== gen) ops.push({ op: 'remove', publicKey: key });
    for (const op of puts) ops.push(op);
    if (fresh) for (const peer of fresh.values()) ops.push({ op: 'put', peer, created: true });
    return ops;
  }

  /** Record one operation the device accepted. */
  commit(op: DeviceOp): void {
    this.view = null;
    switch (op.op) {
      case 'device':
        if (op.privateKey !== undefined && op.privateKey !== this.settings.privateKey) {
          this.settings.privateKey = op.privateKey;
          this.settings.publicKey = publicKeyOf(op.privateKey);
        }
        if (op.listenPort !== undefined) this.settings.listenPort = op.listenPort;
        if (op.fwmark !== undefined) this.settings.fwmark = op.fwmark;
        return;
      case 'remove':
        this.peers.delete(op.publicKey);
        return;
      case 'put': {
        const m = this.peers.get(op.peer.publicKey);
        if (m) {
          m.from = op.peer;
          m.state = appliedState(op.peer, m.state);
        } else {
          this.peers.set(op.peer.publicKey, { from: op.peer, state: appliedState(op.peer, undefined), seen: 0 });
        }
        return;
      }
      case 'replace':
        // replace_peers drops every session: no handshake or counter survives.
        this.peers = new Map(op.peers.map((p) => [p.publicKey, { from: p, state: appliedState(p, undefined), seen: 0 }]));
        return;
    }
  }

  /** Every peer of `want` is on the device now (the event pass applied its whole difference). */
  settled(want: DesiredDevice): void {
    this.peersFrom = want.peers;
  }

  /**
   * After a full pass: the device was read as `live`, and `plan.ops` (or, in replace mode, one
   * replace of every wanted peer) were applied on top without refusal. The mirror becomes `want`,
   * with each peer's state as read where it was not rewritten.
   */
  rebuild(want: DesiredDevice, live: DeviceState, plan: DevicePlan, replaced: boolean): void {
    const rewritten = new Set<string>();
    for (const op of plan.ops) if (op.op === 'put') rewritten.add(op.peer.publicKey);
    const peers = new Map<string, MirrorPeer>();
    for (const [key, peer] of plan.wanted) {
      const read = plan.have.get(key);
      const state = replaced ? appliedState(peer, undefined) : read && !rewritten.has(key) ? read : appliedState(peer, read);
      peers.set(key, { from: peer, state, seen: 0 });
    }
    this.peers = peers;
    this.settings = {
      privateKey: want.privateKey,
      publicKey: live.privateKey === want.privateKey ? live.publicKey : publicKeyOf(want.privateKey),
      listenPort: want.listenPort,
      fwmark: want.fwmark,
    };
    this.peersFrom = want.peers;
    this.trusted = true;
    this.view = null;
  }

  /**
   * The device as this reconciler knows it, DeviceState-shaped: as read by the last full pass, with
   * every operation applied since. Handshakes and counters are those of the last full read. The
   * same object comes back while nothing changed; callers must not mutate it.
   */
  live(): DeviceState {
    if (!this.view) {
      const peers: PeerState[] = [];
      for (const m of this.peers.values()) peers.push(m.state);
      this.view = { ...this.settings, peers };
    }
    return this.view;
  }

  /**
   * A peer as last applied or read: `from` is the desired object (a DesiredPeer carries its kind and
   * name, which log lines name a removed peer by), `state` what the device holds as far as known.
   */
  peer(publicKey: string): { from: PeerConfig; state: PeerState } | undefined {
    return this.peers.get(publicKey);
  }

  /** How many peers the mirror holds. */
  get size(): number {
    return this.peers.size;
  }
}
