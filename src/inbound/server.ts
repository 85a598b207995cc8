import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { SidecarError, type ErrorCode } from "../errors.js";
import { Deadline } from "../http/deadline.js";
import { pipeBody } from "../http/pipe.js";
import { endToEnd, H, requestIdOf } from "../http/headers.js";
import { sendError } from "../http/reply.js";
import type { Logger } from "../log.js";

export interface InboundOptions {
  /** The service this sidecar serves: calls for another one hit a stale record. */
  service: string;
  app: { host: string; port: number };
  /** Default deadline for a call into the app when the caller sent none. */
  defaultTimeout: number;
  /** Whether the app takes calls now (passing its health check). */
  accepting: () => boolean;
  log: Logger;
}

const MAX_TIMEOUT_MS = 10 * 60_000;
const TO_APP_DROP = new Set<string>([H.service, "host"]);

/**
 * The listener peer sidecars deliver calls to (DESIGN §1, §4): checks the call is for this
 * service and that the app takes calls, then forwards it to the app and streams the answer back.
 * A call the app never saw is answered with `x-sidecar-refused` so the caller can try another node.
 */
export class InboundHandler {
  #draining = false;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: "lifo" });

  constructor(private readonly o: InboundOptions) {}

  /** From now on, refuse new calls (they go to other nodes); calls in flight finish. */
  drain(): void {
    this.#draining = true;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    const refuse = (code: ErrorCode, message: string) => sendError(res, new SidecarError(code, message), requestId, this.o.log, { [H.refused]: code });
    req.on("error", () => undefined);
    if (this.#draining) return refuse("SHUTTING_DOWN", `the sidecar of '${this.o.service}' is shutting down`);
    const target = req.headers[H.service];
    if (target !== undefined && target !== this.o.service) {
      return refuse("MISDIRECTED", `this sidecar serves '${this.o.service}', not ${JSON.stringify(target)} (stale registry record)`);
    }
    if (!this.o.accepting()) return refuse("APP_UNAVAILABLE", `the app of '${this.o.service}' is not passing its health check`);
    this.#forward(req, res, requestId).catch((err: unknown) => {
      const neverSeen = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code === "ECONNREFUSED";
      if (neverSeen) return sendError(res, err, requestId, this.o.log, { [H.refused]: "APP_UNREACHABLE" });
      sendError(res, err, requestId, this.o.log);
    });
  };

  async #forward(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const given = Number(req.headers[H.timeout]);
    const timeout = Number.isFinite(given) && given > 0 ? Math.min(given, MAX_TIMEOUT_MS) : this.o.defaultTimeout;
    const deadline = new Deadline(timeout);
    const onClose = () => {
      if (!res.writableFinished) deadline.cancel();
    };
    res.once("close", onClose);
    const headers = endToEnd(req.headers, TO_APP_DROP);
    headers[H.requestId] = requestId;
    headers[H.timeout] = String(timeout);
    try {
      const upstream = await new Promise<IncomingMessage>((resolve, reject) => {
        const out = http.request({ host: this.o.app.host, port: this.o.app.port, method: req.method, path: req.url, headers, agent: this.#agent });
        const off = deadline.onCancel(() => out.destroy(new Error("call cancelled")));
        out.once("response", (upstream) => {
          off();
          deadline.onCancel(() => upstream.destroy());
          resolve(upstream);
        });
        out.once("error", (err: NodeJS.ErrnoException) => {
          off();
          if (deadline.expired) reject(new SidecarError("TIMEOUT", `the app of '${this.o.service}' did not answer within ${timeout}ms`, { cause: err }));
          else if (err.code === "ECONNREFUSED") reject(new SidecarError("APP_UNREACHABLE", `the app of '${this.o.service}' refused the connection at ${this.o.app.host}:${this.o.app.port}`, { cause: err }));
          else reject(new SidecarError("APP_UNREACHABLE", `the call into the app of '${this.o.service}' failed: ${err.message}`, { cause: err }));
        });
        req.pipe(out);
      });
      const back = endToEnd(upstream.headers);
      back[H.requestId] = requestId;
      res.writeHead(upstream.statusCode ?? 502, back);
      await pipeBody(upstream, res);
    } catch (err) {
      // The calling sidecar went away (its caller gave up): nobody is left to answer.
      if (deadline.cancelled && !deadline.expired) return;
      throw err;
    } finally {
      deadline.done();
      res.off("close", onClose);
    }
  }

  close(): void {
    this.#agent.destroy();
  }
}
