/** `aks-mesh diff`: what a full pass of the member on this machine would change, through its control socket (cli/control-client.ts). */
import type { Argv } from 'yargs';
import { controlOptions, runDiff } from '../control-client.ts';
import type { ControlArgs } from '../control-client.ts';

export function diffCommand(y: Argv): Argv {
  return y.command<ControlArgs>(
    'diff',
    'Show what a full reconcile pass of the agent on this machine would change now (device and routes), without changing anything. Exit 0: nothing would change; 1: something would',
    (c) => controlOptions(c).example('$0 diff', '+ to add, - to remove, ~ to change').example('$0 diff --json', 'the same as JSON'),
    (a) => runDiff(a),
  );
}
