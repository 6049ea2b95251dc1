/**
 * `aks-mesh inspect` output against what `wg show` prints. Expected strings come from wg itself
 * (a captured `wg show` of a wireguard-go device) or from wg's show.c formulas: pretty_time() for
 * durations, and C's printf("%.2f") of a double for byte counts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DeviceState } from '../native/index.ts';
import { formatText, humanBytes, humanDuration, humanRate, sortPeers, toJson } from './format.ts';
import { blankPeerState } from '../native/index.ts';
import { KeyIndex } from '../scripts/scan-secrets.ts';

const peer = blankPeerState;

const PEER_A = 'ln1Gl4iJD0uJ8qtXV5hE0X0EcmPIKwskW6bZKjHVgmg=';
const PEER_B = 'Zh6HWMsY9yMPxnFTZX5UgaV8G86QgHcqZrHdqiCAt0A=';
const PEER_C = '1OB6MAVVqDoDTIAR/kG33sXSz28BZudCVGmoxsjBohQ=';
const PSK_C = '43mDQJ/iVsOSXwlTfxxnhNd09HFp90i9hdBIxAY7QUU=';
const PRIVATE = 'cAdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LGo=';
const PUBLIC = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';

/** The device `wg show wgcprobe1 dump` reported on wireguard-go v0.0.20220316 (no handshakes yet). */
const CAPTURED: DeviceState = {
  privateKey: PRIVATE,
  publicKey: PUBLIC,
  listenPort: 51820,
  fwmark: 0x1234,
  peers: [
    peer(PEER_A, { allowedIPs: ['10.1.0.0/16'] }),
    peer(PEER_B, { endpoint: '1.2.3.4:51820' }),
    peer(PEER_C, {
      presharedKey: PSK_C,
      endpoint: '[fd00::1]:51820',
      allowedIPs: ['10.0.0.0/24', 'fd00::/64', '::ffff:1.2.3.4/128'],
      persistentKeepalive: 25,
    }),
  ],
};

/** `wg show wgcprobe1` for that device, verbatim. */
const WG_SHOW = `interface: wgcprobe1
  public key: hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=
  private key: (hidden)
  listening port: 51820
  fwmark: 0x1234

peer: ln1Gl4iJD0uJ8qtXV5hE0X0EcmPIKwskW6bZKjHVgmg=
  allowed ips: 10.1.0.0/16

peer: Zh6HWMsY9yMPxnFTZX5UgaV8G86QgHcqZrHdqiCAt0A=
  endpoint: 1.2.3.4:51820
  allowed ips: (none)

peer: 1OB6MAVVqDoDTIAR/kG33sXSz28BZudCVGmoxsjBohQ=
  preshared key: (hidden)
  endpoint: [fd00::1]:51820
  allowed ips: 10.0.0.0/24, fd00::/64, ::ffff:1.2.3.4/128
  persistent keepalive: every 25 seconds
`;

describe('humanDuration (wg pretty_time)', () => {
  const cases: Array<[number, string]> = [
    // Printed by wg show as "persistent keepalive: every ..." for these intervals:
    [1, '1 second'],
    [25, '25 seconds'],
    [60, '1 minute'],
    [63, '1 minute, 3 seconds'],
    [3600, '1 hour'],
    [3661, '1 hour, 1 minute, 1 second'],
    [65535, '18 hours, 12 minutes, 15 seconds'],
    // From pretty_time's arithmetic (365-day years, no months):
    [2 * 86400 + 5, '2 days, 5 seconds'],
    [86400 + 120, '1 day, 2 minutes'],
    [365 * 86400, '1 year'],
    [2 * 365 * 86400 + 86400 + 3600 + 60 + 1, '2 years, 1 day, 1 hour, 1 minute, 1 second'],
  ];
  for (const [seconds, expected] of cases) {
    test(`${seconds} s is "${expected}"`, () => assert.equal(humanDuration(seconds), expected));
  }

  test('zero is "Now", and fractions of a second are dropped', () => {
    assert.equal(humanDuration(0), 'Now');
    assert.equal(humanDuration(63.9), '1 minute, 3 seconds');
  });
});

describe('humanBytes (wg bytes())', () => {
  // Expected: wg's thresholds with C printf("%.2f", (double)b / unit).
  const cases: Array<[bigint, string]> = [
    [0n, '0 B'],
    [1n, '1 B'],
    [1023n, '1023 B'],
    [1024n, '1.00 KiB'],
    [1029n, '1.00 KiB'],
    [1280n, '1.25 KiB'],
    [1536n, '1.50 KiB'],
    [1048575n, '1024.00 KiB'], // still KiB: wg picks the unit by the exact count, then rounds
    [1048576n, '1.00 MiB'],
    [1572864n, '1.50 MiB'],
    [1536000n, '1.46 MiB'],
    [3640655872n, '3.39 GiB'],
    [2n ** 40n, '1.00 TiB'],
    [2n ** 53n + 1n, '8192.00 TiB'],
    [2n ** 64n - 1n, '16777216.00 TiB'], // TiB is the largest unit
  ];
  for (const [b, expected] of cases) {
    test(`${b} bytes is "${expected}"`, () => assert.equal(humanBytes(b), expected));
  }

  test(
    'exact halves round to even, as C printf does',
    () => {
      assert.equal(humanBytes(1152n), '1.12 KiB'); // 1.125 KiB
      assert.equal(humanBytes(1664n), '1.62 KiB'); // 1.625 KiB
      assert.equal(humanBytes(1408n), '1.38 KiB'); // 1.375 KiB: up to the even digit
    },
  );
});

