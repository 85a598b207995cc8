import { EventEmitter } from "node:events";
import { H } from "../http/headers.js";
import http from "node:http";
import net from "node:net";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";

export type AppHealth = "unknown" | "passing" | "failing";

export interface HealthCheckOptions {
  host: string;
  port: number;
  /** HTTP path checked with GET (2xx passes); absent: a TCP connect. */
  path?: string | undefined;
  interval: number;
  timeout: number;
  failureThreshold: number;
  successThreshold: number;
  /** app.token, sent as x-sidecar-app-token with HTTP checks. */
  token?: string | undefined;
}

/** One check: resolves when the app passes, rejects with the reason when it does not. */
export function checkOnce(o: Pick<HealthCheckOptions, "host" | "port" | "path" | "timeout" | "token">): Promise<void> {
  return new Promise((resolve, reject) => {
    if (o.path === undefined) {
      const sock = net.connect({ host: o.host, port: o.port });
      sock.setTimeout(o.timeout, () => sock.destroy(new Error(`TCP connect timed out after ${o.timeout}ms`)));
      sock.once("connect", () => {
        sock.destroy();
        resolve();
      });
      sock.once("error", reject);
      return;
    }
    const headers = o.token ? { [H.appToken]: o.token } : undefined;
    const req = http.get({ host: o.host, port: o.port, path: o.path, agent: false, timeout: o.timeout, headers }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) resolve();
      else reject(new Error(`GET ${o.path} answered ${status}`));
    });
    req.once("timeout", () => req.destroy(new Error(`GET ${o.path} timed out after ${o.timeout}ms`)));
    req.once("error", reject);
  });
}

/**
 * Checks the app every `interval` and emits "change" with the new state:
 * `passing` after the first pass at start, or after `successThreshold` passes in a row once failing;
 * `failing` after `failureThreshold` failures in a row.
 */
export class HealthChecker extends EventEmitter<{ change: [AppHealth, string | undefined] }> implements Component {
  readonly #lifecycle = new Lifecycle("health checker", { start: () => this.#start(), close: () => this.#close() });
  #state: AppHealth = "unknown";
  #passes = 0;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #lastError: string | undefined;
  #waitLogged = 0;

  constructor(private readonly options: HealthCheckOptions, private readonly log: Logger) {
    super();
  }

  get state(): AppHealth {
    return this.#state;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  get target(): string {
    const { host, port, path } = this.options;
    return path === undefined ? `tcp://${host}:${port}` : `http://${host}:${port}${path}`;
  }

  /** Check now, then every interval. Idempotent; after close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  #start(): void {
    this.#running = true;
    void this.#tick();
  }

  async #tick(): Promise<void> {
    if (!this.#running) return;
    try {
      await checkOnce(this.options);
      this.#pass();
    } catch (err) {
      this.#fail((err as Error).message || String(err));
    }
    if (this.#running) this.#timer = setTimeout(() => void this.#tick(), this.options.interval);
  }

  #pass(): void {
    this.#failures = 0;
    this.#passes += 1;
    this.#lastError = undefined;
    const needed = this.#state === "unknown" ? 1 : this.options.successThreshold;
    if (this.#state !== "passing" && this.#passes >= needed) this.#set("passing", undefined);
  }

  #fail(reason: string): void {
    this.#passes = 0;
    this.#failures += 1;
    this.#lastError = reason;
    if (this.#state === "unknown") {
      // Say what we wait for at once, then about every 10 checks, not on every tick.
      if (this.#waitLogged++ % 10 === 0) this.log.info("waiting for the app to pass its health check", { target: this.target, error: reason });
      return;
    }
    if (this.#state === "passing") {
      this.log.warn("app health check failed", { target: this.target, error: reason, failures: this.#failures, threshold: this.options.failureThreshold });
      if (this.#failures >= this.options.failureThreshold) this.#set("failing", reason);
    }
  }

  #set(state: AppHealth, reason: string | undefined): void {
    this.#state = state;
    this.log[state === "passing" ? "info" : "warn"](`app is ${state}`, { target: this.target, ...(reason ? { error: reason } : {}) });
    this.emit("change", state, reason);
  }

  /** Stop checking (synchronously: no check starts after this call). Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  #close(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
  }
}
