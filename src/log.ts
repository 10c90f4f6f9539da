import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stderr, so a command's own output on stdout stays clean. */
export function createLogger(name: string, level: string = process.env.FIREFLY_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}
