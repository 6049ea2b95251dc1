/**
 * Another user, for tests that show what the agent's user may do and others may not (the control
 * socket is owner-only): Node scripts run as nobody (uid 65534) in a child process, and a folder
 * nobody can reach. Needs root, as the suite runs.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const NOBODY = 65534;

/** Why another user cannot be tried here (not root), or false; throws where the suite requires it (AKS_MESH_REQUIRE_NETWORK=1). */
export function nobodyUnavailable(): string | false {
  const why = process.getuid?.() === 0 ? false : 'needs root, to run a child process as nobody (uid 65534)';
  if (why && process.env.AKS_MESH_REQUIRE_NETWORK === '1') throw new Error(`tests required but unavailable: ${why}`);
  return why;
}

/**
 * A fresh folder, root's and 0711, that nobody can enter (not list): under /tmp, not the run's
 * TMPDIR, which may be a folder only root can enter (scripts/test makes it 0700) and would turn
 * nobody away before what a test means to show is ever looked at. The caller removes it.
 */
export function folderNobodyCanEnter(prefix: string): string {
  const dir = mkdtempSync(`/tmp/${prefix}`);
  chmodSync(dir, 0o711);
  return dir;
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// CommonJS dependencies call require(): give the bundled ES module one (as scripts/build.ts does).
const REQUIRE_SHIM = "import { createRequire as __nobodyRequire } from 'node:module'; const require = __nobodyRequire(import.meta.url);";

/**
 * What nobody runs, where nobody can read it: a folder (0755, under /tmp) with a copy of this node
 * binary and the scripts bundled for it. The checkout, and the node inside its node_modules, may
 * sit in a folder only root can enter (a CI clone under a 0700 temp dir), where nobody could not
 * even start node, and a test would show that instead of what it means to. Removed at exit.
 */
let kit: string | null = null;
function nobodyKit(): string {
  if (kit) return kit;
  const dir = mkdtempSync('/tmp/aks-mesh-nobody-');
  chmodSync(dir, 0o755);
  copyFileSync(process.execPath, join(dir, 'node'));
  chmodSync(join(dir, 'node'), 0o755);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  kit = dir;
  return dir;
}

/** `script` (ES module text; file:// URLs of .ts files are fine) bundled with what it imports into one file nobody can read. */
async function bundleForNobody(script: string): Promise<string> {
  const { build } = await import('esbuild');
  const dir = nobodyKit();
  const outfile = join(dir, `script-${randomBytes(4).toString('hex')}.mjs`);
  const common = { outfile, bundle: true, platform: 'node', format: 'esm', target: 'node24', banner: { js: REQUIRE_SHIM }, logLevel: 'error' } as const;
  // esbuild resolves paths, not file:// URLs.
  const contents = script.replace(/file:\/\/(\/[^'"`\s]+)/g, (_m, path: string) => decodeURIComponent(path));
  await build({ ...common, stdin: { contents, resolveDir: REPO_ROOT, sourcefile: 'nobody-script.mjs', loader: 'js' } });
  chmodSync(outfile, 0o644);
  return outfile;
}

/** The CLI bundle, built once per process by scripts/build.ts (what the image runs: version and commit fixed in). */
let cliBundle: string | null = null;
function nobodyCli(): string {
  if (cliBundle) return cliBundle;
  const outfile = join(nobodyKit(), 'aks-mesh.mjs');
  execFileSync(process.execPath, [join(REPO_ROOT, 'scripts', 'build.ts'), '--outfile', outfile], { stdio: 'pipe' });
  chmodSync(outfile, 0o644);
  cliBundle = outfile;
  return outfile;
}

/** The aks-mesh CLI (cli/main.ts, bundled as the image bundles it), run as nobody: exit code and output. */
export async function runCliAsNobody(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = nobodyCli();
  return new Promise((done, reject) => {
    const child = spawn(join(nobodyKit(), 'node'), [file, ...args], {
      cwd: '/',
      uid: NOBODY,
      gid: NOBODY,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '1', AKS_MESH_CONTROL_SOCKET: '', AKS_MESH_INTERFACE: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** Run a Node script (an ES module; it may import .ts files by URL) as nobody: its stdout, or null when it had not ended after `timeoutMs`. */
export async function runAsNobody(script: string, timeoutMs = 20_000): Promise<string | null> {
  const file = await bundleForNobody(script);
  return new Promise((resolve, reject) => {
    const child = spawn(join(nobodyKit(), 'node'), [file], {
      cwd: '/',
      uid: NOBODY,
      gid: NOBODY,
      stdio: ['ignore', 'pipe', 'inherit'],
      // Root's compile cache is not nobody's to write.
      env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '1' },
    });
    let out = '';
    let hung = false;
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(hung ? null : out);
    });
  });
}

/** What nobody gets connecting to a Unix socket: 'connected', or the error's code (EACCES, ENOENT, ...). */
export async function nobodyConnects(path: string): Promise<string | null> {
  return runAsNobody(`import { connect } from 'node:net';
const s = connect({ path: ${JSON.stringify(path)} });
s.once('connect', () => { process.stdout.write('connected'); s.destroy(); });
s.once('error', (e) => process.stdout.write(e.code ?? e.message));`);
}
