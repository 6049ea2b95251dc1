/**
 * The difference between the device we want and the device we have, as the smallest list of UAPI
 * operations: one `set` for device settings if they differ, one per peer to remove, one per peer
 * to add or change. Unchanged peers are never touched, so their handshakes and counters survive.
 */
import { canonicalCidr, canonicalEndpoint } from '../../native/index.ts';
import type { DeviceState, PeerConfig, PeerState, SetRequest } from '../../native/index.ts';
import { fullPeerChange } from '../../native/index.ts';

export interface DesiredDevice {
  privateKey: string;
  listenPort: number;
  fwmark: number;
  peers: readonly PeerConfig[];
}

export type DeviceOp =
  | { op: 'device'; privateKey?: string; listenPort?: number; fwmark?: number }
  | { op: 'remove'; publicKey: string }
  | { op: 'put'; peer: PeerConfig; created: boolean }
  /** Every peer rewritten in one `set` with replace_peers (the reference apply mode: handshakes are lost). */
  | { op: 'replace'; peers: readonly PeerConfig[] };

/**
 * The canonical form of CIDR text (canonicalCidr remembers what it computed: the desired state and
 * the table repeat the same strings every pass). Errors are not remembered: a bad CIDR throws every
 * time, naming itself.
 */
export const canonical = { get: (text: string): string => canonicalCidr(text) };

const cidrSet = (cidrs: readonly string[]): string => [...new Set(cidrs.map((c) => canonical.get(c)))].sort().join(',');

