/**
 * Address syntax as wireguard-go (Go's net/netip) reads and prints it. The expected canonical forms
 * below were printed by Go's netip (Prefix.Masked().String(), AddrPort.String()) for the same input,
 * and the IPv4-mapped allowed IP by wireguard-go v0.0.20220316 itself.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalCidr, canonicalEndpoint, canonicalIp, cidrContains, cidrFamily, cidrOverlaps, parseIp } from './addr.ts';
import { isNativeError } from './errors.ts';

function refused(fn: () => unknown, prefix: string, detail: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isNativeError(err, 'invalid-config'), String(err));
    assert.ok(err.message.startsWith(prefix), `${JSON.stringify(err.message)} should start with ${prefix}`);
    assert.match(err.message, detail);
    return true;
  });
}

describe('canonicalCidr', () => {
  const canonical: Array<[string, string]> = [
    ['10.0.0.5/24', '10.0.0.0/24'], // host bits cleared, as wireguard-go stores allowed IPs
    ['10.0.0.0/24', '10.0.0.0/24'],
    ['10.255.255.255/32', '10.255.255.255/32'],
    ['192.168.77.1/0', '0.0.0.0/0'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['::/0', '::/0'],
    ['FD00:0:0:0:0:0:0:1/64', 'fd00::/64'],
    ['fd00:0:0:0:0:0:0:1/128', 'fd00::1/128'],
    ['2001:0db8::1/128', '2001:db8::1/128'],
    ['2001:db8:0:0:1:0:0:1/128', '2001:db8::1:0:0:1/128'], // equal runs: the first is compressed
    ['1:0:0:1:0:0:0:1/128', '1:0:0:1::1/128'], // the longest run is compressed
    ['1:0:1:1:1:1:1:1/128', '1:0:1:1:1:1:1:1/128'], // a single zero group is not compressed
  ];
  for (const [input, expected] of canonical) {
    test(`${input} is ${expected}`, () => assert.equal(canonicalCidr(input), expected));
  }

  test('an IPv4-mapped address stays IPv6 (prefix lengths up to 128, not 32)', () => {
    assert.equal(cidrFamily(canonicalCidr('::ffff:1.2.3.4/128')), 6);
    assert.equal(canonicalCidr('::ffff:1.2.3.4/128'), canonicalCidr('::ffff:102:304/128'));
    assert.equal(canonicalCidr('::ffff:1.2.3.4/96'), canonicalCidr('::ffff:0:0/96'));
  });

  test(
    'an IPv4-mapped address prints as wireguard-go prints it',
    () => {
      assert.equal(canonicalCidr('::ffff:1.2.3.4/128'), '::ffff:1.2.3.4/128');
      assert.equal(canonicalCidr('::ffff:1.2.3.4/104'), '::ffff:1.0.0.0/104');
      assert.equal(canonicalIp('::ffff:1.2.3.4'), '::ffff:1.2.3.4');
      assert.equal(canonicalEndpoint('[::ffff:1.2.3.4]:51820'), '[::ffff:1.2.3.4]:51820');
    },
  );

  const bad: Array<[string, RegExp]> = [
    ['10.0.0.1', /the prefix length is missing/],
    ['10.0.0.1/33', /prefix length must be 0 to 32/],
    ['fd00::/129', /prefix length must be 0 to 128/],
    ['10.0.0.1/-1', /prefix length must be 0 to 32/],
    ['10.0.0.1/08', /prefix length must be 0 to 32/], // leading zero: refused by current Go netip
    ['10.0.0.1/ 8', /prefix length must be 0 to 32/],
    ['10.0.0.1/', /prefix length must be 0 to 32/],
    ['010.0.0.1/8', /"010\.0\.0\.1" is not an IPv4 or IPv6 address/], // netip refuses leading zeros
    ['10.0.0.256/32', /is not an IPv4 or IPv6 address/],
    ['10.0.0/24', /is not an IPv4 or IPv6 address/],
    ['fe80::1%eth0/64', /is not an IPv4 or IPv6 address/], // netip refuses zones in prefixes
    ['fd00:::1/64', /is not an IPv4 or IPv6 address/],
    ['example.com/32', /is not an IPv4 or IPv6 address/],
    ['', /the prefix length is missing/],
    ['/24', /"" is not an IPv4 or IPv6 address/], // the address is what is missing, not the prefix length
  ];
  for (const [input, detail] of bad) {
    test(`refuses ${JSON.stringify(input)}, naming what`, () => {
      refused(() => canonicalCidr(input, 'allowedIPs[2]'), 'allowedIPs[2]: ', detail);
    });
  }
});

describe('canonicalIp', () => {
  test('compresses and lower-cases IPv6, keeps IPv4', () => {
    assert.equal(canonicalIp('FD00:0000:0000:0000:0000:0000:0000:0001'), 'fd00::1');
    assert.equal(canonicalIp('0:0:0:0:0:0:0:0'), '::');
    assert.equal(canonicalIp('192.0.2.1'), '192.0.2.1');
  });

  test('refuses leading zeros, short forms, zones and spaces', () => {
    for (const input of ['1.2.3.04', '1.2.3', '0x1.2.3.4', 'fe80::1%eth0', ' 1.2.3.4', '1.2.3.4 ']) {
      refused(() => canonicalIp(input, 'address'), 'address: ', /is not an IPv4 or IPv6 address/);
    }
  });

  test('a refusal without a field name still says what was refused', () => {
    refused(() => canonicalIp('1.2.3.04'), 'address: ', /"1\.2\.3\.04" is not an IPv4 or IPv6 address/);
    refused(() => parseIp('fe80::1%eth0'), 'address: ', /"fe80::1%eth0" is not an IPv4 or IPv6 address/);
    refused(() => canonicalCidr('10.0.0.1'), 'CIDR: ', /the prefix length is missing/);
    refused(() => canonicalEndpoint('10.0.0.1'), 'endpoint: ', /is not an endpoint/);
  });
});

test('a value that is not a string is refused, even one whose text would pass (a list from a directory file)', () => {
  const list = ['1.2.3.4:51820'] as unknown as string;
  refused(() => canonicalEndpoint(list, 'spec.endpoint'), 'spec.endpoint: ', /"1\.2\.3\.4:51820" is not an endpoint such as/);
  refused(() => canonicalCidr(['10.0.0.0/8'] as unknown as string, 'spec.allowedIPs[0]'), 'spec.allowedIPs[0]: ', /is not a CIDR such as/);
  refused(() => canonicalIp(['10.0.0.1'] as unknown as string, 'spec.meshIP'), 'spec.meshIP: ', /is not an IPv4 or IPv6 address/);
  refused(() => canonicalIp(5 as unknown as string, 'spec.meshIP'), 'spec.meshIP: ', /"5" is not an IPv4 or IPv6 address/);
});

describe('cidrFamily', () => {
  test('tells IPv4 from IPv6 CIDRs', () => {
    assert.equal(cidrFamily('10.244.0.0/16'), 4);
    assert.equal(cidrFamily('0.0.0.0/0'), 4);
    assert.equal(cidrFamily('fd00::/8'), 6);
    assert.equal(cidrFamily('::/0'), 6);
  });
});

describe('canonicalEndpoint', () => {
  const canonical: Array<[string, string]> = [
    ['1.2.3.4:51820', '1.2.3.4:51820'],
    ['[fd00::1]:51820', '[fd00::1]:51820'],
    ['[FD00:0::1]:51820', '[fd00::1]:51820'],
    ['1.2.3.4:65535', '1.2.3.4:65535'],
    ['1.2.3.4:0', '1.2.3.4:0'], // netip accepts port 0, so wireguard-go does too
  ];
  for (const [input, expected] of canonical) {
    test(`${input} is ${expected}`, () => assert.equal(canonicalEndpoint(input), expected));
  }

  const bad: Array<[string, string, RegExp]> = [
    ['a missing port', '1.2.3.4', /is not an endpoint such as/],
    ['an empty port', '1.2.3.4:', /is not an endpoint such as/],
    ['port 65536', '1.2.3.4:65536', /\(port 0 to 65535\)/],
    ['a signed port', '1.2.3.4:+5', /is not an endpoint such as/],
    ['an unbracketed IPv6 address', 'fd00::1:51820', /is not an endpoint such as/],
    ['a bracketed IPv6 address without a port', '[fd00::1]', /is not an endpoint such as/],
    ['an IPv4 address in brackets', '[1.2.3.4]:51820', /IPv6 addresses go in brackets/],
    ['a host name', 'node-1.example:51820', /"node-1\.example" is not an IPv4 or IPv6 address/],
    ['a zone', '[fe80::1%eth0]:51820', /is not an IPv4 or IPv6 address/],
    ['a bad IPv4 address', '1.2.3.400:51820', /is not an IPv4 or IPv6 address/],
    ['text before the brackets', 'x[fd00::1]:51820', /is not an endpoint such as 10\.0\.0\.4:51820 or \[fd00::4\]:51820$/],
    ['text after an IPv6 endpoint', '[fd00::1]:51820x', /is not an endpoint such as 10\.0\.0\.4:51820 or \[fd00::4\]:51820$/],
    ['text after an IPv4 endpoint', '1.2.3.4:51820x', /is not an endpoint such as 10\.0\.0\.4:51820 or \[fd00::4\]:51820$/],
    ['a port with a leading zero', '1.2.3.4:0123', /\(port 0 to 65535\)/],
  ];
  for (const [name, input, detail] of bad) {
    test(`refuses ${name} (${input}), naming what`, () => {
      refused(() => canonicalEndpoint(input, 'peers[0].endpoint'), 'peers[0].endpoint: ', detail);
    });
  }
});

describe('cidrContains and cidrOverlaps', () => {
  // [outer, inner, contains, overlaps]
  const cases: Array<[string, string, boolean, boolean]> = [
    ['10.0.0.0/8', '10.1.0.0/16', true, true],
    ['10.1.0.0/16', '10.0.0.0/8', false, true],
    ['10.0.0.0/8', '10.0.0.0/8', true, true],
    ['10.0.0.0/8', '11.0.0.0/8', false, false],
    ['10.0.0.0/24', '10.0.1.0/24', false, false],
    ['10.0.0.0/24', '10.0.0.0/23', false, true],
    ['0.0.0.0/0', '192.0.2.7/32', true, true],
    ['10.0.0.5/24', '10.0.0.200/32', true, true], // host bits in the outer CIDR are ignored
    ['fd00::/64', 'fd00::1/128', true, true],
    ['fd00::/64', 'fd00:0:0:1::/64', false, false],
    ['::/0', 'fd00::/8', true, true],
    // IPv4 and IPv6 never overlap, IPv4-mapped included (wireguard-go keeps them in separate tries).
    ['0.0.0.0/0', '::/0', false, false],
    ['::/0', '10.0.0.0/8', false, false],
    ['::ffff:0:0/96', '1.2.3.4/32', false, false],
  ];
  for (const [a, b, contains, overlaps] of cases) {
    test(`${a} ${contains ? 'contains' : 'does not contain'} ${b}; they ${overlaps ? '' : 'do not '}overlap`, () => {
      assert.equal(cidrContains(a, b), contains);
      assert.equal(cidrOverlaps(a, b), overlaps);
      assert.equal(cidrOverlaps(b, a), overlaps);
    });
  }
});

// ---- properties ----

/** An address as bytes, its text in a non-canonical spelling, and a prefix length. */
interface Generated {
  bytes: number[];
  text: string;
  len: number;
}