describe('sortPeers', () => {
  test('most recent handshake first, never-seen peers last, ties by key', () => {
    const at = (sec: bigint) => ({ sec, nsec: 0 });
    const peers = [
      peer('D', { lastHandshake: null }),
      peer('A', { lastHandshake: at(100n) }),
      peer('C', { lastHandshake: null }),
      peer('E', { lastHandshake: at(300n) }),
      peer('B', { lastHandshake: at(200n) }),
      peer('F', { lastHandshake: at(200n) }),
    ];
    assert.deepEqual(
      sortPeers(peers).map((p) => p.publicKey),
      ['E', 'B', 'F', 'A', 'C', 'D'],
    );
    assert.deepEqual(
      peers.map((p) => p.publicKey),
      ['D', 'A', 'C', 'E', 'B', 'F'],
      'the input is not reordered',
    );
  });
});

describe('formatText', () => {
  test('prints what wg show prints for the same device (peers with no handshake in key order)', () => {
    const ours = formatText(CAPTURED, { interfaceName: 'wgcprobe1', now: 1_700_000_000 });
    const [ourHeader, ...ourPeers] = ours.split('\n\n');
    const [wgHeader, ...wgPeers] = WG_SHOW.split('\n\n');
    assert.equal(ourHeader, wgHeader);
    // wg leaves peers that never shook hands in the device's order; we order them by key.
    assert.deepEqual(
      ourPeers.map((b) => b.replace(/\n$/, '')),
      wgPeers.map((b) => b.replace(/\n$/, '')).sort(),
    );
    assert.ok(ours.endsWith('\n') && !ours.endsWith('\n\n'));
  });

  test('shows private and preshared keys only with showKeys', () => {
    const hidden = formatText(CAPTURED, { interfaceName: 'wg0', now: 0 });
    assert.ok(!hidden.includes(PRIVATE) && !hidden.includes(PSK_C));
    const shown = formatText(CAPTURED, { interfaceName: 'wg0', now: 0, showKeys: true });
    assert.ok(shown.includes(`  private key: ${PRIVATE}\n`));
    assert.ok(shown.includes(`  preshared key: ${PSK_C}\n`));
    assert.ok(!shown.includes('(hidden)'));
  });

  test('a peer with a handshake and traffic gets the wg lines, in wg order', () => {
    const device: DeviceState = {
      privateKey: null,
      publicKey: null,
      listenPort: 0,
      fwmark: 0,
      peers: [
        peer(PEER_A, {
          endpoint: '10.0.0.4:51820',
          allowedIPs: ['10.244.1.0/24'],
          lastHandshake: { sec: 1_700_000_000n, nsec: 5 },
          rxBytes: 1536n,
          txBytes: 2n * 1024n * 1024n,
          persistentKeepalive: 25,
        }),
        peer(PEER_B, { lastHandshake: { sec: 1_700_000_063n, nsec: 0 }, txBytes: 1n }),
      ],
    };
    assert.equal(
      formatText(device, { interfaceName: 'wg0', now: 1_700_000_063 }),
      [
        'interface: wg0',
        '',
        `peer: ${PEER_B}`,
        '  allowed ips: (none)',
        '  latest handshake: Now',
        '  transfer: 0 B received, 1 B sent',
        '',
        `peer: ${PEER_A}`,
        '  endpoint: 10.0.0.4:51820',
        '  allowed ips: 10.244.1.0/24',
        '  latest handshake: 1 minute, 3 seconds ago',
        '  transfer: 1.50 KiB received, 2.00 MiB sent',
        '  persistent keepalive: every 25 seconds',
        '',
      ].join('\n'),
    );
  });
});

