// The scale bench's simulated fleet (issue 19): N fake nodes of M services in the registry
// bucket, heartbeated as real sidecars do, from one process and one NATS connection.
//
//   node bench/scale/fleet.mjs --servers=nats://127.0.0.1:4222 --nodes=10000 [--services=500]
//     [--ttl=15000] [--bucket=sidecar_registry] [--inflight=256] [--report=1000]
//
// The bucket is opened (or created) as src/registry/nats.ts does it; each node's record has the
// shape of src/registry/types.ts's NodeRecord, keyed `<service>.<id>`, its id made as src/sidecar.ts
// makes it (`<service>-<8 hex>`, no dots). All N are put once, as fast as `inflight` puts at a
// time allow; then every node is re-put every TTL/3 (the Registrar's schedule), node i at offset
// i·(TTL/3)/N of each interval, so the bucket takes a steady N/(TTL/3) puts per second.
//
// stdout, one JSON object a line:
//   {"event":"registered", nodes, services, ms, failures, targetPerSec, address}  once all N are in
//   {"event":"stats", t, puts, failures, skipped, perSec, failuresPerSec, targetPerSec, behind, lagMs, inflight, keepingUp}
//     every `report` ms: puts/failures/skipped cumulative since the heartbeats began (t, epoch ms,
//     is when they were counted); perSec over the last period; behind: puts due but not yet sent;
//     lagMs: the latest a put was sent after its due time in the period; keepingUp: no failed put
//     and none sent more than max(250 ms, TTL/30) late in the period.
// A fleet that falls behind says so on stderr, once per period. SIGTERM or SIGINT ends it (its
// records are left to expire, as a killed fleet's would).
import { randomBytes } from "node:crypto";
import net from "node:net";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([a-z]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`fleet: unexpected argument ${a} (expected --name=value)`);
    return [m[1], m[2]];
  }),
);
const int = (name, dflt) => {
  const v = args[name] === undefined ? dflt : Number(args[name]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`fleet: --${name} must be a non-negative integer`);
  return v;
};
const SERVERS = (args.servers ?? "nats://127.0.0.1:4222").split(",");
const N = int("nodes", 1000);
const M = Math.max(1, int("services", Math.max(1, Math.floor(N / 20))));
const TTL = int("ttl", 15_000);
const BUCKET = args.bucket ?? "sidecar_registry";
const INFLIGHT = Math.max(1, int("inflight", 256));
const REPORT = Math.max(100, int("report", 1000));
// The Registrar's heartbeat period, and the write timeout NatsRegistry.open gives its puts.
const INTERVAL = Math.max(10, Math.floor(TTL / 3));
const PUT_TIMEOUT = Math.max(250, Math.min(5_000, INTERVAL));
const TARGET = N === 0 ? 0 : (N * 1000) / INTERVAL;
/** A put sent later than this after its due time means the fleet is not keeping its schedule (records expire at callers only past TTL − TTL/3). */
const LATE = Math.max(250, Math.floor(INTERVAL / 10));

/** A loopback port nothing listens on (the OS picks it for a listener that is then closed): callers never dial fleet nodes, but if one did it would be refused at once. */
async function deadPort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

const nc = await connect({ servers: SERVERS, name: "scale-fleet", maxReconnectAttempts: -1, reconnectTimeWait: 1_000 });
const kvm = new Kvm(jetstream(nc, { timeout: PUT_TIMEOUT }));
const kv = await kvm.create(BUCKET, { ttl: TTL, history: 1, replicas: 1 });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 1_000).unref();
  nc.close().finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);

