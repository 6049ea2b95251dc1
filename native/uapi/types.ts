/**
 * The typed model of a wireguard-go device, in WireGuard's own vocabulary. Keys are base64 here
 * (as `wg` prints them); the codec turns them into hex for the wire.
 */

/** One peer as `get` reports it. */
export interface PeerState {
  publicKey: string;
  /** Base64, or null when the peer has no preshared key (all zeroes on the wire). */
  presharedKey: string | null;
  /** `IP:port` or `[IPv6]:port`, or null for a peer that has not been heard from and has none set. */
  endpoint: string | null;
  /** Canonical CIDRs, in the order wireguard-go reported them. */
  allowedIPs: string[];
  /** Seconds; 0 is off. */
  persistentKeepalive: number;
  /** When the last handshake completed, or null if never. */
  lastHandshake: { sec: bigint; nsec: number } | null;
  /** 64-bit counters: bigint, never a lossy number. */
  rxBytes: bigint;
  txBytes: bigint;
  protocolVersion: number;
}

/** A device as `get` reports it. */
export interface DeviceState {
  /** Base64 private key (wireguard-go returns it clamped), or null for a device that has none (fresh or reset). */
  privateKey: string | null;
  /** Derived from the private key, or null. */
  publicKey: string | null;
  /** 0 when the device is not bound yet. */
  listenPort: number;
  /** 0 is off. */
  fwmark: number;
  peers: PeerState[];
}

/** What to change on one peer in a `set`. Absent fields are left as they are. */
export interface PeerChange {
  publicKey: string;
  /** Remove this peer (every other field is ignored). */
  remove?: boolean;
  /** Only change an existing peer; do not create it if it is missing. */
  updateOnly?: boolean;
  /** Base64 key, or null to clear it. */
  presharedKey?: string | null;
  endpoint?: string;
  /** Seconds, 0 to 65535; 0 turns it off. */
  persistentKeepalive?: number;
  /** Replace the peer's allowed IPs with `allowedIPs` (otherwise they are added to the existing ones). */
  replaceAllowedIPs?: boolean;
  allowedIPs?: string[];
}

/** One `set` request. Absent fields are left as they are. */
export interface SetRequest {
  /** Base64 key, or null to remove the device's key (wireguard-go then drops every session). */
  privateKey?: string | null;
  listenPort?: number;
  /** 0 turns it off. */
  fwmark?: number;
  /** Remove every peer before applying `peers`. */
  replacePeers?: boolean;
  peers?: PeerChange[];
}

/** A whole device, as the reconciler wants it: what `replaceDevice` writes. */
export interface DeviceConfig {
  privateKey: string;
  listenPort?: number;
  fwmark?: number;
  peers: PeerConfig[];
}

/** A whole peer, as the reconciler wants it. */
export interface PeerConfig {
  publicKey: string;
  presharedKey?: string | null;
  endpoint?: string | null;
  allowedIPs: string[];
  persistentKeepalive?: number;
}
