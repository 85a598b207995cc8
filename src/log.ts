import winston from "winston";

export type LogLevel = "error" | "warn" | "info" | "debug";
export type LogFormat = "json" | "pretty" | "auto";
export type Logger = winston.Logger;

/** Keys whose values are never written to a log line, whatever component logs them. */
const SECRET_KEYS = /token|password|pass$|secret|authorization|credentials/i;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (SECRET_KEYS.test(key)) info[key] = "[redacted]";
  }
  return info;
});

const pretty = winston.format.printf((info) => {
  const { level, message, timestamp, component, ...rest } = info as Record<string, unknown>;
  const extra = Object.entries(rest)
    .filter(([k]) => typeof k === "string")
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  const comp = component ? ` [${String(component)}]` : "";
  return `${String(timestamp)} ${String(level)}${comp} ${String(message)}${extra ? " " + extra : ""}`;
});

/**
 * The one root logger. `auto` picks pretty lines for a terminal and JSON otherwise
 * (containers, files, CI). Components take `logger.child({ component })`.
 */
export function createLogger(options: { level: LogLevel; format: LogFormat; stream?: NodeJS.WritableStream }): Logger {
  const stream = options.stream ?? process.stdout;
  const usePretty =
    options.format === "pretty" || (options.format === "auto" && (stream as { isTTY?: boolean }).isTTY === true);
  const format = usePretty
    ? winston.format.combine(redact(), winston.format.timestamp(), winston.format.colorize(), pretty)
    : winston.format.combine(redact(), winston.format.timestamp(), winston.format.json());
  const transport = new winston.transports.Stream({ stream });
  // The reader of our logs went away (a closed pipe: EPIPE). Lose the log lines, not the process:
  // the sidecar keeps serving its app. One line on stderr says so, if stderr is still there.
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (transport.silent) return;
    transport.silent = true;
    if (stream !== process.stderr && process.stderr.writable) {
      process.stderr.once("error", () => undefined);
      process.stderr.write(`sidecar: the log output failed (${err.code ?? err.message}); logging stops, the sidecar keeps running\n`, () => undefined);
    }
  });
  return winston.createLogger({ level: options.level, format, transports: [transport] });
}

/**
 * A logger that prints nothing: for library use and tests that do not look at logs. Lines still
 * reach transports added later with their own level (the status page's recent errors).
 */
export function silentLogger(): Logger {
  return winston.createLogger({ level: "error", transports: [new winston.transports.Console({ silent: true })] });
}
