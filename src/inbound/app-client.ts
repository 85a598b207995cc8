import http, { type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { SidecarError } from "../errors.js";
import type { Deadline } from "../http/deadline.js";

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
export class AppClient {
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: "lifo" });

  constructor(private readonly o: { service: string; host: string; port: number }) {}

  /** Resolves with the app's response head; the deadline cancels the request (and then the response). */
  send(r: AppRequest): Promise<IncomingMessage> {
    const { service, host, port } = this.o;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const out = http.request({ host, port, method: r.method, path: r.path, headers: r.headers, agent: this.#agent });
      const off = r.deadline.onCancel(() => out.destroy(new Error("call cancelled")));
      out.once("response", (upstream) => {
        off();
        r.deadline.onCancel(() => upstream.destroy());
        resolve(upstream);
      });
      out.once("error", (err: NodeJS.ErrnoException) => {
        off();
        if (r.deadline.expired) reject(new SidecarError("TIMEOUT", `the app of '${service}' did not answer within ${r.deadline.ms}ms`, { cause: err }));
        else if (err.code === "ECONNREFUSED") reject(new SidecarError("APP_UNREACHABLE", `the app of '${service}' refused the connection at ${host}:${port}`, { cause: err }));
        else reject(new SidecarError("APP_UNREACHABLE", `the call into the app of '${service}' failed: ${err.message}`, { cause: err }));
      });
      if (Buffer.isBuffer(r.body)) out.end(r.body);
      else r.body.pipe(out);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}
