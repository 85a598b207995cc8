// An app for the hosts tests: answers /health and any POST with the host it runs on (HOST_NAME);
// a delivery to POST /events prints "delivered <n> <ce-id>" (n from its JSON body) and answers 204.
import http from "node:http";
const name = process.env.HOST_NAME ?? "?";
http
  .createServer((req, res) => {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", () => {
      if (req.url === "/health") return res.end("ok");
      if (req.url === "/events") {
        let n;
        try { n = JSON.parse(Buffer.concat(parts).toString()).n; } catch { n = "?"; }
        console.log(`delivered ${n} ${req.headers["ce-id"]}`);
        return res.writeHead(204).end();
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ host: name }));
    });
  })
  .listen(Number(process.env.APP_PORT ?? 5000), "127.0.0.1", () => console.log(`echo-app on ${name} listening`));
