/**
 * The wireguard-go process modes on the real daemon: attach mode survives an agent restart without
 * touching the device and re-applies after the sidecar's device is reset; spawn mode stops cleanly,
 * reports a binary that will not start, and once running is supervised for good (kill -9, a binary
 * that is missing or not executable for a while); after a restart the restarted side starts the
 * handshakes itself (on every wireguard-go build on the machine).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../sandbox/sandbox.ts';
import { availableWireguardGoBinaries, startTunnel, stopTunnel } from '../../e2e/tunnel.ts';
import type { TunnelNode } from '../../e2e/tunnel.ts';
import { generatePrivateKey, publicKeyOf } from '../keys/index.ts';
import { getLink } from '../link/index.ts';
import type { DeviceConfig } from '../uapi/index.ts';
import { socketPathFor } from '../uapi/index.ts';
import { findWireguardGo, wireguardGoVersion } from './binary.ts';
import { AttachedWireguardGo, SpawnedWireguardGo } from './process.ts';
import type { ReadyContext } from './process.ts';
import { PROMPT_KEEPALIVE, promptHandshakes } from './prompt.ts';

const skip = networkTestsUnavailable() ?? false;

/** Poll `check` every 50 ms until it holds; the error names `what` (the timeout is a liveness bound, not a measurement). */
async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function dumpKeys(interfaceName: string): string[] {
  const [iface, ...peers] = execFileSync('wg', ['show', interfaceName, 'dump'], { encoding: 'utf8' }).trim().split('\n');
  return [iface.split('\t')[1], ...peers.map((l) => l.split('\t')[0])];
}

