/**
 * Packets from a capture file that tcpdump wrote (`tcpdump -w`, classic pcap), decoded here byte by
 * byte (Ethernet, Linux cooked v1/v2 or raw IP; IPv4, IPv6, ARP; TCP, UDP, ICMP, ICMPv6), so what a
 * test asserts does not depend on the wording of tcpdump's text output. WireGuard messages are
 * recognised by their header (type 1-4, three zero bytes), on any port.
 */

export type PacketProtocol = 'tcp' | 'udp' | 'icmp' | 'icmp6' | 'arp' | 'other';

export type WireguardMessage = 'handshake-initiation' | 'handshake-response' | 'cookie-reply' | 'transport-data';

export interface CapturedPacket {
  /** Capture time, seconds since the epoch (microsecond or nanosecond precision). */
  time: number;
  protocol: PacketProtocol;
  /** 4 or 6 for IP packets; undefined for ARP and other link-layer frames. */
  ipVersion?: 4 | 6;
  /** Source address (IP; for ARP the sender protocol address); '' when unknown. */
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
  /** ICMP / ICMPv6 type and code. */
  icmpType?: number;
  icmpCode?: number;
  /** The IP protocol / next header number (6, 17, 1, 58, ...). */
  ipProtocol?: number;
  /** Length on the wire (the frame's original length). */
  length: number;
  /** The transport payload as captured (UDP/TCP data, ICMP after its 4-byte header); may be cut at the snap length. */
  payload: Buffer;
  /** Set when a UDP payload is a WireGuard message. */
  wireguard?: WireguardMessage;
  /** tcpdump's own one-line reading of the packet (filled by the capture, '' when not available). */
  summary: string;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_LINUX_SLL2 = 276;

/** Decode a classic pcap file. Throws on a file that is not one (pcapng is not supported: tcpdump -w writes pcap). */
export function parsePcap(buf: Buffer): CapturedPacket[] {
  if (buf.length === 0) return []; // tcpdump killed before it wrote its header
  if (buf.length < 24) throw new Error(`not a pcap file: ${buf.length} bytes, shorter than a pcap header`);
  const magicLE = buf.readUInt32LE(0);
  let le: boolean;
  let nano: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) {
    le = true;
    nano = magicLE === 0xa1b23c4d;
  } else {
    const magicBE = buf.readUInt32BE(0);
    if (magicBE !== 0xa1b2c3d4 && magicBE !== 0xa1b23c4d) throw new Error(`not a pcap file (magic 0x${magicLE.toString(16)}; pcapng is not supported)`);
    le = false;
    nano = magicBE === 0xa1b23c4d;
  }
  const u32 = (off: number) => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const linkType = u32(20) & 0x0fffffff;
  const packets: CapturedPacket[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const sec = u32(off);
    const frac = u32(off + 4);
    const incl = u32(off + 8);
    const orig = u32(off + 12);
    off += 16;
    if (off + incl > buf.length) break; // a record cut short (capture stopped while writing)
    const frame = buf.subarray(off, off + incl);
    off += incl;
    const packet = decodeFrame(frame, linkType);
    packets.push({ time: sec + frac / (nano ? 1e9 : 1e6), length: orig, summary: '', ...packet });
  }
  return packets;
}

type Decoded = Omit<CapturedPacket, 'time' | 'length' | 'summary'>;

const OTHER: Decoded = { protocol: 'other', src: '', dst: '', payload: Buffer.alloc(0) };

function decodeFrame(frame: Buffer, linkType: number): Decoded {
  let etherType: number;
  let off: number;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      if (frame.length < 14) return OTHER;
      etherType = frame.readUInt16BE(12);
      off = 14;
      while ((etherType === 0x8100 || etherType === 0x88a8) && frame.length >= off + 4) {
        etherType = frame.readUInt16BE(off + 2);
        off += 4;
      }
      break;
    case LINKTYPE_LINUX_SLL:
      if (frame.length < 16) return OTHER;
      etherType = frame.readUInt16BE(14);
      off = 16;
      break;
    case LINKTYPE_LINUX_SLL2:
      if (frame.length < 20) return OTHER;
      etherType = frame.readUInt16BE(0);
      off = 20;
      break;
    case LINKTYPE_RAW:
      if (frame.length < 1) return OTHER;
      etherType = frame[0] >> 4 === 6 ? 0x86dd : 0x0800;
      off = 0;
      break;
    default:
      return OTHER;
  }
  const l3 = frame.subarray(off);
  if (etherType === 0x0800) return decodeIPv4(l3);
  if (etherType === 0x86dd) return decodeIPv6(l3);
  if (etherType === 0x0806) return decodeArp(l3);
  return OTHER;
}

function decodeArp(p: Buffer): Decoded {
  // Ethernet/IPv4 ARP: sender IP at 14, target IP at 24.
  if (p.length < 28 || p.readUInt16BE(2) !== 0x0800 || p[4] !== 6 || p[5] !== 4) return { ...OTHER, protocol: 'arp' };
  return { protocol: 'arp', src: ipv4(p, 14), dst: ipv4(p, 24), payload: Buffer.alloc(0) };
}

