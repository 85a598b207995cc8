import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { MAX_EVENT_STREAMS } from "../../src/events/stream.js";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { EventLog } from "../support/events.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** Sidecar.events() and GET /events: typed events, in order, from real components (embedded registry). */
describe("typed events: Sidecar.events() and GET /events", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-events-"));
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  const app = async (name: string) => {
    const a = await TestApp.start(name);
    apps.push(a);
    return a;
  };
  const sidecar = async (service: string, a: TestApp, extra: string[] = []) => {
    const s = await startSidecar(testSettings({ service, appPort: a.port, registry: { dir }, extra }));
    sidecars.push(s);
    return s;
  };
  let caller: Sidecar;

  before(async () => {
    caller = await sidecar("caller", await app("caller"));
  });
  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("a sidecar's life in events: listening, healthy, subscribed, registered; unhealthy, deregistered, paused; back; draining, stopped", async () => {
    const a = await app("life");
    // It watches its own service (calls.services), so its view sees its own node join and leave.
    const s = await sidecar("life", a, [`subscriptions=${JSON.stringify([{ topic: "life.events", path: "/events" }])}`, "calls.services=life"]);
    const events = EventLog.of(s.events({ replay: true }));
    const listening = await events.next("listening");
    assert.equal(listening.node, s.node.id);
    assert.equal(listening.api, s.apiAddress);
    await events.next("registered", (e) => e.node === s.node.id);
    await events.next("node-joined", (e) => e.node === s.node.id);
    assert.deepEqual(
      events.seen.filter((e) => e.type !== "node-joined").map((e) => e.type).slice(0, 4),
      ["listening", "app-healthy", "subscription", "registered"],
      "subscribed before registering: no call or message arrives before the app can take it",
    );
    assert.deepEqual(events.all("subscription").map((e) => [e.subscription, e.state]), [["life.events", "active"]]);

    a.healthy = false;
    const unhealthy = await events.next("app-unhealthy");
    assert.match(unhealthy.reason, /503/);
    const gone = await events.next("deregistered", (e) => e.node === s.node.id);
    assert.match(gone.reason, /health check failing/);
    await events.next("subscription", (e) => e.state === "paused");
    await events.next("node-left", (e) => e.node === s.node.id && e.reason === "deleted");
    assert.ok(unhealthy.seq < gone.seq, "seq numbers follow the order things happened");

    a.healthy = true;
    await events.until(() => (events.all("registered").length === 2 ? true : undefined), "a second registered event");
    assert.deepEqual(events.all("subscription").map((e) => e.state), ["active", "paused", "active"]);

    await s.close();
    await events.ends();
    const tail = events.seen.slice(events.seen.findIndex((e) => e.type === "draining")).map((e) => e.type);
    assert.equal(tail[0], "draining");
    assert.ok(tail.includes("deregistered"), `deregistered during the drain: ${tail.join(", ")}`);
    assert.equal(tail.at(-1), "stopped", "stopped is the last event; the iterator then ends");
  });

  it("a node answering 5xx is ejected: node-ejected names it, with how long and after how many failures", async () => {
    const bad = await app("bad");
    const s = await sidecar("ejectee", bad);
    const good = await sidecar("ejectee", await app("good")); // the last node standing is never ejected
    const events = EventLog.of(caller.events({ replay: true }));
    // The caller watches ejectee from this lookup on (as from a first call): both nodes join its view.
    await registryNodes(apiUrl(caller), "ejectee");
    await events.next("node-joined", (e) => e.node === s.node.id);
    await events.next("node-joined", (e) => e.node === good.node.id);
    bad.failStatus = 500;
    const statuses: number[] = [];
    while (bad.callCount() < 3 && statuses.length < 50) statuses.push((await rpc(apiUrl(caller), { service: "ejectee", endpoint: "E.Call" })).status);
    assert.equal(statuses.filter((x) => x === 500).length, 3);
    const ejected = await events.next("node-ejected", (e) => e.node === s.node.id);
    assert.equal(ejected.service, "ejectee");
    assert.equal(ejected.failures, 3);
    assert.ok(ejected.forMs > 0);
    events.close();
  });

  it("GET /events replays the kept events as Server-Sent Events, then streams new ones; Last-Event-ID resumes after an id", async () => {
    const base = apiUrl(caller);
    const first = await EventLog.stream(base);
    const registered = await first.next("registered", (e) => e.service === "caller");
    const a = await app("joiner");
    assert.deepEqual(await registryNodes(base, "joiner"), [], "watched from now on");
    const joiner = await sidecar("joiner", a);
    const joined = await first.next("node-joined", (e) => e.node === joiner.node.id);
    first.close();

    const resumed = await EventLog.stream(base, { lastEventId: registered.seq });
    const again = await resumed.next("node-joined", (e) => e.node === joiner.node.id);
    assert.ok(resumed.seen.every((e) => e.type !== "lagged" && e.seq > registered.seq), "only events after Last-Event-ID");
    assert.equal(again.seq, joined.seq, "one numbering per sidecar: the same event has the same id on every stream");
    resumed.close();

    const res = await fetch(`${base}/events`);
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.equal(res.headers.get("cache-control"), "no-store");
    await res.body?.cancel();
  });

  it(`at most ${MAX_EVENT_STREAMS} streams at once: the next is refused with 503 TOO_MANY_STREAMS and Retry-After, and a closed one frees its place`, async () => {
    const base = apiUrl(caller);
    const open = await Promise.all(Array.from({ length: MAX_EVENT_STREAMS }, () => EventLog.stream(base)));
    const refused = await fetch(`${base}/events`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "TOO_MANY_STREAMS");
    open[0]!.close();
    await open[0]!.ends();
    // The server sees the reader go when its socket closes: wait for a place to be free again.
    const next = await waitFor(() => EventLog.stream(base).catch(() => undefined), "a free place once a stream closed");
    for (const e of [...open, next]) e.close();
  });

  it("with api.token, GET /events needs it (401 without), and streams with it", async () => {
    const s = await sidecar("guarded", await app("guarded"), ["api.token=events-secret-0123456789"]);
    const without = await fetch(`${apiUrl(s)}/events`);
    assert.equal(without.status, 401);
    const events = await EventLog.stream(apiUrl(s), { token: "events-secret-0123456789" });
    await events.next("registered");
    assert.ok(!JSON.stringify(events.seen).includes("events-secret-0123456789"), "no secret in an event");
    events.close();
  });

  it("a stream ends when its sidecar stops, after the deregistration it reports", async () => {
    const s = await sidecar("ending", await app("ending"));
    const events = await EventLog.stream(apiUrl(s));
    await events.next("registered");
    await s.close();
    await events.ends();
    assert.equal(events.all("draining").length, 1);
    assert.equal(events.all("deregistered").length, 1);
  });
});

