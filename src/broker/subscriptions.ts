import http from "node:http";
import { H } from "../http/headers.js";
import type { SubscriptionConfig } from "../config/schema.js";
import type { Emit } from "../events/types.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { Relay } from "./relay.js";
import type { ActiveSubscription, Broker, SubscriptionCounters, SubscriptionSpec } from "./types.js";

/** A configured subscription with every default filled in. */
export function resolveSpec(c: SubscriptionConfig, defaults: { service: string; timeout: number }): SubscriptionSpec {
  return {
    name: c.name ?? c.topic,
    topic: c.topic,
    path: c.path,
    queue: c.queue ?? defaults.service,
    durable: c.durable,
    maxInFlight: c.maxInFlight,
    timeout: c.timeout ?? defaults.timeout,
    retry: c.retry,
    deadLetter: c.deadLetter,
    stream: c.stream,
  };
}

/** GET http://app/sidecar/subscriptions: the app's own subscriptions; 404 or nothing listening = none. */
export function askApp(app: { host: string; port: number; token?: string | undefined }, log: Logger): Promise<SubscriptionConfig[]> {
  return new Promise((resolve) => {
    const headers = app.token ? { [H.appToken]: app.token } : undefined;
    const req = http.get({ host: app.host, port: app.port, path: "/sidecar/subscriptions", timeout: 2_000, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        if (res.statusCode === 404) return resolve([]);
        if (res.statusCode !== 200) {
          log.warn("the app's GET /sidecar/subscriptions answered an error; using the configured subscriptions only", { status: res.statusCode });
          return resolve([]);
        }
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch (err) {
          log.error("the app's GET /sidecar/subscriptions is not JSON; ignoring it", { error: (err as Error).message });
          return resolve([]);
        }
        // The config schema (and its validator) is loaded only for an app that lists subscriptions: it is not resident otherwise.
        void import("../config/schema.js").then(({ subscriptionSchema }) => {
          const list = subscriptionSchema.array().safeParse(body);
          if (list.success) return resolve(list.data);
          for (const issue of list.error.issues) log.error("invalid subscription from the app's GET /sidecar/subscriptions; ignoring them all", { key: issue.path.join("."), error: issue.message });
          resolve([]);
        });
      });
    });
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", () => resolve([]));
  });
}

interface Entry {
  spec: SubscriptionSpec;
  counters: SubscriptionCounters;
  sub?: ActiveSubscription;
  error?: string;
}

/** How long close() without a deadline lets deliveries in flight finish. */
const STOP_DEADLINE_MS = 10_000;

/**
 * The subscriptions of this sidecar: started once the app first passes its health check,
 * paused while it fails, resumed when it recovers, stopped (in-flight deliveries finishing)
 * at shutdown.
 */

export class Subscriptions implements Component {
  readonly #lifecycle = new Lifecycle("subscriptions", { start: () => this.#start(), close: (deadlineMs) => this.stop(deadlineMs ?? STOP_DEADLINE_MS) });
  #entries: Entry[] = [];

  constructor(private readonly broker: Broker, private readonly relay: Relay, private readonly log: Logger, private readonly emit: Emit = () => {}) {}

  #state(e: Entry, state: "active" | "paused" | "failed"): void {
    this.emit({ type: "subscription", subscription: e.spec.name, topic: e.spec.topic, state, ...(e.error ? { error: e.error } : {}) });
  }

  add(specs: SubscriptionSpec[]): void {
    for (const spec of specs) {
      if (this.#entries.some((e) => e.spec.name === spec.name)) {
        this.log.error("duplicate subscription name; keeping the first", { subscription: spec.name });
        continue;
      }
      this.#entries.push({ spec, counters: { delivered: 0, retried: 0, deadLettered: 0, inFlight: 0 } });
    }
  }

  get topics(): string[] {
    return [...new Set(this.#entries.map((e) => e.spec.topic))];
  }

  /** True when every subscription is running (for /health/ready). */
  get healthy(): boolean {
    return this.#entries.every((e) => e.error === undefined);
  }

  /** Subscribe every subscription added so far, once (concurrent callers share it); after close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /** Stop every subscription, deliveries in flight finishing within `deadlineMs`. Idempotent. */
  close(deadlineMs?: number): Promise<void> {
    return this.#lifecycle.close(deadlineMs);
  }

  async #start(): Promise<void> {
    await Promise.all(
      this.#entries.map(async (e) => {
        try {
          e.sub = await this.broker.subscribe(e.spec, this.relay.deliverer(e.spec, e.counters));
          this.#state(e, "active");
        } catch (err) {
          e.error = (err as Error).message;
          this.log.error("cannot start the subscription", { subscription: e.spec.name, topic: e.spec.topic, error: e.error });
          this.#state(e, "failed");
        }
      }),
    );
  }

  async pause(): Promise<void> {
    await Promise.all(
      this.#entries.map(async (e) => {
        if (!e.sub || e.sub.paused) return;
        await e.sub.pause();
        this.#state(e, "paused");
      }),
    );
  }

  resume(): void {
    for (const e of this.#entries) {
      if (!e.sub?.paused) continue;
      e.sub.resume();
      this.#state(e, "active");
    }
  }

  async stop(timeout: number): Promise<void> {
    await Promise.all(this.#entries.map((e) => e.sub?.stop(timeout)));
  }

  /** For GET /subscriptions. */
  list(): Record<string, unknown>[] {
    return this.#entries.map((e) => ({
      ...e.spec,
      state: e.error ? "failed" : !e.sub ? "not started" : e.sub.paused ? "paused" : "active",
      ...(e.error ? { error: e.error } : {}),
      ...e.counters,
      dropped: e.sub?.dropped ?? 0,
    }));
  }
}
