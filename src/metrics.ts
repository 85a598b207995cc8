import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TrafficWindows } from "./traffic/window.js";

/** Most label sets of sidecar_calls_total before new endpoints are folded into "other". */
export const MAX_SERIES = 2_000;
/** Most distinct `service` label values per metric; past it (and for unknown services) "other". */
export const MAX_SERVICES = 500;
/** The `service` (and `endpoint`) label of calls to a service the registry does not know, and of overflow. */
export const OTHER = "other";
/** The `service` and `endpoint` labels of requests refused before any service was known (bad JSON, invalid name). */
export const REFUSED = "";

/** What the scrape reads from the running sidecar (gauges computed at scrape time, not on the hot path). */
export interface MetricSources {
  nodes(): { service: string; count: number }[];
  subscriptions(): Record<string, unknown>[];
  natsConnected(): boolean | undefined;
  appHealthy(): boolean;
  callsInFlight(): number;
  /** Published messages a subscribed service did not take (local broker); undefined: not counted by this broker. */
  notTaken?(): number | undefined;
  /** Open mesh-protocol connections: from peers (in), to peers (out). */
  meshConnections?(): { in: number; out: number };
  /** Services this sidecar watches in the registry (those it calls). */
  watchedServices?(): number;
}

/** Call outcomes observed by the caller, ejections by the selector. */
export interface CallObserver {
  /** A call to `service` (OTHER when the registry does not know it) that ended with `status`. */
  call(service: string, endpoint: string, status: number, seconds: number): void;
  /** A request to /rpc or /proxy refused before it became a call (400 BAD_JSON, INVALID_NAME, INVALID_REQUEST; 405, 413). */
  refused(status: number): void;
  retry(service: string, reason: "failover" | "opt_in"): void;
  ejection(service: string): void;
}

/**
 * `GET /metrics`, Prometheus text through prom-client. Counters and the latency
 * histogram are updated on the hot path (a label lookup and an add); everything else is read
 * from the sidecar's own state when scraped.
 */
export class Metrics implements CallObserver {
  readonly registry = new Registry();
  readonly #calls: Counter<"service" | "endpoint" | "status">;
  readonly #duration: Histogram<"service">;
  readonly #retries: Counter<"service" | "reason">;
  readonly #ejections: Counter<"service">;

