/** The pcap decoder on hand-built frames (no root, no tcpdump needed). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPacket, parsePcap, tcpdumpSummaries, wireguardMessage } from '../sandbox/pcap.ts';

function pcap(frames: Buffer[], options: { linkType?: number; bigEndian?: boolean; nano?: boolean } = {}): Buffer {
  const be = options.bigEndian ?? false;
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    if (be) b.writeUInt32BE(n);
    else b.writeUInt32LE(n);
    return b;
  };
  const u16 = (n: number) => {
    const b = Buffer.alloc(2);
    if (be) b.writeUInt16BE(n);
    else b.writeUInt16LE(n);
    return b;
  };
  const parts: Buffer[] = [u32(options.nano ? 0xa1b23c4d : 0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(65535), u32(options.linkType ?? 1)];
  frames.forEach((f, i) => parts.push(u32(1700000000 + i), u32(options.nano ? 500_000_000 : 500_000), u32(f.length), u32(f.length), f));
  return Buffer.concat(parts);
}

const ETH = (type: number) => Buffer.concat([Buffer.alloc(12, 0xaa), Buffer.from([type >> 8, type & 0xff])]);

function ipv4(proto: number, src: number[], dst: number[], l4: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(src).copy(h, 12);
  Buffer.from(dst).copy(h, 16);
  return Buffer.concat([h, l4]);
}

function udp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

function tcp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h[12] = 5 << 4;
  return Buffer.concat([h, payload]);
}

test('decodes Ethernet IPv4 UDP (WireGuard), TCP, ICMP, ARP and IPv6 ICMPv6', () => {
  const wgData = Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(12 + 16 + 64)]);
  const initiation = Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)]);
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(0x0800, 2);
  arp[4] = 6;
  arp[5] = 4;
  Buffer.from([198, 18, 7, 1]).copy(arp, 14);
  Buffer.from([198, 18, 7, 2]).copy(arp, 24);
  const v6 = Buffer.alloc(40);
  v6[0] = 0x60;
  v6.writeUInt16BE(8, 4);
  v6[6] = 58;
  v6[7] = 255;
  v6.writeUInt16BE(0xfe80, 8);
  v6[23] = 1;
  v6.writeUInt16BE(0xff02, 24);
  v6[39] = 2;
  const frames = [
    Buffer.concat([ETH(0x0800), ipv4(17, [198, 18, 7, 1], [198, 18, 7, 2], udp(51820, 51820, wgData))]),
    Buffer.concat([ETH(0x0800), ipv4(17, [198, 18, 7, 2], [198, 18, 7, 1], udp(40000, 51820, initiation))]),
    Buffer.concat([ETH(0x0800), ipv4(6, [10, 244, 0, 2], [10, 244, 1, 2], tcp(33000, 5201, Buffer.from('hello')))]),
    Buffer.concat([ETH(0x0800), ipv4(1, [198, 18, 7, 1], [198, 18, 7, 2], Buffer.from([8, 0, 0, 0, 1, 2, 3, 4]))]),
    Buffer.concat([ETH(0x0806), arp]),
    Buffer.concat([ETH(0x86dd), v6, Buffer.from([133, 0, 0, 0, 0, 0, 0, 0])]),
  ];
  for (const opts of [{}, { bigEndian: true }, { nano: true }]) {
    const p = parsePcap(pcap(frames, opts));
    assert.equal(p.length, 6);
    assert.equal(p[0].time, 1700000000.5);
    assert.deepEqual(
      p.map((x) => formatPacket(x)),
      [
        `udp 198.18.7.1:51820 > 198.18.7.2:51820 len ${frames[0].length} [wireguard transport-data]`,
        `udp 198.18.7.2:40000 > 198.18.7.1:51820 len ${frames[1].length} [wireguard handshake-initiation]`,
        `tcp 10.244.0.2:33000 > 10.244.1.2:5201 len ${frames[2].length}`,
        `icmp 198.18.7.1 > 198.18.7.2 type 8/0 len ${frames[3].length}`,
        `arp 198.18.7.1 > 198.18.7.2 len ${frames[4].length}`,
        `icmp6 fe80::1 > ff02::2 type 133/0 len ${frames[5].length}`,
      ],
    );
    assert.equal(p[2].payload.toString(), 'hello');
    assert.equal(p[0].ipVersion, 4);
    assert.equal(p[5].ipVersion, 6);
  }
});

test('Linux cooked (v1) frames, an empty file, and a record cut short', () => {
  const sll = Buffer.concat([Buffer.alloc(14), Buffer.from([0x08, 0x00]), ipv4(17, [1, 2, 3, 4], [5, 6, 7, 8], udp(1, 2, Buffer.from('x')))]);
  const p = parsePcap(pcap([sll], { linkType: 113 }));
  assert.equal(formatPacket(p[0]), `udp 1.2.3.4:1 > 5.6.7.8:2 len ${sll.length}`);
  assert.deepEqual(parsePcap(Buffer.alloc(0)), []);
  const whole = pcap([sll, sll]);
  assert.equal(parsePcap(whole.subarray(0, whole.length - 3)).length, 1);
  assert.throws(() => parsePcap(Buffer.alloc(24)), /not a pcap file/);
});

test('wireguardMessage needs the right type, zero bytes and size', () => {
  assert.equal(wireguardMessage(Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.alloc(88)])), 'handshake-response');
  assert.equal(wireguardMessage(Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.alloc(60)])), 'cookie-reply');
  assert.equal(wireguardMessage(Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(100)])), undefined);
  assert.equal(wireguardMessage(Buffer.concat([Buffer.from([4, 0, 1, 0]), Buffer.alloc(28)])), undefined);
  assert.equal(wireguardMessage(Buffer.from('GET / HTTP/1.1\r\n')), undefined);
});

test('tcpdumpSummaries joins -v continuation lines to their packet', () => {
  const text = [
    '1700000000.500000 IP (tos 0x0, ttl 64, id 1, offset 0, flags [DF], proto ICMP (1), length 84)',
    '    198.18.7.1 > 198.18.7.2: ICMP echo request, id 1, seq 1, length 64',
    '1700000000.600000 ARP, Request who-has 198.18.7.2 tell 198.18.7.1, length 28',
    '',
  ].join('\n');
  assert.deepEqual(tcpdumpSummaries(text), [
    '1700000000.500000 IP (tos 0x0, ttl 64, id 1, offset 0, flags [DF], proto ICMP (1), length 84) 198.18.7.1 > 198.18.7.2: ICMP echo request, id 1, seq 1, length 64',
    '1700000000.600000 ARP, Request who-has 198.18.7.2 tell 198.18.7.1, length 28',
  ]);
});
