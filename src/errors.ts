/**
 * The error catalogue. Every error the sidecar answers with has a stable code,
 * an HTTP status and a one-line description; the README's error table is
 * checked against this list by a test (test/unit/errors.test.ts).
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, doc: "the request is not valid HTTP/1.1" },
  REQUEST_TIMEOUT: { status: 408, doc: "the request's headers or body arrived too slowly" },
  HEADERS_TOO_LARGE: { status: 431, doc: "the request headers are larger than 16 KiB" },
  BAD_JSON: { status: 400, doc: "the request body is not valid JSON" },
  INVALID_REQUEST: { status: 400, doc: "a field is missing or has the wrong type or form" },
  INVALID_NAME: { status: 400, doc: "a service name does not match [A-Za-z0-9][A-Za-z0-9._-]{0,62}" },
  INVALID_TOPIC: { status: 400, doc: "a topic is not a NATS subject (or has wildcards where a publish needs none)" },
  INVALID_CLOUDEVENT: { status: 400, doc: "a publish is not a valid CloudEvent: a bad ce-* attribute name or value, or a structured event missing id, source, type or specversion 1.0" },
  UNAUTHORIZED: { status: 401, doc: "a token is required and was missing or wrong (api.token from the app, mesh.token from a peer)" },
  FORBIDDEN: { status: 403, doc: "the calling service is not in the callee's inbound.allow list" },
  NOT_FOUND: { status: 404, doc: "no such route" },
  SERVICE_NOT_FOUND: { status: 404, doc: "no service of that name has ever been seen in the registry" },
  METHOD_NOT_ALLOWED: { status: 405, doc: "the route exists but not for this method" },
  MISDIRECTED: { status: 421, doc: "a peer sidecar was asked for a service it does not serve (stale registry record)" },
  BODY_TOO_LARGE: { status: 413, doc: "the request body is larger than api.maxBody" },
  MESSAGE_HEADERS_TOO_LARGE: { status: 431, doc: "the headers a published message would carry are larger than 8 KiB" },
  APP_ERROR: { status: 500, doc: "a JSON-RPC app answered the call with an error (its message is the error's)" },
  INTERNAL: { status: 500, doc: "a bug: the sidecar failed in a way it did not expect" },
  UPSTREAM_UNREACHABLE: { status: 502, doc: "no node of the service could be reached (connection refused or reset)" },
  APP_UNREACHABLE: { status: 502, doc: "the callee sidecar could not reach its app" },
  BAD_APP_RESPONSE: { status: 502, doc: "a JSON-RPC app's answer was not a JSON-RPC response (not JSON, no result or error, another id)" },
  RESPONSE_TOO_LARGE: { status: 502, doc: "over the NATS transport, the callee app's response exceeded the server's max payload; or a JSON-RPC answer over 16 MiB" },
  NO_HEALTHY_NODE: { status: 503, doc: "the service is known but has no healthy node right now", retryAfter: 1 },
  APP_UNAVAILABLE: { status: 503, doc: "this sidecar's app is not passing its health check, so it takes no calls" },
  SHUTTING_DOWN: { status: 503, doc: "the sidecar is shutting down and takes no new calls" },
  CLOSED: { status: 503, doc: "the component was closed and cannot be started again" },
  STARTING: { status: 503, doc: "the sidecar is still starting (e.g. waiting for NATS); Retry-After", retryAfter: 1 },
  REGISTRY_UNAVAILABLE: { status: 503, doc: "this sidecar was not watching the service yet, and the registry did not list it within the call's deadline (or refused the watch); the call was not sent", retryAfter: 1 },
  BROKER_UNAVAILABLE: { status: 503, doc: "the broker did not take the published message (not connected, or JetStream did not store it)", retryAfter: 1 },
  OVERLOADED: { status: 503, doc: "the callee's app already has app.maxConcurrency calls in flight (Retry-After)", retryAfter: 1 },
  TOO_MANY_STREAMS: { status: 503, doc: "this sidecar already serves 16 GET /events streams; Retry-After", retryAfter: 1 },
  TIMEOUT: { status: 504, doc: "the call did not complete within its deadline" },
} as const satisfies Record<string, { status: number; doc: string; retryAfter?: number }>;

export type ErrorCode = keyof typeof ERRORS;

/** The one error class the sidecar throws at its edges; `code` is stable, `status` follows from it. */
export class SidecarError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra response headers: `retry-after` for the codes the catalogue gives one, and any the raiser adds. */
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; headers?: Record<string, string> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SidecarError";
    this.code = code;
    this.status = ERRORS[code].status;
    // A refusal worth retrying soon says when (Retry-After), from the catalogue, whoever raises it.
    const entry = ERRORS[code];
    this.headers = "retryAfter" in entry ? { "retry-after": String(entry.retryAfter), ...options?.headers } : options?.headers;
  }
}

/** The JSON error body every error answers with. */
export function errorBody(code: ErrorCode, message: string, requestId?: string): string {
  return JSON.stringify({ error: { code, message, ...(requestId ? { requestId } : {}) } });
}

/** Turn anything thrown into a SidecarError, so handlers can answer uniformly. */
export function toSidecarError(err: unknown): SidecarError {
  if (err instanceof SidecarError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SidecarError("INTERNAL", `internal error: ${message}`, { cause: err });
}
