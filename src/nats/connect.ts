import { readFileSync } from "node:fs";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JetStreamOptions } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  connect,
  credsAuthenticator,
  errors,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  type Payload,
  type PublishOptions,
  type RequestOptions,
  type Subscription,
  type SubscriptionOptions,
} from "@nats-io/transport-node";
import type { Config } from "../config/index.js";
import { DEFAULTS } from "../config/defaults.js";
import type { Logger } from "../log.js";
import { sleep, withDeadline } from "../lifecycle/wait-idle.js";

export type NatsStatus = "connected" | "disconnected" | "closed";

/** The nats.js options for a `nats` config section: servers, credentials and TLS. */
/** A `nats` config section; `pingInterval` may be left out (then its default). */
export type NatsOptions = Omit<Config["nats"], "pingInterval"> & { pingInterval?: number | undefined; name: string };

export function connectOptions(options: NatsOptions): NodeConnectionOptions {
  const { tls } = options;
  return {
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1_000,
    // A server that accepts the TCP connection but never completes the handshake (e.g. it refused
    // our TLS certificate after the fact) fails the attempt in 5 s, not nats.js's default 20 s.
    timeout: 5_000,
    // A connection whose packets vanish (a partition, a host cut off) sends no reset: only
    // unanswered pings reveal it. Two missed, and the client reconnects, to another server if one answers.
    pingInterval: options.pingInterval ?? DEFAULTS.natsPingInterval,
    maxPingOut: 2,
    ...(options.token ? { token: options.token } : {}),
    ...(options.user ? { user: options.user, pass: options.password ?? "" } : {}),
    // Read at every (re)connection, so a rotated credentials file is picked up.
    ...(options.credentials ? { authenticator: credsAuthenticator(() => readFileSync(options.credentials!)) } : {}),
    ...(tls ? { tls: { ...(tls.ca ? { caFile: tls.ca } : {}), ...(tls.cert ? { certFile: tls.cert } : {}), ...(tls.key ? { keyFile: tls.key } : {}) } } : {}),
  };
}

/**
 * One NATS connection shared by every NATS-backed component (registry, broker, transport and
 * inbound), so the sidecar holds a single client per server. The connection stays private: the
 * backends (registry/nats.ts, broker/nats.ts, broker/jetstream.ts, transport/nats.ts,
 * inbound/nats.ts) get what they need from the methods below, and only they and nats/ import a
 * NATS module.
 */
export class NatsClient {
  readonly #nc: NatsConnection;
  #status: NatsStatus = "connected";
  #closing: Promise<void> | undefined;
  #onReconnect = new Set<() => void>();
  #onStatus = new Set<(status: NatsStatus, server: string | undefined) => void>();

  private constructor(
    nc: NatsConnection,
    private readonly log: Logger,
  ) {
    this.#nc = nc;
    void this.#watchStatus();
  }

  /**
   * Connect, retrying for ever: a sidecar started before NATS waits for it, saying so,
   * instead of exiting. Reconnects are unlimited too.
   * `onWaiting` hears of every failed attempt (the log only of some): "refused" credentials, else "unreachable".
   */
  static async connect(
    options: NatsOptions,
    log: Logger,
    signal?: AbortSignal,
    onWaiting?: (why: "unreachable" | "refused", error: string) => void,
  ): Promise<NatsClient> {
    const opts = connectOptions(options);
    let attempt = 0;
    for (;;) {
      try {
        const nc = await connect(opts);
        log.info("connected to NATS", { server: nc.getServer() });
        return new NatsClient(nc, log);
      } catch (err) {
        if (signal?.aborted) throw new Error("stopped while waiting for NATS", { cause: err });
        const refused = err instanceof errors.AuthorizationError;
        if (onWaiting) notify(log, "onWaiting", () => onWaiting(refused ? "refused" : "unreachable", (err as Error).message));
        if (attempt === 0 || attempt % 10 === 0) {
          if (refused) {
            log.error("NATS refused this sidecar's credentials (nats.token, nats.user/password or nats.credentials); retrying every second", { servers: options.servers, error: err.message });
          } else {
            const hint = options.tls && /timeout/i.test((err as Error).message) ? { hint: "the TLS handshake may have been refused: check that the server trusts nats.tls.cert and that nats.tls.ca signed the server's certificate" } : {};
            log.warn("waiting for NATS: cannot connect yet, retrying every second", { servers: options.servers, error: (err as Error).message, ...hint });
          }
        }
        attempt += 1;
        await sleep(1_000, signal);
        if (signal?.aborted) throw new Error("stopped while waiting for NATS");
      }
    }
  }

