/**
 * The ValidatingAdmissionPolicy test API server (main.go beside this file) for tests: where
 * build.sh puts it, whether tests can run, how to start it through the kube-apiserver harness
 * (TestCluster: certificates, etcd, ports, token users, stop by pid), and requests as any identity
 * through front-proxy headers, including user extras such as the node name that a Kubernetes >= 1.30
 * API server derives from a node-bound service-account token.
 *
 *   const server = await startVapServer({ policyFiles: ['config/admission/node-bound-writes.yaml'] });
 *   const reply = await server.call({ user: 'u', groups: [], extra: { 'authentication.kubernetes.io/node-name': 'node-a' } }, 'GET', '/apis/aksmesh.io/v1alpha1/peers');
 *   await server.stop();
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ETCD_BINARY, TestCluster } from '../../../sandbox/apiserver.ts';

const execFileAsync = promisify(execFile);

/** The CN the server lets assert identities through headers (--requestheader-allowed-names). */
export const FRONT_PROXY = 'aks-mesh-front-proxy';

/** Where build.sh puts the server built from this main.go (named after its hash, so an edit means a new build). */
export function vapServerPath(): string {
  const hash = createHash('sha256').update(readFileSync(join(import.meta.dirname, 'main.go'))).digest('hex').slice(0, 12);
  const cache = process.env.AKS_MESH_CACHE ?? join(process.env.HOME ?? homedir(), '.cache', 'aks-mesh');
  return join(cache, 'vap-apiserver', 'bin', `aks-mesh-vap-apiserver-${hash}`);
}

/** Why these tests cannot run here, or null; under AKS_MESH_REQUIRE_KUBE=1 a reason is thrown (a failure, never a skip). */
export function vapTestsUnavailable(): string | null {
  let why: string | null = null;
  if (process.getuid?.() !== 0) why = 'needs root';
  else if (!existsSync(vapServerPath())) why = `the ValidatingAdmissionPolicy test server is not built (${vapServerPath()}): run e2e/kube/vap/build.sh once (about 8 minutes, cached)`;
  else if (!existsSync(ETCD_BINARY)) why = `needs etcd (${ETCD_BINARY}): apt-get install etcd-server`;
  if (why && process.env.AKS_MESH_REQUIRE_KUBE === '1') throw new Error(`Kubernetes tests required but unavailable: ${why}`);
  return why;
}

/** Who a request claims to be, as an authenticating proxy (or a >= 1.30 token authenticator) would say it. */
export interface Identity {
  user: string;
  groups: string[];
  /** User extras, e.g. {'authentication.kubernetes.io/node-name': 'node-a'}. */
  extra?: Record<string, string>;
}

export interface Reply {
  status: number;
  body: { message?: string } & Record<string, unknown>;
}

export interface VapServer {
  cluster: TestCluster;
  /** One request as `who` (JSON in and out). */
  call(who: Identity, method: string, path: string, body?: unknown, contentType?: string): Promise<Reply>;
  stop(): Promise<void>;
}

/** Start etcd and the server with these policy files (YAML of ValidatingAdmissionPolicy and bindings). */
export async function startVapServer(options: { policyFiles: string[] }): Promise<VapServer> {
  const dir = await mkdtemp(join(tmpdir(), 'aks-mesh-vap-'));
  let cluster: TestCluster | undefined;
  try {
    cluster = await TestCluster.start({
      binary: vapServerPath(),
      extraArgs: [...options.policyFiles.map((f) => `--admission-policy-file=${f}`), `--requestheader-allowed-names=${FRONT_PROXY}`],
    });
    const cert = await frontProxyCertificate(cluster.dir, dir);
    const started = cluster;
    return {
      cluster,
      call: (who, method, path, body, contentType) => call(started, cert, who, method, path, body, contentType),
      stop: async () => {
        await started.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function call(cluster: TestCluster, cert: { cert: string; key: string }, who: Identity, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { 'X-Remote-User': who.user, 'X-Remote-Group': who.groups, Accept: 'application/json' };
    // Extra keys travel percent-encoded in the header name (the '/' in them), as kube-apiserver's front proxy sends them.
    for (const [key, value] of Object.entries(who.extra ?? {})) headers[`X-Remote-Extra-${encodeURIComponent(key)}`] = value;
    const data = body === undefined ? undefined : JSON.stringify(body);
    if (data) headers['Content-Type'] = contentType;
    const req = request(`${cluster.server}${path}`, { method, headers, ca: cluster.caPem, cert: cert.cert, key: cert.key, agent: false, timeout: 20_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Reply['body']) : {} });
        } catch {
          reject(new Error(`${method} ${path}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 300)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** A client certificate for the front proxy, signed by the cluster CA (the server's requestheader CA by default). */
async function frontProxyCertificate(clusterDir: string, dir: string): Promise<{ cert: string; key: string }> {
  const cnf = join(dir, 'client.cnf');
  await writeFile(cnf, ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', 'CN = unused', '[client_ext]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth', ''].join('\n'));
  const keyPath = join(dir, 'front-proxy.key');
  const certPath = join(dir, 'front-proxy.crt');
  // prettier-ignore
  await execFileAsync('openssl', ['req', '-x509', '-new', '-config', cnf, '-extensions', 'client_ext', '-CA', join(clusterDir, 'ca.crt'), '-CAkey', join(clusterDir, 'ca.key'),
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${FRONT_PROXY}`]);
  return { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
}
