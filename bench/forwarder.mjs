// One forwarding hop to 127.0.0.1:<target>, built with the library named by argv[2]:
//   node-http     hand-written on node:http (what the sidecar's http transport does)
//   http-proxy-3  http-proxy-3's web()
//   http-proxy    the original http-proxy's web() (unmaintained since 2020)
//   undici        undici Pool.stream()
//   express       the node-http hop behind an express 5 app (its router and request/response wrappers)
// Prints its port. Used by bench/proxy-libs.ts to choose the proxy library by measurement.
import http from "node:http";

const [kind, targetPort] = [process.argv[2], Number(process.argv[3])];
const target = `http://127.0.0.1:${targetPort}`;
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]);
const clean = (h) => Object.fromEntries(Object.entries(h).filter(([k]) => !HOP.has(k) && k !== "host"));

async function handlerFor(kind) {
  if (kind === "node-http") {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: "lifo" });
    return (req, res) => {
      const out = http.request({ host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: clean(req.headers), agent }, (up) => {
        res.writeHead(up.statusCode, clean(up.headers));
        up.pipe(res);
      });
      out.on("error", () => res.writeHead(502).end());
      req.pipe(out);
    };
  }
  if (kind === "http-proxy-3" || kind === "http-proxy") {
    const mod = await import(kind);
    const createProxyServer = mod.createProxyServer ?? mod.default.createProxyServer;
    const proxy = createProxyServer({ target, agent: new http.Agent({ keepAlive: true, maxSockets: 256 }) });
    proxy.on("error", (_e, _req, res) => res.writeHead?.(502).end());
    return (req, res) => proxy.web(req, res);
  }
  if (kind === "undici") {
    const { Pool } = await import("undici");
    const pool = new Pool(target, { connections: 256 });
    return (req, res) => {
      pool
        .stream({ path: req.url, method: req.method, headers: clean(req.headers), body: req.method === "GET" || req.method === "HEAD" ? null : req }, ({ statusCode, headers }) => {
          res.writeHead(statusCode, clean(headers));
          return res;
        })
        .catch(() => res.headersSent || res.writeHead(502).end());
    };
  }
  if (kind === "express") {
    const { default: express } = await import("express");
    const app = express();
    app.disable("x-powered-by");
    app.use(await handlerFor("node-http"));
    return app;
  }
  throw new Error(`unknown forwarder ${kind}`);
}

const server = http.createServer(await handlerFor(kind));
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${server.address().port}\n`));
process.on("SIGTERM", () => process.exit(0));
