/**
 * Real Helm for the chart tests: the binary scripts/fetch-helm.sh cached (that script pins the
 * version), run with its state (repositories, cache, plugins) in a folder of the test's, never the
 * user's home. Shared by e2e/chart.test.ts and e2e/uninstall-hook.test.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';

export const ROOT = join(import.meta.dirname, '..');
// AKS_MESH_CHART: another copy of the chart (to check the tests catch a broken one).
export const CHART = process.env.AKS_MESH_CHART ?? join(ROOT, 'charts', 'aks-mesh');

/** Helm: $AKS_MESH_HELM, else the one scripts/fetch-helm.sh cached. */
export function findHelm(): { helm: string } | { missing: string } {
  const fromEnv = process.env.AKS_MESH_HELM;
  if (fromEnv) return { helm: fromEnv };
  try {
    const out = execFileSync(join(ROOT, 'scripts', 'fetch-helm.sh'), ['--cached'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { helm: out.trim() };
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    return { missing: stderr || 'no helm: run scripts/fetch-helm.sh (or set AKS_MESH_HELM=/path/to/helm)' };
  }
}

/** Why the Helm + API server tests cannot run here, or false. Under AKS_MESH_REQUIRE_KUBE=1 (scripts/test, CI) a missing Helm is a failure. */
export function helmTestsUnavailable(): string | false {
  const kube = kubeTestsUnavailable();
  if (kube) return kube;
  const found = findHelm();
  if ('missing' in found) {
    if (process.env.AKS_MESH_REQUIRE_KUBE === '1') throw new Error(`chart tests required but Helm is unavailable: ${found.missing}`);
    return found.missing;
  }
  return false;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8', timeout, killSignal: 'SIGKILL', maxBuffer: 16 << 20, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A Helm runner whose state lives under `dir`. */
export function helmIn(dir: string): (args: string[]) => Promise<Run> {
  const found = findHelm();
  if ('missing' in found) throw new Error(found.missing);
  const home = join(dir, 'helm');
  for (const d of ['cache', 'config', 'data']) mkdirSync(join(home, d), { recursive: true });
  const env = { HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  return (args) => run(found.helm, args, env);
}

export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } } & Record<string, unknown>;

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest | null)
    .filter((o): o is Manifest => o !== null && typeof o === 'object');
}

export function kinds(manifests: Manifest[]): string[] {
  return manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
}
