/**
 * CIDR containment and overlap as integer comparisons, each CIDR parsed once. The desired state
 * compares every allowed IP with every other (and with every Node's pod CIDRs and addresses) on each
 * pass; parsing the text each time (ipaddr.parseCIDR tries IPv6 first and throws for IPv4) made one
 * pass over 300 nodes take seconds.
 */
import ipaddr from 'ipaddr.js';
import { canonicalCidr } from '../../native/index.ts';

interface Range {
  v6: boolean;
  first: bigint;
  last: bigint;
}

/** Parsed CIDRs by their text; cleared when it grows past CACHE_LIMIT (the input decides its size). */
const cache = new Map<string, Range>();
const CACHE_LIMIT = 100_000;

/** The range of a CIDR (any valid form; throws on an invalid one, like canonicalCidr). */
function rangeOf(cidr: string): Range {
  const hit = cache.get(cidr);
  if (hit) return hit;
  const canonical = canonicalCidr(cidr);
  const slash = canonical.lastIndexOf('/');
  const addr = canonical.slice(0, slash);
  const v6 = addr.includes(':');
  const bytes = (v6 ? ipaddr.IPv6.parse(addr) : ipaddr.IPv4.parse(addr)).toByteArray();
  const first = bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
  const hostBits = BigInt((v6 ? 128 : 32) - Number(canonical.slice(slash + 1)));
  const range = { v6, first, last: first | ((1n << hostBits) - 1n) };
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(cidr, range);
  return range;
}

/** Whether CIDR `inner` lies entirely inside CIDR `outer` (same family). */
export function contains(outer: string, inner: string): boolean {
  const o = rangeOf(outer);
  const i = rangeOf(inner);
  return o.v6 === i.v6 && o.first <= i.first && i.last <= o.last;
}

/** Whether two CIDRs share any address (same family). */
export function overlaps(a: string, b: string): boolean {
  const x = rangeOf(a);
  const y = rangeOf(b);
  return x.v6 === y.v6 && x.first <= y.last && y.first <= x.last;
}

/**
 * The address space already taken, by owner (an index): find who holds any part of a CIDR in
 * O(log n) rather than comparing with every owner. Each owner's CIDRs are merged first, and owners
 * never overlap one another (an overlapping candidate is refused, not added), so the intervals are
 * disjoint and sorted by both ends.
 */
export class TakenSpace {
  private readonly families: { v4: Array<{ first: bigint; last: bigint; owner: number }>; v6: Array<{ first: bigint; last: bigint; owner: number }> } = { v4: [], v6: [] };

  /** Owners holding any address of `cidr`. */
  holders(cidr: string): number[] {
    const r = rangeOf(cidr);
    const list = r.v6 ? this.families.v6 : this.families.v4;
    // The first interval that ends at or after r.first; from there, those that start by r.last.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].last < r.first) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let i = lo; i < list.length && list[i].first <= r.last; i++) out.push(list[i].owner);
    return out;
  }

  /** Mark `cidrs` as held by `owner` (none of them may overlap another owner's). */
  add(owner: number, cidrs: readonly string[]): void {
    const merged: Range[] = [];
    for (const r of cidrs.map(rangeOf).sort((a, b) => Number(a.v6) - Number(b.v6) || (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))) {
      const last = merged.at(-1);
      if (last && last.v6 === r.v6 && r.first <= last.last) {
        if (r.last > last.last) last.last = r.last;
      } else merged.push({ ...r });
    }
    for (const r of merged) {
      const list = r.v6 ? this.families.v6 : this.families.v4;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid].first < r.first) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, { first: r.first, last: r.last, owner });
    }
  }
}
