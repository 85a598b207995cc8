import type { AddressInfo } from "node:net";
import type { Config } from "../config/index.js";
import { createLogger } from "../log.js";
import { Sidecar } from "../sidecar.js";
import { AppProcess, exitStatus, signalStatus, startFailure, type AppOutcome } from "./app-process.js";
import { LinePrefixer } from "./lines.js";
import { FirstSignal } from "../lifecycle/signals.js";

export interface RunOptions {
  config: Config;
  /** The config file read, if any (logged). */
  file: string | undefined;
  /** The app's command and its arguments. */
  command: readonly string[];
  /** Give the app PORT (config.app.port) in its environment: `--app-port` was given. */
  port: boolean;
}

/** The URL the app reaches the sidecar's api at: the bound address, loopback for a wildcard one. */
export function apiUrl(a: AddressInfo): string {
  const host = a.address === "0.0.0.0" ? "127.0.0.1" : a.address === "::" ? "::1" : a.address;
  return `http://${host.includes(":") ? `[${host}]` : host}:${a.port}`;
}

/**
 * `sidecar run -- <command>`: the sidecar and its app in one command, for local development.
 * The sidecar starts first (in this process); once its api listens, the app starts with
 * SIDECAR_URL (and PORT) in its environment. Output is interleaved line by line: `[sidecar] ` on
 * the sidecar's log lines, `[<service>] ` on the app's (its stderr stays on stderr).
 *
 * SIGINT/SIGTERM/SIGHUP: the sidecar deregisters and drains (close()) while the app still serves, then
 * the app gets the signal and is waited for; a second signal kills the app at once. The app exiting
 * by itself stops the sidecar. Resolves with the exit status: the app's (128 + signal number when
 * a signal killed it), 127/126 when the command could not be started, 1 when the sidecar could not.
 */
export async function run(o: RunOptions): Promise<number> {
  const { config } = o;
  const log = createLogger({ level: config.log.level, format: config.log.format, stream: new LinePrefixer("[sidecar] ", process.stdout) });
  log.info("config loaded", { file: o.file ?? "(none: environment and flags only)" });
  const sidecar = new Sidecar(config, log);

  let app: AppProcess | undefined;
  let appOutcome: AppOutcome | undefined;
  let stopping = false;
  let finish!: (status: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  let signalled!: (signal: NodeJS.Signals) => void;
  const firstSignal = new Promise<NodeJS.Signals>((resolve) => (signalled = resolve));

  const signals = new FirstSignal();
  const onSignal = (signal: NodeJS.Signals) => {
    if (signals.isCopy(signal)) return; // npx's forwarded copy of the terminal's Ctrl-C
    signals.first(signal);
    if (!stopping) {
      stopping = true;
      signalled(signal);
      return;
    }
    log.warn(`second ${signal}: ${app?.running ? "killing the app now" : "exiting now"}, without waiting for the shutdown to finish`);
    app?.signal("SIGKILL");
    finish(appOutcome ? exitStatus(appOutcome) : signalStatus(signal));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // The app, in its own process group, no longer gets the terminal's hangup: it gets it from here.
  process.on("SIGHUP", onSignal);

  const stopSidecar = () =>
    sidecar.close().catch((err: unknown) => log.error("shutdown failed", { error: (err as Error).message }));

  const supervise = async (): Promise<number> => {
    const starting = sidecar.start();
    starting.catch(() => undefined); // its error is told below, from whichever wait sees it first
    let api: AddressInfo | NodeJS.Signals;
    try {
      api = await Promise.race([sidecar.apiListening(), firstSignal]);
    } catch (err) {
      log.error("cannot start", { error: (err as Error).message });
      await stopSidecar();
      return 1;
    }
    if (typeof api === "string") {
      log.info(`${api} received before the app was started: stopping`);
      await stopSidecar();
      return signalStatus(api);
    }

    const url = apiUrl(api);
    const env = { ...process.env, SIDECAR_URL: url, ...(o.port ? { PORT: String(config.app.port) } : {}) };
    const prefix = `[${config.service.name}] `;
    const started = (app = new AppProcess(o.command, { env, stdout: new LinePrefixer(prefix, process.stdout), stderr: new LinePrefixer(prefix, process.stderr) }));
    // Only the program's name: its arguments may carry what should not be in a log.
    if (started.pid !== undefined) log.info("app started", { command: o.command[0], pid: started.pid, sidecarUrl: url, ...(o.port ? { port: config.app.port } : {}) });
    const exited = started.exited.then((outcome) => (appOutcome = outcome));

    const first = await Promise.race([
      exited.then((outcome) => ({ why: "app" as const, outcome })),
      firstSignal.then((signal) => ({ why: "signal" as const, signal })),
      starting.then(
        () => new Promise<never>(() => undefined), // started: the app or a signal decides
        (error: unknown) => ({ why: "start" as const, error }),
      ),
    ]);
    stopping = true; // from here a signal means: kill now

    if (first.why === "app") {
      if (first.outcome.kind === "failed") {
        process.stderr.write(`sidecar run: ${startFailure(o.command[0]!, first.outcome.error)}\n`);
      } else {
        log.info("the app exited: stopping the sidecar", { code: first.outcome.code, signal: first.outcome.signal });
      }
      await stopSidecar();
      return exitStatus(first.outcome);
    }
    if (first.why === "start") {
      log.error("cannot start", { error: (first.error as Error).message });
      started.signal("SIGTERM");
      await Promise.all([stopSidecar(), exited]);
      return 1;
    }
    log.info(`${first.signal} received: stopping the sidecar first (deregister, drain), then the app`);
    await stopSidecar();
    if (started.running) {
      log.info(`sending ${first.signal} to the app and waiting for it to exit (a second signal kills it)`);
      started.signal(first.signal);
    }
    return exitStatus(await exited);
  };

  supervise().then(finish, (err: unknown) => {
    log.error("sidecar run failed", { error: (err as Error).message });
    app?.signal("SIGKILL");
    finish(1);
  });
  return finished;
}
