/**
 * The aks-mesh command as an operator runs it: keygen/pubkey against `wg pubkey`, and inspect
 * against `wg show <if> dump` on a device that `wg` itself configured.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../e2e/sandbox.ts';
import { startTunnel, stopTunnel, waitForPing } from '../e2e/tunnel.ts';
import type { TunnelNode } from '../e2e/tunnel.ts';
import type { DeviceJson } from './format.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(input ?? '');
  });
}

function wg(args: string[], input?: string): string {
  return execFileSync('wg', args, { encoding: 'utf8', input });
}

/** Run `fn` over items, `width` at a time. */
async function pool<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

describe('aks-mesh keygen and pubkey', () => {
  test('keygen | pubkey agrees with wg pubkey over 100 keys made by aks-mesh keygen', async () => {
    const keys = await pool(Array.from({ length: 100 }, (_, i) => i), 4, async () => (await cli(['keygen'])).stdout);
    assert.equal(new Set(keys).size, 100, 'keygen repeated a key');
    const ours = await pool(keys, 4, (k) => cli(['pubkey'], k));
    keys.forEach((key, i) => {
      assert.match(key, /^[A-Za-z0-9+/]{43}=\n$/);
      assert.equal(ours[i].code, 0, ours[i].stderr);
      assert.equal(ours[i].stdout, wg(['pubkey'], key), `key ${key.trim()}`);
    });
  });

  test('pubkey agrees with wg pubkey over 100 keys made by wg genkey', async () => {
    const keys = Array.from({ length: 100 }, () => wg(['genkey']));
    const ours = await pool(keys, 4, (k) => cli(['pubkey'], k));
    keys.forEach((key, i) => assert.equal(ours[i].stdout, wg(['pubkey'], key), `key ${key.trim()}`));
  });

  const malformed: Array<[string, string]> = [
    ['empty input', ''],
    ['a word', 'hello\n'],
    ['43 characters', `${'A'.repeat(43)}\n`],
    ['45 characters', `${'A'.repeat(44)}=\n`],
    ['hex instead of base64', `${'ab'.repeat(32)}\n`],
    ['a character outside base64', `${'A'.repeat(42)}*=\n`],
    ['non-canonical last character', `${'A'.repeat(42)}B=\n`],
    ['two keys', `${wg(['genkey']).trim()}\n${wg(['genkey'])}`],
  ];
  for (const [name, input] of malformed) {
    test(`pubkey refuses ${name} with one line and exit 1, as wg does`, async () => {
      const r = await cli(['pubkey'], input);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^aks-mesh: stdin: .* is not a WireGuard key .*\n$/);
      assert.equal(r.stderr.split('\n').length, 2, 'more than one line of error');
      assert.throws(() => execFileSync('wg', ['pubkey'], { input, stdio: ['pipe', 'pipe', 'ignore'] }));
    });
  }

  test('an unknown command or flag is refused with usage help and exit 2', async () => {
    const r = await cli(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /aks-mesh --help/);
  });
});

const skip = networkTestsUnavailable();

