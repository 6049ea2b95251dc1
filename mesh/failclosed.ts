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
 *
 * O(N log N): what no fallback may cut off (this node's pods, every node's address) goes into a
 * CidrIndex, so each pod CIDR is one search instead of a comparison with every address (which made
 * 1,000 Nodes cost tens of seconds). Called again with the same inputs (by identity: the sources
 * hand over the same arrays while nothing changed) it returns the same array; with the same Nodes
 * and new routes, only the routes are parsed and merged in. Callers must not mutate what it returns.
 */
import { canonicalCidr } from '../native/index.ts';
import type { NodeInfo } from './crd/types.ts';
import { compareText } from './topology/order.ts';
import { CidrIndex } from './topology/ranges.ts';

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

/** Canonical forms of CIDR texts seen (null: does not parse), so a route list is not parsed again on every call. */
const forms = new Map<string, string | null>();

/** The canonical form of a CIDR, or null (malformed: skipped, never thrown). */
function canonical(c: unknown): string | null {
  if (typeof c !== 'string') return null;
  let form = forms.get(c);
  if (form === undefined) {
    try {
      form = canonicalCidr(c);
    } catch {
      form = null;
    }
    if (forms.size >= 100_000) forms.clear();
    forms.set(c, form);
  }
  return form;
}

/** Canonical, sorted by compareText, without duplicates (a sort only when not sorted already). */
function sortedForms(list: readonly unknown[]): string[] {
  const out: string[] = [];
  let sorted = true;
  for (const c of list) {
    const form = canonical(c);
    if (form === null) continue;
    if (out.length > 0 && compareText(out[out.length - 1], form) >= 0) sorted = false;
    out.push(form);
  }
  return sorted ? out : [...new Set(out)].sort(compareText);
}

/** Sorted lists without duplicates, merged into one (linear). */
function merge(lists: ReadonlyArray<readonly string[]>): string[] {
  let out: string[] = [];
  for (const b of lists) {
    if (b.length === 0) continue;
    const a = out;
    out = [];
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
      const c = i >= a.length ? 1 : j >= b.length ? -1 : compareText(a[i], b[j]);
      if (c <= 0) out.push(a[i++]);
      else out.push(b[j++]);
      if (c === 0) j++;
    }
  }
  return out;
}

/** The part that depends on the Nodes (and role, name, mesh CIDR) alone: the other Nodes' pod CIDRs and the mesh CIDR that may fail closed. */
function nodePart(role: FailClosedInput['role'], nodeName: string, nodes: readonly NodeInfo[], meshCIDR: string | undefined): string[] {
  const podForms = (list: unknown): string[] => (Array.isArray(list) ? list.map(canonical).filter((c): c is string => c !== null) : []);
  const kept = new CidrIndex<true>();
  // What no fallback may cut off: this node's own pods and every node's address.
  kept.load((add) => {
    for (const n of nodes) {
      if (role === 'node' && n.name === nodeName) for (const c of podForms(n.podCIDRs)) add(c, true);
      for (const ip of Array.isArray(n.internalIPs) ? n.internalIPs : []) {
        const c = canonical(`${ip}/${String(ip).includes(':') ? 128 : 32}`);
        if (c !== null) add(c, true);
      }
    }
  });
  // A Node whose pod CIDR covers this node's own pods or a node's address (a bad or hostile Node
  // object) must not make them unreachable: such a CIDR gets no fallback. Nor does such a mesh CIDR.
  const free = (c: string): boolean => {
    let hit = false;
    kept.forEachOverlapping(c, () => (hit = true));
    return !hit;
  };
  const out: string[] = [];
  for (const n of nodes) if (role !== 'node' || n.name !== nodeName) for (const c of podForms(n.podCIDRs)) if (free(c)) out.push(c);
  const mesh = canonical(meshCIDR);
  if (mesh !== null && free(mesh)) out.push(mesh);
  return [...new Set(out)].sort(compareText);
}

/** Canonical, sorted, without duplicates. Never throws: malformed pod CIDRs (a directory's Node) are skipped. */
export function failClosedCidrs(input: FailClosedInput): string[] {
  const { role, nodeName, nodes, routes, podCIDRs, meshCIDR } = input;
  return merge([nodePart(role, nodeName, nodes, meshCIDR), sortedForms(routes), sortedForms(podCIDRs ?? [])]);
}

/**
 * The fallbacks of one member, recomputed only in the part that changed (a member asks on every
 * event): the Node part only when the Nodes array changes (sources keep it while no Node changed),
 * the routes merged in linearly when they change, and the same array back while neither did.
 */
export class Fallbacks {
  private readonly fixed: Omit<FailClosedInput, 'nodes' | 'routes'>;
  private nodes: readonly NodeInfo[] | null = null;
  private nodePart: string[] = [];
  private routes: readonly string[] | null = null;
  private routeForms: readonly string[] = [];
  private result: string[] = [];

  constructor(fixed: Omit<FailClosedInput, 'nodes' | 'routes'>) {
    this.fixed = fixed;
  }

  /**
   * failClosedCidrs({...fixed, nodes, routes}), as the same array while nodes and routes are the
   * same arrays (or hold the same routes). `routesCanonical`: the caller vouches that the routes are
   * canonical, sorted by compareText and without duplicates (a Topology's are): merged unparsed.
   */
  compute(nodes: readonly NodeInfo[], routes: readonly string[], routesCanonical = false): string[] {
    let changed = false;
    if (nodes !== this.nodes) {
      const { role, nodeName, meshCIDR, podCIDRs } = this.fixed;
      this.nodes = nodes;
      this.nodePart = merge([nodePart(role, nodeName, nodes, meshCIDR), sortedForms(podCIDRs ?? [])]);
      changed = true;
    }
    if (routes !== this.routes) {
      const next = routesCanonical ? routes : sortedForms(routes);
      if (this.routes === null || !sameList(next, this.routeForms)) {
        this.routeForms = next;
        changed = true;
      }
      this.routes = routes;
    }
    if (changed) {
      const merged = merge([this.nodePart, this.routeForms]);
      if (!sameList(merged, this.result)) this.result = merged;
    }
    return this.result;
  }
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
