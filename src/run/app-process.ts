import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import type { LinePrefixer } from "./lines.js";

/** Once the app has exited, how long its output may still take to arrive (a process it left behind may hold its pipes open). */
const OUTPUT_GRACE_MS = 500;

/** How the app ended: it ran and exited (`code`) or was killed (`signal`), or it could not be started at all. */
export type AppOutcome =
  | { kind: "exited"; code: number | null; signal: NodeJS.Signals | null }
  | { kind: "failed"; error: NodeJS.ErrnoException };

/** The exit status a shell reports: the app's code, 128 + the signal's number when a signal killed it, 127/126 when it could not be started. */
export function exitStatus(outcome: AppOutcome): number {
  if (outcome.kind === "failed") return outcome.error.code === "ENOENT" ? 127 : 126;
  if (outcome.code !== null) return outcome.code;
  return signalStatus(outcome.signal ?? "SIGKILL");
}

/** 128 + the signal's number, as shells report a death by that signal. */
export function signalStatus(signal: NodeJS.Signals): number {
  return 128 + ((constants.signals as Record<string, number | undefined>)[signal] ?? 0);
}

/** Why the command did not start, in words. */
export function startFailure(command: string, error: NodeJS.ErrnoException): string {
  const why = error.code === "ENOENT" ? "command not found" : error.code === "EACCES" ? "permission denied" : error.message;
  return `cannot start '${command}': ${why}${error.code ? ` (${error.code})` : ""}`;
}

/**
 * The app `sidecar run` starts: one child process whose stdout and stderr lines go through the
 * given prefixers. On POSIX it leads its own process group, so a terminal's Ctrl-C reaches only
 * the CLI (which decides when the app gets it: after the sidecar has deregistered), and signal()
 * reaches what the app started too (`npm start` and its node), as a shell's job control does.
 */
export class AppProcess {
  /** Settles once: when the app exited and its output was read (or could not be started). */
  readonly exited: Promise<AppOutcome>;
  readonly #proc: ChildProcess;
  readonly #group = process.platform !== "win32";
  #running: boolean;

  constructor(command: readonly string[], options: { env: NodeJS.ProcessEnv; stdout: LinePrefixer; stderr: LinePrefixer }) {
    const [file, ...args] = command;
    if (file === undefined) throw new Error("no command to run");
    // The terminal's input stays the app's (a debugger prompt works); its output is read to be prefixed.
    const proc = (this.#proc = spawn(file, args, { env: options.env, stdio: ["inherit", "pipe", "pipe"], detached: this.#group }));
    this.#running = proc.pid !== undefined;
    // However the CLI ends (a crash included), the app does not outlive it.
    const reap = () => this.signal("SIGKILL");
    process.once("exit", reap);
    proc.once("exit", () => process.off("exit", reap));
    for (const [from, to] of [[proc.stdout, options.stdout], [proc.stderr, options.stderr]] as const) {
      from?.on("data", (chunk: Buffer) => to.take(chunk));
      from?.once("end", () => to.flush());
    }
    this.exited = new Promise((resolve) => {
      let closed = false;
      proc.once("close", () => (closed = true));
      proc.on("error", (error: NodeJS.ErrnoException) => {
        // Without a pid the command never ran (ENOENT, EACCES); otherwise a signal could not be sent: nothing to do.
        if (proc.pid === undefined) resolve({ kind: "failed", error });
      });
      proc.once("exit", (code, signal) => {
        this.#running = false;
        const done = () => {
          options.stdout.flush();
          options.stderr.flush();
          resolve({ kind: "exited", code, signal });
        };
        if (closed) return done();
        const timer = setTimeout(done, OUTPUT_GRACE_MS);
        proc.once("close", () => {
          clearTimeout(timer);
          done();
        });
      });
    });
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  /** Started and not exited yet. */
  get running(): boolean {
    return this.#running;
  }

  /** Send `signal` to the app's process group (to the app alone where there are none). */
  signal(signal: NodeJS.Signals): void {
    if (!this.#running) return;
    if (this.#group) {
      try {
        process.kill(-this.#proc.pid!, signal);
        return;
      } catch {
        /* the group is gone but the app not reaped yet: signal the app itself */
      }
    }
    this.#proc.kill(signal);
  }
}
