/**
 * CIDR containment and overlap as integer comparisons, each CIDR parsed once, and an index that
 * finds every CIDR overlapping a given one without comparing it with all of them. The desired state
 * compares every allowed IP with every other (and with every Node's pod CIDRs and addresses) on each
 * pass; parsing the text each time (ipaddr.parseCIDR tries IPv6 first and throws for IPv4) made one
 * pass over 300 nodes take seconds, and comparing all pairs made it quadratic.
 */
import ipaddr from 'ipaddr.js';
import { canonicalCidr } from '../../native/index.ts';

/** A CIDR as the first and last address it covers, with its family and prefix length. */
export interface Range {
  v6: boolean;
  first: bigint;
  last: bigint;
  /** The prefix length. */
  bits: number;
}

/** Parsed CIDRs by their text; cleared when it grows past CACHE_LIMIT (the input decides its size). */
const cache = new Map<string, Range>();
const CACHE_LIMIT = 100_000;

/** A dotted quad without leading zeros and a prefix length without them: the text canonicalCidr accepts for IPv4 (host bits aside). */
const PLAIN_V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\/(3[0-2]|[12]\d|\d)$/;

/** The range of a CIDR (any valid form; throws on an invalid one, like canonicalCidr). */
export function rangeOf(cidr: string): Range {
  const hit = cache.get(cidr);
  if (hit) return hit;
  let range: Range;
  const m = PLAIN_V4.exec(cidr);
  if (m) {
    // The common case, parsed without ipaddr.js: the same range canonicalCidr's masking gives.
    const bits = Number(m[5]);
    const addr = ((Number(m[1]) * 256 + Number(m[2])) * 256 + Number(m[3])) * 256 + Number(m[4]);
    const size = 2 ** (32 - bits);
    const first = addr - (addr % size);
    range = { v6: false, first: BigInt(first), last: BigInt(first + size - 1), bits };
  } else {
    const canonical = canonicalCidr(cidr);
    const slash = canonical.lastIndexOf('/');
    const addr = canonical.slice(0, slash);
    const v6 = addr.includes(':');
    const bytes = (v6 ? ipaddr.IPv6.parse(addr) : ipaddr.IPv4.parse(addr)).toByteArray();
    const first = bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
    const bits = Number(canonical.slice(slash + 1));
    range = { v6, first, last: first | ((1n << BigInt((v6 ? 128 : 32) - bits)) - 1n), bits };
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(cidr, range);
  return range;
}

/** Whether CIDR `inner` lies entirely inside CIDR `outer` (same family). */
export function contains(outer: string, inner: string): boolean {
  return rangeContains(rangeOf(outer), rangeOf(inner));
}

/** Whether two CIDRs share any address (same family). */
export function overlaps(a: string, b: string): boolean {
  return rangesOverlap(rangeOf(a), rangeOf(b));
}

export function rangeContains(o: Range, i: Range): boolean {
  return o.v6 === i.v6 && o.first <= i.first && i.last <= o.last;
}

export function rangesOverlap(x: Range, y: Range): boolean {
  return x.v6 === y.v6 && x.first <= y.last && y.first <= x.last;
}

/** One distinct CIDR held in a CidrIndex, with the values that hold it. */
export interface IndexEntry<T> {
  range: Range;
  values: T[];
  /** Free for the index's user (the desired state marks which candidate won the CIDR). */
  mark: number;
}

const byFirst = (a: { range: Range }, b: { range: Range }): number => (a.range.first < b.range.first ? -1 : a.range.first > b.range.first ? 1 : 0);

/** The first position in `list` (sorted by first address) whose first address is at least `first`. */
function lowerBound<T>(list: ReadonlyArray<IndexEntry<T>>, first: bigint): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].range.first < first) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A set of CIDRs, each with the values that hold it, answering "which of them share an address with
 * this one" in O(L log n + k) (L prefix lengths in use, k answers) instead of comparing with all n.
 * CIDRs are prefixes, so two of them overlap exactly when one contains the other: one containing
 * the query can only start at the query's address masked to its own (shorter) length, found by
 * binary search among the CIDRs of that length; one inside the query starts within it, a slice of
 * each longer length's list. Each distinct CIDR is one entry, however many values hold it, so a
 * search through a crowd of identical claims costs one entry, not one per claim.
 */
