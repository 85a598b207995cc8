import { RequestError } from "@nats-io/transport-node";
import { SidecarError } from "../errors.js";
import { H } from "../http/headers.js";
import type { NatsClient } from "../nats/connect.js";
import { fromNats, toNats } from "../nats/headers.js";
import type { NodeRecord } from "../registry/types.js";
import { TransportError, type OutboundRequest, type StreamBody, type Transport, type UpstreamResponse } from "./types.js";

/** Request line and status travel in these NATS headers; the rest are the HTTP headers. */
export const NH = { method: H.method, path: H.path, status: H.status } as const;

/** Room left in a message for headers when checking a body against the server's max payload. */
const HEADER_ROOM = 8 * 1024;

/** The subject one node answers on (node ids are unique; service names may contain dots). */
export const nodeSubject = (nodeId: string) => `sidecar.node.${nodeId}`;
/** The subject every node of a service answers on, in queue group `<service>` (for non-sidecar requesters). */
export const serviceSubject = (service: string) => `sidecar.rpc.${service}`;

/** The largest body a request may carry through this server. */
export function maxBody(client: NatsClient): number {
  return Math.max(0, (client.maxPayload ?? 1024 * 1024) - HEADER_ROOM);
}

/** Buffer a streamed body, refusing (413) past `limit` without holding the excess. */
async function collect(body: StreamBody, limit: number): Promise<Buffer> {
  body.started = true;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body.stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      body.stream.resume();
      throw new SidecarError("BODY_TOO_LARGE", `the request body is larger than the NATS server's max payload allows (${limit} bytes)`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/**
 * `transport.kind: nats`: request/reply through NATS, for nodes that cannot reach
 * each other directly. The caller addresses the node its selector picked (`sidecar.node.<id>`),
 * so strategies, ejection and retries mean the same as over HTTP; a node that no longer listens
 * answers "no responders" at once, which is tried elsewhere like a refused connection.
 */
export class NatsTransport implements Transport {
  readonly kind = "nats";

  constructor(private readonly client: NatsClient, private readonly meshToken?: string) {}

  async send(node: NodeRecord, r: OutboundRequest): Promise<UpstreamResponse> {
    const limit = maxBody(this.client);
    const body = Buffer.isBuffer(r.body) ? r.body : await collect(r.body, limit);
    if (body.length > limit) {
      throw new SidecarError("BODY_TOO_LARGE", `the request body (${body.length} bytes) is larger than the NATS server's max payload allows (${limit} bytes)`);
    }
    const { "content-length": _length, ...headers } = r.headers;
    const msgHeaders = toNats(headers, { [NH.method]: r.method, [NH.path]: r.path, ...(this.meshToken ? { [H.meshToken]: this.meshToken } : {}) });
    const reply = new Promise<never>((_, reject) => {
      r.deadline.onCancel(() => reject(new TransportError(`${node.id}: call cancelled`, { delivered: true, code: "CANCELLED" })));
    });
    try {
      // The NATS timeout is a little longer than the deadline, so the deadline (→ 504) decides.
      const msg = await Promise.race([this.client.request(nodeSubject(node.id), body, { timeout: r.deadline.remaining() + 100, headers: msgHeaders }), reply]);
      const status = Number(msg.headers?.get(NH.status) ?? 502);
      const headers = fromNats(msg.headers, new Set([NH.status]));
      headers["content-length"] = String(msg.data.length);
      return { statusCode: status, headers, whole: Buffer.from(msg.data) };
    } catch (err) {
      if (err instanceof TransportError || err instanceof SidecarError) throw err;
      if (err instanceof RequestError && err.isNoResponders()) {
        throw new TransportError(`${node.id}: no responders on ${nodeSubject(node.id)}`, { delivered: false, code: "NO_RESPONDERS", cause: err });
      }
      // Anything else (a timeout, a reconnect in the middle) may have reached the node: not resent.
      throw new TransportError(`${node.id}: ${(err as Error).message}`, { delivered: true, code: "NATS_ERROR", cause: err });
    }
  }

  async close(): Promise<void> {
    /* the shared NATS connection is closed by the sidecar */
  }
}