function decodeIPv4(p: Buffer): Decoded {
  if (p.length < 20 || p[0] >> 4 !== 4) return OTHER;
  const ihl = (p[0] & 0x0f) * 4;
  const total = Math.min(p.readUInt16BE(2), p.length);
  const fragmentOffset = p.readUInt16BE(6) & 0x1fff;
  const proto = p[9];
  const base = { ipVersion: 4 as const, src: ipv4(p, 12), dst: ipv4(p, 16), ipProtocol: proto };
  // Later fragments carry no transport header.
  if (fragmentOffset !== 0) return { ...base, protocol: protocolName(proto), payload: p.subarray(ihl, total) };
  return { ...base, ...decodeTransport(proto, p.subarray(ihl, Math.max(ihl, total))) };
}

function decodeIPv6(p: Buffer): Decoded {
  if (p.length < 40 || p[0] >> 4 !== 6) return OTHER;
  let next = p[6];
  let off = 40;
  const end = Math.min(p.length, 40 + p.readUInt16BE(4));
  // Skip extension headers: hop-by-hop, routing, destination options; a non-first fragment stops here.
  while ([0, 43, 60, 44].includes(next) && off + 8 <= end) {
    if (next === 44) {
      const fragmentOffset = p.readUInt16BE(off + 2) >> 3;
      const after = p[off];
      off += 8;
      next = after;
      if (fragmentOffset !== 0) {
        return { ipVersion: 6, src: ipv6(p, 8), dst: ipv6(p, 24), ipProtocol: next, protocol: protocolName(next), payload: p.subarray(off, end) };
      }
      continue;
    }
    const after = p[off];
    off += (p[off + 1] + 1) * 8;
    next = after;
  }
  return { ipVersion: 6, src: ipv6(p, 8), dst: ipv6(p, 24), ipProtocol: next, ...decodeTransport(next, p.subarray(Math.min(off, end), end)) };
}

function protocolName(proto: number): PacketProtocol {
  return proto === 6 ? 'tcp' : proto === 17 ? 'udp' : proto === 1 ? 'icmp' : proto === 58 ? 'icmp6' : 'other';
}

function decodeTransport(proto: number, t: Buffer): Pick<Decoded, 'protocol' | 'srcPort' | 'dstPort' | 'icmpType' | 'icmpCode' | 'payload' | 'wireguard'> {
  const protocol = protocolName(proto);
  if (protocol === 'udp' && t.length >= 8) {
    const payload = t.subarray(8);
    const wireguard = wireguardMessage(payload);
    return { protocol, srcPort: t.readUInt16BE(0), dstPort: t.readUInt16BE(2), payload, ...(wireguard ? { wireguard } : {}) };
  }
  if (protocol === 'tcp' && t.length >= 20) {
    const dataOffset = (t[12] >> 4) * 4;
    return { protocol, srcPort: t.readUInt16BE(0), dstPort: t.readUInt16BE(2), payload: t.subarray(Math.min(dataOffset, t.length)) };
  }
  if ((protocol === 'icmp' || protocol === 'icmp6') && t.length >= 4) {
    return { protocol, icmpType: t[0], icmpCode: t[1], payload: t.subarray(4) };
  }
  return { protocol, payload: t };
}

/** The WireGuard message type of a UDP payload, by its header and its fixed sizes. */
export function wireguardMessage(payload: Buffer): WireguardMessage | undefined {
  if (payload.length < 4 || payload[1] !== 0 || payload[2] !== 0 || payload[3] !== 0) return undefined;
  switch (payload[0]) {
    case 1:
      return payload.length === 148 ? 'handshake-initiation' : undefined;
    case 2:
      return payload.length === 92 ? 'handshake-response' : undefined;
    case 3:
      return payload.length === 64 ? 'cookie-reply' : undefined;
    case 4:
      // header 16 (type, receiver, counter) + at least the 16-byte tag. Not checked for padding: with
      // UDP GSO (vectorised wireguard-go) the bridge sees one super-datagram holding several messages.
      return payload.length >= 32 ? 'transport-data' : undefined;
    default:
      return undefined;
  }
}

function ipv4(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

function ipv6(b: Buffer, off: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(off + i * 2));
  // RFC 5952: compress the longest run (length >= 2) of zero groups.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * tcpdump's text (`tcpdump -r file -nn -tt -v`) grouped into one line per packet: a packet starts
 * with its timestamp, continuation lines are joined to it.
 */
export function tcpdumpSummaries(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (/^\d+\.\d+ /.test(line) || out.length === 0) out.push(line.trim());
    else out[out.length - 1] += ` ${line.trim()}`;
  }
  return out;
}

/** One readable line: `udp 198.18.7.1:51820 > 198.18.7.2:51820 len 190 [wireguard transport-data]`. */
export function formatPacket(p: CapturedPacket): string {
  const ep = (ip: string, port?: number) => (port === undefined ? ip : p.ipVersion === 6 ? `[${ip}]:${port}` : `${ip}:${port}`);
  const icmp = p.icmpType !== undefined ? ` type ${p.icmpType}/${p.icmpCode}` : '';
  const wg = p.wireguard ? ` [wireguard ${p.wireguard}]` : '';
  return `${p.protocol} ${ep(p.src, p.srcPort)} > ${ep(p.dst, p.dstPort)}${icmp} len ${p.length}${wg}`;
}
