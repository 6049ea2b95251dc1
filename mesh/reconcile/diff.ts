/**
 * The difference between the device we want and the device we have, as the smallest list of UAPI
 * operations: one `set` for device settings if they differ, one per peer to remove, one per peer
 * to add or change. Unchanged peers are never touched, so their handshakes and counters survive.
 */
import { canonicalCidr, canonicalEndpoint } from '../../native/index.ts';
import type { DeviceState, PeerConfig, PeerState, SetRequest } from '../../native/index.ts';
import { fullPeerChange } from '../../native/index.ts';
import { compareText } from '../topology/order.ts';

export interface DesiredDevice {
  privateKey: string;
  listenPort: number;
  fwmark: number;
  peers: readonly PeerConfig[];
}

export type DeviceOp =
  | { op: 'device'; privateKey?: string; listenPort?: number; fwmark?: number }
  | { op: 'remove'; publicKey: string }
  | { op: 'put'; peer: PeerConfig; created: boolean };

const cidrSet = (cidrs: readonly string[]): string => [...new Set(cidrs.map((c) => canonicalCidr(c)))].sort().join(',');

/** Whether a live peer already is what `want` says (an endpoint we do not set is the peer's own business). */
export function peerMatches(want: PeerConfig, live: PeerState): boolean {
  if (cidrSet(want.allowedIPs) !== cidrSet(live.allowedIPs)) return false;
  if ((want.persistentKeepalive ?? 0) !== live.persistentKeepalive) return false;
  if ((want.presharedKey ?? null) !== live.presharedKey) return false;
  if (want.endpoint && (live.endpoint === null || canonicalEndpoint(want.endpoint) !== canonicalEndpoint(live.endpoint))) return false;
  return true;
}

export function diffDevice(want: DesiredDevice, live: DeviceState): DeviceOp[] {
  const ops: DeviceOp[] = [];
  const device: Extract<DeviceOp, { op: 'device' }> = { op: 'device' };
  if (live.privateKey !== want.privateKey) device.privateKey = want.privateKey;
  if (live.listenPort !== want.listenPort) device.listenPort = want.listenPort;
  if (live.fwmark !== want.fwmark) device.fwmark = want.fwmark;
  if (Object.keys(device).length > 1) ops.push(device);

  const wanted = new Map(want.peers.map((p) => [p.publicKey, p]));
  const have = new Map(live.peers.map((p) => [p.publicKey, p]));
  for (const p of [...have.keys()].sort()) if (!wanted.has(p)) ops.push({ op: 'remove', publicKey: p });
  for (const [key, peer] of [...wanted].sort(([a], [b]) => compareText(a, b))) {
    const current = have.get(key);
    if (!current || !peerMatches(peer, current)) ops.push({ op: 'put', peer, created: !current });
  }
  return ops;
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
  }
}

export interface RouteChanges {
  add: string[];
  remove: string[];
}

/** Routes to add and remove so a table holds exactly `want` through `dev`. */
export function diffRoutes(want: readonly string[], live: ReadonlyArray<{ dst: string; dev: string }>, dev: string): RouteChanges {
  const wanted = new Set(want.map((c) => canonicalCidr(c)));
  const ours = new Set(live.filter((r) => r.dev === dev).map((r) => canonicalCidr(r.dst)));
  return {
    add: [...wanted].filter((c) => !ours.has(c)).sort(),
    // A route through another device in our table is replaced (`ip route replace`), not removed.
    remove: live.filter((r) => !wanted.has(canonicalCidr(r.dst))).map((r) => canonicalCidr(r.dst)).sort(),
  };
}
