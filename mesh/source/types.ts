import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import { checkNode } from '../crd/validate.ts';

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
  /**
   * What the source holds now. While nothing changed, the same Snapshot object and the same arrays
   * come back; an object whose content did not change keeps its identity, and so does a NodeInfo
   * while its name, podCIDRs and internalIPs are unchanged: consumers short-circuit on `===`
   * (issue 10: an event costs what it changes). Callers must never mutate it.
   */
  snapshot(): Snapshot;
  /** Called (without arguments) after anything changed; never for a change the mesh does not read (a Node's heartbeat). */
  onChange(cb: () => void): void;
}

/**
 * A Kubernetes Node reduced to what the mesh needs, whatever its shape: only pod CIDRs and
 * InternalIPs that parse, canonical (a Node whose podCIDRs is a string, null or numbers yields none,
 * and nothing throws). The informers and the directory both go through here (mesh/crd/validate.ts).
 */
export function nodeInfo(node: unknown): NodeInfo {
  return checkNode(node).node ?? { name: '', podCIDRs: [], internalIPs: [] };
}