const address = `127.0.0.1:${await deadPort()}`;
const width = Math.max(4, String(M).length);
const serviceName = (s) => `fleet-${String(s + 1).padStart(width, "0")}`;
const enc = new TextEncoder();
const keys = new Array(N);
const values = new Array(N);
const ids = new Set();
for (let i = 0; i < N; i++) {
  const service = serviceName(i % M);
  let id;
  do id = `${service.replace(/\./g, "-")}-${randomBytes(4).toString("hex")}`;
  while (ids.has(id));
  ids.add(id);
  // The record a sidecar of transport http with the mesh protocol writes (src/sidecar.ts): the same
  // object re-put at every heartbeat, registeredAt its start.
  const record = { id, service, version: "1.0.0", address, transport: "http", metadata: {}, endpoints: [], subscriptions: [], registeredAt: new Date().toISOString(), mesh: 1 };
  keys[i] = `${service}.${id}`;
  values[i] = enc.encode(JSON.stringify(record));
}

let inflight = 0;
/** Node i's put is in flight: its next heartbeat is skipped, as the Registrar skips a tick while one is queued. */
const pending = new Uint8Array(N);

function put(i, done) {
  inflight += 1;
  pending[i] = 1;
  kv.put(keys[i], values[i]).then(
    () => done(true),
    () => done(false),
  ).finally(() => {
    inflight -= 1;
    pending[i] = 0;
  });
}

// Registration: every node once, `INFLIGHT` at a time; a failed put is retried (up to 5 times).
const t0 = Date.now();
let regFailures = 0;
await new Promise((resolve, reject) => {
  if (N === 0) return resolve();
  let next = 0;
  let finished = 0;
  const tries = new Uint8Array(N);
  const launch = (i) =>
    put(i, (ok) => {
      if (!ok) {
        regFailures += 1;
        if (++tries[i] >= 5) return reject(new Error(`fleet: cannot register ${keys[i]} (5 failed puts)`));
        return void setTimeout(() => launch(i), 100);
      }
      finished += 1;
      if (finished === N) return resolve();
      if (next < N) launch(next++);
    });
  while (next < N && next < INFLIGHT) launch(next++);
});
process.stdout.write(JSON.stringify({ event: "registered", nodes: N, services: M, ms: Date.now() - t0, failures: regFailures, targetPerSec: TARGET, ttlMs: TTL, intervalMs: INTERVAL, address }) + "\n");

// Heartbeats: put number j (j = 0, 1, 2, ...) is node j % N's, due at start + j·INTERVAL/N.
const start = Date.now();
let sent = 0;
let puts = 0;
let failures = 0;
let skipped = 0;
let lagMs = 0;
const dueAt = (j) => start + (j * INTERVAL) / N;
const tick = () => {
  if (stopping || N === 0) return;
  const now = Date.now();
  while (dueAt(sent) <= now && inflight < INFLIGHT) {
    const i = sent % N;
    lagMs = Math.max(lagMs, now - dueAt(sent));
    sent += 1;
    if (pending[i]) {
      skipped += 1;
      continue;
    }
    put(i, (ok) => (ok ? (puts += 1) : (failures += 1)));
  }
};
setInterval(tick, 5);

let last = { t: start, puts: 0, failures: 0 };
setInterval(() => {
  const t = Date.now();
  const secs = (t - last.t) / 1000;
  const perSec = (puts - last.puts) / secs;
  const failuresPerSec = (failures - last.failures) / secs;
  const due = N === 0 ? 0 : Math.floor(((t - start) * N) / INTERVAL) + 1;
  const behind = Math.max(0, due - sent);
  const keepingUp = N === 0 || (lagMs <= LATE && failures === last.failures);
  const stats = { event: "stats", t, puts, failures, skipped, perSec: Math.round(perSec), failuresPerSec: Math.round(failuresPerSec), targetPerSec: Math.round(TARGET), behind, lagMs: Math.round(lagMs), inflight, keepingUp };
  process.stdout.write(JSON.stringify(stats) + "\n");
  if (!keepingUp)
    process.stderr.write(`fleet: NOT KEEPING UP: ${Math.round(perSec)} puts/s of the ${Math.round(TARGET)} due, ${Math.round(failuresPerSec)} failed/s, ${behind} puts behind schedule, up to ${Math.round(lagMs)} ms late (limit ${LATE} ms; records expire at callers when a node is more than ${TTL - INTERVAL} ms late)\n`);
  last = { t, puts, failures };
  lagMs = 0;
}, REPORT);
