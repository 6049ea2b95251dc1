/** The gateway sidecar: the seed's command and args, settings the gateway really reads, and the RBAC it names. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_STREAM_ADDRESS } from '../cli/member-stream.ts';
import { rbacObjects } from '../mesh/manifests.ts';
import { GATEWAY_DEFAULTS, GATEWAY_LISTEN_PORT } from './flags.ts';
import { GATEWAY_CLUSTER_ROLE, GATEWAY_METRICS_PORT, SERVICE_ACCOUNT_PATH, gatewayRoleBinding, gatewaySidecar, gatewaySidecarPatch } from './sidecar.ts';

test("command and args are the seed's, the pod CIDRs joined by commas", () => {
  const { container } = gatewaySidecar({ image: 'img:1', podCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'] });
  assert.equal(container.name, 'aks-mesh-gateway');
  assert.deepEqual(container.command, ['./gateway']);
  assert.deepEqual(container.args, ['--node-name=$(NODE_NAME)', '--gateway-endpoint=$(NODE_IP)', '--pod-cidr=10.244.0.0/16,fd00:10:244::/56']);
  const fieldRefs = Object.fromEntries(container.env.filter((e) => e.valueFrom).map((e) => [e.name, e.valueFrom?.fieldRef.fieldPath]));
  assert.deepEqual(fieldRefs, { NODE_NAME: 'spec.nodeName', NODE_IP: 'status.hostIP', POD_IP: 'status.podIP' });
});

test('NET_ADMIN only, read-only root, and a writable place for everything the gateway writes', () => {
  const { container, volumes } = gatewaySidecar({ image: 'img:1', podCIDRs: ['10.244.0.0/16'] });
  const sc = container.securityContext as { capabilities: { add: string[]; drop: string[] }; readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean; seccompProfile: { type: string } };
  assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.seccompProfile.type, 'RuntimeDefault');
  const mounts = Object.fromEntries(container.volumeMounts.map((m) => [m.mountPath, volumes.find((v) => v.name === m.name)]));
  assert.deepEqual(mounts['/dev/net/tun']?.hostPath, { path: '/dev/net/tun', type: 'CharDevice' });
  // The socket dir, and the key file's folder (the gateway's default --key-file), in memory.
  assert.equal(mounts['/var/run/wireguard']?.emptyDir?.medium, 'Memory');
  assert.equal(mounts[GATEWAY_DEFAULTS.keyFile.replace(/\/[^/]+$/, '')]?.emptyDir?.medium, 'Memory');
  assert.ok(mounts['/tmp']?.emptyDir);
  assert.equal(volumes.length, container.volumeMounts.length, 'every volume is mounted');
});

test('the UDP port nodes are told (NODE_IP on the listen port) is published on the node, and the probes use the metrics port', () => {
  const { container } = gatewaySidecar({ image: 'img:1', podCIDRs: ['10.244.0.0/16'] });
  assert.deepEqual(container.ports[0], { name: 'wireguard', containerPort: GATEWAY_LISTEN_PORT, hostPort: GATEWAY_LISTEN_PORT, protocol: 'UDP' });
  assert.equal(container.env.find((e) => e.name === 'AKS_MESH_LISTEN_PORT')?.value, String(GATEWAY_LISTEN_PORT));
  const other = gatewaySidecar({ image: 'img:1', podCIDRs: ['10.244.0.0/16'], listenPort: 51900, hostPort: false }).container;
  assert.deepEqual(other.ports[0], { name: 'wireguard', containerPort: 51900, protocol: 'UDP' });
  assert.equal(other.env.find((e) => e.name === 'AKS_MESH_LISTEN_PORT')?.value, '51900');
  assert.equal((container.readinessProbe as { httpGet: { port: number } }).httpGet.port, GATEWAY_METRICS_PORT);
  assert.equal(`0.0.0.0:${GATEWAY_METRICS_PORT}`, GATEWAY_DEFAULTS.metrics);
});

test('every AKS_MESH_* variable it sets is a flag `aks-mesh gateway` reads', async () => {
  const { container } = gatewaySidecar({
    image: 'img:1',
    podCIDRs: ['10.244.0.0/16'],
    meshCIDR: '100.96.0.0/16',
    fwmark: '0x2000',
    table: 51820,
    rulePriority: 5280,
    serviceCIDRs: ['10.0.0.0/16'],
    clusterCIDRs: ['10.244.0.0/16'],
    nodeCIDRs: ['10.224.0.0/12'],
    logFormat: 'json',
    logLevel: 'info',
    keepalive: 25,
    resync: 60,
  });
  const names = container.env.map((e) => e.name).filter((n) => n.startsWith('AKS_MESH_'));
  assert.equal(names.length, 13);
  const help = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [join(import.meta.dirname, '..', 'cli', 'main.ts'), 'gateway', '--help'], { encoding: 'utf8' }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  for (const n of names) {
    const flag = `--${n.slice('AKS_MESH_'.length).toLowerCase().replace(/_/g, '-')}`;
    assert.match(help, new RegExp(`${flag}\\s`), `${n}: aks-mesh gateway has ${flag}`);
  }
});

test('the live stream runs only with a token from the named Secret; without one it is off (the pod loopback is shared with the Konnectivity agent)', () => {
  const sidecar = (o: { streamTokenSecret?: string }) => gatewaySidecar({ image: 'i', podCIDRs: ['10.244.0.0/16'], ...o });
  const env = (o: { streamTokenSecret?: string }) => new Map(sidecar(o).container.env.map((e) => [e.name, e]));
  const off = env({});
  assert.equal(off.get('AKS_MESH_STREAM_ADDRESS')?.value, 'off');
  assert.equal(off.has('AKS_MESH_STREAM_TOKEN_FILE'), false);
  assert.ok(!sidecar({}).volumes.some((v) => v.secret));
  const on = sidecar({ streamTokenSecret: 'aks-mesh-stream-token' });
  assert.equal(env({ streamTokenSecret: 'aks-mesh-stream-token' }).get('AKS_MESH_STREAM_TOKEN_FILE')?.value, '/var/run/aks-mesh-stream/token');
  // Spelled out, so that this patch after one without a token replaces its "off" (env merges by name); not required.
  assert.equal(env({ streamTokenSecret: 'aks-mesh-stream-token' }).get('AKS_MESH_STREAM_ADDRESS')?.value, DEFAULT_STREAM_ADDRESS.gateway);
  assert.equal(env({ streamTokenSecret: 'aks-mesh-stream-token' }).get('AKS_MESH_STREAM_REQUIRED')?.value, 'false', 'a port taken in the pod does not stop the gateway');
  assert.deepEqual(on.volumes.find((v) => v.secret), { name: 'aks-mesh-gateway-stream', secret: { secretName: 'aks-mesh-stream-token', defaultMode: 0o400, items: [{ key: 'token', path: 'token' }] } });
  assert.deepEqual(on.container.volumeMounts.find((m) => m.name === 'aks-mesh-gateway-stream'), { name: 'aks-mesh-gateway-stream', mountPath: '/var/run/aks-mesh-stream', readOnly: true });
  assert.throws(() => gatewaySidecar({ image: 'i', podCIDRs: ['10.244.0.0/16'], streamTokenSecret: 'Bad_Name' }), /streamTokenSecret "Bad_Name": expected a Secret name/);
});

test("the agents' safety settings and log settings always reach the gateway: the chart's defaults, or what is given (audit12 #3)", () => {
  const env = (o: Partial<Parameters<typeof gatewaySidecar>[0]> = {}) =>
    Object.fromEntries(gatewaySidecar({ image: 'i', podCIDRs: ['10.244.0.0/16'], ...o }).container.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
  const defaults = env();
  // The chart's values.yaml defaults: mesh.fwmark 0x2000, table 51820, rulePriority 5280, keepalive 25, resyncSeconds 60; JSON logs.
  assert.deepEqual(
    [defaults.AKS_MESH_FWMARK, defaults.AKS_MESH_TABLE, defaults.AKS_MESH_RULE_PRIORITY, defaults.AKS_MESH_KEEPALIVE, defaults.AKS_MESH_RESYNC, defaults.AKS_MESH_LOG_FORMAT, defaults.AKS_MESH_LOG_LEVEL],
    ['0x2000', '51820', '5280', '25', '60', 'json', 'info'],
  );
  // A mark in decimal is written as the chart writes it (0x hex).
  const given = env({ fwmark: 4096, table: 1234, rulePriority: 6000, keepalive: 10, resync: 30, logFormat: 'text', logLevel: 'debug' });
  assert.deepEqual(
    [given.AKS_MESH_FWMARK, given.AKS_MESH_TABLE, given.AKS_MESH_RULE_PRIORITY, given.AKS_MESH_KEEPALIVE, given.AKS_MESH_RESYNC, given.AKS_MESH_LOG_FORMAT, given.AKS_MESH_LOG_LEVEL],
    ['0x1000', '1234', '6000', '10', '30', 'text', 'debug'],
  );
  assert.equal(env({ keepalive: 0 }).AKS_MESH_KEEPALIVE, '0', 'off is written out, not dropped');
  assert.throws(() => env({ fwmark: '0x4000' }), /^Error: fwmark 16384 \(0x4000\) has kube-proxy's masquerade bit/);
  assert.throws(() => env({ fwmark: 'mark' }), /fwmark "mark": expected a whole number/);
  assert.throws(() => env({ table: 254 }), /^Error: table 254: /);
  assert.throws(() => env({ rulePriority: 40000 }), /^Error: rulePriority 40000/);
  assert.throws(() => env({ keepalive: -1 }), /keepalive -1: expected 0 \(off\) to 65535 seconds/);
  assert.throws(() => env({ resync: 0 }), /resync 0: expected a whole number of seconds, at least 1/);
});

test('bad options are refused naming the option', () => {
  assert.throws(() => gatewaySidecar({ image: '', podCIDRs: ['10.244.0.0/16'] }), /^Error: image: required/);
  assert.throws(() => gatewaySidecar({ image: 'i', podCIDRs: [] }), /podCIDRs: at least one/);
  assert.throws(() => gatewaySidecar({ image: 'i', podCIDRs: ['10.244.0.0/16'], name: 'Gateway_1' }), /name "Gateway_1": expected a DNS label/);
  assert.throws(() => gatewaySidecar({ image: 'i', podCIDRs: ['10.244.0.0/16'], listenPort: 70000 }), /listenPort 70000: expected 1 to 65535/);
});

test("the patch merges the container and volumes by name; the binding names the gateway's own ClusterRole", () => {
  const sidecar = gatewaySidecar({ image: 'img:1', podCIDRs: ['10.244.0.0/16'] });
  assert.deepEqual(gatewaySidecarPatch(sidecar), { spec: { template: { spec: { containers: [sidecar.container], volumes: sidecar.volumes } } } });
  const roles = rbacObjects().filter((o) => (o as { kind: string }).kind === 'ClusterRole').map((o) => (o as { metadata: { name: string } }).metadata.name);
  assert.ok(roles.includes(GATEWAY_CLUSTER_ROLE), `the shipped RBAC has ClusterRole ${GATEWAY_CLUSTER_ROLE}: ${roles.join(', ')}`);
  const binding = gatewayRoleBinding({ namespace: 'kube-system', name: 'konnectivity-agent' }) as { roleRef: { name: string }; subjects: unknown[] };
  assert.equal(binding.roleRef.name, GATEWAY_CLUSTER_ROLE);
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'konnectivity-agent', namespace: 'kube-system' }]);
});

test('its own API token, CA and namespace at the in-cluster path: it works without the pod automounting one (review finding 10)', () => {
  const { container, volumes } = gatewaySidecar({ image: 'img:1', podCIDRs: ['10.244.0.0/16'], name: 'gw' });
  const mount = container.volumeMounts.find((m) => m.mountPath === SERVICE_ACCOUNT_PATH);
  assert.deepEqual(mount, { name: 'gw-api', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true });
  const sources = volumes.find((v) => v.name === 'gw-api')?.projected?.sources ?? [];
  // What the in-cluster client reads: token, ca.crt, namespace.
  assert.deepEqual(sources, [
    { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
    { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
    { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
  ]);
});
