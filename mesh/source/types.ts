import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';

/** Everything the desired state is computed from, as the source sees it now. */
export interface Snapshot {
  peers: Peer[];
  gateways: Gateway[];
  nodes: NodeInfo[];
}

/** Where Peers, Gateways and Nodes come from: the Kubernetes API, or a directory of YAML. */
export interface PeerSource {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once every kind has been read completely at least once; before that, nothing may act. */
  synced(): boolean;
  snapshot(): Snapshot;
  /** Called (without arguments) after anything changed. */
  onChange(cb: () => void): void;
}

/** A Kubernetes Node reduced to what the mesh needs. */
export function nodeInfo(node: {
  metadata?: { name?: string; creationTimestamp?: Date | string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: Array<{ type: string; address: string }> };
}): NodeInfo {
  const spec = node.spec ?? {};
  const podCIDRs = spec.podCIDRs?.length ? spec.podCIDRs : spec.podCIDR ? [spec.podCIDR] : [];
  const created = node.metadata?.creationTimestamp;
  return {
    name: node.metadata?.name ?? '',
    podCIDRs,
    internalIPs: (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address),
    creationTimestamp: created === undefined ? undefined : new Date(created).toISOString(),
  };
}
