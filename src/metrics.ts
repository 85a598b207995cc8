import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** Most label sets of sidecar_calls_total before new endpoints are folded into "other". */
const MAX_SERIES = 2_000;

/** What the scrape reads from the running sidecar (gauges computed at scrape time, not on the hot path). */
export interface MetricSources {
  nodes(): { service: string; count: number }[];
  subscriptions(): Record<string, unknown>[];
  natsConnected(): boolean | undefined;
  appHealthy(): boolean;
  callsInFlight(): number;
  /** Published messages a subscribed service did not take (local broker); undefined: not counted by this broker. */
  notTaken?(): number | undefined;
}

/** Call outcomes observed by the caller, ejections by the selector. */
export interface CallObserver {
  call(service: string, endpoint: string, status: number, seconds: number): void;
  retry(service: string, reason: "failover" | "opt_in"): void;
  ejection(service: string): void;
}

/**
 * `GET /metrics` (DESIGN §8), Prometheus text through prom-client. Counters and the latency
 * histogram are updated on the hot path (a label lookup and an add); everything else is read
 * from the sidecar's own state when scraped.
 */
export class Metrics implements CallObserver {
  readonly registry = new Registry();
  readonly #calls: Counter<"service" | "endpoint" | "status">;
  readonly #duration: Histogram<"service">;
  readonly #retries: Counter<"service" | "reason">;
  readonly #ejections: Counter<"service">;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "sidecar_" });
    this.#calls = new Counter({ name: "sidecar_calls_total", help: "Outbound calls (/rpc, /proxy) by service, endpoint and answered status", labelNames: ["service", "endpoint", "status"], registers });
    this.#duration = new Histogram({
      name: "sidecar_call_duration_seconds",
      help: "Outbound call latency through this sidecar, retries included",
      labelNames: ["service"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#retries = new Counter({ name: "sidecar_retries_total", help: "Calls sent to another node (failover: the callee never saw it; opt_in: retries the call asked for)", labelNames: ["service", "reason"], registers });
    this.#ejections = new Counter({ name: "sidecar_ejections_total", help: "Nodes ejected by outlier detection", labelNames: ["service"], registers });
    new Gauge({ name: "sidecar_calls_in_flight", help: "Outbound calls in flight", registers, collect() { this.set(sources.callsInFlight()); } });
    new Gauge({
      name: "sidecar_registry_nodes", help: "Live nodes per service in this sidecar's view of the registry", labelNames: ["service"], registers,
      collect() {
        this.reset();
        for (const { service, count } of sources.nodes()) this.set({ service }, count);
      },
    });
    new Gauge({ name: "sidecar_app_healthy", help: "1 while the app passes its health check", registers, collect() { this.set(sources.appHealthy() ? 1 : 0); } });
    new Gauge({
      name: "sidecar_nats_connected", help: "1 while connected to NATS (absent without NATS)", registers,
      collect() {
        const c = sources.natsConnected();
        if (c !== undefined) this.set(c ? 1 : 0);
      },
    });
    new Gauge({
      name: "sidecar_published_not_taken_total", help: "Published messages no node of a subscribed service took, once per service (local broker: lost for it)", registers,
      collect() {
        const n = sources.notTaken?.();
        if (n !== undefined) this.set(n);
      },
    });
    const perSubscription = (name: string, help: string, key: string) =>
      new Gauge({
        name, help, labelNames: ["subscription", "topic"], registers,
        collect() {
          this.reset();
          for (const s of sources.subscriptions()) this.set({ subscription: String(s.name), topic: String(s.topic) }, Number(s[key] ?? 0));
        },
      });
    // Counted by the subscriptions themselves; exposed as gauges of their running totals.
    perSubscription("sidecar_deliveries_total", "Messages delivered to the app (2xx), per subscription", "delivered");
    perSubscription("sidecar_delivery_retries_total", "Deliveries retried after a 5xx, timeout or connection error", "retried");
    perSubscription("sidecar_dead_letters_total", "Messages given up (dead-lettered or logged)", "deadLettered");
    perSubscription("sidecar_deliveries_in_flight", "Deliveries to the app in flight", "inFlight");
    perSubscription("sidecar_messages_dropped_total", "Messages lost before delivery (at-most-once subscriptions: queue full, or the sidecar stopping)", "dropped");
  }

  /** Label children cached by key: prom-client hashes label objects on every call otherwise. */
  #callChildren = new Map<string, { inc(): void }>();
  #durationChildren = new Map<string, { observe(v: number): void }>();

  call(service: string, endpoint: string, status: number, seconds: number): void {
    let key = `${service}\u0000${endpoint}\u0000${status}`;
    let counter = this.#callChildren.get(key);
    if (!counter) {
      // Endpoints come from callers: past MAX_SERIES label sets, new ones are counted as "other".
      if (this.#callChildren.size >= MAX_SERIES) {
        endpoint = "other";
        key = `${service}\u0000other\u0000${status}`;
      }
      counter = this.#callChildren.get(key) ?? this.#calls.labels(service, endpoint, String(status));
      this.#callChildren.set(key, counter);
    }
    counter.inc();
    let h = this.#durationChildren.get(service);
    if (!h) this.#durationChildren.set(service, (h = this.#duration.labels(service)));
    h.observe(seconds);
  }

  retry(service: string, reason: "failover" | "opt_in"): void {
    this.#retries.inc({ service, reason });
  }

  ejection(service: string): void {
    this.#ejections.inc({ service });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
