/**
 * aks-mesh: one command for the node agent, the gateway, and the operator's tools (loaded by
 * main.ts once the compile cache is on). Bad input prints one line naming what is wrong and exits
 * 1; never a stack trace.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { NativeError } from '../native/index.ts';
import { UsageError } from './format.ts';
import { crdsCommand } from './commands/crds.ts';
import { agentCommand, gatewayCommand } from './commands/member.ts';
import { demoCommand } from './commands/demo.ts';
import { dashboardCommand } from './commands/dashboard.ts';
import { gatewayPatchCommand } from './commands/gateway-patch.ts';
import { inspectCommand } from './commands/inspect.ts';
import { diffCommand } from './commands/diff.ts';
import { reconcileCommand } from './commands/reconcile.ts';
import { statusCommand } from './commands/status.ts';
import { keygenCommand, pubkeyCommand } from './commands/keys.ts';
import { uninstallHookCommand } from './commands/uninstall-hook.ts';
import { packageVersion, versionCommand } from './commands/version.ts';

function reportAndExit(message: string, code = 1): never {
  process.stderr.write(`aks-mesh: ${message.split('\n')[0]}\n`);
  process.exit(code);
}

export async function main(argv: string[]): Promise<void> {
  let parser = yargs(argv)
    .scriptName('aks-mesh')
    .usage('$0 <command> [options]\n\nWireGuard mesh for Kubernetes nodes without the WireGuard kernel module.')
    .strict()
    .demandCommand(1, 'say which command: aks-mesh --help lists them')
    .epilogue('Every flag can also come from the environment: --node-name as AKS_MESH_NODE_NAME, --peers-dir as AKS_MESH_PEERS_DIR, and so on.')
    .help()
    .alias('h', 'help')
    .version(packageVersion())
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      if (err instanceof UsageError) msg = err.message;
      else if (err) throw err;
      process.stderr.write(`aks-mesh: ${msg}\nRun "aks-mesh --help" for usage.\n`);
      process.exit(2);
    });
  const commands = [agentCommand, gatewayCommand, keygenCommand, pubkeyCommand, inspectCommand, statusCommand, crdsCommand, gatewayPatchCommand, uninstallHookCommand, demoCommand, versionCommand];
  commands.push(dashboardCommand);
  commands.push(reconcileCommand, diffCommand);
  for (const add of commands) parser = add(parser);
  await parser.parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  if (err instanceof NativeError) reportAndExit(err.message);
  if (err instanceof Error && process.env.AKS_MESH_DEBUG !== '1') reportAndExit(err.message);
  throw err;
});
