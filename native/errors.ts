/**
 * Errors that cross the native bridge: a kind a program can switch on and a message a person can
 * act on. Bad input never becomes a stack trace: the CLI prints `message` alone. Every message goes
 * through redactSecrets on the way in, so a key that slips into one is replaced before the message
 * (or the stack, which repeats it) can be logged, printed or serialized.
 */
import { redactSecrets } from './keys/redact.ts';

export type NativeErrorKind =
  | 'invalid-key'
  | 'key-file'
  | 'invalid-config'
  | 'socket-missing'
  | 'socket-stale'
  | 'socket-denied'
  | 'timeout'
  | 'protocol'
  | 'uapi-errno'
  | 'reply-too-large'
  | 'process'
  | 'ip-command';

export class NativeError extends Error {
  readonly kind: NativeErrorKind;

  constructor(kind: NativeErrorKind, message: string, options?: { cause?: unknown }) {
    super(redactSecrets(message), options);
    this.name = 'NativeError';
    this.kind = kind;
  }
}

export function isNativeError(err: unknown, kind?: NativeErrorKind): err is NativeError {
  return err instanceof NativeError && (kind === undefined || err.kind === kind);
}
