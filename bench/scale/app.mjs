// The scale bench's app: answers 200 `{}` at once and counts the POSTs (the calls; its sidecar's
// own GETs, /health and /sidecar/subscriptions, are not counted); GET /count answers
// {"count", "first", "last"} (epoch ms of the first and the latest call, 0 before any). Prints its port.
import http from "node:http";

let count = 0;
let first = 0;
let last = 0;
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") return void res.end("ok");
  if (req.method === "GET" && req.url === "/count") return void res.end(JSON.stringify({ count, first, last }));
  req.resume();
  req.on("end", () => {
    if (req.method === "POST") {
      last = Date.now();
      if (count === 0) first = last;
      count += 1;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": 2 }).end("{}");
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${server.address().port}\n`));
process.on("SIGTERM", () => process.exit(0));
