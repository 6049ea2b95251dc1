/**
 * Address, CIDR and endpoint syntax, checked the way wireguard-go's parser (Go's net/netip) checks
 * it, and printed the way wireguard-go prints it back (canonical, masked, IPv6 compressed).
 */
import ipaddr from 'ipaddr.js';
import { NativeError } from './errors.ts';

function fail(what: string, text: string, expected: string): never {
  throw new NativeError('invalid-config', `${what}: ${JSON.stringify(text)} is not ${expected}`);
}

function isDottedQuad(text: string): boolean {
  // Stryker disable next-line Regex: equivalent: isValidFourPartDecimal already refuses leading zeros; the pattern is a second guard against a laxer ipaddr.js
  return ipaddr.IPv4.isValidFourPartDecimal(text) && !/(^|\.)0\d/.test(text);
}

/**
 * Parse a plain IP address strictly (dotted quad without leading zeros, or IPv6 without a zone
 * whose embedded IPv4 part, if any, is such a dotted quad: ipaddr.js would also take hex and octal there).
 */
export function parseIp(text: string, what = 'address'): ipaddr.IPv4 | ipaddr.IPv6 {
  if (typeof text === 'string') {
    if (isDottedQuad(text)) return ipaddr.IPv4.parse(text);
    const embeddedV4 = text.slice(text.lastIndexOf(':') + 1);
    if (
      // Stryker disable next-line StringLiteral: equivalent: text without ':' is never valid IPv6 either; the test only saves the parse
      text.includes(':') &&
      !text.includes('%') &&
      ipaddr.IPv6.isValid(text) &&
      (!embeddedV4.includes('.') || isDottedQuad(embeddedV4))
    ) {
      return ipaddr.IPv6.parse(text);
    }
  }
  return fail(what, String(text), 'an IPv4 or IPv6 address');
}

/** An address as netip prints it: IPv6 compressed, lower case, IPv4-mapped as ::ffff:1.2.3.4. */
function format(addr: ipaddr.IPv4 | ipaddr.IPv6): string {
  if (addr instanceof ipaddr.IPv6 && addr.isIPv4MappedAddress()) return `::ffff:${addr.toIPv4Address().toString()}`;
  return addr.toString();
}

/** Canonical form of an IP address: IPv6 compressed, lower case, IPv4-mapped as ::ffff:1.2.3.4. */
export function canonicalIp(text: string, what = 'address'): string {
  return format(parseIp(text, what));
}

/**
 * Canonical forms already computed, by input text: every pass spells the same few thousand CIDRs
 * (the device's allowed IPs, the table's routes), and parsing each again cost most of a 5,000-peer
 * pass (issue 10). Only successes are kept; cleared when it grows past CANONICAL_CACHE_LIMIT.
 */
const canonicalCache = new Map<string, string>();
const CANONICAL_CACHE_LIMIT = 65_536;

/**
 * Canonical form of a CIDR as wireguard-go stores it: host bits cleared, IPv6 compressed.
 * "10.0.0.5/24" becomes "10.0.0.0/24". A bare address is refused: allowed IPs need a prefix length.
 */
export function canonicalCidr(text: string, what = 'CIDR'): string {
  const hit = typeof text === 'string' ? canonicalCache.get(text) : undefined;
  if (hit !== undefined) return hit;
  const canonical = parseCanonicalCidr(text, what);
  if (canonicalCache.size >= CANONICAL_CACHE_LIMIT) canonicalCache.clear();
  canonicalCache.set(text, canonical);
  return canonical;
}

function parseCanonicalCidr(text: string, what: string): string {
  const expected = 'a CIDR such as 10.244.1.0/24 or fd00::/64';
  if (typeof text !== 'string') fail(what, String(text), expected);
  const slash = text.indexOf('/');
  if (slash < 0) fail(what, text, `${expected} (the prefix length is missing)`);
  const addr = parseIp(text.slice(0, slash), what);
  const lenText = text.slice(slash + 1);
  const max = addr.kind() === 'ipv4' ? 32 : 128;
  if (!/^(0|[1-9]\d{0,2})$/.test(lenText) || Number(lenText) > max) {
    fail(what, text, `${expected} (prefix length must be 0 to ${max})`);
  }
  const len = Number(lenText);
  const network =
    addr.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.toString()}/${len}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${len}`);
  return `${format(network)}/${len}`;
}

export function cidrFamily(cidr: string): 4 | 6 {
  return cidr.includes(':') ? 6 : 4;
}

/** Whether CIDR `inner` lies entirely inside CIDR `outer` (both canonical or not). */
export function cidrContains(outer: string, inner: string): boolean {
  const [oAddr, oLen] = ipaddr.parseCIDR(outer);
  const [iAddr, iLen] = ipaddr.parseCIDR(inner);
  if (oAddr.kind() !== iAddr.kind() || iLen < oLen) return false;
  return iAddr.match(oAddr, oLen);
}

/** Whether two CIDRs share any address. */
export function cidrOverlaps(a: string, b: string): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/**
 * Canonical endpoint `IP:port` or `[IPv6]:port`, as wireguard-go prints it. Host names are refused:
 * wireguard-go does not resolve them, and an endpoint that changes under DNS is not a mesh we can reason about.
 */
export function canonicalEndpoint(text: string, what = 'endpoint'): string {
  const expected = 'an endpoint such as 10.0.0.4:51820 or [fd00::4]:51820';
  if (typeof text !== 'string') fail(what, String(text), expected);
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m) fail(what, text, expected);
  const [, host, portText] = m;
  const bracketed = text.startsWith('[');
  const addr = parseIp(host, what);
  if (bracketed !== (addr.kind() === 'ipv6')) fail(what, text, `${expected} (IPv6 addresses go in brackets)`);
  const port = Number(portText);
  if (!/^(0|[1-9]\d*)$/.test(portText) || port > 65535) fail(what, text, `${expected} (port 0 to 65535)`);
  // IPv4-mapped IPv6 stays IPv6, as in netip.
  return addr.kind() === 'ipv6' ? `[${format(addr)}]:${port}` : `${format(addr)}:${port}`;
}
