/**
 * A real Kubernetes API server for tests (DESIGN §4): etcd and kube-apiserver 1.20.2 on loopback,
 * on free ports chosen at run time, with certificates, keys, data and logs in one temp dir.
 * Processes are tracked and killed by pid (SIGTERM, then SIGKILL), never by name; they die with
 * the test process: exit and signal hooks, and the kernel's parent-death signal (setpriv
 * --pdeathsig) for when the test process itself is SIGKILLed.
 *
 *   const cluster = await TestCluster.start({ users: [{ name: 'agent', groups: ['mesh:agents'] }] });
 *   const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
 *   ...
 *   await cluster.stop();
 *
 * Users are token users (`--token-auth-file`): `admin` (group system:masters) always exists; others
 * are declared up front with `users`, or added later with `addUser`, which rewrites the token file
 * and restarts the API server on the same port (kube-apiserver reads that file only at start).
 *
 * kube-apiserver comes from `sandbox/build-apiserver.sh` (cached in ~/.cache/aks-mesh), etcd from
 * Debian's etcd-server, certificates from the openssl CLI (OpenSSL 3: `req -CA`), kubectl from
 * /usr/bin/kubectl or $AKS_MESH_KUBECTL.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPair, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { constants as osConstants, homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { claimPidFile, isRunning, signalPid as signal, tailOf as tailOfFile } from './proc.ts';

const execFileAsync = promisify(execFile);
const generateKeyPairAsync = promisify(generateKeyPair);

export const APISERVER_VERSION = '1.20.2';
export const SERVICE_CLUSTER_IP_RANGE = '10.0.0.0/24';
/** The `kubernetes` service's address in SERVICE_CLUSTER_IP_RANGE (also a SAN of the serving cert). */
export const KUBERNETES_SERVICE_IP = '10.0.0.1';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** Where build-apiserver.sh puts the binary. */
export function cachedApiServerPath(): string {
  const root = process.env.AKS_MESH_CACHE ?? join(process.env.HOME ?? homedir(), '.cache', 'aks-mesh');
  return join(root, `kube-apiserver-${APISERVER_VERSION}`, 'bin', 'kube-apiserver');
}

/** The kube-apiserver to run: $AKS_MESH_KUBE_APISERVER, else the cached build; null when neither exists. */
export function findApiServer(): string | null {
  const fromEnv = process.env.AKS_MESH_KUBE_APISERVER;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  const cached = cachedApiServerPath();
  return existsSync(cached) ? cached : null;
}

/** What to do when findApiServer() finds nothing. */
export function apiServerMissingMessage(): string {
  const fromEnv = process.env.AKS_MESH_KUBE_APISERVER;
  if (fromEnv) return `AKS_MESH_KUBE_APISERVER=${fromEnv} does not exist`;
  return (
    `kube-apiserver ${APISERVER_VERSION} not found at ${cachedApiServerPath()}: build it once with ` +
    `sandbox/build-apiserver.sh (as root, 7-9 minutes, cached afterwards), or set AKS_MESH_KUBE_APISERVER=/path`
  );
}

export const ETCD_BINARY = '/usr/bin/etcd';
/** kubectl for TestCluster.kubectl(): $AKS_MESH_KUBECTL, else /usr/bin/kubectl (Debian: kubernetes-client). */
export const KUBECTL_BINARY = process.env.AKS_MESH_KUBECTL ?? '/usr/bin/kubectl';

/** Why Kubernetes tests cannot run here, or null when they can. */
export function kubeTestsUnavailable(): string | null {
  const why = kubeMissing();
  // scripts/test (and CI) sets AKS_MESH_REQUIRE_KUBE=1: a missing part is then a failure, never a silent skip.
  if (why && process.env.AKS_MESH_REQUIRE_KUBE === '1') throw new Error(`Kubernetes tests required but unavailable: ${why}`);
  return why;
}

function kubeMissing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!findApiServer()) return apiServerMissingMessage();
  if (!existsSync(ETCD_BINARY)) return `needs etcd (${ETCD_BINARY}): apt-get install etcd-server`;
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    return 'needs the openssl CLI: apt-get install openssl';
  }
  return null;
}

