/**
 * Which modules a process loads: `node --import ./bench/lib/loaded-modules.ts cli/main.ts ...`
 * records every module URL it resolves (ESM and CommonJS, through module.registerHooks) and writes
 * them, one per line, to $AKS_MESH_LOADED_MODULES when the process exits. bench/resync.ts and the
 * note use it to show what a mode loads (a --peers-dir agent must load nothing of
 * @kubernetes/client-node).
 */
import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const out = process.env.AKS_MESH_LOADED_MODULES;
if (out) {
  const seen = new Set<string>();
  registerHooks({
    load(url, context, nextLoad) {
      seen.add(url);
      return nextLoad(url, context);
    },
  });
  process.on('exit', () => writeFileSync(out, [...seen].join('\n') + '\n'));
}
