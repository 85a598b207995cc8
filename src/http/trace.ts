import { randomBytes } from "node:crypto";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = "0".repeat(32);

/**
 * W3C Trace Context: the `traceparent` for the next hop. The trace id (and sampled flag) of a
 * valid incoming header is kept; a missing or malformed one starts a new trace. The parent id is
 * always new: this sidecar's hop.
 */
export function nextTraceparent(incoming: unknown): string {
  const m = typeof incoming === "string" ? TRACEPARENT.exec(incoming) : null;
  const traceId = m && m[1] !== ZERO_TRACE ? m[1]! : randomBytes(16).toString("hex");
  return `00-${traceId}-${randomBytes(8).toString("hex")}-${m ? m[3]! : "01"}`;
}
