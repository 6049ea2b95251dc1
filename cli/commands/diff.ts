/** `aks-mesh diff`: what a full pass of the member on this machine would change, through its control socket (cli/control-client.ts). */
import type { Argv } from 'yargs';
import { controlOptions, runDiff } from '../control-client.ts';
import type { ControlArgs } from '../control-client.ts';

export function diffCommand(y: Argv): Argv {
  return y.command<ControlArgs>(
    'diff',
    'Show what a full reconcile pass of the agent on this machine would change now (device and routes), without changing anything. ' +
      'Exit codes as diff(1): 0 nothing would change; 1 something would; 2 trouble (no agent on the socket, permission denied, a socket owned by another user, no answer within --timeout, an agent that could not read its device, bad flags)',
    (c) =>
      controlOptions(c)
        .example('$0 diff', '+ to add, - to remove, ~ to change')
        .example('$0 diff --json', 'the same as JSON')
        .example('$0 diff >/dev/null; [ $? -eq 1 ] && echo drift', 'drift only: 2 (trouble) is not mistaken for it'),
    (a) => runDiff(a),
  );
}
