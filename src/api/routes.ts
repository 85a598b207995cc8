import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import type { AppHealth } from "../health/checker.js";
import { requestIdOf } from "../http/headers.js";
import { sendError, sendJson, sendText } from "../http/reply.js";
import type { Logger } from "../log.js";
import { isValidName, show } from "../names.js";
import type { NodeRecord, RegistryStatus } from "../registry/types.js";
import type { RegistryView } from "../registry/view.js";
import type { Metrics } from "../metrics.js";
import type { NodeState } from "../selector/index.js";
import type { StampedEvent } from "../events/types.js";
import type { TrafficSnapshot } from "../traffic/window.js";
import type { RecentEvent } from "./recent.js";
import { STATUS_PAGE } from "./status-page.js";
import { lookup } from "../registry/lookup.js";

/** What the health routes read from the running sidecar. */
export interface SidecarStatus {
  app(): AppHealth;
  registered(): boolean;
  registry(): RegistryStatus;
  broker(): string;
  subscriptionsHealthy(): boolean;
  draining(): boolean;
}

export interface ManagementDeps {
  view: RegistryView;
  /** A listing of the registry (GET /registry): one read of the backend, not a standing watch. */
  list: () => Promise<NodeRecord[]>;
  /** How long GET /registry/:service waits for the listing of a service this sidecar does not watch yet. */
  lookupTimeout: number;
  status: SidecarStatus;
  nodeState: (service: string, nodeId: string) => NodeState | undefined;
  subscriptions: () => Record<string, unknown>[];
  metrics: Metrics;
  /** Who this sidecar is, for the status page. */
  about: () => Record<string, unknown>;
  /** The last warnings and errors logged, newest first. */
  recent: () => RecentEvent[];
  /** The last `n` events (newest first). */
  events: (n: number) => StampedEvent[];
  /** The last minute of calls (per service called) and deliveries (per subscription). */
  traffic: () => { calls: ({ key: string } & TrafficSnapshot)[]; deliveries: ({ key: string } & TrafficSnapshot)[] };
}

const EMPTY_STATE: NodeState = { inFlight: 0, consecutiveFailures: 0, ejected: false, ejections: 0 };

type Route = (req: IncomingMessage, res: ServerResponse, param: string | undefined) => void | Promise<void>;

const NO_STORE = { "cache-control": "no-store" };
const json = (res: ServerResponse, status: number, value: unknown) => sendJson(res, status, value, NO_STORE);


const PAGE_HEADERS = { ...NO_STORE, "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'" };

/**
 * The management surface: health, registry, subscriptions, metrics and the status
 * page. GET (and HEAD) only; 405 with Allow for other methods, 404 for other paths. Plain
 * node:http like the hot path: a handful of fixed routes need no framework (express cost
 * about 6 MiB of resident memory per sidecar for these eight routes).
 */
