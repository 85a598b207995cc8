// The benchmark's app: a minimal node:http echo on 127.0.0.1, its port printed on stdout.
import http from "node:http";

const server = http.createServer((req, res) => {
  if (req.url === "/health") return void res.end("ok");
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length }).end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${server.address().port}\n`));
process.on("SIGTERM", () => process.exit(0));
