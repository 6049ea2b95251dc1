import type { Argv } from 'yargs';
import { readFileSync } from 'node:fs';
import { generatePrivateKey, publicKeyOf } from '../../native/index.ts';

export function keygenCommand(y: Argv): Argv {
  return y.command(
    'keygen',
    'Print a new private key (base64, like "wg genkey"). Keep it in a file only root can read: aks-mesh keygen > key && chmod 600 key',
    (c) => c,
    () => {
      process.stdout.write(`${generatePrivateKey()}\n`);
    },
  );
}

export function pubkeyCommand(y: Argv): Argv {
  return y.command(
    'pubkey',
    'Read a private key on stdin and print its public key (like "wg pubkey"): aks-mesh keygen | aks-mesh pubkey',
    (c) => c,
    () => {
      const input = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      process.stdout.write(`${publicKeyOf(input, 'stdin')}\n`);
    },
  );
}