export function managementHandler({ view, list, lookupTimeout, status, nodeState, subscriptions, metrics, about, recent, events, traffic }: ManagementDeps, log: Logger): (req: IncomingMessage, res: ServerResponse) => void {
  const nodesOf = (service: string) => view.nodes(service).map((n) => ({ ...n, state: nodeState(service, n.id) ?? EMPTY_STATE }));
  const watching = () => ({ scope: view.scope, idleWatchMs: view.idleWatch, services: view.watched() });

  const routes = new Map<string, Route>([
    ["/health", (_req, res) => {
      const app = status.app();
      const registry = status.registry();
      const broker = status.broker();
      const ok = app === "passing" && registry === "connected" && broker === "connected" && !status.draining();
      json(res, ok ? 200 : 503, { status: ok ? "ok" : status.draining() ? "draining" : "unavailable", app, registry, broker });
    }],
    ["/health/live", (_req, res) => json(res, 200, { status: "ok" })],
    ["/health/ready", (_req, res) => {
      const reasons: string[] = [];
      if (status.draining()) reasons.push("the sidecar is shutting down");
      if (!status.registered()) reasons.push(`the app is not registered (health: ${status.app()})`);
      if (status.registry() !== "connected") reasons.push(`the registry is ${status.registry()}`);
      if (status.broker() !== "connected") reasons.push(`the broker is ${status.broker()}`);
      if (!status.subscriptionsHealthy()) reasons.push("a subscription failed to start (GET /subscriptions)");
      json(res, reasons.length === 0 ? 200 : 503, reasons.length === 0 ? { status: "ready" } : { status: "not ready", reasons });
    }],
    // Every service: a listing of the backend made for this request (this sidecar watches only what it calls).
    ["/registry", async (_req, res) => json(res, 200, listed(await listing(list)))],
    // One service: from this sidecar's view, watching the service from now on as a call would.
    ["/registry/:service", async (_req, res, service) => {
      if (service === undefined || !isValidName(service)) throw new SidecarError("INVALID_NAME", `service name ${show(service)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
      await lookup(view, service, lookupTimeout);
      if (!view.known(service)) throw new SidecarError("SERVICE_NOT_FOUND", `no service named '${service}' in the registry`);
      // Each record as registered, plus this sidecar's balancing state of the node (in flight, ejection).
      json(res, 200, { service, nodes: nodesOf(service) });
    }],
    ["/metrics", async (_req, res) => sendText(res, 200, metrics.contentType, await metrics.text(), NO_STORE)],
    ["/subscriptions", (_req, res) => json(res, 200, { subscriptions: subscriptions() })],
    // The status page and the one document it reads.
    ["/", (_req, res) => sendText(res, 200, "text/html; charset=utf-8", STATUS_PAGE, PAGE_HEADERS)],
    ["/status", (_req, res) => json(res, 200, {
      sidecar: about(),
      health: { app: status.app(), registered: status.registered(), registry: status.registry(), broker: status.broker(), draining: status.draining() },
      services: view.services().map((service) => ({ service, nodes: nodesOf(service) })),
      watching: watching(),
      subscriptions: subscriptions(),
      recentErrors: recent(),
      events: events(30),
      traffic: traffic(),
    })],
  ]);

  /** The route for a path, and its parameter ("/registry/greeter" → "/registry/:service", "greeter"). */
  const match = (path: string): [Route, string | undefined] | undefined => {
    const exact = routes.get(path);
    if (exact) return [exact, undefined];
    const m = /^\/registry\/([^/]+)$/.exec(path);
    if (!m) return undefined;
    let service: string;
    try {
      service = decodeURIComponent(m[1]!);
    } catch {
      service = m[1]!;
    }
    return [routes.get("/registry/:service")!, service];
  };

  return (req, res) => {
    const requestId = requestIdOf(req);
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    let path = q === -1 ? url : url.slice(0, q);
    if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
    Promise.resolve()
      .then(() => {
        const found = match(path);
        if (!found) throw new SidecarError("NOT_FOUND", `no route ${req.method} ${path}`);
        if (req.method !== "GET" && req.method !== "HEAD") {
          throw new SidecarError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${path}; use GET`, { headers: { allow: "GET, HEAD" } });
        }
        return found[0](req, res, found[1]);
      })
      .catch((err: unknown) => sendError(res, err, requestId, log));
  };
}

/** Nodes GET /registry answers with at most: the listing is of the whole registry. */
export const MAX_LISTED_NODES = 10_000;

async function listing(list: () => Promise<NodeRecord[]>): Promise<NodeRecord[]> {
  try {
    return await list();
  } catch (err) {
    throw new SidecarError("REGISTRY_UNAVAILABLE", `cannot list the registry: ${(err as Error).message}`, { cause: err });
  }
}

/** The listing by service, sorted, at most MAX_LISTED_NODES nodes; says that it is a listing. */
function listed(nodes: NodeRecord[]): Record<string, unknown> {
  const by = new Map<string, NodeRecord[]>();
  const sorted = [...nodes].sort((a, b) => (a.service === b.service ? (a.id < b.id ? -1 : 1) : a.service < b.service ? -1 : 1));
  for (const n of sorted.slice(0, MAX_LISTED_NODES)) {
    let list = by.get(n.service);
    if (!list) by.set(n.service, (list = []));
    list.push(n);
  }
  return {
    services: [...by].map(([service, ns]) => ({ service, nodes: ns })),
    source: "listing",
    ...(nodes.length > MAX_LISTED_NODES ? { truncated: { nodes: nodes.length, listed: MAX_LISTED_NODES } } : {}),
  };
}