describe('toJson', () => {
  test('64-bit counters are exact decimal strings, handshakes are unix seconds or null', () => {
    const device: DeviceState = {
      ...CAPTURED,
      peers: [
        peer(PEER_A, {
          lastHandshake: { sec: 1_700_000_000n, nsec: 1 },
          rxBytes: 2n ** 64n - 1n,
          txBytes: 2n ** 53n + 1n,
        }),
        peer(PEER_B),
      ],
    };
    const json = toJson(device, { interfaceName: 'wg0' });
    const reparsed = JSON.parse(JSON.stringify(json)) as typeof json;
    assert.equal(reparsed.peers[0].rxBytes, '18446744073709551615');
    assert.equal(reparsed.peers[0].txBytes, '9007199254740993');
    assert.equal(reparsed.peers[0].latestHandshake, 1_700_000_000);
    assert.equal(reparsed.peers[1].latestHandshake, null);
    assert.equal(reparsed.peers[1].rxBytes, '0');
  });

  test('keys are "(hidden)" unless showKeys; a missing key stays null', () => {
    const hidden = toJson(CAPTURED, { interfaceName: 'wg0' });
    assert.equal(hidden.interface, 'wg0');
    assert.equal(hidden.publicKey, PUBLIC);
    assert.equal(hidden.privateKey, '(hidden)');
    const byKey = new Map(hidden.peers.map((p) => [p.publicKey, p]));
    assert.equal(byKey.get(PEER_C)?.presharedKey, '(hidden)');
    assert.equal(byKey.get(PEER_A)?.presharedKey, null);

    const shown = toJson(CAPTURED, { interfaceName: 'wg0', showKeys: true });
    assert.equal(shown.privateKey, PRIVATE);
    assert.equal(shown.peers.find((p) => p.publicKey === PEER_C)?.presharedKey, PSK_C);

    const keyless = toJson({ ...CAPTURED, privateKey: null, publicKey: null }, { interfaceName: 'wg0', showKeys: true });
    assert.equal(keyless.privateKey, null);
    assert.equal(keyless.publicKey, null);
  });

  test('peers come in sortPeers order with their config', () => {
    const json = toJson(CAPTURED, { interfaceName: 'wg0' });
    assert.deepEqual(
      json.peers.map((p) => p.publicKey),
      sortPeers(CAPTURED.peers).map((p) => p.publicKey),
    );
    assert.deepEqual(json.peers.find((p) => p.publicKey === PEER_C), {
      publicKey: PEER_C,
      presharedKey: '(hidden)',
      endpoint: '[fd00::1]:51820',
      allowedIPs: ['10.0.0.0/24', 'fd00::/64', '::ffff:1.2.3.4/128'],
      latestHandshake: null,
      rxBytes: '0',
      txBytes: '0',
      persistentKeepalive: 25,
    });
    assert.equal(json.listenPort, 51820);
    assert.equal(json.fwmark, 0x1234);
  });
});

describe('no key without showKeys', () => {
  // Any piece of the private key (base64 or hex, raw or clamped) or of the preshared key.
  const secrets = new KeyIndex([
    { key: PRIVATE, source: 'the private key' },
    { key: PSK_C, source: 'the preshared key' },
  ]);
  for (const showKeys of [undefined, false, 'yes' as unknown as boolean]) {
    test(`showKeys ${JSON.stringify(showKeys)}: text and JSON hold neither key in any form, but every public key`, () => {
      const text = formatText(CAPTURED, { interfaceName: 'wg0', now: 0, showKeys });
      const json = JSON.stringify(toJson(CAPTURED, { interfaceName: 'wg0', showKeys }));
      for (const out of [text, json]) {
        assert.deepEqual(secrets.find(out), [], out);
        for (const pub of [PUBLIC, PEER_A, PEER_B, PEER_C]) assert.ok(out.includes(pub), pub);
      }
    });
  }

  test('with showKeys, the same check finds both keys (so the check above can fail)', () => {
    const found = secrets.find(formatText(CAPTURED, { interfaceName: 'wg0', now: 0, showKeys: true }));
    assert.deepEqual(found.map((f) => f.source).sort(), ['the preshared key', 'the private key']);
  });
});

describe('rates (inspect --watch)', () => {
  test('a peer with a rate gets a "rate:" line after its transfer; peers without one and plain inspect are unchanged', () => {
    const device: DeviceState = {
      ...CAPTURED,
      peers: [peer(PEER_A, { allowedIPs: ['10.1.0.0/16'], rxBytes: 2048n, txBytes: 100n }), peer(PEER_B, { endpoint: '1.2.3.4:51820' })],
    };
    const plain = formatText(device, { interfaceName: 'wgcprobe1', now: 0 });
    const withRates = formatText(device, { interfaceName: 'wgcprobe1', now: 0, rates: new Map([[PEER_A, { rx: 1536, tx: 12.4 }]]) });
    assert.equal(
      withRates,
      plain.replace('  transfer: 2.00 KiB received, 100 B sent\n', '  transfer: 2.00 KiB received, 100 B sent\n  rate: 1.50 KiB/s received, 12 B/s sent\n'),
    );
    assert.notEqual(withRates, plain);
  });

  test('humanRate uses wg\'s byte units per second and never shows a negative rate', () => {
    assert.equal(humanRate(0), '0 B/s');
    assert.equal(humanRate(1023.4), '1023 B/s');
    assert.equal(humanRate(1024 * 1024 * 3.5), '3.50 MiB/s');
    assert.equal(humanRate(-5), '0 B/s');
  });
});