/** The same strings in the same order: the common case (the topology's CIDRs are canonical), decided without parsing. */
function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether a live peer already is what `want` says (an endpoint we do not set is the peer's own business). */
export function peerMatches(want: PeerConfig, live: PeerState): boolean {
  if (!sameList(want.allowedIPs, live.allowedIPs) && cidrSet(want.allowedIPs) !== cidrSet(live.allowedIPs)) return false;
  if ((want.persistentKeepalive ?? 0) !== live.persistentKeepalive) return false;
  if ((want.presharedKey ?? null) !== live.presharedKey) return false;
  if (want.endpoint && (live.endpoint === null || canonicalEndpoint(want.endpoint) !== canonicalEndpoint(live.endpoint))) return false;
  return true;
}

/**
 * Whether two desired peers configure the same thing, field by field (the value comparison behind
 * the reconciler's identity check, for desired arrays rebuilt without keeping unchanged objects).
 * Allowed IPs in another order count as different: the cost is one needless `set`, never a wrong device.
 */
export function samePeerConfig(a: PeerConfig, b: PeerConfig): boolean {
  return (
    a.publicKey === b.publicKey &&
    (a.presharedKey ?? null) === (b.presharedKey ?? null) &&
    (a.endpoint ?? null) === (b.endpoint ?? null) &&
    (a.persistentKeepalive ?? 0) === (b.persistentKeepalive ?? 0) &&
    sameList(a.allowedIPs, b.allowedIPs)
  );
}

export interface DevicePlan {
  ops: DeviceOp[];
  /** The live peers by public key (as read). */
  have: Map<string, PeerState>;
  /** The desired peers by public key (the last one wins if a key repeats). */
  wanted: Map<string, PeerConfig>;
}

/** diffDevice, with the maps it built (the reconciler's full pass rebuilds its mirror from them). */
export function planDevice(want: DesiredDevice, live: DeviceState): DevicePlan {
  const ops: DeviceOp[] = [];
  const device: Extract<DeviceOp, { op: 'device' }> = { op: 'device' };
  if (live.privateKey !== want.privateKey) device.privateKey = want.privateKey;
  if (live.listenPort !== want.listenPort) device.listenPort = want.listenPort;
  if (live.fwmark !== want.fwmark) device.fwmark = want.fwmark;
  if (Object.keys(device).length > 1) ops.push(device);

  const wanted = new Map(want.peers.map((p) => [p.publicKey, p]));
  const have = new Map(live.peers.map((p) => [p.publicKey, p]));
  // Only the operations are sorted (a default sort: UTF-16 code units, as compareText), not every
  // key: a device that matches sorts nothing.
  const removals: string[] = [];
  for (const key of have.keys()) if (!wanted.has(key)) removals.push(key);
  for (const key of removals.sort()) ops.push({ op: 'remove', publicKey: key });
  const puts: string[] = [];
  for (const [key, peer] of wanted) {
    const current = have.get(key);
    if (!current || !peerMatches(peer, current)) puts.push(key);
  }
  for (const key of puts.sort()) {
    const peer = wanted.get(key) as PeerConfig;
    ops.push({ op: 'put', peer, created: !have.has(key) });
  }
  return { ops, have, wanted };
}

export function diffDevice(want: DesiredDevice, live: DeviceState): DeviceOp[] {
  return planDevice(want, live).ops;
}

/** The one `set` an operation is. */
export function opRequest(op: DeviceOp): SetRequest {
  switch (op.op) {
    case 'device':
      return { privateKey: op.privateKey, listenPort: op.listenPort, fwmark: op.fwmark };
    case 'remove':
      return { peers: [{ publicKey: op.publicKey, remove: true }] };
    case 'put':
      // update_only for a peer we saw: if it vanished meanwhile, the next pass re-creates it in full.
      return { peers: [fullPeerChange(op.peer, !op.created)] };
    case 'replace':
      return { replacePeers: true, peers: op.peers.map((p) => fullPeerChange(p, false)) };
  }
}

/**
 * Peer operations grouped into `set` requests of at most `size` peers each, in the order given
 * (removals before puts, so an allowed IP that moves is released before it is taken). Device
 * settings and a replace stay a `set` of their own. One `set` per peer made 5,000 new peers 5,000
 * round trips; a few hundred per `set` keeps each request small (about 200 bytes a peer) while
 * wireguard-go holds its device lock.
 */
export function batchOps(ops: readonly DeviceOp[], size: number): DeviceOp[][] {
  const batches: DeviceOp[][] = [];
  let current: DeviceOp[] = [];
  let kind: DeviceOp['op'] | null = null;
  for (const op of ops) {
    const alone = op.op === 'device' || op.op === 'replace';
    if (current.length && (alone || kind !== op.op || current.length >= size)) {
      batches.push(current);
      current = [];
    }
    current.push(op);
    kind = op.op;
    if (alone) {
      batches.push(current);
      current = [];
      kind = null;
    }
  }
  if (current.length) batches.push(current);
  return batches;
}

/** The one `set` a batch of operations is (see batchOps: a batch is one device op, one replace, or peers). */
export function batchRequest(batch: readonly DeviceOp[]): SetRequest {
  if (batch.length === 1) return opRequest(batch[0]);
  const peers = [];
  for (const op of batch) {
    if (op.op === 'remove') peers.push({ publicKey: op.publicKey, remove: true });
    else if (op.op === 'put') peers.push(fullPeerChange(op.peer, !op.created));
    else throw new Error(`a ${op.op} operation cannot share a set with peers`);
  }
  return { peers };
}

export interface RouteChanges {
  add: string[];
  remove: string[];
}

/** Routes to add and remove so a table holds exactly `want` through `dev`. */
export function diffRoutes(want: readonly string[], live: ReadonlyArray<{ dst: string; dev: string }>, dev: string): RouteChanges {
  const wanted = new Set(want.map((c) => canonical.get(c)));
  const ours = new Set(live.filter((r) => r.dev === dev).map((r) => canonical.get(r.dst)));
  return {
    add: [...wanted].filter((c) => !ours.has(c)).sort(),
    // A route through another device in our table is replaced (`ip route replace`), not removed.
    remove: live.filter((r) => !wanted.has(canonical.get(r.dst))).map((r) => canonical.get(r.dst)).sort(),
  };
}

/** A peer field the reconciler sets; what `peerDifferences` names. */
export type PeerField = 'allowedIPs' | 'endpoint' | 'persistentKeepalive' | 'presharedKey';

/**
 * Which fields of a live peer differ from what `want` says (the fields peerMatches compares, each
 * named): what a decision log line and `aks-mesh status --local` show for an updated peer.
 */
export function peerDifferences(want: PeerConfig, live: PeerState): PeerField[] {
  const fields: PeerField[] = [];
  if (!sameList(want.allowedIPs, live.allowedIPs) && cidrSet(want.allowedIPs) !== cidrSet(live.allowedIPs)) fields.push('allowedIPs');
  if (want.endpoint && (live.endpoint === null || canonicalEndpoint(want.endpoint) !== canonicalEndpoint(live.endpoint))) fields.push('endpoint');
  if ((want.persistentKeepalive ?? 0) !== live.persistentKeepalive) fields.push('persistentKeepalive');
  if ((want.presharedKey ?? null) !== live.presharedKey) fields.push('presharedKey');
  return fields;
}

/** The fields two desired peers differ in (an event pass's update, against what it applied last). */
export function configDifferences(before: PeerConfig, after: PeerConfig): PeerField[] {
  const fields: PeerField[] = [];
  if (!sameList(before.allowedIPs, after.allowedIPs) && cidrSet(before.allowedIPs) !== cidrSet(after.allowedIPs)) fields.push('allowedIPs');
  if ((before.endpoint ?? null) !== (after.endpoint ?? null)) fields.push('endpoint');
  if ((before.persistentKeepalive ?? 0) !== (after.persistentKeepalive ?? 0)) fields.push('persistentKeepalive');
  if ((before.presharedKey ?? null) !== (after.presharedKey ?? null)) fields.push('presharedKey');
  return fields;
}

/** How a live device differs from the desired one, peer by peer (public keys sorted). */
export interface DeviceDrift {
  /** Device settings that differ. */
  settings: Array<'privateKey' | 'listenPort' | 'fwmark'>;
  /** Desired peers the device does not hold. */
  missing: string[];
  /** Peers on the device that are not desired. */
  extra: string[];
  /** Peers on both whose configuration differs, with the fields. */
  different: Array<{ publicKey: string; fields: PeerField[] }>;
}

/** The difference between a desired and a live device, for people (readiness, status, diff); decides nothing. */
export function deviceDrift(want: DesiredDevice, live: DeviceState): DeviceDrift {
  const settings: DeviceDrift['settings'] = [];
  if (live.privateKey !== want.privateKey) settings.push('privateKey');
  if (live.listenPort !== want.listenPort) settings.push('listenPort');
  if (live.fwmark !== want.fwmark) settings.push('fwmark');
  const have = new Map(live.peers.map((p) => [p.publicKey, p]));
  const wanted = new Set<string>();
  const missing: string[] = [];
  const different: DeviceDrift['different'] = [];
  for (const peer of want.peers) {
    wanted.add(peer.publicKey);
    const got = have.get(peer.publicKey);
    if (!got) missing.push(peer.publicKey);
    else {
      const fields = peerDifferences(peer, got);
      if (fields.length) different.push({ publicKey: peer.publicKey, fields });
    }
  }
  const extra = live.peers.map((p) => p.publicKey).filter((k) => !wanted.has(k));
  return { settings, missing: missing.sort(), extra: extra.sort(), different: different.sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0)) };
}

