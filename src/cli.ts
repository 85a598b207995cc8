#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=256
// --max-semi-space-size=4 (MiB): V8's young generation otherwise grows to 16 MiB per semi-space
// under load. --max-old-space-size=256 (MiB, 15 times the sidecar's live heap): with a cap this
// size V8 lets the old generation grow only 1.3 times past what was live at the last full GC
// (up to 4 times without), so garbage promoted under load is collected sooner. Resident memory
// after load: 80-85 MiB instead of 85-111, at the same CPU per /rpc request; a burst of queued
// subscription messages costs about 10% more CPU per message (more full collections).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CLIENT_COMMANDS, DEFAULT_URL, runClientCommand } from "./client-commands.js";
import { ConfigError } from "./config/error.js";
import { loadConfigIsolated } from "./config/isolated.js";
import { FirstSignal } from "./lifecycle/signals.js";
import { createLogger } from "./log.js";
import { Sidecar } from "./sidecar.js";

const USAGE = `Usage: sidecar start [--config FILE] [--set key.path=value ...]
       sidecar run [--name NAME] [--app-port PORT] [start's options] -- <command> [args ...]
       sidecar call <service> <endpoint> [json] | publish <topic> [data] | services [--url URL]

Runs the sidecar beside an app. Config comes from FILE (default: $SIDECAR_CONFIG, then
./sidecar.yaml), then SIDECAR_* environment variables (SIDECAR_APP_PORT=5000), then --set flags.

Commands:
  start                            run the sidecar (until SIGTERM or SIGINT)
  run -- <command> [args ...]      run the sidecar and start the app beside it with SIDECAR_URL
                                   (and PORT, with --app-port) in its environment; output lines
                                   prefixed; SIGINT/SIGTERM stop the sidecar first, then the app;
                                   exits with the app's status (127: the command was not found)
  check-config                     validate the config and print it resolved (secrets hidden)
  call <service> <endpoint> [json] call a service through a running sidecar, print the answer
  publish <topic> [data]           publish through a running sidecar (JSON data is sent as JSON)
  services                         list the registered services and their nodes

Options:
  -c, --config FILE        config file
  -s, --set key=value      override one key, e.g. --set app.port=5000 (repeatable)
      --name NAME          run: the service's name (--set service.name=NAME)
      --app-port PORT      run: the app's port (--set app.port=PORT), also given to the app as PORT
  -u, --url URL            the running sidecar for call/publish/services (default: $SIDECAR_URL, then ${DEFAULT_URL})
  -t, --timeout MS         call: the call's deadline in milliseconds
      --content-type TYPE  publish: the data's content type
  -h, --help               this text
  -v, --version            print the version

Examples:
  sidecar run --name greeter --app-port 5000 -- python3 app.py
  sidecar call greeter Greeter.Hello '{"name": "Ada"}'
  sidecar publish orders.created '{"id": 42}'
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

function hideSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(hideSecrets);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, /token|password|secret/i.test(k) ? "[hidden]" : hideSecrets(v)]));
}

/** What parseArgs's `tokens` holds, as far as runArgs reads it. */
type Token =
  | { kind: "option"; index: number; name: string; value?: string | undefined }
  | { kind: "positional"; index: number; value: string }
  | { kind: "option-terminator"; index: number };

/**
 * The --set list (with run's --name and --app-port as the --set they stand for, in command-line
 * order, so the last one given wins) and run's command: what follows `--`. A string: a usage error.
 */
function runArgs(command: string, tokens: readonly Token[]): { set: string[]; command: string[] } | string {
  const set: string[] = [];
  for (const t of tokens) {
    if (t.kind !== "option") continue;
    if ((t.name === "name" || t.name === "app-port") && command !== "run") return `--${t.name} is an option of 'sidecar run'`;
    if (t.name === "app-port" && !/^\d+$/.test(t.value ?? "")) return `--app-port: expected a port number, got '${t.value ?? ""}'`;
    if (t.name === "set" || t.name === "name" || t.name === "app-port") set.push(t.name === "set" ? t.value! : `${t.name === "name" ? "service.name" : "app.port"}=${t.value!}`);
  }
  if (command !== "run") return { set, command: [] };
  const dashes = tokens.find((t) => t.kind === "option-terminator")?.index;
  const positional = tokens.filter((t) => t.kind === "positional");
  const app = dashes === undefined ? [] : positional.filter((t) => t.index > dashes).map((t) => t.value);
  const before = positional.length - app.length; // `run` itself, and nothing else
  if (before > 1) return `expected the app's command after '--', got '${positional[1]!.value}' before it (sidecar run [options] -- <command> [args ...])`;
  if (app.length === 0 || before === 0) return "expected the app's command after '--' (sidecar run [options] -- <command> [args ...])";
  return { set, command: app };
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        set: { type: "string", short: "s", multiple: true },
        url: { type: "string", short: "u" },
        timeout: { type: "string", short: "t" },
        "content-type": { type: "string" },
        name: { type: "string" },
        "app-port": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "v" },
      },
      tokens: true,
    });
  } catch (err) {
    process.stderr.write(`sidecar: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals, tokens } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const command = positionals[0];
  if (command !== undefined && command in CLIENT_COMMANDS) {
    const url = (values.url ?? process.env.SIDECAR_URL ?? DEFAULT_URL).replace(/\/+$/, "");
    return runClientCommand(command, { url, timeout: values.timeout, contentType: values["content-type"] }, positionals.slice(1));
  }
  if (command !== "start" && command !== "check-config" && command !== "run") {
    process.stderr.write(`sidecar: ${command ? `unknown command '${command}'` : "no command given"}\n\n${USAGE}`);
    return 2;
  }
  const args = runArgs(command, tokens);
  if (typeof args === "string") {
    process.stderr.write(`sidecar ${command}: ${args}\n\n${USAGE}`);
    return 2;
  }

  let loaded;
  try {
    loaded = await loadConfigIsolated({ file: values.config, set: args.set });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sidecar: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (command === "check-config") {
    process.stdout.write(`${JSON.stringify(hideSecrets(loaded.config), null, 2)}\n`);
    return 0;
  }

  const { config, file } = loaded;
  // Loaded only for `run`: `start` keeps none of it (child processes, line prefixers) resident.
  if (command === "run") return (await import("./run/run.js")).run({ config, file, command: args.command, port: values["app-port"] !== undefined });
  const log = createLogger({ level: config.log.level, format: config.log.format });
  log.info("config loaded", { file: file ?? "(none: environment and flags only)" });
  const sidecar = new Sidecar(config, log);

  let stopping = false;
  const signals = new FirstSignal();
  const stop = (signal: string) => {
    if (signals.isCopy(signal)) return; // npx's forwarded copy of the terminal's Ctrl-C
    signals.first(signal);
    if (stopping) {
      log.warn(`second ${signal}: exiting now without draining`);
      process.exit(1);
    }
    stopping = true;
    log.info(`${signal} received`);
    sidecar.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error("shutdown failed", { error: (err as Error).message });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  try {
    await sidecar.start();
  } catch (err) {
    if (stopping) return -1; // a signal arrived during start-up: the stop handler exits
    log.error("cannot start", { error: (err as Error).message });
    await sidecar.close().catch(() => undefined);
    return 1;
  }
  return -1; // keep running until a signal
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`sidecar: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
