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
