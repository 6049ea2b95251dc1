import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv } from 'yargs';

// Loaded on use: the mesh modules pull in @kubernetes/client-node, which costs every other command ~0.2 s of startup.
const manifests = async (): Promise<Map<string, string>> => (await import('../../mesh/manifests.ts')).generatedManifests();

interface CrdsArgs {
  'out-dir': string;
  check: boolean;
  print: boolean;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Paths whose content differs from what would be generated (missing files included). */
export async function driftedManifests(root: string): Promise<string[]> {
  const drifted: string[] = [];
  for (const [path, text] of await manifests()) {
    const current = await readFile(join(root, path), 'utf8').catch(() => null);
    if (current !== text) drifted.push(path);
  }
  return drifted;
}

export function crdsCommand(y: Argv): Argv {
  return y.command<CrdsArgs>(
    'crds',
    'Write the Peer and Gateway CRDs, the RBAC manifests and the node-bound-writes admission policy (config/crd/bases, config/rbac, config/admission and the chart) from their one source in mesh/',
    (c) =>
      c
        .option('out-dir', { type: 'string', default: repoRoot, describe: 'Repository root to write into' })
        .option('check', { type: 'boolean', default: false, describe: 'Write nothing; exit 1 if any file differs from what would be generated' })
        .option('print', { type: 'boolean', default: false, describe: 'Print the CRDs to stdout (for kubectl apply -f -) instead of writing files' }) as unknown as Argv<CrdsArgs>,
    async (a) => {
      const files = await manifests();
      if (a.print) {
        for (const [path, text] of files) if (path.startsWith('config/crd/')) process.stdout.write(text);
        return;
      }
      if (a.check) {
        const drifted = await driftedManifests(a['out-dir']);
        if (drifted.length) throw new Error(`generated manifests are out of date: ${drifted.join(', ')} (run: aks-mesh crds)`);
        process.stdout.write(`${files.size} manifests up to date\n`);
        return;
      }
      for (const [path, text] of files) {
        const target = join(a['out-dir'], path);
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, text);
        process.stdout.write(`wrote ${path}\n`);
      }
    },
  );
}
