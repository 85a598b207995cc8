// A fixed-rate load: POST <body> to <url> at <rate> requests/s for <seconds> s over a keep-alive
// pool, timing each request with hrtime. Prints {"sent", "ok", "p50", "p90", "p99"} (µs) as JSON.
// Latency at a fixed rate (not at saturation) is the figure published for other sidecars.
import http from "node:http";

const [url, rate, seconds, body] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5] ?? "{}"];
const u = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const latencies = [];
let sent = 0;
let ok = 0;
let pending = 0;

function one() {
  sent += 1;
  pending += 1;
  const t0 = process.hrtime.bigint();
  const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
    res.resume();
    res.on("end", () => {
      latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (res.statusCode >= 200 && res.statusCode < 300) ok += 1;
      pending -= 1;
    });
  });
  req.on("error", () => (pending -= 1));
  req.end(body);
}

const start = Date.now();
const total = rate * seconds;
// Every millisecond, send what the schedule says is due: a steady rate, not bursts.
const timer = setInterval(() => {
  const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * rate));
  while (sent < due) one();
  if (sent >= total) {
    clearInterval(timer);
    const wait = setInterval(() => {
      if (pending > 0 && Date.now() - start < (seconds + 10) * 1000) return;
      clearInterval(wait);
      latencies.sort((a, b) => a - b);
      const at = (q) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN);
      process.stdout.write(JSON.stringify({ sent, ok, p50: at(0.5), p90: at(0.9), p99: at(0.99) }) + "\n");
      agent.destroy();
    }, 20);
  }
}, 1);
