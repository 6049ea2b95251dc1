/**
 * The aks-mesh command as an operator runs it: keygen/pubkey against `wg pubkey`, and inspect
 * against `wg show <if> dump` on a device that `wg` itself configured.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { startTunnel, stopTunnel, waitForPing } from '../e2e/tunnel.ts';
import type { TunnelNode } from '../e2e/tunnel.ts';
import { DEFAULT_MAX_REPLY_BYTES } from '../native/uapi/client.ts';
import { generatePresharedKey, generatePrivateKey, keyToHex } from '../native/index.ts';
import { KeyIndex } from '../scripts/scan-secrets.ts';
import type { DeviceJson } from './format.ts';

/** Every piece of these keys (base64 or hex, raw or clamped) found in `text`, by name. */
function keysIn(text: string, keys: Record<string, string>): string[] {
  return new KeyIndex(Object.entries(keys).map(([source, key]) => ({ key, source }))).find(text).map((h) => h.source);
}

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

  test('pubkey never quotes what it was given: a key with a comment, 57 hex digits', async () => {
    const key = wg(['genkey']).trim();
    for (const input of [`${key} # node-a\n`, `${keyToHex(key).slice(0, 57)}\n`, `${keyToHex(key)}\n`]) {
      const r = await cli(['pubkey'], input);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^aks-mesh: stdin: a value of \d+ characters \(not shown: it may be a secret\) is not a WireGuard key/);
      assert.deepEqual(keysIn(r.stderr, { key }), []);
    }
  });

  test('keygen --out writes a 0600 file atomically, prints the public key, and never overwrites', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-keygen-'));
    try {
      const path = join(dir, 'node', 'private.key');
      const r = await cli(['keygen', '--out', path]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(r.stdout, wg(['pubkey'], readFileSync(path, 'utf8')), 'stdout is the public key of the file\'s key');
      assert.deepEqual(keysIn(r.stdout + r.stderr, { key: readFileSync(path, 'utf8').trim() }), []);
      const again = await cli(['keygen', '--out', path]);
      assert.equal(again.code, 1);
      assert.equal(again.stderr, `aks-mesh: private key file ${path} already exists; refusing to overwrite it (a node's key is its identity in the mesh)\n`);
      assert.deepEqual(readdirSync(join(dir, 'node')), ['private.key']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

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
  const presharedKeys: Record<string, string> = {};

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
      if (i % 7 === 0) {
        presharedKeys[`preshared key ${i}`] = wg(['genpsk']).trim();
        conf.push(`PresharedKey = ${presharedKeys[`preshared key ${i}`]}`);
      }
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

  test('neither text nor --json shows the private key or any of the 18 preshared keys without --show-keys; with it, both do', async () => {
    const secrets = { 'private key': a.privateKey, ...presharedKeys };
    assert.equal(Object.keys(presharedKeys).length, 18);
    for (const args of [['-i', a.interfaceName], ['-i', a.interfaceName, '--json'], ['-i', a.interfaceName, '--no-show-keys']]) {
      const r = await cli(['inspect', ...args]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(keysIn(r.stdout + r.stderr, secrets), [], args.join(' '));
      assert.ok(r.stdout.includes(a.publicKey), 'the public key is shown');
    }
    // The same search finds every key once they are asked for: the check above can fail.
    const shown = await cli(['inspect', '-i', a.interfaceName, '--json', '--show-keys']);
    assert.deepEqual(new Set(keysIn(shown.stdout, secrets)), new Set(Object.keys(secrets)));
  });

  test('a missing device is a one-line error naming the socket', async () => {
    const r = await cli(['inspect', '-i', box.ifName('wg', 'z')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^aks-mesh: no wireguard-go socket at \/var\/run\/wireguard\/wg\w+z\.sock: .*\n$/);
  });
});

describe('aks-mesh inspect errors carry no key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-inspect-err-'));
  const servers: Server[] = [];
  after(() => {
    for (const server of servers) server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(name: string, onConnection: (socket: Socket) => void): Promise<string> {
    const path = join(dir, name);
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      onConnection(socket);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    return path;
  }

  test('an answer with a malformed private_key line: one line naming the line, without its value', async () => {
    // Fake: wireguard-go never sends a malformed key; something else on its socket might.
    const privateKey = generatePrivateKey();
    const path = await serve('bad.sock', (s) => s.end(`private_key=${keyToHex(privateKey).slice(0, 63)}\nlisten_port=51820\nerrno=0\n\n`));
    for (const json of [[], ['--json']]) {
      const r = await cli(['inspect', '--socket', path, ...json]);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `aks-mesh: UAPI get answer, line 1 "private_key=(redacted) (63 characters)": expected a 64-digit hex key\n`);
      assert.deepEqual(keysIn(r.stderr, { privateKey }), []);
    }
  });

  test('a malformed preshared key in an answer: the same', async () => {
    // Fake, as above.
    const presharedKey = generatePresharedKey();
    const peer = keyToHex(generatePresharedKey());
    const path = await serve('badpsk.sock', (s) => s.end(`public_key=${peer}\npreshared_key=${keyToHex(presharedKey)}z\nerrno=0\n\n`));
    const r = await cli(['inspect', '--socket', path, '--show-keys']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^aks-mesh: UAPI get answer, line 2 "preshared_key=\(redacted\) \(65 characters\)": expected a 64-digit hex key\n$/);
    assert.deepEqual(keysIn(r.stderr, { presharedKey }), []);
  });

  test('a socket that floods: one line naming the cap, instead of eating memory', async () => {
    // Fake: wireguard-go always ends its answer; it cannot be made to flood.
    const path = await serve('flood.sock', (s) => {
      const chunk = Buffer.alloc(256 * 1024, 'x');
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
      };
      s.on('drain', pump);
      pump();
    });
    const r = await cli(['inspect', '--socket', path, '--timeout', '60000']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^aks-mesh: UAPI get on ${path}: the answer passed the cap of ${DEFAULT_MAX_REPLY_BYTES} bytes \\(maxReplyBytes\\) without ending; .*\n$`));
  });
});
