import type { OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { Deadline } from "../http/deadline.js";
import type { NodeRecord } from "../registry/types.js";
import type { UpstreamResponse } from "../http/response.js";

export { discard, type StreamedResponse, type UpstreamResponse, type WholeResponse } from "../http/response.js";

/**
 * A request body streamed from the caller (the proxy route): never buffered, so it can be sent
 * once only. The transport sets `started` when the first byte may have left; before that the
 * call can still go to another node.
 */
export class StreamBody {
  started = false;
  constructor(readonly stream: Readable) {}
}

/** Whether a body can still be sent (again) to another node. */
export function replayable(body: Buffer | StreamBody): boolean {
  return Buffer.isBuffer(body) || !body.started;
}

export interface OutboundRequest {
  method: string;
  /** Path (and query) on the callee app. */
  path: string;
  headers: OutgoingHttpHeaders;
  /** A buffer (replayable) or a stream (sent once; framing headers are the caller's). */
  body: Buffer | StreamBody;
  /** Cancels the call (deadline reached, caller went away). */
  deadline: Deadline;
}

/**
 * A call that failed in the transport. `delivered: false` means the request certainly never
 * reached the callee (connection refused, or a reused keep-alive connection closed before the
 * request was read), so another node may take it without any risk of running it twice.
 */
export class TransportError extends Error {
  readonly delivered: boolean;
  readonly code: string;
  constructor(message: string, options: { delivered: boolean; code: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "TransportError";
    this.delivered = options.delivered;
    this.code = options.code;
  }
}

/** Carries a call to a peer sidecar. Implementations: HttpTransport (http.ts). */
export interface Transport {
  readonly kind: string;
  /** Persistent connections open to peers (the mesh protocol's), when the transport keeps any. */
  readonly connections?: number;
  /** Resolves with the response head once it arrives; the body streams from the message. */
  send(node: NodeRecord, request: OutboundRequest): Promise<UpstreamResponse>;
  /** Idempotent. */
  close(): Promise<void>;
}
