/**
 * The program the image runs (issue 10): `node scripts/build.ts` bundles the agent, the gateway and
 * the CLI into one ES module with esbuild. Built here from the sources of this checkout, it must do
 * what cli/main.ts does: answer --help, and run real agents against a real kube-apiserver (the
 * informers and API calls of @kubernetes/client-node, bundled) until every pod reaches every other
 * pod.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MeshCluster, NODE_BINARY, REPO_ROOT } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { getPeer } from '../sandbox/kube.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? false;

describe('the bundled program (dist/aks-mesh.mjs)', { skip }, () => {
  let dir: string;
  let bundle: string;
  let c: MeshCluster | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-bundle-'));
    bundle = join(dir, 'aks-mesh.mjs');
    execFileSync(NODE_BINARY, [join(REPO_ROOT, 'scripts', 'build.ts'), '--outfile', bundle], { stdio: 'pipe' });
  });
  after(async () => {
    await c?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('answers --help like the sources, with every command', () => {
    const help = execFileSync(NODE_BINARY, [bundle, '--help'], { encoding: 'utf8' });
    for (const command of ['agent', 'gateway', 'status', 'inspect', 'keygen', 'crds']) assert.match(help, new RegExp(`aks-mesh ${command}`));
    const key = execFileSync(NODE_BINARY, [bundle, 'keygen'], { encoding: 'utf8' }).trim();
    assert.equal(execFileSync(NODE_BINARY, [bundle, 'pubkey'], { input: `${key}\n`, encoding: 'utf8' }).trim().length, 44);
  });

  test('real agents from the bundle mesh through a real kube-apiserver', { timeout: 180_000 }, async () => {
    c = await MeshCluster.start({ nodes: 2, source: 'kube', resyncSeconds: 5 });
    for (const n of c.nodes) await c.startAgent(n.name, { program: bundle });
    const m = await c.waitForMatrix({ timeoutMs: 60_000 });
    assert.ok(m.ok, m.table);
    const cluster = c;
    for (const n of cluster.nodes) {
      const peer = await cluster.waitFor(`${n.name}'s Peer registered by the bundled agent`, () => getPeer(cluster.kubeConfig(), n.name));
      assert.equal(peer.spec.nodeName, n.name);
    }
  });
});
