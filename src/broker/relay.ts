import type { TrafficWindows } from "../traffic/window.js";
import { H, toApp } from "../http/headers.js";
import { isStructured } from "./cloudevents.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import { Deadline } from "../http/deadline.js";
import { H1Pool } from "../http/h1/pool.js";
import type { Broker, DeliverFn, Delivery, Outcome, SubscriptionCounters, SubscriptionSpec } from "./types.js";

/** Headers that make a delivery a CloudEvent in binary mode. */
export const CE = { id: "ce-id", source: "ce-source", type: "ce-type", specversion: "ce-specversion", time: "ce-time" } as const;
export const DEAD = { reason: "x-sidecar-dead-reason", topic: "x-sidecar-original-topic", attempts: "x-sidecar-attempts" } as const;

export interface RelayOptions {
  app: { host: string; port: number };
  service: string;
  /** app.token, sent to the app as x-sidecar-app-token. */
  appToken?: string | undefined;
  log: Logger;
  /** Where dead letters are published. */
  broker: () => Broker;
  /** The status page's last minute of deliveries per subscription (each attempt counted; 2xx is a success). */
  traffic?: TrafficWindows;
}

/** Delay before retry after attempt `attempt` (1-based): initial × 2^(attempt-1), capped. */
export function retryDelay(attempt: number, retry: { initial: number; max: number }): number {
  return Math.min(retry.max, retry.initial * 2 ** (attempt - 1));
}

interface Answer {
  status: number;
  error?: string;
}

/**
 * Delivery to the app: POST http://app{path} with the body, its content type and
 * CloudEvents headers. 2xx acks; 5xx, a timeout or a connection error retries with backoff;
 * a 4xx, or the last attempt, goes to the dead-letter topic with the reason in headers. Nothing
 * is dropped silently: without a dead-letter topic the message id is logged as an error.
 */
export class Relay implements Component {
  readonly #lifecycle = new Lifecycle("relay", { close: () => this.#pool.close() });
  /** Keep-alive connections to the app (http/h1, as the inbound calls use). */
  readonly #pool: H1Pool;

  constructor(private readonly o: RelayOptions) {
    this.#pool = new H1Pool({ host: o.app.host, port: o.app.port, maxSockets: 256 });
  }

  async #post(spec: SubscriptionSpec, d: Delivery): Promise<Answer> {
    // A structured event is delivered as it was published: its attributes are in the body, and
    // ce-* headers beside it (the copies the publish made for the message id) would only disagree.
    const structured = isStructured(d.headers["content-type"]);
    const carried: Record<string, string> = {};
    for (const [k, v] of Object.entries(d.headers)) if ((k.startsWith("ce-") && !structured) || k.startsWith("x-sidecar-") || k === "traceparent" || k === "tracestate") carried[k] = v;
    // The last hop, like a call's: no internal header as the message carried it; the publisher only when vouched for.
    const headers = toApp(carried, d.caller);
    headers["content-type"] = d.headers["content-type"] ?? "application/octet-stream";
    if (!structured) {
      headers[CE.id] = d.id;
      headers[CE.specversion] ??= "1.0";
      headers[CE.type] ??= d.topic;
      headers[CE.source] ??= `/sidecar/${this.o.service}`;
      headers[CE.time] ??= new Date().toISOString();
    }
    headers[H.topic] = d.topic;
    headers[H.attempt] = String(d.attempt);
    headers[H.subscription] = spec.name;
    if (this.o.appToken) headers[H.appToken] = this.o.appToken;
    // One deadline for the whole delivery, the head and the body of the app's answer.
    const deadline = new Deadline(spec.timeout);
    try {
      const res = await this.#pool.request({ method: "POST", path: spec.path, headers, body: d.body }, deadline);
      if (res.whole === undefined) for await (const _ of res as AsyncIterable<Buffer>);
      return { status: res.statusCode ?? 0 };
    } catch (err) {
      return { status: 0, error: deadline.expired ? `no answer within ${spec.timeout}ms` : (err as Error).message };
    } finally {
      deadline.done();
    }
  }

  /** The delivery function of one subscription, counting into `counters`. */
  deliverer(spec: SubscriptionSpec, counters: SubscriptionCounters): DeliverFn {
    const log = this.o.log;
    return async (d: Delivery): Promise<Outcome> => {
      counters.inFlight += 1;
      try {
        const t0 = performance.now();
        const answer = await this.#post(spec, d);
        this.o.traffic?.record(spec.name, answer.status >= 200 && answer.status < 300, performance.now() - t0);
        if (answer.status >= 200 && answer.status < 300) {
          counters.delivered += 1;
          return { kind: "ack" };
        }
        const what = answer.status === 0 ? `delivery failed: ${answer.error}` : `the app answered ${answer.status}`;
        if (answer.status >= 400 && answer.status < 500) return await this.#dead(spec, d, counters, what);
        if (d.attempt < spec.retry.attempts) {
          counters.retried += 1;
          const delay = retryDelay(d.attempt, spec.retry);
          log.debug("delivery will be retried", { subscription: spec.name, id: d.id, traceparent: d.headers.traceparent, attempt: d.attempt, delayMs: delay, reason: what });
          return { kind: "retry", delay };
        }
        return await this.#dead(spec, d, counters, `${what} (gave up after ${d.attempt} attempts)`);
      } finally {
        counters.inFlight -= 1;
      }
    };
  }

  async #dead(spec: SubscriptionSpec, d: Delivery, counters: SubscriptionCounters, reason: string): Promise<Outcome> {
    if (!spec.deadLetter) {
      counters.deadLettered += 1;
      this.o.log.error("message given up and no dead-letter topic is configured", { subscription: spec.name, topic: d.topic, id: d.id, traceparent: d.headers.traceparent, attempts: d.attempt, reason });
      return { kind: "dead" };
    }
    const headers = { ...d.headers, [CE.id]: d.id, [DEAD.reason]: reason, [DEAD.topic]: d.topic, [DEAD.attempts]: String(d.attempt) };
    try {
      await this.o.broker().publish(spec.deadLetter, d.body, headers);
    } catch (err) {
      // Not published anywhere yet: keep the message and try again later rather than lose it.
      this.o.log.warn("cannot publish to the dead-letter topic; will retry the message", { subscription: spec.name, deadLetter: spec.deadLetter, id: d.id, traceparent: d.headers.traceparent, error: (err as Error).message });
      return { kind: "retry", delay: spec.retry.max };
    }
    counters.deadLettered += 1;
    this.o.log.warn("message dead-lettered", { subscription: spec.name, topic: d.topic, deadLetter: spec.deadLetter, id: d.id, traceparent: d.headers.traceparent, attempts: d.attempt, reason });
    return { kind: "dead" };
  }

  /** Nothing to open: the pool connects on the first delivery. After close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /** Close the pooled connections to the app (synchronously). Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}
