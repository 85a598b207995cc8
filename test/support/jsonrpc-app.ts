import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ReceivedCall } from "./app.js";

/**
 * An app as micro's example servers are (sidecar_server.py, rpc_server.py): JSON-RPC on `POST /`,
 * `{"method", "params": [request], "id"}` in, `{"id", "result", "error"}` out, as Python's json-rpc
 * package answers (error: an object with `message`) or Go's net/rpc (error: a string). Methods:
 * `Say.Hello` → `{"msg": "hello <name> from <app>"}`; `Say.Fail` → a string error; `Say.Object` → an
 * error object; `Say.Garbage` → a body that is not JSON; anything else → "method not found".
 * Other paths (and GET /health) answer plain HTTP: `{"plain": true, "app", "method", "path"}`.
 */
export class JsonRpcApp {
  readonly calls: ReceivedCall[] = [];
  readonly server: http.Server;

  private constructor(readonly name: string) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        if (req.url === "/health") return void res.writeHead(200).end("ok");
        this.calls.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body });
        if (req.method !== "POST" || req.url !== "/") {
          return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ plain: true, app: this.name, method: req.method, path: req.url }));
        }
        let call: { method: string; params: [{ name?: string }]; id: unknown };
        try {
          call = JSON.parse(body) as typeof call;
        } catch {
          return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: null, result: null, error: { code: -32700, message: "Parse error" } }));
        }
        const answer = (v: Record<string, unknown>) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: call.id, ...v }));
        switch (call.method) {
          case "Say.Hello":
            return void answer({ result: { msg: `hello ${call.params[0].name ?? "world"} from ${this.name}` }, error: null });
          case "Say.Fail":
            return void answer({ result: null, error: "name is required" });
          case "Say.Object":
            return void answer({ result: null, error: { code: -32000, message: "the greeter is out of words" } });
          case "Say.Garbage":
            return void res.writeHead(200, { "content-type": "text/plain" }).end("this is not JSON-RPC");
          default:
            return void answer({ result: null, error: { code: -32601, message: "Method not found" } });
        }
      });
    });
  }

  static async start(name: string, port = 0): Promise<JsonRpcApp> {
    const app = new JsonRpcApp(name);
    await new Promise<void>((resolve, reject) => {
      app.server.once("error", reject);
      app.server.listen(port, "127.0.0.1", () => resolve());
    });
    return app;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** JSON-RPC calls received (POST /). */
  rpcCalls(): ReceivedCall[] {
    return this.calls.filter((c) => c.method === "POST" && c.path === "/");
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