describe('attach mode', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  let interfaceName: string;
  const config: DeviceConfig = {
    privateKey: generatePrivateKey(),
    listenPort: 51830,
    peers: [{ publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.44.0.0/24'] }],
  };
  const applied: ReadyContext[] = [];

  let sidecar: ChildProcess;
  /** Stand-in for the sidecar container: wireguard-go started by someone else. */
  async function startSidecar(): Promise<void> {
    sidecar = box.spawn(ns, findWireguardGo(), ['-f', interfaceName], { env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
    for (let i = 0; i < 100 && !existsSync(socketPathFor(interfaceName)); i++) await new Promise((r) => setTimeout(r, 50));
  }

  function attach(): AttachedWireguardGo {
    return new AttachedWireguardGo({
      interfaceName,
      pollMs: 100,
      onReady: async (ctx) => {
        applied.push(ctx);
        await ctx.client.replaceDevice(config);
      },
    });
  }

  before(async () => {
    ns = await box.addNamespace('att');
    interfaceName = box.ifName('wg', 't');
  });
  after(() => box.cleanup());

  test('waits for the sidecar socket, then applies', async () => {
    const agent = attach();
    const started = agent.start();
    await new Promise((r) => setTimeout(r, 300)); // the agent is up before the sidecar
    assert.equal(applied.length, 0);
    await startSidecar();
    await started;
    assert.equal(applied.length, 1);
    assert.equal(applied[0].restart, false);
    assert.deepEqual(dumpKeys(interfaceName), [publicKeyOf(config.privateKey), config.peers[0].publicKey]);
    await agent.stop();
  });

  test('an agent that stops leaves the sidecar’s device up; the next agent sees no reset', async () => {
    const before = execFileSync('wg', ['show', interfaceName, 'dump'], { encoding: 'utf8' });
    await new Promise((r) => setTimeout(r, 300)); // no agent watching
    assert.equal(sidecar.exitCode, null, 'wireguard-go must outlive the agent');
    assert.equal(execFileSync('wg', ['show', interfaceName, 'dump'], { encoding: 'utf8' }), before);
    const agent = attach();
    await agent.start();
    assert.equal((applied.at(-1) as ReadyContext).restart, false);
    await new Promise((r) => setTimeout(r, 300)); // several polls: nothing looks reset
    assert.equal(applied.filter((c) => c.restart).length, 0);
    await agent.stop();
  });

  test('a sidecar restart (empty device) is noticed and re-applied', async () => {
    const agent = attach();
    await agent.start();
    const reapplied = once(agent, 'ready');
    // The sidecar restarts: its old process goes away, a fresh wireguard-go comes up with nothing.
    sidecar.kill('SIGTERM');
    for (let i = 0; i < 100 && existsSync(socketPathFor(interfaceName)); i++) await new Promise((r) => setTimeout(r, 50));
    await startSidecar();
    const [ctx] = (await reapplied) as [ReadyContext];
    assert.equal(ctx.restart, true);
    assert.match(ctx.reason, /device reset|socket came back/);
    assert.deepEqual(dumpKeys(interfaceName), [publicKeyOf(config.privateKey), config.peers[0].publicKey]);
    await agent.stop();
  });

  test('between full checks the agent does not read the device: it only checks that the same socket answers', async () => {
    const ops: string[] = [];
    const agent = new AttachedWireguardGo({ interfaceName, pollMs: 30, fullCheckEvery: 1000, onRequest: (op) => ops.push(op) });
    await agent.start();
    const afterStart = ops.length;
    await new Promise((r) => setTimeout(r, 600)); // about 20 polls
    assert.deepEqual(ops.slice(afterStart), [], 'no UAPI request between full checks (a get of 5,000 peers is 1.5 MB)');
    // A restart still shows at once: the new socket file is read in full.
    const reapplied = once(agent, 'ready');
    sidecar.kill('SIGTERM');
    for (let i = 0; i < 100 && existsSync(socketPathFor(interfaceName)); i++) await new Promise((r) => setTimeout(r, 50));
    await startSidecar();
    const [ctx] = (await reapplied) as [ReadyContext];
    assert.equal(ctx.restart, true);
    await agent.stop();
  });

  test('a device whose key was wiped in place is re-applied', async () => {
    const agent = attach();
    await agent.start();
    const reapplied = once(agent, 'ready');
    await agent.client.set({ privateKey: null });
    const [ctx] = (await reapplied) as [ReadyContext];
    assert.match(ctx.reason, /no private key/);
    assert.equal((await agent.client.get()).publicKey, publicKeyOf(config.privateKey));
    await agent.stop();
  });
});

describe('spawn mode', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  before(async () => {
    ns = await box.addNamespace('spn');
  });
  after(() => box.cleanup());

  test('stop sends SIGTERM: wireguard-go removes its socket and its TUN', async () => {
    const wg = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 's'), netns: ns });
    await wg.start();
    assert.ok(await getLink(wg.interfaceName, { netns: ns }));
    await wg.stop();
    assert.equal(existsSync(wg.client.socketPath), false);
    assert.equal(await getLink(wg.interfaceName, { netns: ns }), null);
    assert.equal(wg.restarts, 0);
  });

  test('an agent process that ends without stop() (an uncaught error) takes its wireguard-go with it', async () => {
    const ifName = box.ifName('wg', 'x');
    const module = JSON.stringify(join(import.meta.dirname, 'process.ts'));
    const script = `const { SpawnedWireguardGo } = await import(${module});
      const wg = new SpawnedWireguardGo({ interfaceName: ${JSON.stringify(ifName)}, netns: ${JSON.stringify(ns)} });
      await wg.start();
      process.stdout.write(String(wg.pid) + '\\n');
      throw new Error('an uncaught error after start');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(r.status, 0, 'the script failed as planned');
    const pid = Number(r.stdout.trim());
    assert.ok(pid > 0, `the child printed its wireguard-go pid: ${r.stdout} ${r.stderr}`);
    const alive = (): boolean => {
      try {
        process.kill(pid, 0);
        return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z');
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 15_000;
    while (alive() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const left = alive();
    if (left) process.kill(pid, 'SIGKILL');
    assert.equal(left, false, `wireguard-go ${pid} outlived its agent`);
    // Its TUN went with it: a next agent can create the interface again.
    const deadlineLink = Date.now() + 15_000;
    while ((await getLink(ifName, { netns: ns })) && Date.now() < deadlineLink) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await getLink(ifName, { netns: ns }), null);
  });

  test('a binary that exits at once is reported with its exit, not a hang', async () => {
    const wg = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 'f'), netns: ns, binary: '/bin/false' });
    await assert.rejects(wg.start(), /exited \(code 1\)/);
    await wg.stop();
  });
});

describe('spawn mode supervision', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  let dir: string;
  const running: SpawnedWireguardGo[] = [];
  const config: DeviceConfig = { privateKey: generatePrivateKey(), listenPort: 51831, peers: [{ publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.45.0.0/24'] }] };

  function supervised(interfaceName: string, binary?: string): SpawnedWireguardGo {
    const wg = new SpawnedWireguardGo({
      interfaceName,
      // With a wrapper binary the namespace is the wrapper's business (so that spawn itself meets ENOENT and EACCES).
      netns: binary ? undefined : ns,
      binary,
      backoffInitialMs: 100,
      backoffMaxMs: 400,
      onReady: async ({ client }) => client.replaceDevice(config),
    });
    box.trackPid(() => wg.pid);
    running.push(wg);
    return wg;
  }

  before(async () => {
    ns = await box.addNamespace('sup');
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-wg-bin-'));
  });
  after(async () => {
    for (const wg of running) await wg.stop();
    await box.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('kill -9: a new process, the config re-applied, the restart counted; status says running again', async () => {
    const wg = supervised(box.ifName('wg', 'k'));
    await wg.start();
    assert.deepEqual({ state: wg.status().state, restarts: wg.status().restarts, healthy: wg.status().healthy }, { state: 'running', restarts: 0, healthy: true });
    const oldPid = wg.pid as number;
    const ready = once(wg, 'ready');
    process.kill(oldPid, 'SIGKILL');
    const [ctx] = (await ready) as [ReadyContext];
    assert.equal(ctx.restart, true);
    assert.match(ctx.reason, /signal SIGKILL/);
    assert.notEqual(wg.pid, oldPid);
    const st = wg.status();
    assert.deepEqual({ state: st.state, restarts: st.restarts, failures: st.failures, lastError: st.lastError, healthy: st.healthy }, { state: 'running', restarts: 1, failures: 0, lastError: null, healthy: true });
    assert.equal((await wg.client.get()).peers[0].publicKey, config.peers[0].publicKey);
    await wg.stop();
    assert.equal(wg.status().state, 'stopped');
  });

  test('a binary that is missing, then not executable, is retried with backoff (healthz would fail) until it works again', async () => {
    // The binary as a wrapper that runs the real wireguard-go in our namespace: it can be taken away and put back.
    const binary = join(dir, 'wireguard-go');
    const wrapper = `#!/bin/sh\nexec ip netns exec ${ns} ${findWireguardGo()} "$@"\n`;
    writeFileSync(binary, wrapper, { mode: 0o755 });
    const wg = supervised(box.ifName('wg', 'b'), binary);
    await wg.start();
    const failed: Error[] = [];
    wg.on('restart-failed', (err: Error) => failed.push(err));

    renameSync(binary, `${binary}.away`); // an upgrade that replaces the file, say
    process.kill(wg.pid as number, 'SIGKILL');
    await waitUntil('two failed restarts for the missing binary', () => wg.status().failures >= 2);
    let st = wg.status();
    assert.equal(st.state, 'restarting');
    assert.equal(st.healthy, false, 'down and not coming back: /healthz must fail');
    assert.match(st.lastError ?? '', /ENOENT/);
    assert.ok(st.lastError?.includes(binary), `the error names the binary: ${st.lastError}`);

    // Back, but not executable: still failing, still retried.
    writeFileSync(binary, wrapper, { mode: 0o644 });
    chmodSync(binary, 0o644);
    const before = wg.status().failures;
    await waitUntil('a failed restart of the non-executable binary', () => wg.status().failures > before + 1);
    st = wg.status();
    assert.equal(st.healthy, false);
    assert.ok(st.lastError?.includes(binary), `the error names the binary: ${st.lastError}`);

    const ready = once(wg, 'ready');
    chmodSync(binary, 0o755);
    const [ctx] = (await ready) as [ReadyContext];
    assert.equal(ctx.restart, true);
    st = wg.status();
    assert.deepEqual({ state: st.state, failures: st.failures, lastError: st.lastError, healthy: st.healthy }, { state: 'running', failures: 0, lastError: null, healthy: true });
    assert.ok(st.restarts >= failed.length + 1 && failed.length >= 3, `restarts ${st.restarts}, failed attempts ${failed.length}`);
    assert.equal((await wg.client.get()).publicKey, publicKeyOf(config.privateKey), 'the config is back');
    await wg.stop();
  });

  test('a process that dies during the restart\'s handshake prompt is restarted again, not reported running', { timeout: 60_000 }, async () => {
    // The supervised process is a shell that runs the real wireguard-go and waits for it: killing the
    // shell from the restart's onReady ends "our" process while wireguard-go keeps answering, so the
    // prompt polls its full promptWaitMs (its peer's endpoint is unroutable here: no handshake moves
    // tx) and the exit arrives during the prompt, the window that used to leave nobody restarting.
    const binary = join(dir, 'wireguard-go-shell');
    const wrapper = `#!/bin/sh\nip netns exec ${ns} ${findWireguardGo()} "$@" & p=$!\ntrap 'kill -TERM $p; wait $p' TERM\nwait $p\n`;
    writeFileSync(binary, wrapper, { mode: 0o755 });
    const inNamespace = (): number[] => execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    const withEndpoint: DeviceConfig = { ...config, peers: [{ ...config.peers[0], endpoint: '198.18.7.7:51820' }] };
    let killNext = false;
    let killedPid = 0;
    const wg = new SpawnedWireguardGo({
      interfaceName: box.ifName('wg', 'p'),
      binary,
      backoffInitialMs: 100,
      backoffMaxMs: 400,
      promptWaitMs: 1500,
      onReady: async ({ client, restart }) => {
        await client.replaceDevice(withEndpoint);
        if (restart && killNext) {
          killNext = false;
          killedPid = wg.pid as number;
          process.kill(killedPid, 'SIGKILL');
        }
      },
    });
    box.trackPid(() => wg.pid);
    running.push(wg);
    try {
      await wg.start();
      const failed = once(wg, 'restart-failed');
      killNext = true;
      for (const pid of inNamespace()) process.kill(pid, 'SIGKILL'); // wireguard-go dies, its shell follows
      const [err] = (await failed) as [Error];
      assert.match(err.message, /ended (during the handshake prompt|while it was being configured)/);
      assert.ok(killedPid > 0, 'the restarted process was killed in onReady');
      const st = wg.status();
      assert.notDeepEqual({ state: st.state, pid: st.pid }, { state: 'running', pid: killedPid }, 'a dead process must not be reported running');
      // wireguard-go outlived its shell and holds the interface: the retries fail until it is gone too.
      for (const pid of inNamespace()) process.kill(pid, 'SIGKILL');
      await waitUntil('a restart that serves', () => wg.status().state === 'running' && wg.pid !== killedPid);
      const now = wg.status();
      assert.deepEqual({ failures: now.failures, healthy: now.healthy }, { failures: 0, healthy: true });
      assert.ok(now.restarts >= 2, `restarts ${now.restarts}`);
      assert.doesNotThrow(() => process.kill(now.pid as number, 0), 'the process status() names is alive');
      assert.equal((await wg.client.get()).publicKey, publicKeyOf(config.privateKey), 'the config is back');
    } finally {
      await wg.stop();
      for (const pid of inNamespace()) process.kill(pid, 'SIGKILL');
    }
  });

  test('a first start that fails is reported and not retried behind the owner\'s back', async () => {
    const wg = supervised(box.ifName('wg', 'n'), join(dir, 'does-not-exist'));
    await assert.rejects(wg.start(), /could not start .*does-not-exist.*ENOENT/);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(wg.status().state, 'stopped');
    assert.equal(wg.status().restarts, 0);
  });
});

