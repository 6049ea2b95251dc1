/**
 * Errors that cross the native bridge: a kind a program can switch on and a message a person can
 * act on. Bad input never becomes a stack trace: the CLI prints `message` alone.
 */
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
  | 'process'
  | 'ip-command';

export class NativeError extends Error {
  readonly kind: NativeErrorKind;

  constructor(kind: NativeErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NativeError';
    this.kind = kind;
  }
}

export function isNativeError(err: unknown, kind?: NativeErrorKind): err is NativeError {
  return err instanceof NativeError && (kind === undefined || err.kind === kind);
}
