/**
 * Another user, for tests that show what the agent's user may do and others may not (the control
 * socket is owner-only): Node scripts run as nobody (uid 65534) in a child process, and a folder
 * nobody can reach. Needs root, as the suite runs.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';

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

/** Run a Node script (an ES module; it may import .ts files by URL) as nobody: its stdout, or null when it had not ended after `timeoutMs`. */
export function runAsNobody(script: string, timeoutMs = 20_000): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
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
