import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import { requestIdOf } from "../http/headers.js";
import { under } from "../http/paths.js";
import { sendError, sendJson } from "../http/reply.js";
import type { Logger } from "../log.js";

/**
 * The api while the sidecar starts: alive (/health/live 200), not ready (/health and
 * /health/ready 503 with the reason), every other route 503 STARTING with Retry-After.
 */
export function starting(req: IncomingMessage, res: ServerResponse, log: Logger, registry: string): void {
  const reason = registry === "nats" ? "the sidecar is starting: waiting for NATS and the registry bucket" : registry === "etcd" ? "the sidecar is starting: waiting for etcd" : "the sidecar is starting";
  const body = (status: number, value: unknown) => sendJson(res, status, value, { "retry-after": "1" });
  if (under("/health/live", req.url)) return body(200, { status: "ok" });
  if (under("/health/ready", req.url)) return body(503, { status: "not ready", reasons: [reason] });
  if (under("/health", req.url)) return body(503, { status: "starting", app: "unknown", registry: "disconnected", broker: "disconnected" });
  sendError(res, new SidecarError("STARTING", `${reason}; try again shortly`), requestIdOf(req), log);
}
