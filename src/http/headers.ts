import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from "node:http";
import { nextTraceContext } from "./trace.js";

/** Headers between sidecars, and from a sidecar to its app (never forwarded to or from apps as-is: see INTERNAL). */
export const H = {
  /** caller → callee sidecar: the service the caller resolved; a mismatch means a stale record. */
  service: "x-sidecar-service",
  /**
   * caller → callee sidecar: the calling (or publishing) service. The callee's sidecar sets it for
   * its app only when it could check it (vouchedCaller): never passed on as a peer sent it.
   */
  caller: "x-sidecar-caller",
  /** caller → callee sidecar → app: milliseconds left of the call's deadline. */
  timeout: "x-sidecar-timeout",
  /** app → its sidecar: retries allowed for a call that reached the callee (idempotent calls only). */
  retries: "x-sidecar-retries",
  /** callee → caller sidecar: the app never saw the request (error code), so another node may take it. */
  refused: "x-sidecar-refused",
  /** caller sidecar → callee sidecar: the mesh token; never forwarded to an app. */
  meshToken: "x-sidecar-mesh-token",
  /** sidecar → its app: app.token, so the app can refuse callers that are not its sidecar. */
  appToken: "x-sidecar-app-token",
  /** publisher's sidecar → subscriber's sidecar (embedded broker): the request is a delivery to this topic. */
  deliver: "x-sidecar-deliver",
  /** caller → callee sidecar: the node the caller picked; one sidecar may front several nodes of a service (POST /registry). */
  node: "x-sidecar-node",
  /** caller → callee sidecar: an RPC-style call (/rpc) and its method ("Say.Hello"), for a callee app that speaks JSON-RPC. */
  rpc: "x-sidecar-rpc",
  /** caller ↔ callee sidecar over NATS: the request line and the status, in NATS headers. */
  method: "x-sidecar-method",
  path: "x-sidecar-path",
  status: "x-sidecar-status",
  /** relay → its app: which topic, attempt and subscription a delivery is. */
  topic: "x-sidecar-topic",
  attempt: "x-sidecar-attempt",
  subscription: "x-sidecar-subscription",
  requestId: "x-request-id",
} as const;

/**
 * The sidecars' own headers (every H name but x-request-id). An app never receives one as a peer
 * or a publisher sent it, and a callee's sidecar never passes one on from its app's answer: they
 * steer sidecars (a forged x-sidecar-refused would make a caller resend a call that ran) or vouch
 * for something (x-sidecar-caller), so only the sidecar that knows sets them. Other x-sidecar-*
 * names (an app's own, x-sidecar-dead-reason on a dead letter) are ordinary end-to-end headers.
 */
export const INTERNAL: ReadonlySet<string> = new Set(Object.values(H).filter((h) => h !== H.requestId));

/** RFC 9110 §7.6.1 connection-specific headers, dropped at every hop. */
export const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
  "proxy-authenticate", "proxy-authorization",
]);

/** Copy end-to-end headers, dropping hop-by-hop ones, those named in `Connection`, and `drop`. */
export function endToEnd(headers: IncomingHttpHeaders, drop?: ReadonlySet<string>): OutgoingHttpHeaders {
  return copy(headers, drop, false);
}

/**
 * The last hop to an app, for calls (over http and NATS) and deliveries alike: the end-to-end
 * headers without any INTERNAL one (nor `drop`), then `x-sidecar-caller` when this sidecar vouches
 * for it. What else the sidecar vouches for (deadline, request id, topic, app token) is set after.
 */
export function toApp(headers: IncomingHttpHeaders, caller: string | undefined, drop?: ReadonlySet<string>): OutgoingHttpHeaders {
  const out = copy(headers, drop, true);
  if (caller !== undefined) out[H.caller] = caller;
  return out;
}

/**
 * End-to-end headers without any INTERNAL one (nor `drop`): an app's answer on its way back to the
 * calling sidecar (an app must not steer it), and that answer on to the calling app.
 */
export function publicHeaders(headers: IncomingHttpHeaders, drop?: ReadonlySet<string>): OutgoingHttpHeaders {
  return copy(headers, drop, true);
}

function copy(headers: IncomingHttpHeaders, drop: ReadonlySet<string> | undefined, internal: boolean): OutgoingHttpHeaders {
  const named = typeof headers.connection === "string" ? headers.connection.toLowerCase().split(",").map((s) => s.trim()) : [];
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || drop?.has(k) || (internal && INTERNAL.has(k)) || named.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

const SANE_ID = /^[\x21-\x7e]{1,128}$/;

/** The request id of an incoming request: the caller's when sane, else a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers[H.requestId];
  return typeof given === "string" && SANE_ID.test(given) ? given : randomUUID();
}

/**
 * Give an incoming request its identity for this hop, in its own headers, so that everything
 * downstream (forwarding, error bodies, log lines) reads the same values: `x-request-id` (the
 * caller's when sane, else new), `traceparent` (the caller's trace, with this hop as the parent
 * span; a new trace when absent or invalid) and `tracestate` (validated and within its limits;
 * removed when invalid, or when the traceparent was: W3C Trace Context §4).
 */
export function tagRequest(req: IncomingMessage): void {
  tagHeaders(req.headers);
}

/** tagRequest for the headers of a call that came otherwise (a mesh stream): in place; returns the request id. */
export function tagHeaders(headers: IncomingHttpHeaders): string {
  const given = headers[H.requestId];
  const id = typeof given === "string" && SANE_ID.test(given) ? given : randomUUID();
  headers[H.requestId] = id;
  const trace = nextTraceContext(headers.traceparent, headers.tracestate);
  headers.traceparent = trace.traceparent;
  if (trace.tracestate === undefined) delete headers.tracestate;
  else headers.tracestate = trace.tracestate;
  return id;
}

/** The fields every log line about a request carries. */
export function requestFields(req: IncomingMessage | undefined): { requestId?: string; traceparent?: string } {
  const id = req?.headers[H.requestId];
  const tp = req?.headers.traceparent;
  return { ...(typeof id === "string" ? { requestId: id } : {}), ...(typeof tp === "string" ? { traceparent: tp } : {}) };
}