describe('aks-mesh inspect', { skip: skip ?? false }, () => {
  const box = new Sandbox();
  let a: TunnelNode;
  let b: TunnelNode;
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-inspect-'));

  before(async () => {
    ({ a, b } = await startTunnel(box));
    // wg (an independent writer) adds 120 more peers: IPv4 and IPv6 endpoints, roaming peers without
    // one, keepalives, preshared keys, several allowed IPs. Their endpoints have no route in a's
    // namespace, so nothing is ever sent to them.
    const conf: string[] = [];
    for (let i = 0; i < 120; i++) {
      conf.push('[Peer]', `PublicKey = ${wg(['pubkey'], wg(['genkey'])).trim()}`);
      conf.push(`AllowedIPs = 10.${100 + (i >> 8)}.${i & 255}.0/24${i % 3 === 0 ? `, fd00:${i.toString(16)}::/64` : ''}`);
      if (i % 4 === 0) conf.push(`Endpoint = 198.19.${i}.1:${51820 + i}`);
      if (i % 4 === 1) conf.push(`Endpoint = [fd99::${i.toString(16)}]:51820`);
      if (i % 5 === 0) conf.push('PersistentKeepalive = 25');
      if (i % 7 === 0) conf.push(`PresharedKey = ${wg(['genpsk']).trim()}`);
    }
    const file = join(dir, 'peers.conf');
    writeFileSync(file, `${conf.join('\n')}\n`, { mode: 0o600 });
    wg(['addconf', a.interfaceName, file]);
    // Traffic to the real peer gives it a handshake time and byte counters.
    assert.ok(await waitForPing(box, a.ns, b.meshIp));
  });
  after(async () => {
    if (a && b) await stopTunnel({ a, b });
    await box.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  function dumpAsJson(dump: string): Omit<DeviceJson, 'interface'> {
    const [iface, ...peers] = dump.trim().split('\n').map((l) => l.split('\t'));
    const none = (v: string): string | null => (v === '(none)' ? null : v);
    return {
      privateKey: none(iface[0]),
      publicKey: none(iface[1]),
      listenPort: Number(iface[2]),
      fwmark: iface[3] === 'off' ? 0 : Number(iface[3]),
      peers: peers
        .map((f) => ({
          publicKey: f[0],
          presharedKey: none(f[1]),
          endpoint: none(f[2]),
          allowedIPs: f[3] === '(none)' ? [] : f[3].split(',').sort(),
          latestHandshake: f[4] === '0' ? null : Number(f[4]),
          rxBytes: f[5],
          txBytes: f[6],
          persistentKeepalive: f[7] === 'off' ? 0 : Number(f[7]),
        }))
        .sort((x, y) => x.publicKey.localeCompare(y.publicKey)),
    };
  }

  test('--json reports exactly what wg show dump reports, over 121 peers', async () => {
    let last = '';
    for (let attempt = 0; attempt < 5; attempt++) {
      // Counters move while packets flow: compare a reading taken between two identical dumps.
      const before = wg(['show', a.interfaceName, 'dump']);
      const r = await cli(['inspect', '--interface', a.interfaceName, '--json', '--show-keys']);
      const afterDump = wg(['show', a.interfaceName, 'dump']);
      assert.equal(r.code, 0, r.stderr);
      // wireguard-go lists peers in random order: compare the dumps line by line, order aside.
      const sorted = (dump: string): string => dump.trim().split('\n').sort().join('\n');
      if (sorted(before) !== sorted(afterDump)) {
        last = 'device changed during the reading';
        continue;
      }
      const ours = JSON.parse(r.stdout) as DeviceJson;
      assert.equal(ours.interface, a.interfaceName);
      const { interface: _name, ...rest } = ours;
      rest.peers = rest.peers.map((p) => ({ ...p, allowedIPs: [...p.allowedIPs].sort() })).sort((x, y) => x.publicKey.localeCompare(y.publicKey));
      const expected = dumpAsJson(before);
      assert.equal(expected.peers.length, 121);
      assert.deepEqual(rest, expected);
      const real = ours.peers.find((p) => p.publicKey === b.publicKey);
      assert.ok(real?.latestHandshake && BigInt(real.rxBytes) > 0n, 'the real peer should show a handshake and traffic');
      return;
    }
    assert.fail(last);
  });

  test('text output reads like wg show: handshake age, transfer, hidden keys', async () => {
    const r = await cli(['inspect', '-i', a.interfaceName]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^interface: ${a.interfaceName}\n  public key: ${a.publicKey.replace(/[+/]/g, '\\$&')}\n  private key: \\(hidden\\)\n  listening port: 51820\n`));
    const section = r.stdout.split('\n\n').find((s) => s.startsWith(`peer: ${b.publicKey}`)) ?? '';
    assert.match(section, /latest handshake: (Now|\d+ seconds? ago)/);
    assert.match(section, /transfer: [\d.]+ (B|KiB) received, [\d.]+ (B|KiB) sent/);
    assert.match(r.stdout, /preshared key: \(hidden\)/);
    assert.match(r.stdout, /persistent keepalive: every 25 seconds/);
    assert.equal(r.stdout.split('\npeer: ').length - 1, 121);
  });

  test('a missing device is a one-line error naming the socket', async () => {
    const r = await cli(['inspect', '-i', box.ifName('wg', 'z')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^aks-mesh: no wireguard-go socket at \/var\/run\/wireguard\/wg\w+z\.sock: .*\n$/);
  });
});