const v4: fc.Arbitrary<Generated> = fc
  .tuple(fc.array(fc.nat(255), { minLength: 4, maxLength: 4 }), fc.nat(32))
  .map(([bytes, len]) => ({ bytes, text: `${bytes.join('.')}/${len}`, len }));

/** Uncompressed IPv6 with leading zeros, mixed case; sometimes IPv4-mapped. */
const v6: fc.Arbitrary<Generated> = fc
  .tuple(fc.array(fc.nat(255), { minLength: 16, maxLength: 16 }), fc.nat(128), fc.boolean(), fc.boolean())
  .map(([random, len, upper, mapped]) => {
    const bytes = mapped ? [...new Array<number>(10).fill(0), 0xff, 0xff, ...random.slice(12)] : random;
    const hex = Buffer.from(bytes).toString('hex').match(/..../g)!.join(':');
    return { bytes, text: `${upper ? hex.toUpperCase() : hex}/${len}`, len };
  });

/** Addresses drawn from a few nearby networks, so that containment and overlap actually happen. */
const near: fc.Arbitrary<Generated> = fc.oneof(
  fc.tuple(fc.constantFrom(10, 11), fc.nat(3), fc.nat(255), fc.nat(32)).map(([a, b, c, len]) => {
    const bytes = [a, b, c, 0];
    return { bytes, text: `${bytes.join('.')}/${len}`, len };
  }),
  fc.tuple(fc.constantFrom(0xfd00, 0xfd01), fc.nat(3), fc.nat(128)).map(([g0, g1, len]) => {
    const bytes = [g0 >> 8, g0 & 0xff, 0, g1, ...new Array<number>(12).fill(0)];
    return { bytes, text: `${g0.toString(16)}:${g1}::/${len}`, len };
  }),
);

