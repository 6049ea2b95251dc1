/**
 * The wireguard-go process modes on the real daemon: attach mode survives an agent restart without
 * touching the device and re-applies after the sidecar's device is reset; spawn mode stops cleanly
 * and reports a binary that will not start.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../../e2e/sandbox.ts';
import { generatePrivateKey, publicKeyOf } from '../keys/index.ts';
import { getLink } from '../link/index.ts';
import type { DeviceConfig } from '../uapi/index.ts';
import { socketPathFor } from '../uapi/index.ts';
import { findWireguardGo } from './binary.ts';
import { AttachedWireguardGo, SpawnedWireguardGo } from './process.ts';
import type { ReadyContext } from './process.ts';

const skip = networkTestsUnavailable() ?? false;

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

  test('a binary that exits at once is reported with its exit, not a hang', async () => {
    const wg = new SpawnedWireguardGo({ interfaceName: box.ifName('wg', 'f'), netns: ns, binary: '/bin/false' });
    await assert.rejects(wg.start(), /exited \(code 1\)/);
    await wg.stop();
  });
});
