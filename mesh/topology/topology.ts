/**
 * The desired state of one device, as a pure function of what the cluster says (DESIGN §3.2):
 * (this node or gateway, Peers, Gateways, Nodes, settings) -> the peers its device should hold,
 * the routes it should have, and every object it refused and why.
 *
 * Every agent runs this over the same objects and reaches the same verdicts, so a refused object
 * is refused everywhere and the verdict can be written to its status by anyone. It never throws,
 * whatever it is given: every object goes through the one checked path (mesh/crd/validate.ts)
 * first, and one bad object never disturbs the others. The rules are in rules.ts; engine.ts
 * evaluates them in O(N log N), and again after a change at the cost of what the change reaches.
 */
import type { PeerConfig } from '../../native/index.ts';
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import { TopologyEngine } from './engine.ts';

export { DEFAULT_CLUSTER_CIDRS, DEFAULT_NODE_SUBNETS, DEFAULT_SERVICE_CIDRS, MIN_PREFIX_LENGTH, RESERVED_RANGES, checkSettings } from './rules.ts';

export interface MeshSettings {
  /** The CIDR mesh IPs come from (default 100.96.0.0/16). */
  meshCIDR: string;
  /** Keepalive for peers that do not set one (0 = off). */
  defaultPersistentKeepalive?: number;
  /** The cluster's service CIDRs, both families (default DEFAULT_SERVICE_CIDRS). Must be the same on every member. */
  serviceCIDRs?: readonly string[];
  /** The cluster's pod CIDRs (--cluster-cidr), both families (default DEFAULT_CLUSTER_CIDRS). Must be the same on every member. */
  clusterCIDRs?: readonly string[];
  /** The subnets the nodes' addresses come from (default DEFAULT_NODE_SUBNETS). Must be the same on every member. */
  nodeSubnets?: readonly string[];
}

export interface Self {
  /** A node's agent, or a Konnectivity-side gateway. */
  role: 'node' | 'gateway';
  /** The node name (role node) or the Gateway's name (role gateway). */
  name: string;
}

export interface TopologyInput {
  self: Self;
  peers: readonly Peer[];
  gateways: readonly Gateway[];
  nodes: readonly NodeInfo[];
  settings: MeshSettings;
  /** Preshared keys by `namespace/name/key` of their Secret (base64), for peers that reference one. */
  presharedKeys?: ReadonlyMap<string, string>;
}

export type ObjectKind = 'Peer' | 'Gateway';

export interface Refusal {
  kind: ObjectKind;
  name: string;
  /** Machine-readable, CamelCase (a condition reason). */
  reason: string;
  /** The field at fault, e.g. `spec.allowedIPs[0]`. */
  field: string;
  /** A sentence naming the object and the field. */
  message: string;
}

export interface DesiredPeer extends PeerConfig {
  kind: ObjectKind;
  name: string;
  nodeName: string | null;
  meshIP: string | null;
}

export interface Topology {
  /** Peers this device should hold, sorted by public key. */
  peers: DesiredPeer[];
  /** Destinations to route through the tunnel, canonical and sorted. */
  routes: string[];
  /** Objects left out, sorted by kind and name. Includes this device's own object if it lost. */
  refused: Refusal[];
  /** Set when the settings themselves are unusable: then nothing is accepted (and nothing refused). */
  settingsProblems?: string[];
}

/** The settings, checked and canonical. */
export interface CheckedSettings {
  meshCIDR: string;
  defaultPersistentKeepalive: number;
  serviceCIDRs: string[];
  clusterCIDRs: string[];
  nodeSubnets: string[];
}

/** The desired state from scratch: a fresh TopologyEngine's first pass (pure: nothing is kept). */
export function computeTopology(input: TopologyInput): Topology {
  return new TopologyEngine().compute(input);
}