export interface ClusterUser {
  name: string;
  groups?: string[];
}

export interface TestClusterOptions {
  /** Extra IP addresses for the serving certificate (e.g. a bridge address agents in namespaces use). */
  extraIps?: string[];
  /**
   * The address kube-apiserver listens on (default 127.0.0.1). To be reachable on an extra IP as well
   * as on loopback, pass '0.0.0.0'.
   */
  bindAddress?: string;
  /** Token users besides `admin` (system:masters); RBAC bindings are the test's business. */
  users?: ClusterUser[];
  /** kube-apiserver binary (default: findApiServer()). */
  binary?: string;
  /** Extra kube-apiserver flags, appended (later flags win). */
  extraArgs?: string[];
  /** How long to wait for /readyz, per start (default 60 s). */
  readyTimeoutMs?: number;
  /** Whether Ctrl-C / SIGTERM stops this cluster and exits (default true); false: the owner stops it. */
  exitOnSignal?: boolean;
  /**
   * Keep kube-apiserver's ServiceAccount admission plugin on (default false: it is disabled, because
   * without a controller-manager no `default` ServiceAccount exists and the plugin would refuse every
   * pod). Real nodes (sandbox/kubenode.ts) run a controller-manager, and pods there need their
   * service-account token mounted, as on any cluster.
   */
  serviceAccounts?: boolean;
}

export interface KubectlResult {
  /** Exit code; 128 + signal number when killed (e.g. by the timeout). */
  code: number;
  stdout: string;
  stderr: string;
}

export interface StartupTimings {
  /** Certificates and keys. */
  certsMs: number;
  /** etcd start to its /health. */
  etcdMs: number;
  /** kube-apiserver spawn to /readyz ok (the last start; startApiServer updates it). */
  apiServerMs: number;
  /** Whole TestCluster.start(). */
  totalMs: number;
}

