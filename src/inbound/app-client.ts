import http, { type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { SidecarError } from "../errors.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { Deadline } from "../http/deadline.js";
import { H } from "../http/headers.js";
import { requestWithDeadline } from "../http/request.js";

export interface AppRequest {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  body: Readable | Buffer;
  deadline: Deadline;
}

/** True when the error says the app never received the request (its port refused the connection). */
export function neverReachedApp(err: unknown): boolean {
  return ((err as Error | undefined)?.cause as NodeJS.ErrnoException | undefined)?.code === "ECONNREFUSED";
}

/** Calls into the app over pooled keep-alive connections, shared by the inbound paths. */
export class AppClient implements Component {
  readonly #lifecycle = new Lifecycle("app client", { close: () => this.#agent.destroy() });
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: "lifo" });

  constructor(private readonly o: { service: string; host: string; port: number; token?: string | undefined }) {}

  /** Resolves with the app's response head; the deadline cancels the request (and then the response). */
  send(r: AppRequest): Promise<IncomingMessage> {
    const { service, host, port } = this.o;
    const headers = this.o.token ? { ...r.headers, [H.appToken]: this.o.token } : r.headers;
    const { req, response } = requestWithDeadline({ host, port, method: r.method, path: r.path, headers, agent: this.#agent }, r.deadline);
    if (Buffer.isBuffer(r.body)) req.end(r.body);
    else r.body.pipe(req);
    return response.catch((err: NodeJS.ErrnoException) => {
      if (r.deadline.expired) throw new SidecarError("TIMEOUT", `the app of '${service}' did not answer within ${r.deadline.ms}ms`, { cause: err });
      if (err.code === "ECONNREFUSED") throw new SidecarError("APP_UNREACHABLE", `the app of '${service}' refused the connection at ${host}:${port}`, { cause: err });
      throw new SidecarError("APP_UNREACHABLE", `the call into the app of '${service}' failed: ${err.message}`, { cause: err });
    });
  }

  /** Nothing to open: the agent connects on the first call. After close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /** Close the pooled connections (synchronously). Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}
