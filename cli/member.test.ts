/** `aks-mesh agent` and `aks-mesh gateway` refuse bad flags (and bad AKS_MESH_* variables) in one line, before touching anything. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(import.meta.dirname, 'main.ts'), ...args], { encoding: 'utf8', env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const cases: Array<[string, string[], Record<string, string>, number, RegExp]> = [
  ['no node name', ['agent'], {}, 2, /node-name/],
  ['a node name Kubernetes would refuse', ['agent', '--node-name', 'Node_A'], {}, 2, /--node-name "Node_A": not a Kubernetes node name/],
  ['the same, from AKS_MESH_NODE_NAME', ['agent'], { AKS_MESH_NODE_NAME: 'Node_B' }, 2, /--node-name "Node_B"/],
  ['a listen port out of range, from the environment', ['agent', '--node-name', 'a'], { AKS_MESH_LISTEN_PORT: '70000' }, 2, /--listen-port 70000: expected 1 to 65535/],
  ['both an API and a directory', ['agent', '--node-name', 'a', '--kubeconfig', '/x', '--peers-dir', '/y'], {}, 2, /exclude each other/],
  ['an interface name too long for Linux', ['agent', '--node-name', 'a', '--interface', 'a-very-long-interface'], {}, 2, /--interface "a-very-long-interface"/],
  ['a bad mesh CIDR', ['agent', '--node-name', 'a', '--peers-dir', '/nonexistent', '--mesh-cidr', '100.96.0.0/33'], {}, 1, /--mesh-cidr: "100\.96\.0\.0\/33" is not a CIDR/],
  ['a gateway without a pod CIDR', ['gateway', '--node-name', 'a', '--gateway-endpoint', '198.18.0.9:51820'], {}, 2, /pod-cidr/],
  ['a gateway with a bad pod CIDR in its list', ['gateway', '--node-name', 'a', '--gateway-endpoint', '198.18.0.9:51820', '--pod-cidr', '10.244.0.0/16,10.300.0.0/16'], {}, 1, /--pod-cidr\[1\]: "10\.300\.0\.0/],
  ['--fwmark 0 (the mesh table silently off)', ['agent', '--node-name', 'a', '--fwmark', '0'], {}, 2, /--fwmark 0: the mark must have at least one bit set/],
  ["the old default mark, with kube-proxy's and kubelet's bits", ['agent', '--node-name', 'a', '--fwmark', '51820'], {}, 2, /--fwmark 51820 \(0xca6c\) has kube-proxy's masquerade bit 0x4000 .* and kubelet's drop bit 0x8000/],
  ['a mark that is not a number', ['agent', '--node-name', 'a'], { AKS_MESH_FWMARK: '0x2g' }, 2, /--fwmark "0x2g": expected a whole number/],
  ['the main table', ['agent', '--node-name', 'a', '--table', '254'], {}, 2, /--table 254: table 254 is the kernel's "main" table/],
  ['the unspec table', ['agent', '--node-name', 'a', '--table', '0'], {}, 2, /--table 0: table 0 is the kernel's "unspec" table/],
  ['the local table, from the environment', ['agent', '--node-name', 'a'], { AKS_MESH_TABLE: '255' }, 2, /--table 255: .*"local"/],
  ['a rule priority before the local rule', ['agent', '--node-name', 'a', '--rule-priority', '0'], {}, 2, /--rule-priority 0: expected a whole number from 1 to 32765/],
  ['a rule priority after main', ['agent', '--node-name', 'a', '--rule-priority', '40000'], {}, 2, /--rule-priority 40000/],
  ['--resync 0 (drift would never be repaired: event passes read nothing)', ['agent', '--node-name', 'a', '--resync', '0'], {}, 2, /--resync 0: expected at least 1 second/],
  ['a bad service CIDR in a list', ['agent', '--node-name', 'a', '--peers-dir', '/nonexistent', '--service-cidr', '10.0.0.0/16,10.0.0.0/40'], {}, 1, /--service-cidr\[1\]: "10\.0\.0\.0\/40" is not a CIDR/],
  ['a bad cluster CIDR from the environment (a comma list)', ['agent', '--node-name', 'a', '--peers-dir', '/nonexistent'], { AKS_MESH_CLUSTER_CIDR: '10.244.0.0/16,fd00::/300' }, 1, /--cluster-cidr\[1\]/],
  ['a bad node CIDR', ['gateway', '--node-name', 'a', '--gateway-endpoint', '198.18.0.9:51820', '--pod-cidr', '10.244.0.0/16', '--node-cidr', 'nodes'], {}, 1, /--node-cidr\[0\]: "nodes" is not a CIDR/],
  ['a gateway endpoint that is a name, not an address', ['gateway', '--node-name', 'a', '--gateway-endpoint', 'gw.example:51820', '--pod-cidr', '10.244.0.0/16'], {}, 1, /--gateway-endpoint: "gw\.example" is not an IPv4 or IPv6 address/],
];

for (const [what, args, env, code, message] of cases) {
  test(`refuses ${what} with one line and exit ${code}`, async () => {
    const r = await cli(args, env);
    assert.equal(r.code, code, r.stderr);
    assert.match(r.stderr, message);
    assert.ok(r.stderr.trim().split('\n').length <= 2, `one line (plus the --help hint): ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
}

test('agent --help explains every flag and the environment variables', async () => {
  const r = await cli(['agent', '--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--node-name', '--kubeconfig', '--peers-dir', '--wireguard', '--mtu', '--table', '--fwmark', '--rule-priority', '--service-cidr', '--cluster-cidr', '--node-cidr', '--metrics-address', '--cleanup']) assert.match(r.stdout, new RegExp(`${flag}\\s`));
  assert.match(r.stdout, /\[default: "0x2000"\]/, 'the default mark is the one-bit 0x2000');
  assert.match(r.stdout, /AKS_MESH_NODE_NAME/);
});