export class CidrIndex<T> {
  private readonly byText = new Map<string, IndexEntry<T>>();
  /** Entries by family and prefix length (see level()), each list sorted by first address. */
  private readonly levels = new Map<number, Array<IndexEntry<T>>>();
  /** The levels in use, ascending (IPv4's 0..32 before IPv6's 33..161). */
  private used: number[] = [];
  /** Lists appended to without sorting (a bulk load), sorted before the next search. */
  private readonly unsorted = new Set<Array<IndexEntry<T>>>();
  private bulk = false;

  private static level(r: Range): number {
    return r.v6 ? 33 + r.bits : r.bits;
  }

  /** Add many at once (`fill` calls `add`): appended, then each list sorted once (n log n instead of n inserts of O(n) each). */
  load(fill: (add: (cidr: string, value: T) => void) => void): void {
    this.bulk = true;
    try {
      fill((cidr, value) => this.add(cidr, value));
    } finally {
      this.bulk = false;
    }
  }

  /** The entry of exactly this CIDR text, if any. */
  get(cidr: string): IndexEntry<T> | undefined {
    return this.byText.get(cidr);
  }

  add(cidr: string, value: T): IndexEntry<T> {
    const held = this.byText.get(cidr);
    if (held) {
      held.values.push(value);
      return held;
    }
    const range = rangeOf(cidr);
    const entry: IndexEntry<T> = { range, values: [value], mark: -1 };
    this.byText.set(cidr, entry);
    const level = CidrIndex.level(range);
    let list = this.levels.get(level);
    if (!list) {
      list = [];
      this.levels.set(level, list);
      this.used = [...this.levels.keys()].sort((a, b) => a - b);
    }
    if (this.bulk || this.unsorted.has(list)) {
      list.push(entry);
      this.unsorted.add(list);
    } else list.splice(lowerBound(list, range.first), 0, entry);
    return entry;
  }

  /** Remove one occurrence of `value` from `cidr` (the entry goes when nothing holds it). */
  delete(cidr: string, value: T): void {
    const entry = this.byText.get(cidr);
    if (!entry) return;
    const at = entry.values.indexOf(value);
    if (at < 0) return;
    entry.values.splice(at, 1);
    if (entry.values.length > 0) return;
    this.byText.delete(cidr);
    const list = this.levels.get(CidrIndex.level(entry.range)) as Array<IndexEntry<T>>;
    this.sort(list);
    for (let i = lowerBound(list, entry.range.first); i < list.length; i++) {
      if (list[i] === entry) {
        list.splice(i, 1);
        break;
      }
    }
  }

  private sort(list: Array<IndexEntry<T>>): void {
    if (!this.unsorted.delete(list)) return;
    list.sort(byFirst);
  }

  /** Call `fn` with every entry whose CIDR shares an address with `cidr` (each once). */
  forEachOverlapping(cidr: string | Range, fn: (entry: IndexEntry<T>) => void): void {
    const r = typeof cidr === 'string' ? rangeOf(cidr) : cidr;
    const width = r.v6 ? 128 : 32;
    const from = r.v6 ? 33 : 0;
    for (const level of this.used) {
      if (level < from) continue;
      const bits = level - from;
      if (bits > width) break;
      const list = this.levels.get(level) as Array<IndexEntry<T>>;
      this.sort(list);
      if (bits <= r.bits) {
        // Containing it (or it): only a CIDR starting at r's address masked to `bits`.
        const shift = BigInt(width - bits);
        const start = (r.first >> shift) << shift;
        for (let i = lowerBound(list, start); i < list.length && list[i].range.first === start; i++) fn(list[i]);
      } else {
        // Inside it: every CIDR of this length starting within it.
        for (let i = lowerBound(list, r.first); i < list.length && list[i].range.first <= r.last; i++) fn(list[i]);
      }
    }
  }
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