  /** Called after every reconnection (e.g. to re-register at once rather than at the next heartbeat). */
  onReconnect(fn: () => void): void {
    this.#onReconnect.add(fn);
  }

  /** Called on every change of status(), with the server concerned if known; returns the unsubscribe function. */
  onStatus(listener: (status: NatsStatus, server: string | undefined) => void): () => void {
    this.#onStatus.add(listener);
    return () => void this.#onStatus.delete(listener);
  }

  status(): NatsStatus {
    return this.#status;
  }

  /** The largest message the server accepts (undefined until it has said). */
  get maxPayload(): number | undefined {
    return this.#nc.info?.max_payload;
  }

  /** Core NATS publish (at most once); flush() to know the server has it. */
  publish(subject: string, data?: Payload, opts?: PublishOptions): void {
    this.#nc.publish(subject, data, opts);
  }

  subscribe(subject: string, opts?: SubscriptionOptions): Subscription {
    return this.#nc.subscribe(subject, opts);
  }

  request(subject: string, data?: Payload, opts?: RequestOptions): Promise<Msg> {
    return this.#nc.request(subject, data, opts);
  }

  /** Resolves once the server has seen everything sent before it. */
  flush(): Promise<void> {
    return this.#nc.flush();
  }

  jetstream(opts?: JetStreamOptions): JetStreamClient {
    return jetstream(this.#nc, opts);
  }

  jetstreamManager(opts?: JetStreamOptions): Promise<JetStreamManager> {
    return jetstreamManager(this.#nc, opts);
  }

  /** JetStream key-value buckets, through a JetStream client made with `opts` (e.g. its request timeout). */
  kvm(opts?: JetStreamOptions): Kvm {
    return new Kvm(this.jetstream(opts));
  }

  #setStatus(status: NatsStatus, server: string | undefined): void {
    if (this.#status === status) return;
    this.#status = status;
    for (const fn of this.#onStatus) notify(this.log, "onStatus", () => fn(status, server));
  }

  async #watchStatus(): Promise<void> {
    for await (const s of this.#nc.status()) {
      switch (s.type) {
        case "disconnect":
          this.#setStatus("disconnected", s.server);
          this.log.warn("disconnected from NATS; reconnecting", { server: s.server });
          break;
        case "reconnect":
          this.#setStatus("connected", s.server);
          this.log.info("reconnected to NATS", { server: s.server });
          for (const fn of this.#onReconnect) fn();
          break;
        case "close":
          this.#setStatus("closed", undefined);
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
      if (this.#nc.isClosed()) return;
      if (this.#status === "connected") {
        const drained = await withDeadline(this.#nc.drain().then(() => true, () => false), timeout, false);
        if (!drained) this.log.warn("NATS drain did not complete; closing the connection", { timeoutMs: timeout });
      }
      if (!this.#nc.isClosed()) await this.#nc.close();
      this.#setStatus("closed", undefined);
    })();
    return this.#closing;
  }
}

/** Run a caller's hook; one that throws is logged, and neither stops the status watch nor the connect loop. */
function notify(log: Logger, hook: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.warn(`a NATS ${hook} listener threw`, { error: (err as Error).message });
  }
}