describe("GET /events: a reader that stops reading", () => {
  it("is ended once its backlog passes the bound, on a real socket that never reads; the others go on", async () => {
    const { createServer } = await import("node:http");
    const net = await import("node:net");
    const { EventHub } = await import("../../src/events/hub.js");
    const { eventStream } = await import("../../src/events/stream.js");
    const { silentLogger } = await import("../../src/log.js");
    const hub = new EventHub();
    const stream = eventStream(hub, silentLogger(), { streams: 4, backlogBytes: 64 * 1024 });
    const server = createServer((req, res) => stream.handle(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    try {
      // A client that sends its request and then never reads: the kernel buffers fill, then ours.
      const stuck = net.connect(port, "127.0.0.1");
      await new Promise((r) => stuck.once("connect", r));
      stuck.pause();
      stuck.write("GET /events HTTP/1.1\r\nhost: x\r\n\r\n");
      const reading = await EventLog.stream(`http://127.0.0.1:${port}`);
      await waitFor(() => stream.open === 2, "both streams open");
      const reason = "x".repeat(1_000);
      // Bounded: at most 20,000 events of 1 KB (20 MB), far more than loopback buffers hold; paced
      // (a turn of the event loop every 10 KB) so the reading stream keeps up.
      for (let i = 0; i < 20_000 && stream.open === 2; i++) {
        hub.emit({ type: "app-unhealthy", reason });
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      await waitFor(() => stream.open === 1, "the stuck stream ended");
      hub.emit({ type: "app-healthy" });
      await reading.next("app-healthy");
      reading.close();
      stuck.destroy();
    } finally {
      hub.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
