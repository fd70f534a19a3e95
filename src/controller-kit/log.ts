// The logging seam of the controller kit. Components take a Logger so the manager can route their output and
// tests can capture it; the default writes one line per message to stderr.

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

function line(level: string, msg: string, fields?: LogFields): string {
  const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  return `${new Date().toISOString()} ${level} ${msg}${extra}\n`;
}

/** Writes info and above to stderr; debug is dropped (controllers call it on every conflict). */
export const consoleLogger: Logger = {
  debug: () => {},
  info: (msg, fields) => void process.stderr.write(line('INFO', msg, fields)),
  warn: (msg, fields) => void process.stderr.write(line('WARN', msg, fields)),
  error: (msg, fields) => void process.stderr.write(line('ERROR', msg, fields)),
};

export const silentLogger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** The message of an unknown thrown value, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
