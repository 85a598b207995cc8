import express, { type NextFunction, type Request, type Response } from "express";
import { SidecarError } from "../errors.js";
import type { AppHealth } from "../health/checker.js";
import { requestIdOf } from "../http/headers.js";
import { sendError } from "../http/reply.js";
import type { Logger } from "../log.js";
import { isValidName, show } from "../names.js";
import type { RegistryStatus } from "../registry/types.js";
import type { RegistryView } from "../registry/view.js";
import type { Metrics } from "../metrics.js";
import type { NodeState } from "../selector/index.js";
import type { RecentEvent } from "./recent.js";
import { STATUS_PAGE } from "./status-page.js";

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
  status: SidecarStatus;
  nodeState: (service: string, nodeId: string) => NodeState | undefined;
  subscriptions: () => Record<string, unknown>[];
  metrics: Metrics;
  /** Who this sidecar is, for the status page. */
  about: () => Record<string, unknown>;
  /** The last warnings and errors logged, newest first. */
  recent: () => RecentEvent[];
}

const EMPTY_STATE: NodeState = { inFlight: 0, consecutiveFailures: 0, ejected: false, ejections: 0 };

const allow = (methods: string) => (req: Request) => {
  throw new SidecarError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${req.path}; use ${methods}`, { headers: { allow: methods } });
};

/**
 * The management surface (DESIGN §6): registry, health. Not the hot path, so express
 * serves it; /rpc is answered before express sees the request (api/server.ts).
 */
export function managementApp({ view, status, nodeState, subscriptions, metrics, about, recent }: ManagementDeps, log: Logger): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);

  app.route("/health").get((_req, res) => {
    const app = status.app();
    const registry = status.registry();
    const broker = status.broker();
    const ok = app === "passing" && registry === "connected" && broker === "connected" && !status.draining();
    res.status(ok ? 200 : 503).json({ status: ok ? "ok" : status.draining() ? "draining" : "unavailable", app, registry, broker });
  }).all(allow("GET"));

  app.route("/health/live").get((_req, res) => {
    res.json({ status: "ok" });
  }).all(allow("GET"));

  app.route("/health/ready").get((_req, res) => {
    const reasons: string[] = [];
    if (status.draining()) reasons.push("the sidecar is shutting down");
    if (!status.registered()) reasons.push(`the app is not registered (health: ${status.app()})`);
    if (status.registry() !== "connected") reasons.push(`the registry is ${status.registry()}`);
    if (status.broker() !== "connected") reasons.push(`the broker is ${status.broker()}`);
    if (!status.subscriptionsHealthy()) reasons.push("a subscription failed to start (GET /subscriptions)");
    res.status(reasons.length === 0 ? 200 : 503).json(reasons.length === 0 ? { status: "ready" } : { status: "not ready", reasons });
  }).all(allow("GET"));

  app.route("/registry").get((_req, res) => {
    res.json({ services: view.services().map((service) => ({ service, nodes: view.nodes(service) })) });
  }).all(allow("GET"));

  app.route("/registry/:service").get((req, res) => {
    const service = req.params.service as string;
    if (!isValidName(service)) throw new SidecarError("INVALID_NAME", `service name ${show(service)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
    if (!view.known(service)) throw new SidecarError("SERVICE_NOT_FOUND", `no service named '${service}' in the registry`);
    // Each record as registered, plus this sidecar's balancing state of the node (in flight, ejection).
    const nodes = view.nodes(service).map((n) => ({ ...n, state: nodeState(service, n.id) ?? EMPTY_STATE }));
    res.json({ service, nodes });
  }).all(allow("GET"));

  // The status page and the one document it reads.
  app.route("/").get((_req, res) => {
    res.set("cache-control", "no-store").set("content-security-policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'").type("html").send(STATUS_PAGE);
  }).all(allow("GET"));

  app.route("/status").get((_req, res) => {
    res.set("cache-control", "no-store").json({
      sidecar: about(),
      health: { app: status.app(), registered: status.registered(), registry: status.registry(), broker: status.broker(), draining: status.draining() },
      services: view.services().map((service) => ({ service, nodes: view.nodes(service).map((n) => ({ ...n, state: nodeState(service, n.id) ?? EMPTY_STATE })) })),
      subscriptions: subscriptions(),
      recentErrors: recent(),
    });
  }).all(allow("GET"));

  app.route("/metrics").get(async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.text());
  }).all(allow("GET"));

  app.route("/subscriptions").get((_req, res) => {
    res.json({ subscriptions: subscriptions() });
  }).all(allow("GET"));

  app.use((req: Request) => {
    throw new SidecarError("NOT_FOUND", `no route ${req.method} ${req.path}`);
  });

  // Express needs the four-argument signature to recognise an error handler.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    sendError(res, err, requestIdOf(req), log);
  });
  return app;
}
