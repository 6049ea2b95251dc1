/**
 * `aks-mesh inspect --watch` against a plain wireguard-go that only `wg` (wireguard-tools)
 * configured, in two network namespaces this test creates: nothing of ours writes to the devices,
 * so the watch is shown to work on any wireguard-go, not only the agent's.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { waitForPing } from '../e2e/tunnel.ts';
import { DEFAULT_SOCKET_DIR, findWireguardGo, socketPathFor } from '../native/index.ts';
import type { WatchJson } from './inspect-watch.ts';
import type { DeviceJson } from './format.ts';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { createPeer, customApi, installCrds, waitFor } from '../sandbox/kube.ts';
import { API_VERSION, GROUP, VERSION } from '../mesh/index.ts';

const MAIN = join(import.meta.dirname, 'main.ts');
const skip = networkTestsUnavailable(['wireguard-go', 'wg']);

function wg(args: string[], input?: string): string {
  return execFileSync('wg', args, { encoding: 'utf8', input });
}

/** A running `aks-mesh inspect --watch`, its stdout collected as it arrives. */
class Watch {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [MAIN, 'inspect', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  lines(): WatchJson[] {
    return this.stdout
      .split('\n')
      .filter((l) => l.endsWith('}'))
      .map((l) => JSON.parse(l) as WatchJson);
  }

  /** Waits (generously: the machine is busy) until a JSON line satisfies `ok`; returns it. */
  async until(ok: (line: WatchJson) => boolean, what: string, timeoutMs = 30_000): Promise<WatchJson> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines().find(ok);
      if (found) return found;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        assert.fail(`no watch line ${what} (exit ${this.child.exitCode}); stderr: ${this.stderr}; last: ${this.stdout.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

describe('aks-mesh inspect --watch on a wireguard-go configured only by wg', { skip: skip ?? false }, () => {
  const box = new Sandbox();
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-inspect-watch-'));
  const watches: Watch[] = [];
  const nodes: Array<{ ns: string; ifName: string; ip: string; meshIp: string; publicKey: string; wg?: ChildProcess }> = [];

  before(async () => {
    const nsA = await box.addNamespace('a');
    const nsB = await box.addNamespace('b');
    // 198.18.0.0/15 (RFC 2544 benchmarking): only ever inside our own namespaces.
    await box.veth(nsA, '198.18.7.1/24', nsB, '198.18.7.2/24');
    for (const [name, ns, n] of [
      ['a', nsA, 1],
      ['b', nsB, 2],
    ] as const) {
      const ifName = box.ifName('wg', name);
      const privateKey = wg(['genkey']).trim();
      const keyFile = join(dir, `${name}.key`);
      writeFileSync(keyFile, `${privateKey}\n`, { mode: 0o600 });
      const child = box.spawn(ns, findWireguardGo(), ['-f', ifName], {
        env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' },
      });
      nodes.push({ ns, ifName, ip: `198.18.7.${n}`, meshIp: `100.97.7.${n}`, publicKey: wg(['pubkey'], privateKey).trim(), wg: child });
      const socket = socketPathFor(ifName, DEFAULT_SOCKET_DIR);
      for (let i = 0; !existsSync(socket); i++) {
        assert.ok(i < 300 && child.exitCode === null, `wireguard-go made no socket at ${socket}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      wg(['set', ifName, 'private-key', keyFile, 'listen-port', '51820']);
    }
    for (const [self, other] of [
      [nodes[0], nodes[1]],
      [nodes[1], nodes[0]],
    ]) {
      wg(['set', self.ifName, 'peer', other.publicKey, 'endpoint', `${other.ip}:51820`, 'allowed-ips', `${other.meshIp}/32`]);
      await box.ip(self.ns, 'addr', 'add', `${self.meshIp}/24`, 'dev', self.ifName);
      await box.ip(self.ns, 'link', 'set', self.ifName, 'up');
    }
  });

  after(async () => {
    await Promise.all(watches.map((w) => w.stop()));
    await box.cleanup();
    // wireguard-go removes its socket on SIGTERM; one killed harder leaves it: remove ours by name.
    for (const n of nodes) rmSync(socketPathFor(n.ifName, DEFAULT_SOCKET_DIR), { force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  test('not on a terminal: an idle device prints its wg show block once, not once per read; SIGTERM exits 0', async () => {
    const [a, b] = nodes;
    // No traffic yet and no keepalive: the device does not change, however many reads.
    const w = new Watch(['--socket', socketPathFor(a.ifName, DEFAULT_SOCKET_DIR), '--watch', '--interval', '100']);
    watches.push(w);
    const deadline = Date.now() + 30_000;
    while (!w.stdout.includes('allowed ips:') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // Twenty more reads' worth of time (at least; the machine may be slower).
    await new Promise((r) => setTimeout(r, 2000));
    const { code, signal } = await w.stop();
    assert.equal(signal, null, w.stderr);
    assert.equal(code, 0, w.stderr);
    assert.equal(w.stdout.split('\ninterface: ').length - 1, 1, `expected one block:\n${w.stdout}`);
    assert.match(
      w.stdout,
      new RegExp(`\ninterface: ${a.ifName}\n  public key: ${a.publicKey.replace(/[+/]/g, '\\$&')}\n  private key: \\(hidden\\)\n  listening port: 51820\n`),
    );
    assert.ok(w.stdout.includes(`\npeer: ${b.publicKey}\n  endpoint: ${b.ip}:51820\n  allowed ips: ${b.meshIp}/32\n`), w.stdout);
    assert.ok(!w.stdout.includes('latest handshake'), 'no handshake yet');
    assert.ok(!w.stdout.includes('\x1b'), 'no terminal escapes into a pipe');
  });

  test('on a terminal: redrawn in place with the cursor hidden, Ctrl-C exits 0 and shows the cursor again', async () => {
    const [a] = nodes;
    // util-linux script(1) gives the watch a real pseudo-terminal; the ^C written to it is turned
    // into SIGINT by the terminal's line discipline, as when an operator presses Ctrl-C.
    const command = [process.execPath, MAIN, 'inspect', '--socket', socketPathFor(a.ifName, DEFAULT_SOCKET_DIR), '--watch', '--interval', '100']
      .map((x) => `'${x}'`)
      .join(' ');
    // script(1) runs the command through $SHELL -c; `exec` makes the watch the terminal's foreground
    // process itself, so the ^C reaches it alone (dash, CI's /bin/sh, would otherwise wait as the
    // foreground parent, take the SIGINT too and exit 130 whatever the watch did).
    const child = spawn('script', ['-qfec', `exec ${command}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 30_000;
      // Two redraws: the device is drawn again in place even though nothing changed.
      while (out.split('\x1b[H\x1b[2J').length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      child.stdin.write('\x03');
      const code = await exited;
      assert.equal(code, 0, out);
      assert.ok(out.includes('\x1b[?25l'), 'the cursor is hidden while watching');
      assert.ok(out.split('\x1b[H\x1b[2J').length >= 3, `redrawn in place:\n${JSON.stringify(out.slice(-500))}`);
      assert.match(out, new RegExp(`interface: ${a.ifName}\r?\n`));
      assert.ok(out.lastIndexOf('\x1b[?25h') > out.lastIndexOf('\x1b[H\x1b[2J'), 'the cursor is shown again at exit');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('a reader that goes away (inspect --watch --json | head -1) ends the watch with exit 0, not a crash', async () => {
    const [a] = nodes;
    const w = new Watch(['--socket', socketPathFor(a.ifName, DEFAULT_SOCKET_DIR), '--watch', '--json', '--interval', '100']);
    watches.push(w);
    await w.until((l) => l.peers?.length === 1, 'with the peer');
    w.child.stdout?.destroy();
    const deadline = setTimeout(() => w.child.kill('SIGKILL'), 30_000);
    const { code, signal } = await w.exited;
    clearTimeout(deadline);
    assert.equal(signal, null, w.stderr);
    assert.equal(code, 0, w.stderr);
    assert.equal(w.stderr, '');
  });

  test('--json --watch: the peer without a handshake, then after a ping a handshake and growing rx/tx with rates', async (t) => {
    const [a, b] = nodes;
    const w = new Watch(['--socket', socketPathFor(a.ifName, DEFAULT_SOCKET_DIR), '--watch', '--json', '--interval', '200']);
    watches.push(w);
    const first = await w.until((l) => l.peers?.length === 1, 'with the peer');
    assert.equal(first.interface, a.ifName);
    assert.equal(first.privateKey, '(hidden)');
    assert.equal(first.peers?.[0].publicKey, b.publicKey);
    assert.equal(first.peers?.[0].latestHandshake, null);
    assert.equal(first.peers?.[0].rxBytes, '0');

    assert.ok(await waitForPing(box, a.ns, b.meshIp), 'no ping reply through the tunnel');
    const shaken = await w.until((l) => l.peers?.[0]?.latestHandshakeMs != null, 'with a handshake');
    const hs = shaken.peers?.[0].latestHandshakeMs as number;
    // Diagnostic only (never asserted): how long after the handshake the watch reported it.
    t.diagnostic(`inspect --watch reported the handshake ${shaken.time - hs} ms after it happened (interval 200 ms)`);

    // Traffic while watching: the counters grow and the rates of the reads that saw it are non-zero.
    const rxBefore = BigInt(shaken.peers?.[0].rxBytes ?? '0');
    const text = new Watch(['--socket', socketPathFor(a.ifName, DEFAULT_SOCKET_DIR), '--watch', '--interval', '200']);
    watches.push(text);
    // Its first block before the traffic: a process start is seconds on a loaded machine, and a
    // watch that starts after the traffic has no rates to show.
    await waitFor('the text watch\'s first block', () => text.stdout.includes(`peer: ${b.publicKey}`), 30_000);
    await box.exec(a.ns, 'ping', ['-c', '10', '-i', '0.2', '-s', '1000', '-W', '2', b.meshIp]);
    const moving = await w.until(
      (l) => (l.peers?.[0]?.rxRate ?? 0) > 0 && (l.peers?.[0]?.txRate ?? 0) > 0 && BigInt(l.peers?.[0]?.rxBytes ?? '0') > rxBefore,
      'with non-zero rx and tx rates',
    );
    assert.ok(BigInt(moving.peers?.[0].txBytes ?? '0') > 0n);
    assert.equal(typeof moving.peers?.[0].handshakeAgeSeconds, 'number');
    // The text watch of the same traffic: wg show's lines plus a rate line.
    await waitFor('the text watch\'s rate line', () => /\n {2}rate: [\d.]+ (B|KiB)\/s received, [\d.]+ (B|KiB)\/s sent\n/.test(text.stdout), 30_000);
    assert.equal((await text.stop()).code, 0, text.stderr);
    const section = text.stdout.split('\n\n').filter((s) => s.startsWith(`peer: ${b.publicKey}`)).pop() ?? '';
    assert.match(section, /\n {2}latest handshake: (Now|\d+ seconds? ago)\n/, text.stdout);
    assert.match(section, /\n {2}transfer: [\d.]+ (B|KiB) received, [\d.]+ (B|KiB) sent\n/);
    assert.match(text.stdout, /\n {2}rate: [\d.]+ (B|KiB)\/s received, [\d.]+ (B|KiB)\/s sent\n/);
  });

  test('the device going away is reported on its line and watched until it returns', async () => {
    const [, b] = nodes;
    const w = new Watch(['--socket', socketPathFor(b.ifName, DEFAULT_SOCKET_DIR), '--watch', '--json', '--interval', '200']);
    watches.push(w);
    await w.until((l) => l.peers?.length === 1, 'with the peer');
    b.wg?.kill('SIGTERM');
    const gone = await w.until((l) => l.error !== undefined, 'reporting the device gone');
    assert.equal(gone.interface, b.ifName);
    assert.match(gone.error ?? '', new RegExp(b.ifName));
    assert.equal(w.child.exitCode, null, 'the watch keeps running');
    // A new wireguard-go for the same interface (unconfigured): the watch reads it again.
    const restarted = box.spawn(b.ns, findWireguardGo(), ['-f', b.ifName], {
      env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' },
    });
    b.wg = restarted;
    const back = await w.until((l) => l.time > gone.time && l.error === undefined && Array.isArray(l.peers), 'with the device back');
    assert.deepEqual(back.peers, []);
    const { code } = await w.stop();
    assert.equal(code, 0, w.stderr);
  });
});

describe('aks-mesh inspect usage errors', () => {
  for (const [args, message] of [
    [['--watch'], /say which device/],
    [['-i', 'wg0', '--watch', '--interval', '5'], /--interval 5: must be a number of milliseconds, at least 100/],
    [['-i', 'wg0', '--timeout', '0'], /--timeout 0: must be a positive number/],
    [['-i', 'wg0', '--kubeconfig', '/nonexistent/aks-mesh-kubeconfig'], /--kubeconfig \/nonexistent\/aks-mesh-kubeconfig: no such file/],
    [['--url', 'ws://127.0.0.1:1', '--token-file', '/nonexistent/aks-mesh-token'], /--token-file \/nonexistent\/aks-mesh-token: no such file/],
  ] as const) {
    test(`${args.join(' ')}: exits 2 naming the flag`, () => {
      const r = spawnSync(process.execPath, [MAIN, 'inspect', ...args], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /aks-mesh --help/);
    });
  }
});

describe('aks-mesh inspect --names against kube-apiserver 1.20', { skip: (kubeTestsUnavailable() ?? networkTestsUnavailable(['wireguard-go', 'wg'])) || false }, () => {
  const box = new Sandbox();
  let cluster: TestCluster;
  let kubeconfig: string;
  let ifName: string;
  const keys = { peer: '', gateway: '', stranger: '' };

  before(async () => {
    cluster = await TestCluster.start();
    await installCrds(cluster);
    kubeconfig = await cluster.writeKubeconfig(join(cluster.dir, 'inspect.kubeconfig'));
    for (const k of Object.keys(keys) as Array<keyof typeof keys>) keys[k] = wg(['pubkey'], wg(['genkey'])).trim();
    const kc = cluster.kubeConfig();
    await createPeer(kc, `node-${box.tag}`, { publicKey: keys.peer, allowedIPs: ['10.98.0.0/24'] });
    await customApi(kc).createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'gateways',
      body: { apiVersion: API_VERSION, kind: 'Gateway', metadata: { name: `gw-${box.tag}` }, spec: { publicKey: keys.gateway, meshIP: '100.96.255.9', podCIDRs: ['10.244.0.0/16'] } },
    });
    // A device no agent wrote: one wireguard-go, its three peers set by wg alone.
    const ns = await box.addNamespace('n');
    ifName = box.ifName('wg', 'n');
    const child = box.spawn(ns, findWireguardGo(), ['-f', ifName], { env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' } });
    const socket = socketPathFor(ifName, DEFAULT_SOCKET_DIR);
    for (let i = 0; !existsSync(socket); i++) {
      assert.ok(i < 300 && child.exitCode === null, `wireguard-go made no socket at ${socket}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const [i, key] of Object.values(keys).entries()) wg(['set', ifName, 'peer', key, 'allowed-ips', `10.97.${i}.0/24`]);
  });

  after(async () => {
    await box.cleanup();
    if (ifName) rmSync(socketPathFor(ifName, DEFAULT_SOCKET_DIR), { force: true });
    await cluster?.stop();
  });

  function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, [MAIN, 'inspect', '--socket', socketPathFor(ifName, DEFAULT_SOCKET_DIR), ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  test('text and --json name each peer by its Peer or Gateway; a key no object holds has no name', () => {
    const text = run(['--kubeconfig', kubeconfig]);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(text.stdout.includes(`peer: ${keys.peer}\n  name: Peer/node-${box.tag}\n`), text.stdout);
    assert.ok(text.stdout.includes(`peer: ${keys.gateway}\n  name: Gateway/gw-${box.tag}\n`), text.stdout);
    assert.ok(text.stdout.includes(`peer: ${keys.stranger}\n  allowed ips:`), text.stdout);
    const json = run(['--kubeconfig', kubeconfig, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const names = Object.fromEntries((JSON.parse(json.stdout) as DeviceJson).peers.map((p) => [p.publicKey, p.name]));
    assert.deepEqual(names, { [keys.peer]: `Peer/node-${box.tag}`, [keys.gateway]: `Gateway/gw-${box.tag}`, [keys.stranger]: null });
    // Without --names nothing asks the API and the JSON has no name field (plain inspect unchanged).
    const plain = run(['--json']);
    assert.ok((JSON.parse(plain.stdout) as DeviceJson).peers.every((p) => !('name' in p)));
  });

  test('--watch --json carries the names', async () => {
    const w = new Watch(['--socket', socketPathFor(ifName, DEFAULT_SOCKET_DIR), '--watch', '--json', '--interval', '200', '--kubeconfig', kubeconfig]);
    try {
      const line = await w.until((l) => l.peers?.length === 3, 'with the three peers', 60_000);
      assert.equal(line.peers?.find((p) => p.publicKey === keys.gateway)?.name, `Gateway/gw-${box.tag}`);
    } finally {
      assert.equal((await w.stop()).code, 0, w.stderr);
    }
  });

  test('an API that cannot be read: a warning naming --names, the device shown without names, exit 0', () => {
    // A kubeconfig whose API server does not answer (nothing listens on port 1). A kubeconfig file
    // that is not there at all is a usage error instead (see the usage errors above).
    const away = join(cluster.dir, 'away.kubeconfig');
    writeFileSync(
      away,
      'apiVersion: v1\nkind: Config\nclusters: [{name: away, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]\n' +
        'users: [{name: away, user: {token: nothing}}]\ncontexts: [{name: away, context: {cluster: away, user: away}}]\ncurrent-context: away\n',
    );
    const r = run(['--kubeconfig', away]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: .*peers shown without names/);
    assert.ok(r.stdout.includes(`peer: ${keys.peer}\n  allowed ips:`), r.stdout);
  });
});
