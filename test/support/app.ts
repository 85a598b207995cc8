import http, { type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedCall {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A real HTTP app on 127.0.0.1:0 standing in for a user's service. Routes:
 * GET /health (200, or 503 while `healthy` is false); POST /slow?ms=N (answers after N ms);
 * POST /status/N (answers status N); anything else echoes `{app, method, path, body}` as JSON.
 */
export class TestApp {
  readonly calls: ReceivedCall[] = [];
  healthy = true;
  healthChecks = 0;
  /** What GET /sidecar/subscriptions answers (404 when undefined). */
  subscriptions: unknown[] | undefined;
  /** When set, decides the status of each call (undefined: the normal answer). */
  respond: ((call: ReceivedCall) => number | undefined) | undefined;
  /** When set, added to the answer of every call (not health checks): e.g. a header only sidecars should set. */
  answerHeaders: Record<string, string> | undefined;
  /** When set, every call (not health checks) answers this status. */
  failStatus: number | undefined;
  /** Requests whose connection closed before the app answered (the caller gave up). */
  aborted = 0;
  readonly server: http.Server;

  private constructor(readonly name: string) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "http://app");
        const body = Buffer.concat(chunks).toString();
        if (req.method === "GET" && url.pathname === "/sidecar/subscriptions") {
          if (this.subscriptions === undefined) res.writeHead(404).end();
          else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(this.subscriptions));
          return;
        }
        if (req.method === "GET" && url.pathname === "/health") {
          this.healthChecks += 1;
          res.writeHead(this.healthy ? 200 : 503).end(this.healthy ? "ok" : "unhealthy");
          return;
        }
        const call = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body };
        this.calls.push(call);
        for (const [k, v] of Object.entries(this.answerHeaders ?? {})) res.setHeader(k, v);
        const chosen = this.respond?.(call);
        if (chosen !== undefined) {
          res.writeHead(chosen, { "content-type": "text/plain" }).end(`answered ${chosen}`);
          return;
        }
        if (this.failStatus !== undefined) {
          res.writeHead(this.failStatus, { "content-type": "text/plain" }).end(`failing with ${this.failStatus}`);
          return;
        }
        if (url.pathname === "/slow") {
          const timer = setTimeout(() => res.writeHead(200, { "content-type": "text/plain" }).end("slow"), Number(url.searchParams.get("ms") ?? 1000));
          res.once("close", () => {
            clearTimeout(timer);
            if (!res.writableFinished) this.aborted += 1;
          });
          return;
        }
        if (url.pathname === "/big") {
          const size = Number(url.searchParams.get("bytes") ?? 0);
          res.writeHead(200, { "content-type": "application/octet-stream", "x-app": this.name });
          res.end(Buffer.alloc(size, "z"));
          return;
        }
        if (url.pathname === "/headers") {
          // Mixed case, a repeated header, a private header named in Connection, its own request id.
          res.writeHead(200, ["Content-Type", "text/plain", "Set-Cookie", "a=1", "Set-Cookie", "b=2", "Connection", "X-Private", "X-Private", "secret", "X-Request-Id", "app-own", "X-End", "e2e"]).end("headers");
          return;
        }
        const status = /^\/status\/(\d{3})$/.exec(url.pathname);
        if (status) {
          res.writeHead(Number(status[1]), { "content-type": "text/plain; charset=utf-8" }).end(`status ${status[1]} from ${this.name}`);
          return;
        }
        const text = JSON.stringify({ app: this.name, method: req.method, path: req.url, body });
        res.writeHead(200, { "content-type": "application/json", "x-app": this.name }).end(text);
      });
    });
  }

  static async start(name: string, port = 0): Promise<TestApp> {
    const app = new TestApp(name);
    await new Promise<void>((resolve, reject) => {
      app.server.once("error", reject);
      app.server.listen(port, "127.0.0.1", () => resolve());
    });
    return app;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Calls received other than health checks. */
  callCount(): number {
    return this.calls.length;
  }

  /** Calls received on one path (e.g. deliveries to /events/orders). */
  callsTo(path: string): ReceivedCall[] {
    return this.calls.filter((c) => c.path === path);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
