import type { Argv } from 'yargs';
import { readFileSync } from 'node:fs';
import { generatePrivateKey, publicKeyOf, writePrivateKeyFile } from '../../native/index.ts';

interface KeygenArgs {
  out?: string;
}

export function keygenCommand(y: Argv): Argv {
  return y.command<KeygenArgs>(
    'keygen',
    'Print a new private key (base64, like "wg genkey"), or with --out write it to a 0600 file and print its public key',
    (c) =>
      c
        .option('out', {
          alias: 'o',
          type: 'string',
          describe: 'Write the key to this file (mode 0600, atomically, never over an existing file) and print its public key instead',
        })
        .example('$0 keygen --out /etc/aks-mesh/private.key', 'a node key that nobody else could read, not even for a moment') as unknown as Argv<KeygenArgs>,
    (a) => {
      const privateKey = generatePrivateKey();
      if (a.out === undefined) {
        process.stdout.write(`${privateKey}\n`);
        return;
      }
      writePrivateKeyFile(a.out, privateKey);
      process.stdout.write(`${publicKeyOf(privateKey)}\n`);
    },
  );
}

export function pubkeyCommand(y: Argv): Argv {
  return y.command(
    'pubkey',
    'Read a private key on stdin and print its public key (like "wg pubkey"): aks-mesh keygen | aks-mesh pubkey',
    (c) => c,
    () => {
      // A bad input is described by its length and shape, never quoted: it may be a private key.
      const input = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      process.stdout.write(`${publicKeyOf(input, 'stdin')}\n`);
    },
  );
}