/** Whether a drift is worth failing readiness for: an endpoint alone that differs is WireGuard roaming (the peer's packets came from elsewhere), not a device set up wrong. */
export function driftMatters(d: DeviceDrift): boolean {
  return d.settings.length > 0 || d.missing.length > 0 || d.extra.length > 0 || d.different.some((x) => x.fields.some((f) => f !== 'endpoint'));
}

/** How a peer is named for people: "Peer/node-b" when the desired state knows it, else its key's first characters. */
export type PeerNamer = (publicKey: string) => string | undefined;

function nameList(keys: readonly string[], nameOf: PeerNamer, max = 3): string {
  const shown = keys.slice(0, max).map((k) => nameOf(k) ?? `key ${k.slice(0, 8)}…`);
  return `${shown.join(', ')}${keys.length > max ? `, and ${keys.length - max} more` : ''}`;
}

/**
 * One sentence saying how the device differs, or null when it does not (in a way that matters:
 * see driftMatters), e.g. "device differs from the desired state: 1 peer missing (Peer/node-b)".
 */
export function describeDrift(d: DeviceDrift, nameOf: PeerNamer): string | null {
  if (!driftMatters(d)) return null;
  const parts: string[] = [];
  if (d.settings.length) parts.push(`device settings differ (${d.settings.join(', ')})`);
  const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  if (d.missing.length) parts.push(`${plural(d.missing.length, 'peer')} missing (${nameList(d.missing, nameOf)})`);
  if (d.extra.length) parts.push(`${plural(d.extra.length, 'extra peer')} (${nameList(d.extra, nameOf)})`);
  const different = d.different.filter((x) => x.fields.some((f) => f !== 'endpoint'));
  if (different.length) {
    const shown = different.slice(0, 3).map((x) => `${nameOf(x.publicKey) ?? `key ${x.publicKey.slice(0, 8)}…`}: ${x.fields.join(', ')}`);
    parts.push(`${plural(different.length, 'peer')} configured differently (${shown.join('; ')}${different.length > 3 ? `; and ${different.length - 3} more` : ''})`);
  }
  return `device differs from the desired state: ${parts.join('; ')}`;
}

