// An app for the hosts tests: answers /health and any POST with the host it runs on (HOST_NAME).
import http from "node:http";
const name = process.env.HOST_NAME ?? "?";
http
  .createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/health") return res.end("ok");
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ host: name }));
    });
  })
  .listen(Number(process.env.APP_PORT ?? 5000), "127.0.0.1", () => console.log(`echo-app on ${name} listening`));
