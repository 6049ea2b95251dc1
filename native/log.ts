/**
 * The logger every part takes. winston's Logger satisfies it; tests may pass anything with the
 * same four methods.
 */
import winston from 'winston';

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
}

export type LogFormat = 'text' | 'json';

/** A winston logger on stderr: JSON for log collectors, or one readable line per event. */
export function createLogger(options: { level?: string; format?: LogFormat; component?: string } = {}): Logger {
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