/** What a full pass would do to the routing table (planRoutes). */
export interface RoutePlan {
  /** Canonical CIDRs to route through the device. */
  add: string[];
  /** Canonical CIDRs whose route through the device goes. */
  remove: string[];
  addFallbacks: string[];
  removeFallbacks: string[];
  /** Destinations another device holds in the table ("10.244.9.0/24 dev eth1"): left alone. */
  conflicts: string[];
  /** Routes through other devices in the table (destination -> device). */
  foreign: Map<string, string>;
}

/**
 * The route changes that make a listed table hold `routes` through `dev`, and `unreachable`
 * fallbacks for every CIDR of `fallbackLists` (when `held`, the fallbacks listed, is given; null
 * when the table does not fail closed). Only routes through `dev` are ever removed; a destination
 * another device holds is a conflict, never taken over.
 */
export function planRoutes(routes: readonly string[], fallbackLists: ReadonlyArray<readonly string[]>, current: ReadonlyArray<{ dst: string; dev: string }>, held: ReadonlySet<string> | null, dev: string): RoutePlan {
  const changes = diffRoutes(routes, current, dev);
  const ours = new Set<string>();
  const foreign = new Map<string, string>();
  for (const r of current) {
    if (r.dev === dev) ours.add(r.dst);
    else if (!foreign.has(r.dst)) foreign.set(r.dst, r.dev);
  }
  const add: string[] = [];
  const conflicts: string[] = [];
  for (const c of changes.add) {
    const other = foreign.get(c);
    if (other === undefined) add.push(c);
    else conflicts.push(`${c} dev ${other}`);
  }
  const remove = changes.remove.filter((c) => ours.has(c));
  let addFallbacks: string[] = [];
  let removeFallbacks: string[] = [];
  if (held) {
    const wanted = new Set<string>();
    for (const list of fallbackLists) for (const c of list) wanted.add(canonical.get(c));
    removeFallbacks = [...held].filter((c) => !wanted.has(c));
    addFallbacks = [...wanted].filter((c) => !held.has(c)).sort();
  }
  return { add, remove, addFallbacks, removeFallbacks, conflicts, foreign };
}
