// The relay floor: a bare NATS subscription that POSTs each message to the app over a keep-alive
// agent, up to <inFlight> at once, acking (JetStream) after the app's 2xx. No retries, no
// CloudEvents, no health: the least a relay can do. Prints "ready" once subscribed.
//   node bench/minimal-relay.mjs <nats-url> <core|js> <topic> <app-port> <inFlight> [stream]
import http from "node:http";
import { connect } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

const [url, mode, topic, appPort, inFlightArg, stream] = process.argv.slice(2);
const inFlight = Number(inFlightArg);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const nc = await connect({ servers: url });

function post(data) {
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port: Number(appPort), method: "POST", path: "/in", agent, headers: { "content-type": "application/json", "content-length": data.length } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", () => resolve(0));
    req.end(data);
  });
}

if (mode === "core") {
  const queue = [];
  let busy = 0;
  const pump = () => {
    while (busy < inFlight && queue.length > 0) {
      busy += 1;
      post(queue.shift()).then(() => {
        busy -= 1;
        pump();
      });
    }
  };
  nc.subscribe(topic, { callback: (_err, m) => { queue.push(m.data); pump(); } });
} else {
  const jsm = await jetstreamManager(nc);
  const name = `floor_${inFlight}`;
  await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: topic, max_ack_pending: inFlight });
  const consumer = await jetstream(nc).consumers.get(stream, name);
  const messages = await consumer.consume({ max_messages: Math.max(100, inFlight * 2) });
  (async () => {
    for await (const m of messages) post(m.data).then((s) => (s >= 200 && s < 300 ? m.ack() : m.nak()));
  })();
}
await nc.flush();
process.stdout.write("ready\n");
process.on("SIGTERM", async () => { await nc.close(); process.exit(0); });
