import type { OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { SidecarError } from "../errors.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { Deadline } from "../http/deadline.js";
import { H } from "../http/headers.js";
import { H1Pool } from "../http/h1/pool.js";
import { InvalidHeaderError } from "../http/h1/headers.js";
import type { UpstreamResponse } from "../http/response.js";

export interface AppRequest {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  /** A buffer (sent with its real content-length), or a stream (sent with its declared content-length, else chunked). */
  body: Readable | Buffer;
  deadline: Deadline;
}

/** True when the error says the app never received the request (its port refused the connection). */
export function neverReachedApp(err: unknown): boolean {
  return ((err as Error | undefined)?.cause as NodeJS.ErrnoException | undefined)?.code === "ECONNREFUSED";
}

const LENGTH = /^\d{1,15}$/;

/**
 * Calls into the app over pooled keep-alive HTTP/1.1 connections (`http/h1/`: node's own parser,
 * without node:http's per-request objects), shared by the inbound paths. An answer read in one go
 * comes back whole; a longer one as a stream.
 */
export class AppClient implements Component {
  readonly #lifecycle = new Lifecycle("app client", { close: () => this.#pool.close() });
  readonly #pool: H1Pool;

  constructor(private readonly o: { service: string; host: string; port: number; token?: string | undefined }) {
    this.#pool = new H1Pool({ host: o.host, port: o.port, maxSockets: 256 });
  }

  /** Resolves with the app's response head; the deadline cancels the request (and then the response). */
  send(r: AppRequest): Promise<UpstreamResponse> {
    const { service, host, port } = this.o;
    const headers = this.o.token ? { ...r.headers, [H.appToken]: this.o.token } : r.headers;
    const declared = r.headers["content-length"];
    const length = !Buffer.isBuffer(r.body) && typeof declared === "string" && LENGTH.test(declared) ? Number(declared) : undefined;
    return this.#pool.request({ method: r.method, path: r.path, headers, body: r.body, length }, r.deadline).catch((err: NodeJS.ErrnoException) => {
      if (err instanceof InvalidHeaderError) throw new SidecarError("BAD_REQUEST", `the request cannot be sent to the app: ${err.message}`, { cause: err });
      if (r.deadline.expired) throw new SidecarError("TIMEOUT", `the app of '${service}' did not answer within ${r.deadline.ms}ms`, { cause: err });
      if (err.code === "ECONNREFUSED") throw new SidecarError("APP_UNREACHABLE", `the app of '${service}' refused the connection at ${host}:${port}`, { cause: err });
      throw new SidecarError("APP_UNREACHABLE", `the call into the app of '${service}' failed: ${err.message}`, { cause: err });
    });
  }

  /** Nothing to open: the pool connects on the first call. After close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /** Close the pooled connections (synchronously). Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}
