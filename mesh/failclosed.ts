/**
 * Which destinations get an `unreachable` fallback in the mesh table (DESIGN §3.5): every route
 * through the tunnel, and the pod CIDRs of every Node but this one, whatever the state of that
 * Node's Peer (accepted, refused, not registered yet), plus a gateway's own --pod-cidr list. The
 * mesh table is consulted before the main table, so traffic to a pod the mesh cannot carry right
 * now is refused instead of leaving through a CNI's clear route. A Node that goes away takes its
 * fallback with it (the list is recomputed from the Nodes that exist). The mesh CIDR itself is one
 * too: a refused or missing member's mesh IP has no /32 through the tunnel, and must be refused
 * rather than sent out by the default route (the /32s of accepted members are more specific and
 * win; this member's own mesh IP is in the local table, consulted first).
 */
import { canonicalCidr, cidrOverlaps } from '../native/index.ts';
import type { NodeInfo } from './crd/types.ts';
import { compareText } from './topology/order.ts';

export interface FailClosedInput {
  role: 'node' | 'gateway';
  /** The node this member runs on: its own pods are local and get no fallback (role node). */
  nodeName: string;
  nodes: readonly NodeInfo[];
  /** What the member routes through its tunnel now. */
  routes: readonly string[];
  /** Gateway: its --pod-cidr list. */
  podCIDRs?: readonly string[];
  /** The mesh CIDR (MemberOptions.meshCIDR). */
  meshCIDR?: string;
}

/** Canonical, sorted, without duplicates. Never throws: malformed pod CIDRs (a directory's Node) are skipped. */
export function failClosedCidrs(input: FailClosedInput): string[] {
  const parse = (c: unknown): string[] => {
    if (typeof c !== 'string') return [];
    try {
      return [canonicalCidr(c)];
    } catch {
      return [];
    }
  };
  const podsOf = (n: NodeInfo): string[] => (Array.isArray(n.podCIDRs) ? n.podCIDRs.flatMap(parse) : []);
  const own = input.role === 'node' ? input.nodes.filter((n) => n.name === input.nodeName).flatMap(podsOf) : [];
  const addresses = input.nodes.flatMap((n) => (Array.isArray(n.internalIPs) ? n.internalIPs : [])).flatMap((ip) => parse(`${ip}/${String(ip).includes(':') ? 128 : 32}`));
  const others = input.nodes
    .filter((n) => input.role !== 'node' || n.name !== input.nodeName)
    .flatMap(podsOf)
    // A Node whose pod CIDR covers this node's own pods or a node's address (a bad or hostile Node
    // object) must not make them unreachable: such a CIDR gets no fallback.
    .filter((c) => !own.some((o) => cidrOverlaps(o, c)) && !addresses.some((a) => cidrOverlaps(a, c)));
  // Like a Node's pod CIDR, a mesh CIDR covering this node's pods or a node address gets no fallback.
  const mesh = parse(input.meshCIDR).filter((c) => !own.some((o) => cidrOverlaps(o, c)) && !addresses.some((a) => cidrOverlaps(a, c)));
  const all = [...input.routes.flatMap(parse), ...others, ...(input.podCIDRs ?? []).flatMap(parse), ...mesh];
  return [...new Set(all)].sort(compareText);
}
