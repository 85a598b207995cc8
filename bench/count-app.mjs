// The relay benchmark's app: counts POSTs (2xx at once), GET /count answers the count and the
// time of the last one. Prints its port.
import http from "node:http";

let count = 0;
let last = 0;
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") return void res.end("ok");
  if (req.method === "GET" && req.url === "/count") return void res.end(JSON.stringify({ count, last }));
  req.resume();
  req.on("end", () => {
    count += 1;
    last = Date.now();
    res.writeHead(204).end();
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${server.address().port}\n`));
process.on("SIGTERM", () => process.exit(0));
