/**
 * What this reconciler last applied: the device settings, every peer (with the desired object it
 * was applied from, so an unchanged peer is recognised by identity, `===`, before any value is
 * compared), and the routes and fallbacks it put in the table. Event passes diff the desired state
 * against this mirror instead of reading the device and the table again, so an event costs what it
 * changes. Full passes (start, resync, after a refused set or any error, a device reset) read
 * everything and rebuild the mirror from what is really there.
 */
import { canonicalCidr, publicKeyOf } from '../../native/index.ts';
import type { DeviceState, PeerConfig, PeerState } from '../../native/index.ts';
import { samePeerConfig } from './diff.ts';
import type { DesiredDevice, DeviceOp, DevicePlan } from './diff.ts';

interface MirrorPeer {
  /** The desired object this peer was last applied from (or found matching on the device). */
  from: PeerConfig;
  /** The peer as the last full pass read it, with what was applied since (handshakes and counters as read). */
  state: PeerState;
  /** Generation stamp of the last diff that found it wanted: the sweep for removals needs no Set. */
  seen: number;
}

/** The canonical form of CIDR text, parsed once per distinct string (the desired arrays repeat the same strings every pass). */
class CanonicalCidrs {
  private readonly cache = new Map<string, string>();

  get(text: string): string {
    let canonical = this.cache.get(text);
    if (canonical === undefined) {
      canonical = canonicalCidr(text);
      this.cache.set(text, canonical);
    }
    return canonical;
  }

  /** Drop entries when the cache outgrows what is wanted (CIDRs that came and went). */
  trim(wanted: number): void {
    if (this.cache.size > 2 * wanted + 1024) this.cache.clear();
  }
}

const canonical = new CanonicalCidrs();

/** A set of CIDRs this reconciler put in the table (routes, or fallbacks), and the arrays it came from. */
export class CidrMirror {
  /** The desired arrays last applied: the same arrays again mean nothing changed. */
  private from: ReadonlyArray<readonly string[]> | null = null;
  /** Canonical CIDR -> generation stamp of the last diff that wanted it. */
  private readonly have = new Map<string, number>();
  private gen = 0;

  /** Forget everything (a full pass will list the table). */
  reset(): void {
    this.from = null;
    this.have.clear();
  }

  /** The canonical CIDRs held now. */
  values(): string[] {
    return [...this.have.keys()];
  }

  /** What a full pass found or applied: exactly these are in the table now, from these arrays. */
  replace(held: Iterable<string>, from: ReadonlyArray<readonly string[]>): void {
    this.have.clear();
    for (const c of held) this.have.set(c, this.gen);
    this.from = from;
  }

  /**
   * What to add and remove so the table holds the union of `lists`; null when nothing changed. The
   * same arrays as last time are skipped outright; otherwise each CIDR is looked up once (its parse
   * is cached), and a Set is built only for what is new.
   */
  diff(lists: ReadonlyArray<readonly string[]>): { add: string[]; remove: string[] } | null {
    const from = this.from;
    if (from && from.length === lists.length && from.every((l, i) => l === lists[i])) return null;
    const gen = ++this.gen;
    let kept = 0;
    let total = 0;
    let added: Set<string> | undefined;
    for (const list of lists) {
      total += list.length;
      for (const text of list) {
        const c = canonical.get(text);
        const stamp = this.have.get(c);
        if (stamp === undefined) (added ??= new Set()).add(c);
        else if (stamp !== gen) {
          this.have.set(c, gen);
          kept++;
        }
      }
    }
    canonical.trim(total);
    const remove: string[] = [];
    if (kept < this.have.size) for (const [c, stamp] of this.have) if (stamp !== gen) remove.push(c);
    const add = added ? [...added] : [];
    if (add.length === 0 && remove.length === 0) {
      this.from = lists;
      return null;
    }
    return { add, remove };
  }

  /** Record changes that were applied, from these arrays. */
  commit(add: readonly string[], remove: readonly string[], from: ReadonlyArray<readonly string[]> | null): void {
    for (const c of remove) this.have.delete(c);
    for (const c of add) this.have.set(c, this.gen);
    this.from = from;
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

    const gen = ++this.gen;
    let kept = 0;
    const puts: DeviceOp[] = [];
    let fresh: Map<string, PeerConfig> | undefined;
    for (const p of want.peers) {
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
        // Rebuilt with the same content: remember the new object so the next pass short-circuits on it.
        m.from = p;
        continue;
      }
      puts.push({ op: 'put', peer: p, created: false });
    }
    if (kept < this.peers.size) for (const [key, m] of this.peers) if (m.seen !== gen) ops.push({ op: 'remove', publicKey: key });
    ops.push(...puts);
    if (fresh) for (const peer of fresh.values()) ops.push({ op: 'put', peer, created: true });
    if (ops.length === 0) this.peersFrom = want.peers;
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

  /** How many peers the mirror holds. */
  get size(): number {
    return this.peers.size;
  }
}
