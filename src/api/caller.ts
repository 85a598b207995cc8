import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { ERRORS, SidecarError, type ErrorCode } from "../errors.js";
import { Deadline } from "../http/deadline.js";
import { pipeBody } from "../http/pipe.js";
import { endToEnd, H } from "../http/headers.js";
import type { RegistryView } from "../registry/view.js";
import type { Selector } from "../selector/index.js";
import { TransportError, type Transport } from "../transport/types.js";

export interface Call {
  service: string;
  method: string;
  /** Path (and query) on the callee app. */
  path: string;
  headers: OutgoingHttpHeaders;
  body: Buffer;
  /** Milliseconds the whole call may take, retries included. */
  timeout: number;
  requestId: string;
}

const DROP_FROM_RESPONSE = new Set<string>([H.refused]);

/**
 * Resolves a service through the cached registry view, picks nodes with the selector and
 * sends the call over the transport, trying another node whenever the callee never saw
 * the request. Streams the chosen response back unchanged (status, content type, body).
 */
export class Caller {
  constructor(
    private readonly view: RegistryView,
    private readonly selector: Selector,
    private readonly transport: Transport,
    private readonly self: string,
  ) {}

  async call(call: Call, res: ServerResponse): Promise<void> {
    const deadline = new Deadline(call.timeout);
    const onClose = () => {
      if (!res.writableFinished) deadline.cancel();
    };
    res.once("close", onClose);
    try {
      const upstream = await this.#send(call, deadline);
      const headers = endToEnd(upstream.headers, DROP_FROM_RESPONSE);
      headers[H.requestId] = call.requestId;
      res.writeHead(upstream.statusCode ?? 502, headers);
      await pipeBody(upstream, res);
    } catch (err) {
      // Our caller went away: nobody is left to answer, and that is not the callee's failure.
      if (deadline.cancelled && !deadline.expired) return;
      if (deadline.expired && !(err instanceof SidecarError)) throw timeout(call, err);
      throw err;
    } finally {
      deadline.done();
      res.off("close", onClose);
    }
  }

  async #send(call: Call, deadline: Deadline): Promise<IncomingMessage> {
    const tried = new Set<string>();
    const failures: string[] = [];
    let refusal: ErrorCode | undefined;
    for (;;) {
      const nodes = this.view.nodes(call.service);
      if (nodes.length === 0 && tried.size === 0) {
        if (this.view.known(call.service)) {
          throw new SidecarError("NO_HEALTHY_NODE", `service '${call.service}' has no healthy node right now`, { headers: { "retry-after": "1" } });
        }
        throw new SidecarError("SERVICE_NOT_FOUND", `no service named '${call.service}' in the registry`);
      }
      const node = this.selector.pick(call.service, nodes, tried);
      if (!node) break;
      tried.add(node.id);
      const remaining = deadline.remaining();
      if (remaining <= 0 || deadline.cancelled) break;
      let upstream: IncomingMessage;
      try {
        upstream = await this.transport.send(node, {
          method: call.method,
          path: call.path,
          headers: { ...call.headers, [H.service]: call.service, [H.caller]: this.self, [H.timeout]: String(remaining), [H.requestId]: call.requestId },
          body: call.body,
          deadline,
        });
      } catch (err) {
        if (deadline.cancelled) throw timeout(call, err);
        if (err instanceof TransportError && !err.delivered) {
          failures.push(`${node.id}: ${err.code}`);
          continue;
        }
        throw new SidecarError("UPSTREAM_UNREACHABLE", `call to '${call.service}' failed at node ${node.id}: ${(err as Error).message}`, { cause: err });
      }
      const refused = upstream.headers[H.refused];
      if (typeof refused === "string") {
        // The callee sidecar did not hand the call to its app (unhealthy, draining, stale record).
        upstream.resume();
        refusal = refused in ERRORS ? (refused as ErrorCode) : "UPSTREAM_UNREACHABLE";
        failures.push(`${node.id}: ${refused}`);
        continue;
      }
      return upstream;
    }
    if (deadline.cancelled || deadline.remaining() <= 0) throw timeout(call);
    const tail = failures.length > 0 ? ` (${failures.join("; ")})` : "";
    if (refusal === "APP_UNAVAILABLE" || refusal === "SHUTTING_DOWN") {
      throw new SidecarError("NO_HEALTHY_NODE", `no node of '${call.service}' is taking calls right now${tail}`, { headers: { "retry-after": "1" } });
    }
    if (refusal === "APP_UNREACHABLE") throw new SidecarError("APP_UNREACHABLE", `no node of '${call.service}' could reach its app${tail}`);
    throw new SidecarError("UPSTREAM_UNREACHABLE", `no node of '${call.service}' could be reached${tail}`);
  }
}

function timeout(call: Call, cause?: unknown): SidecarError {
  return new SidecarError("TIMEOUT", `call to '${call.service}' did not complete within ${call.timeout}ms`, { cause });
}
