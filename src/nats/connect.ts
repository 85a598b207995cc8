import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, errors, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import { withDeadline } from "../lifecycle/wait-idle.js";

export type NatsStatus = "connected" | "disconnected" | "closed";

/** The nats.js options for a `nats` config section: servers, credentials and TLS. */
export function connectOptions(options: Config["nats"] & { name: string }): NodeConnectionOptions {
  const { tls } = options;
  return {
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1_000,
    // A server that accepts the TCP connection but never completes the handshake (e.g. it refused
    // our TLS certificate after the fact) fails the attempt in 5 s, not nats.js's default 20 s.
    timeout: 5_000,
    ...(options.token ? { token: options.token } : {}),
    ...(options.user ? { user: options.user, pass: options.password ?? "" } : {}),
    // Read at every (re)connection, so a rotated credentials file is picked up.
    ...(options.credentials ? { authenticator: credsAuthenticator(() => readFileSync(options.credentials!)) } : {}),
    ...(tls ? { tls: { ...(tls.ca ? { caFile: tls.ca } : {}), ...(tls.cert ? { certFile: tls.cert } : {}), ...(tls.key ? { keyFile: tls.key } : {}) } } : {}),
  };
}

/**
 * One NATS connection shared by every NATS-backed component (registry now; broker and
 * transport later), so the sidecar holds a single client per server. This file and the
 * backend files (registry/nats.ts, ...) are the only ones that import a NATS module.
 */
export class NatsClient {
  #status: NatsStatus = "connected";
  #closing: Promise<void> | undefined;
  #onReconnect = new Set<() => void>();

  private constructor(
    readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {
    void this.#watchStatus();
  }

  /**
   * Connect, retrying for ever: a sidecar started before NATS waits for it, saying so,
   * instead of exiting. Reconnects are unlimited too.
   */
  static async connect(options: Config["nats"] & { name: string }, log: Logger, signal?: AbortSignal): Promise<NatsClient> {
    const opts = connectOptions(options);
    let attempt = 0;
    for (;;) {
      try {
        const nc = await connect(opts);
        log.info("connected to NATS", { server: nc.getServer() });
        return new NatsClient(nc, log);
      } catch (err) {
        if (signal?.aborted) throw new Error("stopped while waiting for NATS", { cause: err });
        if (attempt === 0 || attempt % 10 === 0) {
          if (err instanceof errors.AuthorizationError) {
            log.error("NATS refused this sidecar's credentials (nats.token, nats.user/password or nats.credentials); retrying every second", { servers: options.servers, error: err.message });
          } else {
            const hint = options.tls && /timeout/i.test((err as Error).message) ? { hint: "the TLS handshake may have been refused: check that the server trusts nats.tls.cert and that nats.tls.ca signed the server's certificate" } : {};
            log.warn("waiting for NATS: cannot connect yet, retrying every second", { servers: options.servers, error: (err as Error).message, ...hint });
          }
        }
        attempt += 1;
        await new Promise<void>((r) => {
          const t = setTimeout(r, 1_000);
          signal?.addEventListener("abort", () => {
            clearTimeout(t);
            r();
          }, { once: true });
        });
        if (signal?.aborted) throw new Error("stopped while waiting for NATS");
      }
    }
  }

  /** Called after every reconnection (e.g. to re-register at once rather than at the next heartbeat). */
  onReconnect(fn: () => void): void {
    this.#onReconnect.add(fn);
  }

  status(): NatsStatus {
    return this.#status;
  }

  async #watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      switch (s.type) {
        case "disconnect":
          this.#status = "disconnected";
          this.log.warn("disconnected from NATS; reconnecting", { server: s.server });
          break;
        case "reconnect":
          this.#status = "connected";
          this.log.info("reconnected to NATS", { server: s.server });
          for (const fn of this.#onReconnect) fn();
          break;
        case "close":
          this.#status = "closed";
          break;
        default:
          break;
      }
    }
  }

  /**
   * Drain (flush what is pending, let subscriptions finish) and close, within `timeout` ms; a
   * connection that is down, or a drain that takes too long, is closed at once. Idempotent.
   */
  close(timeout = 2_000): Promise<void> {
    this.#closing ??= (async () => {
      if (this.nc.isClosed()) return;
      if (this.#status === "connected") {
        const drained = await withDeadline(this.nc.drain().then(() => true, () => false), timeout, false);
        if (!drained) this.log.warn("NATS drain did not complete; closing the connection", { timeoutMs: timeout });
      }
      if (!this.nc.isClosed()) await this.nc.close();
      this.#status = "closed";
    })();
    return this.#closing;
  }
}