  /** `traffic`: the status page's last minute of calls, fed from the same observations. */
  constructor(sources: MetricSources, private readonly traffic?: TrafficWindows) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "sidecar_" });
    // prom-client names three gauges *_total, a suffix Prometheus keeps for counters (promtool
    // check metrics flags them); each is the sum of its per-type gauge, which stays.
    for (const what of ["handles", "requests", "resources"]) this.registry.removeSingleMetric(`sidecar_nodejs_active_${what}_total`);
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
    new Gauge({
      name: "sidecar_registry_watched_services", help: "Services this sidecar watches in the registry: those it called within registry.idleWatch, and calls.services", registers,
      collect() {
        const n = sources.watchedServices?.();
        if (n !== undefined) this.set(n);
      },
    });
    new Gauge({
      name: "sidecar_mesh_connections", help: "Open mesh-protocol connections between sidecars: from peers (in), to peers (out)", labelNames: ["direction"], registers,
      collect() {
        const c = sources.meshConnections?.();
        if (!c) return;
        this.set({ direction: "in" }, c.in);
        this.set({ direction: "out" }, c.out);
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
      name: "sidecar_deliveries_in_flight", help: "Deliveries to the app in flight, per subscription", labelNames: ["subscription", "topic"], registers,
      collect() {
        this.reset();
        for (const s of sources.subscriptions()) this.set({ subscription: String(s.name), topic: String(s.topic) }, Number(s.inFlight ?? 0));
      },
    });
    // The local broker's running total, as a counter: each scrape adds what it grew by.
    let notTakenSeen = 0;
    new Counter({
      name: "sidecar_published_not_taken_total", help: "Published messages no node of a subscribed service took, once per service (local broker: lost for it)", registers,
      collect() {
        const n = sources.notTaken?.();
        if (n === undefined) return;
        this.inc(n >= notTakenSeen ? n - notTakenSeen : n);
        notTakenSeen = n;
      },
    });
    // Counted by the subscriptions themselves (running totals); a Counter cannot be set, so each
    // scrape adds what the total grew by since the last one. A total that went down (the
    // subscription was restarted) counts from zero again: a counter never decreases.
    const perSubscription = (name: string, help: string, key: string) => {
      const last = new Map<string, number>();
      new Counter({
        name, help, labelNames: ["subscription", "topic"], registers,
        collect() {
          for (const s of sources.subscriptions()) {
            const labels = { subscription: String(s.name), topic: String(s.topic) };
            const id = `${labels.subscription}\u0000${labels.topic}`;
            const now = Number(s[key] ?? 0);
            const before = last.get(id) ?? 0;
            this.inc(labels, now >= before ? now - before : now);
            last.set(id, now);
          }
        },
      });
    };
    perSubscription("sidecar_deliveries_total", "Messages delivered to the app (2xx), per subscription", "delivered");
    perSubscription("sidecar_delivery_retries_total", "Deliveries retried after a 5xx, timeout or connection error", "retried");
    perSubscription("sidecar_dead_letters_total", "Messages given up (dead-lettered or logged)", "deadLettered");
    perSubscription("sidecar_messages_dropped_total", "Messages lost before delivery (at-most-once subscriptions: queue full, or the sidecar stopping)", "dropped");
  }

  /** Label children cached by key: prom-client hashes label objects on every call otherwise. */
  #callChildren = new Map<string, { inc(): void }>();
  #durationChildren = new Map<string, { observe(v: number): void }>();

  /** Services with series of their own (at most MAX_SERVICES). */
  #services = new Set<string>();

  /** The `service` label for a service: its name while under MAX_SERVICES, else OTHER. */
  #service(service: string): string {
    if (service === OTHER || this.#services.has(service)) return service;
    if (this.#services.size >= MAX_SERVICES) return OTHER;
    this.#services.add(service);
    return service;
  }

  call(service: string, endpoint: string, status: number, seconds: number): void {
    service = this.#service(service);
    if (service === OTHER) endpoint = OTHER;
    this.#count(service, endpoint, status);
    let h = this.#durationChildren.get(service);
    if (!h) this.#durationChildren.set(service, (h = this.#duration.labels(service)));
    h.observe(seconds);
    // As Linkerd counts success: anything but a 5xx (4xx are the caller's own mistakes).
    this.traffic?.record(service, status < 500, seconds * 1000);
  }

  refused(status: number): void {
    this.#count(REFUSED, REFUSED, status);
  }

  #count(service: string, endpoint: string, status: number): void {
    let key = `${service}\u0000${endpoint}\u0000${status}`;
    let counter = this.#callChildren.get(key);
    if (!counter) {
      // Endpoints come from callers: past MAX_SERIES label sets, new ones are counted as "other".
      if (this.#callChildren.size >= MAX_SERIES) {
        endpoint = OTHER;
        key = `${service}\u0000${OTHER}\u0000${status}`;
      }
      counter = this.#callChildren.get(key) ?? this.#calls.labels(service, endpoint, String(status));
      this.#callChildren.set(key, counter);
    }
    counter.inc();
  }

  retry(service: string, reason: "failover" | "opt_in"): void {
    this.#retries.inc({ service: this.#service(service), reason });
  }

  ejection(service: string): void {
    this.#ejections.inc({ service: this.#service(service) });
  }

  /** Drop a service's series: the registry view forgot it (gone for a while). */
  forget(service: string): void {
    if (!this.#services.delete(service)) return;
    const prefix = `${service}\u0000`;
    for (const key of [...this.#callChildren.keys()]) {
      if (!key.startsWith(prefix)) continue;
      const [, endpoint, status] = key.split("\u0000");
      this.#calls.remove({ service, endpoint: endpoint!, status: status! });
      this.#callChildren.delete(key);
    }
    this.#durationChildren.delete(service);
    this.#duration.remove({ service });
    for (const reason of ["failover", "opt_in"] as const) this.#retries.remove({ service, reason });
    this.#ejections.remove({ service });
    this.traffic?.forget(service);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
