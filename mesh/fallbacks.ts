/**
 * The fail-closed fallbacks (failclosed.ts) at scale, for a member that recomputes them on every
 * event. `failClosedCidrs` compares every Node's pod CIDR with every Node's address: quadratic, with
 * both CIDRs parsed again for each pair (41 s of CPU for 1,000 Nodes here). `indexedFailClosedCidrs`
 * returns the same list (a property test holds it equal on random inputs) with the addresses in a
 * CidrIndex: O(N log N). `Fallbacks` splits the work by what it depends on: the Node part only when
 * the Nodes change (by identity, per the sources' snapshot contract), the routes merged in linearly
 * when they change, and the same array back while neither did.
 */
import { canonicalCidr } from '../native/index.ts';
import type { NodeInfo } from './crd/types.ts';
import type { FailClosedInput } from './failclosed.ts';
import { compareText } from './topology/order.ts';
import { CidrIndex } from './topology/ranges.ts';

/** The canonical form of a CIDR, or null for one that does not parse (skipped, as failClosedCidrs does). */
function canonical(c: unknown): string | null {
  if (typeof c !== 'string') return null;
  try {
    return canonicalCidr(c);
  } catch {
    return null;
  }
}

const parse = (c: unknown): string[] => {
  const x = canonical(c);
  return x === null ? [] : [x];
};

/** The same list as failClosedCidrs(input), found without comparing every pod CIDR with every address. */
export function indexedFailClosedCidrs(input: FailClosedInput): string[] {
  const podsOf = (n: NodeInfo): string[] => (Array.isArray(n.podCIDRs) ? n.podCIDRs.flatMap(parse) : []);
  const own = input.role === 'node' ? input.nodes.filter((n) => n.name === input.nodeName).flatMap(podsOf) : [];
  const addresses = input.nodes.flatMap((n) => (Array.isArray(n.internalIPs) ? n.internalIPs : [])).flatMap((ip) => parse(`${ip}/${String(ip).includes(':') ? 128 : 32}`));
  // What no fallback may cut off: this node's own pods and every node's address.
  const kept = new CidrIndex<true>();
  // One by one (CidrIndex.add keeps each list sorted): addresses mostly come in order, so each lands at the end.
  for (const c of [...own, ...addresses]) kept.add(c, true);
  const free = (c: string): boolean => {
    let hit = false;
    kept.forEachOverlapping(c, () => (hit = true));
    return !hit;
  };
  const others = input.nodes.filter((n) => input.role !== 'node' || n.name !== input.nodeName).flatMap(podsOf).filter(free);
  const mesh = parse(input.meshCIDR).filter(free);
  const all = [...input.routes.flatMap(parse), ...others, ...(input.podCIDRs ?? []).flatMap(parse), ...mesh];
  return [...new Set(all)].sort(compareText);
}

/** Two lists sorted by compareText without duplicates, merged into one (linear). */
function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const c = i >= a.length ? 1 : j >= b.length ? -1 : compareText(a[i], b[j]);
    if (c <= 0) out.push(a[i++]);
    else out.push(b[j++]);
    if (c === 0) j++;
  }
  return out;
}

/** The fallbacks of one member, recomputed only in the part that changed. */
export class Fallbacks {
  private readonly fixed: Omit<FailClosedInput, 'nodes' | 'routes'>;
  private nodes: readonly NodeInfo[] | null = null;
  private nodePart: string[] = [];
  private routes: readonly string[] | null = null;
  private canonicalRoutes: readonly string[] = [];
  private result: string[] = [];
  /** Canonical forms of route texts seen (routes are canonical already, so this is mostly identity). */
  private readonly forms = new Map<string, string | null>();

  constructor(fixed: Omit<FailClosedInput, 'nodes' | 'routes'>) {
    this.fixed = fixed;
  }

  /**
   * failClosedCidrs({...fixed, nodes, routes}): the same array while nodes and routes are the same
   * arrays (or hold the same routes). `routesCanonical`: the caller vouches that the routes are
   * canonical, sorted by compareText and without duplicates (a Topology's routes are), so they are
   * merged in without being parsed again.
   */
  compute(nodes: readonly NodeInfo[], routes: readonly string[], routesCanonical = false): string[] {
    let changed = false;
    if (nodes !== this.nodes) {
      this.nodes = nodes;
      this.nodePart = indexedFailClosedCidrs({ ...this.fixed, nodes, routes: [] });
      changed = true;
    }
    if (routes !== this.routes) {
      const next = routesCanonical ? routes : this.canonicalize(routes);
      if (this.routes === null || next.length !== this.canonicalRoutes.length || next.some((r, i) => r !== this.canonicalRoutes[i])) {
        this.canonicalRoutes = next;
        changed = true;
      }
      this.routes = routes;
    }
    if (changed) {
      const merged = mergeSorted(this.nodePart, this.canonicalRoutes);
      if (merged.length !== this.result.length || merged.some((r, i) => r !== this.result[i])) this.result = merged;
    }
    return this.result;
  }

  /** Canonical, sorted, without duplicates (a sort only when the routes were not sorted already). */
  private canonicalize(routes: readonly string[]): string[] {
    if (this.forms.size > 100_000) this.forms.clear();
    const out: string[] = [];
    let sorted = true;
    for (const r of routes) {
      let form = this.forms.get(r);
      if (form === undefined) {
        form = canonical(r);
        this.forms.set(r, form);
      }
      if (form === null) continue;
      if (out.length > 0) {
        const c = compareText(out[out.length - 1], form);
        if (c === 0) continue;
        if (c > 0) sorted = false;
      }
      out.push(form);
    }
    return sorted ? out : [...new Set(out)].sort(compareText);
  }
}
