/**
 * The logger every part takes. winston's Logger satisfies it; tests may pass anything with the
 * same four methods. No line it prints carries a private or preshared key: the last step of every
 * format replaces registered secrets (registerSecret, native/keys/redact.ts) and any value labelled
 * as a private or preshared key, in the finished line, so the message, every metadata field, nested
 * objects and the text and JSON layouts alike are covered.
 */
import winston from 'winston';
import { redactSecrets } from './keys/redact.ts';

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
}

export type LogFormat = 'text' | 'json';

/** Where winston keeps the finished line (triple-beam's MESSAGE); the transports print only it. */
const MESSAGE = Symbol.for('message');

/** Redacts keys from the finished line; must come after the layout (json or printf) that makes it. */
const scrubSecrets = winston.format((info) => {
  const line = (info as unknown as Record<symbol, unknown>)[MESSAGE];
  if (typeof line === 'string') (info as unknown as Record<symbol, unknown>)[MESSAGE] = redactSecrets(line);
  return info;
});

/**
 * A log line that cannot be written (stderr piped into `head` that exited, a closed journal) is
 * lost, never fatal: without a listener the stream's EPIPE would end the agent, leaving what it
 * runs behind. Installed once per process, on the first logger.
 */
let stderrGuarded = false;
function guardStderr(): void {
  if (stderrGuarded) return;
  stderrGuarded = true;
  process.stderr.on('error', () => undefined);
}

/** A winston logger on stderr: JSON for log collectors, or one readable line per event. */
export function createLogger(options: { level?: string; format?: LogFormat; component?: string } = {}): Logger {
  guardStderr();
  const text = winston.format.printf(({ level, message, timestamp, component, ...meta }) => {
    const rest = Object.entries(meta)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, bigintJson)}`)
      .join(' ');
    return `${String(timestamp)} ${level.padEnd(5)} ${component ? `[${String(component)}] ` : ''}${String(message)}${rest ? ` ${rest}` : ''}`;
  });
  return winston.createLogger({
    level: options.level ?? 'info',
    defaultMeta: options.component ? { component: options.component } : undefined,
    format: winston.format.combine(
      winston.format.timestamp(),
      options.format === 'json' ? winston.format.json({ replacer: bigintJson }) : text,
      scrubSecrets(),
    ),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] })],
  });
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** A logger that drops everything (the default for library callers that pass none). */
export const silentLogger: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
};
