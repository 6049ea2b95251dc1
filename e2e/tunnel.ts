/**
 * Two nodes joined by one WireGuard tunnel: two network namespaces on a veth underlay, a
 * wireguard-go in each (spawn mode), configured only through our UAPI client and ip wrapper.
 * Used by the native integration tests, the benchmarks and the demo.
 */
import { existsSync } from 'node:fs';
import {
  SpawnedWireguardGo,
  autoMtu,
  generatePrivateKey,
  publicKeyOf,
  replaceAddress,
  setLinkMtu,
  setLinkUp,
  trixieBinaryPath,
} from '../native/index.ts';
import type { DeviceConfig, Logger } from '../native/index.ts';
import type { Sandbox } from '../sandbox/sandbox.ts';

export interface TunnelNode {
  name: string;
  ns: string;
  interfaceName: string;
  privateKey: string;
  publicKey: string;
  underlayIp: string;
  meshIp: string;
  listenPort: number;
  config: DeviceConfig;
  wg: SpawnedWireguardGo;
}

/** The wireguard-go binaries on this machine worth testing against: the one we ship, and Debian bookworm's. */
export function availableWireguardGoBinaries(): string[] {
  return [trixieBinaryPath(), '/usr/bin/wireguard-go', '/usr/sbin/wireguard-go'].filter(
    (p, i, all) => existsSync(p) && all.indexOf(p) === i,
  );
}

export interface TunnelOptions {
  binary?: string;
  logger?: Logger;
  /** Underlay /24, default 198.18.0 (RFC 2544 test range, only ever inside our namespaces). */
  underlayPrefix?: string;
  backoffInitialMs?: number;
}

/** Bring up nodes a and b, wait for both sockets and their first config. */
export async function startTunnel(box: Sandbox, options: TunnelOptions = {}): Promise<{ a: TunnelNode; b: TunnelNode }> {
  const prefix = options.underlayPrefix ?? '198.18.0';
  const nsA = await box.addNamespace('a');
  const nsB = await box.addNamespace('b');
  await box.veth(nsA, `${prefix}.1/24`, nsB, `${prefix}.2/24`);
  const make = (name: 'a' | 'b', ns: string, n: number): TunnelNode => {
    const privateKey = generatePrivateKey();
    const interfaceName = box.ifName('wg', name);
    const node = {
      name,
      ns,
      interfaceName,
      privateKey,
      publicKey: publicKeyOf(privateKey),
      underlayIp: `${prefix}.${n}`,
      meshIp: `100.96.0.${n}`,
      listenPort: 51820,
      config: { privateKey, listenPort: 51820, peers: [] } as DeviceConfig,
    } as TunnelNode;
    node.wg = new SpawnedWireguardGo({
      interfaceName,
      netns: ns,
      binary: options.binary,
      logger: options.logger,
      backoffInitialMs: options.backoffInitialMs ?? 100,
      onReady: async ({ client }) => {
        await client.replaceDevice(node.config);
        await replaceAddress(interfaceName, `${node.meshIp}/24`, { netns: ns });
        await setLinkMtu(interfaceName, await autoMtu({ netns: ns }, [interfaceName]), { netns: ns });
        await setLinkUp(interfaceName, { netns: ns });
      },
    });
    box.trackPid(() => node.wg.pid);
    return node;
  };
  const a = make('a', nsA, 1);
  const b = make('b', nsB, 2);
  for (const [self, other] of [
    [a, b],
    [b, a],
  ]) {
    self.config.peers = [
      { publicKey: other.publicKey, endpoint: `${other.underlayIp}:${other.listenPort}`, allowedIPs: [`${other.meshIp}/32`] },
    ];
  }
  try {
    await a.wg.start();
    await b.wg.start();
  } catch (err) {
    await stopTunnel({ a, b });
    throw err;
  }
  return { a, b };
}

export async function stopTunnel(t: { a: TunnelNode; b: TunnelNode }): Promise<void> {
  await Promise.all([t.a.wg.stop(), t.b.wg.stop()]);
}

/** Ping until one reply arrives (the first packets wait for the handshake); true if it did within `timeoutMs`. */
export async function waitForPing(box: Sandbox, ns: string, target: string, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await box.exec(ns, 'ping', ['-c', '1', '-W', '1', target], { timeoutMs: 5000 });
      return true;
    } catch {
      /* not yet */
    }
  }
  return false;
}