if (skip) test('handshake prompt after a restart', { skip }, () => {});

for (const binary of skip ? [] : availableWireguardGoBinaries()) {
  describe(`after a restart the restarted side starts the handshakes: wireguard-go ${wireguardGoVersion(binary)} (${binary})`, () => {
    const box = new Sandbox();
    let a: TunnelNode;
    let b: TunnelNode;
    const peerOf = async (n: TunnelNode) => (await n.wg.client.get()).peers[0];

    before(async () => {
      ({ a, b } = await startTunnel(box, { binary }));
    });
    after(async () => {
      if (a && b) await stopTunnel({ a, b });
      await box.cleanup();
    });

    test('kill -9 of a: with no traffic at all, a handshakes with b at once; b reaches a on the new session', async () => {
      await box.exec(b.ns, 'ping', ['-c', '1', '-W', '5', a.meshIp]); // a session both ways
      const ready = once(a.wg, 'ready');
      process.kill(a.wg.pid as number, 'SIGKILL');
      await ready;
      // Nobody sends anything: b holds the old session, a has nothing to say. Only a prompt starts a handshake.
      await waitUntil('a handshake on the restarted side', async () => (await peerOf(a)).lastHandshake !== null);
      assert.equal((await peerOf(a)).persistentKeepalive, 0, 'the placeholder keepalive is taken away again');
      const ping = await box.exec(b.ns, 'ping', ['-c', '1', '-W', '2', a.meshIp]);
      assert.match(ping.stdout, / 0% packet loss/, 'b -> a works on the first try');
    });

    test('peers with a session are left alone (all: false); a peer\'s own keepalive is kept', async () => {
      const before = await peerOf(a);
      assert.ok(before.lastHandshake, 'a session with b');
      const r = await promptHandshakes(a.wg.client, { all: false });
      assert.deepEqual(r, { prompted: 0, sent: 0, noEndpoint: 0 });
      assert.equal((await peerOf(a)).txBytes, before.txBytes, 'nothing sent to a healthy peer');

      a.config.peers[0].persistentKeepalive = 7;
      try {
        const ready = once(a.wg, 'ready');
        process.kill(a.wg.pid as number, 'SIGKILL');
        await ready;
        await waitUntil('a handshake on the restarted side', async () => (await peerOf(a)).lastHandshake !== null);
        const p = await peerOf(a);
        assert.equal(p.persistentKeepalive, 7, 'the configured keepalive, not the placeholder');
        assert.notEqual(p.persistentKeepalive, PROMPT_KEEPALIVE);
      } finally {
        a.config.peers[0].persistentKeepalive = undefined;
      }
    });
  });
}
