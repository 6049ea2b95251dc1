/**
 * `aks-mesh version` from a checkout (the image's bundle is e2e/image.test.ts's): package.json's
 * version and this checkout's commit, the wireguard-go the agent would pick, and a clear word when
 * that binary is missing or broken rather than a failure.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { findWireguardGo } from '../../native/index.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const main = join(root, 'cli', 'main.ts');
const ours = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

function wireguardGo(): string | null {
  try {
    return findWireguardGo();
  } catch {
    return null;
  }
}

function version(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [main, 'version', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
}

test('prints our version and commit, the build kind and node', () => {
  const r = version(['--json']);
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { version: string; commit: string | null; build: string; node: string };
  assert.equal(info.version, ours);
  assert.equal(info.build, 'source');
  assert.equal(info.node, process.version);
  let head: string | null = null;
  try {
    head = execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a checkout: the commit is unknown
  }
  assert.equal(info.commit, head);
});

test('names the wireguard-go the agent would run and that binary\'s own version', { skip: wireguardGo() ? false : 'no wireguard-go here' }, () => {
  const binary = wireguardGo() as string;
  const r = version([]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^aks-mesh ${ours.replace(/\./g, '\\.')} \\(commit (unknown|[0-9a-f]{12}), source\\)$`, 'm'));
  const reported = new RegExp(`^wireguard-go (v\\d+\\.\\d+\\.\\d+) \\(${binary.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)$`, 'm').exec(r.stdout);
  assert.ok(reported, r.stdout);
  assert.ok(execFileSync(binary, ['--version'], { encoding: 'utf8' }).includes(reported[1]));
});

test('says clearly when wireguard-go is missing or broken, and still exits 0', () => {
  const missing = version([], { AKS_MESH_WIREGUARD_GO: '/nonexistent/wireguard-go' });
  assert.equal(missing.status, 0, missing.stderr);
  assert.match(missing.stdout, /^wireguard-go MISSING: AKS_MESH_WIREGUARD_GO=\/nonexistent\/wireguard-go is not an executable file$/m);
  const broken = JSON.parse(version(['--json', '--wireguard-go', '/bin/false']).stdout) as { wireguardGo: { path: string; error: string } };
  assert.equal(broken.wireguardGo.path, '/bin/false');
  assert.match(broken.wireguardGo.error, /^\/bin\/false --version failed/);
});
