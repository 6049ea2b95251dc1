/**
 * The Peer and Gateway custom resources (group aksmesh.io, version v1alpha1, cluster-scoped), as
 * TypeScript types. Their OpenAPI schemas live beside them in schema.ts; both are the one source of
 * the CRD manifests (`aks-mesh crds`).
 */
export const GROUP = 'aksmesh.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface ObjectMeta {
  name: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface SecretKeyRef {
  namespace: string;
  name: string;
  key: string;
}

export interface PeerSpec {
  /** Base64 WireGuard public key (32 bytes). */
  publicKey: string;
  /** `IP:port` or `[IPv6]:port`; absent for a roaming peer. */
  endpoint?: string;
  /** Canonical CIDRs this peer may send from and receive for. */
  allowedIPs: string[];
  /** The peer's tunnel address, inside the mesh CIDR. */
  meshIP?: string;
  /** Set for a node's own Peer (named after the node). */
  nodeName?: string;
  /** Seconds, 0 (off) to 65535. */
  persistentKeepalive?: number;
  presharedKeySecretRef?: SecretKeyRef;
}

export interface GatewaySpec {
  publicKey: string;
  endpoint?: string;
  meshIP: string;
  nodeName?: string;
  /** The CIDRs the gateway routes into the mesh from its side. */
  podCIDRs: string[];
  persistentKeepalive?: number;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/**
 * Why a member counts a peer as not healthy (status.peers.unhealthy[].reason). DeviceUnreadable: the
 * member cannot read its own device (its last full pass failed to, or it never has), so it lists
 * every desired peer with it rather than judge them from an old read.
 */
export type UnhealthyReason = 'NoHandshake' | 'StaleHandshake' | 'NoEndpoint' | 'Refused' | 'NotConfigured' | 'DeviceUnreadable';

/** One peer a member does not count as healthy, as it says on its own status. */
export interface UnhealthyPeer {
  kind: 'Peer' | 'Gateway';
  name: string;
  reason: UnhealthyReason;
  /** RFC 3339: the last handshake, when there was one (a StaleHandshake's age shows from it). */
  lastHandshake?: string;
}

/** A member's view of its peers (status.peers). */
export interface PeerHealth {
  desired: number;
  configured: number;
  handshakeWithin3m: number;
  /** Configured peers with a handshake within the last 3 minutes. */
  healthy?: number;
  /** `${healthy}/${desired}`: the HEALTHY printer column. */
  summary?: string;
  /**
   * The peers that are not healthy: this member's own pairs first, then refused objects, each sorted
   * by kind then name, at most UNHEALTHY_LIMIT (32); absent when none.
   */
  unhealthy?: UnhealthyPeer[];
  /** How many more unhealthy peers there are than the list holds; absent when none were left out. */
  unhealthyOmitted?: number;
}

export interface MeshStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  listenPort?: number;
  peers?: PeerHealth;
  lastSyncTime?: string;
}

export interface Peer {
  apiVersion?: string;
  kind?: 'Peer';
  metadata: ObjectMeta;
  spec: PeerSpec;
  status?: MeshStatus;
}

export interface Gateway {
  apiVersion?: string;
  kind?: 'Gateway';
  metadata: ObjectMeta;
  spec: GatewaySpec;
  status?: MeshStatus;
}

/** What the mesh needs of a Kubernetes Node. */
export interface NodeInfo {
  name: string;
  podCIDRs: string[];
  /** The node's InternalIP addresses, in the order the Node lists them. */
  internalIPs: string[];
  creationTimestamp?: string;
}

/** The resource names, as the API server knows them. */
export const RESOURCES = {
  Peer: { plural: 'peers', singular: 'peer', kind: 'Peer', listKind: 'PeerList', shortNames: ['meshpeer', 'mp'] },
  Gateway: { plural: 'gateways', singular: 'gateway', kind: 'Gateway', listKind: 'GatewayList', shortNames: ['meshgateway', 'mgw'] },
} as const;
