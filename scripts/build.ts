/**
 * Build the agent, the gateway and the CLI into one ES module (`dist/aks-mesh.mjs`) with esbuild:
 * what the image runs. Node 24 runs our TypeScript directly, so this is not needed to run from a
 * checkout; it is what makes the shipped agent small and quick to start (issue 10, bench/resync.ts):
 * importing @kubernetes/client-node from its 870 files costs about 85 MiB of RSS and 1.1 s of CPU,
 * bundled about 40 MiB and 0.35 s, and nothing is type-stripped at start.
 *
 *   node scripts/build.ts [--outfile dist/aks-mesh.mjs] [--no-minify]
 *
 * `aks-mesh version` reports package.json's version and the git commit, both fixed here (esbuild
 * `define`): the commit is $AKS_MESH_GIT_COMMIT (the image's GIT_COMMIT build argument; the image's
 * build context has no .git), else `git rev-parse HEAD` of this checkout, else unknown.
 *
 * Modules stay lazily evaluated where the sources import them dynamically (esbuild keeps each
 * dynamic import as a function run on first use), so a `--peers-dir` agent still never runs
 * client-node's code. The demo's namespace cluster (sandbox/) is in: `aks-mesh demo` is a command
 * of the product (it needs kube-apiserver and etcd beside it, which the image does not carry).
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { outfile: { type: 'string', default: join(root, 'dist', 'aks-mesh.mjs') }, 'no-minify': { type: 'boolean', default: false } } });

const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const commit = process.env.AKS_MESH_GIT_COMMIT ?? gitCommit();

function gitCommit(): string {
  try {
    return execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return ''; // not a checkout, or no git: the bundle says the commit is unknown
  }
}

const result = await build({
  entryPoints: [join(root, 'cli', 'main.ts')],
  outfile: values.outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  // Identifiers are shortened, but function and class names are kept: errors and stack traces stay readable.
  minify: !values['no-minify'],
  keepNames: true,
  sourcemap: false,
  legalComments: 'none',
  // CommonJS dependencies (client-node's) call require(): give the ES module one.
  banner: { js: "import { createRequire as __aksMeshRequire } from 'node:module'; const require = __aksMeshRequire(import.meta.url);" },
  define: { __AKS_MESH_VERSION__: JSON.stringify(version), __AKS_MESH_COMMIT__: JSON.stringify(commit) },
  logLevel: 'warning',
  metafile: true,
});
const bytes = statSync(values.outfile).size;
const inputs = Object.keys(result.metafile.inputs).length;
console.log(`${values.outfile}: ${(bytes / 1024 / 1024).toFixed(2)} MiB from ${inputs} modules (aks-mesh ${version}${commit ? `, commit ${commit.slice(0, 12)}` : ''})`);