interface Proc {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

const live = new Set<TestCluster>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const cluster of live) cluster.cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      // Clusters started with exitOnSignal: false belong to an owner that tears them down itself (the demo).
      const ours = [...live].filter((c) => c.exitOnSignal);
      for (const cluster of ours) cluster.cleanupSync();
      // Exit as the signal would have, unless nothing of ours ran and someone else handles it.
      if (ours.length > 0 || process.listenerCount(sig) === 1) process.exit(128 + (osConstants.signals[sig] ?? 0));
    });
  }
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export class TestCluster {
  /** The temp dir holding certificates, keys, the etcd data, kubeconfigs and logs. */
  readonly dir: string;
  /** kube-apiserver's secure port (the same across stopApiServer/startApiServer). */
  readonly port: number;
  /** https://127.0.0.1:<port> (or https://<bindAddress>:<port> for a non-wildcard, non-loopback bind). */
  readonly server: string;
  /** The cluster CA, PEM. */
  readonly caPem: string;
  readonly apiServerLog: string;
  readonly etcdLog: string;
  readonly timings: StartupTimings;
  /** Whether the ServiceAccount admission plugin runs (TestClusterOptions.serviceAccounts). */
  readonly serviceAccounts: boolean;

  private readonly binary: string;
  private readonly apiServerArgs: string[];
  private readonly readyTimeoutMs: number;
  private readonly tokens = new Map<string, { token: string; groups: string[] }>();
  private etcd: Proc | undefined;
  private etcdClientUrl = '';
  private apiServer: Proc | undefined;
  private readonly kubeconfigs = new Map<string, string>();
  /** Ports reserved for this cluster in PORT_DIR, released at stop. */
  private readonly reservedPorts: number[] = [];
  private stopped = false;
  /** See TestClusterOptions.exitOnSignal. */
  exitOnSignal = true;
  /** Second API servers (startSecondApiServer) still running. */
  private readonly extra = new Set<Proc>();

  private constructor(init: {
    dir: string;
    port: number;
    server: string;
    caPem: string;
    binary: string;
    apiServerArgs: string[];
    readyTimeoutMs: number;
    timings: StartupTimings;
    serviceAccounts: boolean;
  }) {
    this.dir = init.dir;
    this.port = init.port;
    this.server = init.server;
    this.caPem = init.caPem;
    this.binary = init.binary;
    this.apiServerArgs = init.apiServerArgs;
    this.readyTimeoutMs = init.readyTimeoutMs;
    this.timings = init.timings;
    this.serviceAccounts = init.serviceAccounts;
    this.apiServerLog = join(init.dir, 'kube-apiserver.log');
    this.etcdLog = join(init.dir, 'etcd.log');
  }

  /** Generate certificates, start etcd and kube-apiserver, wait for /readyz. Cleans up on failure. */
  static async start(opts: TestClusterOptions = {}): Promise<TestCluster> {
    const t0 = performance.now();
    const binary = opts.binary ?? findApiServer();
    if (!binary) throw new Error(apiServerMissingMessage());
    const bindAddress = opts.bindAddress ?? '127.0.0.1';
    const host = bindAddress === '0.0.0.0' || bindAddress === '127.0.0.1' ? '127.0.0.1' : bindAddress;
    const dir = await mkdtemp(join(tmpdir(), 'aks-mesh-kube-'));
    let cluster: TestCluster | undefined;
    try {
      const ips = unique(['127.0.0.1', KUBERNETES_SERVICE_IP, ...(host === '127.0.0.1' ? [] : [host]), ...(opts.extraIps ?? [])]);
      const caPem = await makeCertificates(dir, ips);
      const certsMs = performance.now() - t0;

      const [port] = await freePorts(1);
      const timings: StartupTimings = { certsMs, etcdMs: 0, apiServerMs: 0, totalMs: 0 };
      cluster = new TestCluster({
        dir,
        port,
        server: `https://${host}:${port}`,
        caPem,
        binary,
        apiServerArgs: [],
        readyTimeoutMs: opts.readyTimeoutMs ?? 60_000,
        timings,
        serviceAccounts: opts.serviceAccounts ?? false,
      });
      cluster.reservedPorts.push(port);
      cluster.exitOnSignal = opts.exitOnSignal ?? true;
      live.add(cluster);
      hookExit();

      cluster.tokens.set('admin', { token: randomToken(), groups: ['system:masters'] });
      for (const user of opts.users ?? []) cluster.declareUser(user.name, user.groups ?? []);
      await cluster.writeTokenFile();

      const t1 = performance.now();
      const etcdUrl = await cluster.startEtcd();
      timings.etcdMs = performance.now() - t1;
      cluster.apiServerArgs.push(...apiServerFlags(dir, { bindAddress, host, port, etcdUrl, serviceAccounts: opts.serviceAccounts ?? false }), ...(opts.extraArgs ?? []));

      await cluster.startApiServer();
      timings.totalMs = performance.now() - t0;
      return cluster;
    } catch (err) {
      if (cluster) await cluster.stop().catch(() => undefined);
      else await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The cluster CA's certificate (PEM file): a controller-manager's --root-ca-file. */
  get caCertPath(): string {
    return join(this.dir, 'ca.crt');
  }

  /** The service-account signing key (PEM file): a controller-manager's --service-account-private-key-file. */
  get serviceAccountKeyPath(): string {
    return join(this.dir, 'sa.key');
  }

  /** etcd's client URL (http://127.0.0.1:<free port>). */
  get etcdUrl(): string {
    return this.etcdClientUrl;
  }

  /** etcd's pid while it runs. */
  get etcdPid(): number | undefined {
    return this.etcd?.pid;
  }

  /** kube-apiserver's pid while it runs (undefined between stopApiServer and startApiServer). */
  get apiServerPid(): number | undefined {
    return this.apiServer?.pid;
  }

  /** The bearer token of a user. */
  token(user = 'admin'): string {
    const entry = this.tokens.get(user);
    if (!entry) throw new Error(`no user ${user} in this cluster (users: ${[...this.tokens.keys()].join(', ')})`);
    return entry.token;
  }

  /** The users and their groups. */
  get users(): ReadonlyArray<Required<ClusterUser>> {
    return [...this.tokens].map(([name, { groups }]) => ({ name, groups: [...groups] }));
  }

  /**
   * Add a token user. kube-apiserver reads its token file only at start, so this restarts it (same
   * port, same etcd; about as long as a start); declare users in `start({ users })` when you can.
   * Adding an existing user with the same groups does nothing.
   */
  async addUser(name: string, groups: string[] = []): Promise<void> {
    const existing = this.tokens.get(name);
    if (existing && sameList(existing.groups, groups)) return;
    if (existing) throw new Error(`user ${name} already exists with groups [${existing.groups.join(', ')}]`);
    this.declareUser(name, groups);
    await this.writeTokenFile();
    if (this.apiServer) {
      await this.stopApiServer();
      await this.startApiServer();
    }
  }

  /**
   * A KubeConfig for a user (token auth, the cluster CA inline). `server` overrides the URL, e.g.
   * `https://<bridge ip>:<port>` for a process in a network namespace (the IP must be in extraIps).
   */
  kubeConfig(user = 'admin', options: { server?: string; namespace?: string } = {}): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions(this.kubeConfigObject(user, options));
    return kc;
  }

  /** Write a kubeconfig file (mode 0600) for child processes and kubectl; returns the path. */
  async writeKubeconfig(path: string, user = 'admin', options: { server?: string; namespace?: string } = {}): Promise<string> {
    await writeFile(path, JSON.stringify(this.kubeConfigExport(user, options), null, 2) + '\n', { mode: 0o600 });
    return path;
  }

  /**
   * Run kubectl (KUBECTL_BINARY) against this cluster as a user (default admin). Never throws for a non-zero
   * exit: the result carries code, stdout and stderr. `input` is written to kubectl's stdin
   * (`kubectl(['apply', '-f', '-'], { input: yaml })`).
   */
  async kubectl(args: string[], options: { user?: string; input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
    const user = options.user ?? 'admin';
    let config = this.kubeconfigs.get(user);
    if (!config) {
      config = await this.writeKubeconfig(join(this.dir, `kubeconfig-${safeName(user)}`), user);
      this.kubeconfigs.set(user, config);
    }
    const child = spawn(KUBECTL_BINARY, ['--kubeconfig', config, '--cache-dir', join(this.dir, 'kubectl-cache'), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, sig) => {
        resolve({ code: code ?? 128 + (sig ? (osConstants.signals[sig] ?? 0) : 0), stdout, stderr });
      });
    });
  }

  /**
   * Stop only kube-apiserver (etcd keeps running): SIGTERM, SIGKILL after `graceMs` (default 5 s;
   * 0 kills at once, like a crash). Clients see connection refused until startApiServer().
   */
  async stopApiServer(options: { graceMs?: number } = {}): Promise<void> {
    const proc = this.apiServer;
    this.apiServer = undefined;
    if (proc) await terminate(proc, options.graceMs ?? 5000);
  }

  /** Start kube-apiserver again on the same port, with the same flags, and wait for /readyz. */
  async startApiServer(): Promise<void> {
    if (this.stopped) throw new Error('this cluster was stopped');
    if (this.apiServer) throw new Error(`kube-apiserver is already running (pid ${this.apiServer.pid})`);
    const t0 = performance.now();
    // A freshly freed port can still be briefly held (e.g. by a client's outgoing connection): retry a few times.
    for (let attempt = 1; ; attempt++) {
      const proc = this.spawnLogged(this.binary, this.apiServerArgs, this.apiServerLog, 'kube-apiserver');
      this.apiServer = proc;
      try {
        await this.waitReady(proc, t0);
        break;
      } catch (err) {
        this.apiServer = undefined;
        await terminate(proc, 0);
        const inUse = /address already in use/.test(tailOf(this.apiServerLog, 20));
        if (!inUse || attempt >= 5) throw err;
        await sleep(500 * attempt);
      }
    }
    this.timings.apiServerMs = performance.now() - t0;
  }

  /**
   * A second kube-apiserver on the same etcd, on a port of its own: the cluster stays writable while
   * the first one is stopped, so a test can change objects "while the API server is away" from a
   * client's point of view. The caller stops it (also stopped by stop()).
   */
  async startSecondApiServer(): Promise<{ server: string; kubeConfig(user?: string): k8s.KubeConfig; stop(): Promise<void> }> {
    if (this.stopped) throw new Error('this cluster was stopped');
    const [port] = await freePorts(1);
    this.reservedPorts.push(port);
    const args = this.apiServerArgs.map((a) => (a.startsWith('--secure-port=') ? `--secure-port=${port}` : a));
    const server = this.server.replace(/:\d+$/, `:${port}`);
    const proc = this.spawnLogged(this.binary, args, `${this.apiServerLog}.second`, 'second kube-apiserver');
    this.extra.add(proc);
    const stop = async (): Promise<void> => {
      this.extra.delete(proc);
      await terminate(proc, 3000);
    };
    try {
      const get = () => getStatus(`${server}/readyz`, { ca: this.caPem, token: this.token('admin') });
      await waitFor(proc, 'second kube-apiserver', this.readyTimeoutMs, get, (st) => st.status === 200, () => tailOf(`${this.apiServerLog}.second`, 40));
    } catch (err) {
      await stop();
      throw err;
    }
    return { server, kubeConfig: (user = 'admin') => this.kubeConfig(user, { server }), stop };
  }

  /** Stop kube-apiserver and etcd (SIGTERM, then SIGKILL) and remove the temp dir. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    const api = this.apiServer;
    const etcd = this.etcd;
    this.apiServer = undefined;
    this.etcd = undefined;
    if (api) await terminate(api, 3000);
    for (const proc of this.extra) await terminate(proc, 3000);
    this.extra.clear();
    if (etcd) await terminate(etcd, 3000);
    await rm(this.dir, { recursive: true, force: true });
    releasePorts(this.reservedPorts.splice(0));
    live.delete(this);
  }

  /** Last lines of the kube-apiserver and etcd logs. */
  logTail(lines = 40): string {
    return `--- ${this.apiServerLog} (last ${lines} lines)\n${tailOf(this.apiServerLog, lines)}\n--- ${this.etcdLog} (last ${lines} lines)\n${tailOf(this.etcdLog, lines)}`;
  }

  /** For exit hooks: SIGKILL both processes, wait for them to die, remove the temp dir. */
  cleanupSync(): void {
    this.stopped = true;
    const pids = [this.apiServer?.pid, ...[...this.extra].map((p) => p.pid), this.etcd?.pid].filter((p): p is number => p !== undefined);
    this.extra.clear();
    this.apiServer = undefined;
    this.etcd = undefined;
    for (const pid of pids) signal(pid, 'SIGKILL');
    const deadline = Date.now() + 3000;
    while (pids.some(isRunning) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* a process we could not kill may still write there */
    }
    releasePorts(this.reservedPorts.splice(0));
    live.delete(this);
  }

  private declareUser(name: string, groups: string[]): void {
    if (!/^[A-Za-z0-9:._@-]+$/.test(name)) throw new Error(`user name ${JSON.stringify(name)}: use letters, digits and : . _ @ -`);
    for (const g of groups) if (!/^[A-Za-z0-9:._@-]+$/.test(g)) throw new Error(`group ${JSON.stringify(g)}: use letters, digits and : . _ @ -`);
    if (this.tokens.has(name)) throw new Error(`user ${name} declared twice`);
    this.tokens.set(name, { token: randomToken(), groups: [...groups] });
  }

  private async writeTokenFile(): Promise<void> {
    // token,user,uid,"group1,group2"
    const lines = [...this.tokens].map(([name, { token, groups }]) =>
      groups.length ? `${token},${name},${name},"${groups.join(',')}"` : `${token},${name},${name}`,
    );
    await writeFile(join(this.dir, 'tokens.csv'), lines.join('\n') + '\n', { mode: 0o600 });
  }

  private kubeConfigObject(user: string, options: { server?: string; namespace?: string }) {
    const token = this.token(user);
    return {
      clusters: [{ name: 'aks-mesh-test', server: options.server ?? this.server, caData: Buffer.from(this.caPem).toString('base64'), skipTLSVerify: false }],
      users: [{ name: user, token }],
      contexts: [{ name: `${user}@aks-mesh-test`, cluster: 'aks-mesh-test', user, namespace: options.namespace }],
      currentContext: `${user}@aks-mesh-test`,
    };
  }

  private kubeConfigExport(user: string, options: { server?: string; namespace?: string }) {
    const o = this.kubeConfigObject(user, options);
    return {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: o.clusters[0].name, cluster: { server: o.clusters[0].server, 'certificate-authority-data': o.clusters[0].caData } }],
      users: [{ name: user, user: { token: o.users[0].token } }],
      contexts: [{ name: o.currentContext, context: { cluster: 'aks-mesh-test', user, ...(options.namespace ? { namespace: options.namespace } : {}) } }],
      'current-context': o.currentContext,
    };
  }

  /** Start etcd on two free loopback ports, retrying with new ports if another process took them. */
  private async startEtcd(): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      const [clientPort, peerPort] = await freePorts(2);
      this.reservedPorts.push(clientPort, peerPort);
      const clientUrl = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const args = [
        '--name', 'default',
        '--data-dir', join(this.dir, 'etcd'),
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', `default=${peerUrl}`,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', `aks-mesh-${randomBytes(4).toString('hex')}`,
        '--logger', 'zap',
        '--log-outputs', 'stderr',
        '--heartbeat-interval', '50',
        '--election-timeout', '250',
        '--snapshot-count', '100000',
        '--quota-backend-bytes', String(512 * 1024 * 1024),
      ];
      const proc = this.spawnLogged(ETCD_BINARY, args, this.etcdLog, 'etcd');
      this.etcd = proc;
      try {
        await waitFor(proc, 'etcd', 30_000, () => getStatus(`${clientUrl}/health`), (s) => s.status === 200, () => tailOf(this.etcdLog, 30));
        this.etcdClientUrl = clientUrl;
        return clientUrl;
      } catch (err) {
        this.etcd = undefined;
        await terminate(proc, 0);
        if (!/address already in use/.test(tailOf(this.etcdLog, 30)) || attempt >= 5) throw err;
        releasePorts(this.reservedPorts.splice(-2));
        rmSync(join(this.dir, 'etcd'), { recursive: true, force: true });
      }
    }
  }

  private async waitReady(proc: Proc, t0: number): Promise<void> {
    const url = `${this.server}/readyz`;
    const get = () => getStatus(url, { ca: this.caPem, token: this.token('admin') });
    try {
      await waitFor(proc, 'kube-apiserver', this.readyTimeoutMs - (performance.now() - t0), get, (s) => s.status === 200, () => this.logTail(40));
    } catch (err) {
      // Name the checks that were still failing.
      const verbose = await getStatus(`${url}?verbose`, { ca: this.caPem, token: this.token('admin') }).catch(() => undefined);
      if (verbose && verbose.status !== 200 && err instanceof Error) err.message += `\n--- ${url}?verbose (${verbose.status})\n${verbose.body}`;
      throw err;
    }
  }

  private spawnLogged(command: string, args: string[], logPath: string, name: string): Proc {
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      writeSync(fd, `=== ${new Date().toISOString()} aks-mesh test harness: starting ${name}\n`);
      // --pdeathsig: the kernel kills the process if ours dies without running any hook (SIGKILL).
      child = SETPRIV
        ? spawn(SETPRIV, ['--pdeathsig', 'SIGKILL', '--', command, ...args], { stdio: ['ignore', fd, fd] })
        : spawn(command, args, { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    return { child, pid: child.pid, exited };
  }
}

function apiServerFlags(dir: string, o: { bindAddress: string; host: string; port: number; etcdUrl: string; serviceAccounts: boolean }): string[] {
  const f = (name: string) => join(dir, name);
  return [
    `--bind-address=${o.bindAddress}`,
    `--advertise-address=${o.host}`,
    `--secure-port=${o.port}`,
    '--insecure-port=0', // 1.20 still opens 127.0.0.1:8080 by default; parallel runs would collide
    `--cert-dir=${f('certs')}`,
    `--tls-cert-file=${f('apiserver.crt')}`,
    `--tls-private-key-file=${f('apiserver.key')}`,
    `--client-ca-file=${f('ca.crt')}`,
    `--etcd-servers=${o.etcdUrl}`,
    `--token-auth-file=${f('tokens.csv')}`,
    '--authorization-mode=Node,RBAC',
    `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-account-signing-key-file=${f('sa.key')}`,
    `--service-account-key-file=${f('sa.pub')}`,
    `--api-audiences=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
    '--endpoint-reconciler-type=none',
    '--allow-privileged=true',
    // No controller-manager creates the `default` ServiceAccount, so this plugin would refuse every pod
    // (unless the caller runs one: serviceAccounts).
    ...(o.serviceAccounts ? [] : ['--disable-admission-plugins=ServiceAccount']),
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    '--logtostderr=true',
  ];
}

/** CA, serving cert (SANs: ips and the kubernetes service names), service-account key pair. Returns the CA PEM. */
async function makeCertificates(dir: string, ips: string[]): Promise<string> {
  const dns = ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'];
  const cnf = join(dir, 'openssl.cnf');
  await writeFile(
    cnf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = unused',
      '[ca_ext]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign,digitalSignature',
      'subjectKeyIdentifier = hash',
      '[server_ext]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      'subjectAltName = @alt',
      '[alt]',
      ...ips.map((ip, i) => `IP.${i + 1} = ${ip}`),
      ...dns.map((d, i) => `DNS.${i + 1} = ${d}`),
      '',
    ].join('\n'),
  );
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '7'];
  const openssl = async (args: string[]) => {
    try {
      await execFileAsync('openssl', args, { cwd: dir });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
    }
  };
  const sa = generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const tag = randomBytes(4).toString('hex');
  await openssl(['req', '-x509', '-new', '-config', cnf, '-extensions', 'ca_ext', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', `/CN=aks-mesh-test-ca-${tag}`]);
  await openssl(['req', '-x509', '-new', '-config', cnf, '-extensions', 'server_ext', '-CA', 'ca.crt', '-CAkey', 'ca.key', ...ec, '-keyout', 'apiserver.key', '-out', 'apiserver.crt', '-subj', '/CN=kube-apiserver']);
  const { publicKey, privateKey } = await sa;
  await writeFile(join(dir, 'sa.key'), privateKey, { mode: 0o600 });
  await writeFile(join(dir, 'sa.pub'), publicKey);
  return readFileSync(join(dir, 'ca.crt'), 'utf8');
}

/**
 * n distinct free TCP ports on 127.0.0.1, each reserved for this process in PORT_DIR (so parallel
 * runs of this harness never pick a port another run holds, even while its API server is stopped for
 * a restart), and below the kernel's ephemeral range when possible (so no outgoing connection takes
 * one in the meantime either). Release them with releasePorts.
 */
async function freePorts(n: number): Promise<number[]> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    /* not Linux */
  }
  const lo = 10000;
  const hi = Math.max(lo + 1000, low) - 1;
  sweepStalePorts();
  const ports: number[] = [];
  const take = async (candidate: number): Promise<void> => {
    if (ports.includes(candidate) || !reservePort(candidate)) return;
    if (await canBind(candidate)) ports.push(candidate);
    else releasePorts([candidate]);
  };
  for (let tries = 0; ports.length < n && tries < 200; tries++) await take(lo + Math.floor(Math.random() * (hi - lo + 1)));
  for (let tries = 0; ports.length < n && tries < 50; tries++) await take(await bindAny());
  if (ports.length < n) {
    releasePorts(ports);
    throw new Error(`could not find ${n} free ports on 127.0.0.1`);
  }
  return ports;
}

/** Where ports are reserved: one file per port, holding the owner's pid (stale owners are taken over). */
// Machine-wide, not under $TMPDIR: a run with its own TMPDIR (scripts/test) must still see the others' claims.
export const PORT_DIR = '/tmp/aks-mesh-kube-ports';

function reservePort(port: number): boolean {
  const path = join(PORT_DIR, String(port));
  try {
    mkdirSync(PORT_DIR, { recursive: true, mode: 0o755 });
  } catch {
    return true; // cannot coordinate; the bind test still applies
  }
  try {
    return claimPidFile(path);
  } catch {
    return true; // cannot coordinate; the bind test still applies
  }
}

let swept = false;
/** Once per process: drop reservations whose owner died without releasing them (SIGKILL). */
function sweepStalePorts(): void {
  if (swept) return;
  swept = true;
  let names: string[];
  try {
    names = readdirSync(PORT_DIR);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(PORT_DIR, name);
    try {
      const owner = Number(readFileSync(path, 'utf8'));
      if (owner && !isRunning(owner)) unlinkSync(path);
    } catch {
      /* released meanwhile */
    }
  }
}

function releasePorts(ports: number[]): void {
  for (const port of ports) {
    const path = join(PORT_DIR, String(port));
    try {
      if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
    } catch {
      /* already gone */
    }
  }
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function bindAny(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

interface HttpStatus {
  status: number;
  body: string;
}

function getStatus(url: string, auth?: { ca: string; token: string }): Promise<HttpStatus> {
  return new Promise((resolve, reject) => {
    const options = { timeout: 2000, agent: false as const, ...(auth ? { ca: auth.ca, headers: { Authorization: `Bearer ${auth.token}` } } : {}) };
    const req = (url.startsWith('https:') ? request : httpRequest)(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout on ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Poll until ok(probe()) or the process exits or time runs out; errors carry the log tail. */
async function waitFor(
  proc: Proc,
  name: string,
  timeoutMs: number,
  probe: () => Promise<HttpStatus>,
  ok: (s: HttpStatus) => boolean,
  logs: () => string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  let last = 'no answer yet';
  while (true) {
    if (exited) {
      const { exitCode, signalCode } = proc.child;
      throw new Error(`${name} (pid ${proc.pid}) exited with ${signalCode ?? `code ${exitCode}`} before it was ready\n${logs()}`);
    }
    try {
      const s = await probe();
      if (ok(s)) return;
      last = `HTTP ${s.status}: ${s.body.trim().slice(0, 300)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (performance.now() > deadline) {
      throw new Error(`${name} (pid ${proc.pid}) not ready after ${Math.round(timeoutMs / 1000)} s (last probe: ${last})\n${logs()}`);
    }
    await sleep(100);
  }
}

/** SIGTERM (unless graceMs is 0), SIGKILL after graceMs, resolve once the process is reaped. */
async function terminate(proc: Proc, graceMs: number): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return proc.exited;
  if (graceMs > 0) {
    signal(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => signal(proc.pid, 'SIGKILL'), graceMs);
    await proc.exited;
    clearTimeout(timer);
  } else {
    signal(proc.pid, 'SIGKILL');
    await proc.exited;
  }
}

/** Whether a pid is a live process (a zombie, killed but not yet reaped, counts as gone). */
export { isRunning };

/** gRPC's chatter in kube-apiserver's log (one pair of lines per etcd client), left out of tails. */
const NOISE = /ccResolverWrapper|parsed scheme|switching balancer|pickfirstBalancer|balancerWrapper/;

/** The last `lines` meaningful lines of a log. */
function tailOf(path: string, lines: number): string {
  return tailOfFile(path, lines, NOISE);
}

function randomToken(): string {
  return randomBytes(24).toString('hex');
}

function safeName(user: string): string {
  return user.replace(/[^A-Za-z0-9._-]/g, '_');
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
