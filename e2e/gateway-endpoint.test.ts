/**
 * The seed's deployment snippet passes `--gateway-endpoint=$(NODE_IP)`: a bare address. It means
 * that address on the listen port (the gateway's default, 51821, not the agent's 51820): the gateway
 * registers `<IP>:51821` and the nodes reach it there.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../mesh/crd/types.ts';
import { MeshCluster } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { GATEWAY_LISTEN_PORT } from '../gateway/flags.ts';

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? false;

describe('--gateway-endpoint as a bare IP', { skip }, () => {
  let c: MeshCluster;
  before(async () => {
    c = await MeshCluster.start({ nodes: 1, gateway: true, source: 'kube', resyncSeconds: 5 });
  });
  after(async () => {
    await c?.stop();
  });

  test('the gateway registers that IP on its listen port, and reaches the pods', async () => {
    const gw = c.gateway;
    assert.ok(gw);
    await c.startAgent(c.nodes[0].name);
    await c.startAgent(gw.name, { flags: { '--gateway-endpoint': gw.underlayIp } });
    await c.waitForMatrix({ timeoutMs: 60_000 });
    const api = c.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
    const object = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'gateways', name: gw.name })) as { spec: { endpoint?: string } };
    assert.equal(object.spec.endpoint, `${gw.underlayIp}:${GATEWAY_LISTEN_PORT}`);
  });
});
