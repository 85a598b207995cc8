import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { SidecarError } from "../errors.js";
import type { Secret } from "../http/auth.js";
import { requestIdOf } from "../http/headers.js";
import { pathOf, under } from "../http/paths.js";
import { sendError } from "../http/reply.js";
import type { Logger } from "../log.js";
import { refuseUpgrade } from "../micro/broker.js";
import { claims } from "../micro/path.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ApiRoutes {
  rpc: Handler;
  proxy: Handler;
  publish: Handler;
  /** micro's /broker: plain requests, and WebSocket upgrades. */
  broker: { handle: Handler; upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void };
  /** micro's POST/DELETE /registry and GET /registry?service=. */
  microRegistry: { is(req: IncomingMessage): boolean; handle: Handler };
  /** micro's path form, for the paths it claims (none of ours). */
  microPath: { handler: "rpc" | "proxy"; handle: Handler };
  /** GET /events: the sidecar's events as Server-Sent Events. */
  events: Handler;
  /** Everything else: health, registry, subscriptions, metrics, status. */
  management: Handler;
}

/** The api token rule: every route but /health* and the status page's static HTML needs `api.token` when one is set. */
export function tokenGate(token: Secret): { authorized(req: IncomingMessage): boolean; refusal(): SidecarError } {
  return {
    authorized: (req) => !token.required || under("/health", req.url) || req.url === "/" || token.acceptsBearer(req.headers.authorization),
    refusal: () => new SidecarError("UNAUTHORIZED", "this sidecar requires Authorization: Bearer <api.token>", { headers: { "www-authenticate": 'Bearer realm="sidecar"' } }),
  };
}

/**
 * The api listener's routing: the token gate first (every route but /health* and the status
 * page's static HTML needs `api.token` when one is set), then the hot routes, then micro's, then
 * the management surface. Plain node:http: this runs on every call.
 */
export function apiRouter(routes: ApiRoutes, token: Secret, log: Logger): { request: Handler; upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void } {
  const { authorized, refusal: unauthorized } = tokenGate(token);
  return {
    request: (req, res) => {
      if (!authorized(req)) return sendError(res, unauthorized(), requestIdOf(req), log);
      if (under("/rpc", req.url)) routes.rpc(req, res);
      else if (under("/proxy", req.url)) routes.proxy(req, res);
      else if (under("/publish", req.url)) routes.publish(req, res);
      else if (under("/broker", req.url)) routes.broker.handle(req, res);
      else if (under("/events", req.url)) routes.events(req, res);
      else if (routes.microRegistry.is(req)) routes.microRegistry.handle(req, res);
      // micro's path form takes only what no route of ours (src/micro/path.ts RESERVED) would.
      else if (claims(pathOf(req.url), req.method, routes.microPath.handler)) routes.microPath.handle(req, res);
      else routes.management(req, res);
    },
    // WebSocket upgrades (micro's /broker subscribers): the same token rule as every other route.
    upgrade: (req, socket, head) => {
      if (!authorized(req)) return refuseUpgrade(socket, unauthorized(), requestIdOf(req), log);
      if (under("/broker", req.url)) return routes.broker.upgrade(req, socket, head);
      refuseUpgrade(socket, new SidecarError("NOT_FOUND", `no WebSocket route ${req.url ?? ""}: only /broker takes an upgrade`), requestIdOf(req), log);
    },
  };
}