function toBigInt(bytes: number[]): bigint {
  return bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

/** Independent oracle: do the first `len` bits of two same-family addresses agree? */
function samePrefix(a: Generated, b: Generated, len: number): boolean {
  if (a.bytes.length !== b.bytes.length) return false;
  const shift = BigInt(a.bytes.length * 8 - len);
  return toBigInt(a.bytes) >> shift === toBigInt(b.bytes) >> shift;
}

/** Independent canonical form: mask with bigints, print IPv6 through WHATWG URL (RFC 5952 compression). */
function oracleCanonical(g: Generated): string {
  const bits = g.bytes.length * 8;
  const mask = ((1n << BigInt(g.len)) - 1n) << BigInt(bits - g.len);
  const masked = toBigInt(g.bytes) & mask;
  const out = Buffer.from(masked.toString(16).padStart(bits / 4, '0'), 'hex');
  if (bits === 32) return `${[...out].join('.')}/${g.len}`;
  if (out.subarray(0, 12).equals(Buffer.from('00000000000000000000ffff', 'hex'))) {
    return `::ffff:${[...out.subarray(12)].join('.')}/${g.len}`; // netip's form, not URL's ::ffff:102:304
  }
  const full = out.toString('hex').match(/..../g)!.join(':');
  return `${new URL(`http://[${full}]/`).hostname.slice(1, -1)}/${g.len}`;
}

describe('address properties', () => {
  test('canonicalCidr masks and compresses as an independent implementation does', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6), (g) => {
        assert.equal(canonicalCidr(g.text), oracleCanonical(g));
      }),
    );
  });

  test('canonicalCidr is idempotent', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6, near), (g) => {
        const once = canonicalCidr(g.text);
        assert.equal(canonicalCidr(once), once);
      }),
    );
  });

  test('cidrContains agrees with a bitwise oracle, and implies cidrOverlaps', () => {
    fc.assert(
      fc.property(fc.oneof(near, v4, v6), near, (a, b) => {
        const contains = cidrContains(a.text, b.text);
        assert.equal(contains, b.len >= a.len && samePrefix(a, b, a.len));
        if (contains) assert.ok(cidrOverlaps(a.text, b.text));
      }),
    );
  });

  test('cidrOverlaps is symmetric and agrees with a bitwise oracle', () => {
    fc.assert(
      fc.property(near, fc.oneof(near, v4, v6), (a, b) => {
        const overlaps = cidrOverlaps(a.text, b.text);
        assert.equal(overlaps, cidrOverlaps(b.text, a.text));
        assert.equal(overlaps, samePrefix(a, b, Math.min(a.len, b.len)));
      }),
    );
  });

  test('canonicalEndpoint is idempotent and keeps the port', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6), fc.nat(65535), (g, port) => {
        const host = g.text.slice(0, g.text.indexOf('/'));
        const endpoint = canonicalEndpoint(g.bytes.length === 4 ? `${host}:${port}` : `[${host}]:${port}`);
        assert.equal(canonicalEndpoint(endpoint), endpoint);
        assert.ok(endpoint.endsWith(`:${port}`));
      }),
    );
  });
});
