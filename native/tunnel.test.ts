/**
 * Integration: the real wireguard-go in two network namespaces joined by a veth pair, configured
 * only through our UAPI client and ip wrapper; `wg show <if> dump` is the independent reader.
 * Runs against every wireguard-go on the machine: the trixie build we ship and bookworm's.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { availableWireguardGoBinaries, startTunnel, stopTunnel, waitForPing } from '../e2e/tunnel.ts';
import type { TunnelNode } from '../e2e/tunnel.ts';
import { tcpTransfer } from '../sandbox/tcp.ts';
import { wireguardGoVersion } from './wireguard-go/index.ts';

const skip = networkTestsUnavailable();
const binaries = skip ? [] : availableWireguardGoBinaries();

/** `wg show <if> dump` peers: public key → fields. */
function wgDump(interfaceName: string): Map<string, { endpoint: string; allowedIPs: string; rx: bigint; tx: bigint }> {
  const lines = execFileSync('wg', ['show', interfaceName, 'dump'], { encoding: 'utf8' }).trim().split('\n').slice(1);
  return new Map(
    lines.map((l) => {
      const f = l.split('\t');
      return [f[0], { endpoint: f[2], allowedIPs: f[3], rx: BigInt(f[5]), tx: BigInt(f[6]) }];
    }),
  );
}

if (skip) test('tunnel through the real wireguard-go', { skip }, () => {});

for (const binary of binaries) {
  describe(`tunnel through wireguard-go ${wireguardGoVersion(binary)} (${binary})`, () => {
    const box = new Sandbox();
    let a: TunnelNode;
    let b: TunnelNode;

    before(async () => {
      ({ a, b } = await startTunnel(box, { binary }));
    });
    after(async () => {
      if (a && b) await stopTunnel({ a, b });
      await box.cleanup();
    });

    test('both devices hold exactly the config written through UAPI', () => {
      for (const [self, other] of [
        [a, b],
        [b, a],
      ]) {
        const dump = wgDump(self.interfaceName);
        assert.deepEqual([...dump.keys()], [other.publicKey]);
        assert.equal(dump.get(other.publicKey)?.endpoint, `${other.underlayIp}:51820`);
        assert.equal(dump.get(other.publicKey)?.allowedIPs, `${other.meshIp}/32`);
      }
    });

    test('ping and a TCP transfer pass through the tunnel', async () => {
      assert.ok(await waitForPing(box, a.ns, b.meshIp), 'no ping reply through the tunnel');
      const ping = await box.exec(a.ns, 'ping', ['-c', '5', '-i', '0.2', '-W', '2', b.meshIp]);
      assert.match(ping.stdout, / 0% packet loss/);

      const before = wgDump(b.interfaceName).get(a.publicKey)?.rx ?? 0n;
      const bytes = 16 * 1024 * 1024;
      const transfer = await tcpTransfer(box, a, { ns: b.ns, ip: b.meshIp }, bytes);
      assert.equal(transfer.received, bytes);
      assert.ok(transfer.intact, 'the bytes that arrived differ from the bytes sent');
      const rx = wgDump(b.interfaceName).get(a.publicKey)?.rx ?? 0n;
      assert.ok(rx - before >= BigInt(bytes), `wg counters show ${rx - before} bytes received from a`);
    });

    test('kill -9 of wireguard-go: restarted, config re-applied, traffic resumes', async () => {
      const oldPid = a.wg.pid as number;
      const ready = once(a.wg, 'ready');
      process.kill(oldPid, 'SIGKILL');
      const [ctx] = (await ready) as [{ restart: boolean; reason: string }];
      assert.equal(ctx.restart, true);
      assert.match(ctx.reason, /SIGKILL/);
      assert.notEqual(a.wg.pid, oldPid);
      assert.equal(a.wg.restarts, 1);
      assert.deepEqual([...wgDump(a.interfaceName).keys()], [b.publicKey]);
      assert.ok(await waitForPing(box, a.ns, b.meshIp), 'no ping reply after the restart');
    });
  });
}
