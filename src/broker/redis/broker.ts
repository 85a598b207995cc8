import { randomBytes, randomUUID } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import { closedError } from "../../lifecycle/component.js";
import type { Logger } from "../../log.js";
import type { TlsMaterial } from "../../tls/files.js";
import type { ActiveSubscription, Broker, BrokerStatus, DeliverFn, PublishResult, SubscriptionSpec } from "../types.js";
import { encodeEntry } from "./entries.js";
import { BLOCK_MS, RedisSubscription } from "./subscription.js";
import { checkTopic, streamKey } from "./topics.js";

export interface RedisBrokerOptions {
  /** redis:// or rediss://, without a password (config/load.ts moves it to `password`). */
  url: string;
  password?: string | undefined;
  /** PEM contents of redis.tls (read by the caller). */
  tls?: TlsMaterial | undefined;
  prefix: string;
  maxLen: number;
  /** redis.claimIdle (ms); default per subscription: max(30 s, 2 × timeout + retry.max). */
  claimIdle?: number | undefined;
  /** Names this process's consumers and connections. */
  service: string;
}

/** Reconnect for ever, backing off to 2 s (plus jitter, so that sidecars do not come back in step). */
const retryStrategy = (times: number): number => Math.min(2_000, 50 * 2 ** Math.min(times, 6)) + Math.floor(Math.random() * 100);

/** What ioredis dials: host, port, db, user and TLS from the URL; never the password in a log. */
export function connectionOptions(o: RedisBrokerOptions): { options: RedisOptions; endpoint: string } {
  const url = new URL(o.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 6379);
  const db = Number(url.pathname.slice(1) || 0);
  const options: RedisOptions = {
    host,
    port,
    db,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: o.password,
    // Node checks the server's certificate against `host` (and sends it as SNI unless it is an IP).
    tls: url.protocol === "rediss:" ? { ...(o.tls ?? {}) } : undefined,
    connectionName: `sidecar-${o.service}`,
    // RESP2's reply shapes (XREADGROUP's [[key, entries]]): RESP3 maps would arrive flattened.
    protocol: 2,
    // A command while disconnected fails at once (publish answers 503), and one in flight when the
    // connection drops fails with it: nothing waits in ioredis for a server that may never come back.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy,
    // A connection that went silent (a network partition: no reset, no close) is dropped and
    // dialled again once a command has waited this long, instead of after TCP keep-alive's minutes.
    socketTimeout: 10_000,
  };
  return { options, endpoint: `${url.hostname}:${port}` };
}

/**
 * The Redis Streams broker: each topic is the stream `<prefix><topic>`; a publish is an XADD
 * (answered once Redis has it), trimmed to about `maxLen` entries. Subscriptions are consumer
 * groups (subscription.ts). One connection for commands, and one per subscription for its
 * blocking reads.
 */
export class RedisBroker implements Broker {
  readonly kind = "redis";
  readonly #subs = new Set<RedisSubscription>();
  /** This process's consumer name in every group: unique, so a restarted sidecar never inherits a dead one's pending entries by name. */
  readonly #consumer: string;
  #closed = false;

  private constructor(
    private readonly main: Redis,
    private readonly o: RedisBrokerOptions,
    private readonly endpoint: string,
    private readonly log: Logger,
  ) {
    this.#consumer = `${o.service}-${randomBytes(4).toString("hex")}`;
    let lost = false;
    main.on("close", () => {
      if (this.#closed || lost) return;
      lost = true;
      log.warn("lost the connection to Redis; reconnecting (publishes answer 503 meanwhile)", { redis: endpoint });
    });
    main.on("ready", () => {
      if (!lost) return;
      lost = false;
      log.info("reconnected to Redis", { redis: endpoint });
    });
  }

  /** Connect, waiting for Redis (saying so every 10 attempts) until it answers or `signal` aborts. */
  static async open(o: RedisBrokerOptions, log: Logger, signal?: AbortSignal): Promise<RedisBroker> {
    const { options, endpoint } = connectionOptions(o);
    const main = new Redis(options);
    let lastError: Error | undefined;
    // Without a listener ioredis prints every connection error to the console.
    main.on("error", (err: Error) => (lastError = err));
    const ready = () => main.status === "ready";
    for (let attempt = 0; !ready(); attempt++) {
      await readyWithin(main, 1_000, signal);
      if (signal?.aborted) {
        main.disconnect();
        throw new Error("stopped while waiting for Redis", { cause: lastError });
      }
      if (ready() || attempt % 10 !== 0) continue;
      if (/NOAUTH|WRONGPASS|NOPERM/.test(lastError?.message ?? "")) log.error("Redis refused this sidecar's credentials (redis.password, the URL's user); retrying", { redis: endpoint, error: lastError?.message });
      else log.warn("waiting for Redis: cannot connect yet, retrying", { redis: endpoint, error: lastError?.message });
    }
    log.info("connected to Redis", { redis: endpoint, prefix: o.prefix, maxLen: o.maxLen });
    return new RedisBroker(main, o, endpoint, log);
  }

  async publish(topic: string, body: Buffer, headers: Record<string, string>): Promise<PublishResult> {
    if (this.#closed) throw closedError("redis broker");
    const id = headers["ce-id"] || randomUUID();
    const key = streamKey(this.o.prefix, topic);
    await this.main.xadd(key, "MAXLEN", "~", this.o.maxLen, "*", ...encodeEntry(id, { ...headers, "ce-id": id }, body));
    return { id, stored: true, stream: key };
  }

  async subscribe(spec: SubscriptionSpec, deliver: DeliverFn): Promise<ActiveSubscription> {
    if (this.#closed) throw closedError("redis broker");
    checkTopic(spec.topic);
    const claimIdle = this.o.claimIdle ?? Math.max(30_000, 2 * spec.timeout + spec.retry.max);
    // A blocking read answers within BLOCK_MS: silence past it means the connection is gone.
    const reader = this.main.duplicate({ connectionName: `sidecar-${this.o.service}-read`, socketTimeout: BLOCK_MS + 10_000 });
    reader.on("error", () => undefined); // reported by the read loop, which retries
    const sub = new RedisSubscription(spec, deliver, {
      main: this.main, reader, key: streamKey(this.o.prefix, spec.topic), consumer: this.#consumer, claimIdle, log: this.log,
      stopped: () => this.#subs.delete(sub),
    });
    this.#subs.add(sub);
    try {
      await sub.start();
    } catch (err) {
      this.#subs.delete(sub);
      reader.disconnect();
      throw err;
    }
    this.log.info("subscribed", { subscription: spec.name, topic: spec.topic, durable: spec.durable, stream: sub.key, group: sub.group, consumer: this.#consumer, maxInFlight: spec.maxInFlight, claimIdleMs: spec.durable ? claimIdle : undefined });
    return sub;
  }

  status(): BrokerStatus {
    if (this.#closed) return "closed";
    return this.main.status === "ready" ? "connected" : "disconnected";
  }

  /** Idempotent. Subscriptions still running (the sidecar stops its own first) lose their connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#subs]) s.abandon();
    this.#subs.clear();
    await this.main.quit().catch(() => this.main.disconnect());
    this.log.debug("closed the Redis connections", { redis: this.endpoint });
  }
}

/** Resolves when `client` is ready, after `ms`, or when `signal` aborts, whichever comes first. */
function readyWithin(client: Redis, ms: number, signal?: AbortSignal): Promise<void> {
  if (client.status === "ready" || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off("ready", done);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once("ready", done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
