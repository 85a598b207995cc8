import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp, type ReceivedCall } from "../support/app.js";
import type { Sub } from "../conformance/broker.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const subs = (list: Sub[]) => `subscriptions=${JSON.stringify(list)}`;
const ids = (calls: ReceivedCall[]) => calls.map((c) => JSON.parse(c.body).n as number);

/** POST /publish/{topic}; returns the 202 body. */
async function publish(base: string, topic: string, body: unknown, headers: Record<string, string> = {}): Promise<{ id: string; stored: boolean; stream?: string }> {
  const res = await fetch(`${base}/publish/${topic}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()) as { id: string; stored: boolean };
}

async function activeSubs(base: string, n: number): Promise<void> {
  await waitFor(async () => {
    const res = await fetch(`${base}/subscriptions`);
    const body = (await res.json()) as { subscriptions: { state: string }[] };
    return body.subscriptions.length === n && body.subscriptions.every((s) => s.state === "active");
  }, `${n} active subscriptions`);
}

describe("pub/sub relay on NATS (core and JetStream)", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  const procs: SidecarProcess[] = [];
  let pub: string;

  const settings = (service: string, app: TestApp, extra: string[] = []) => testSettings({ service, appPort: app.port, registry: { nats: nats.url }, extra });
  const instance = async (service: string, name: string, list: Sub[], extra: string[] = []) => {
    const app = await TestApp.start(name);
    apps.push(app);
    const s = await startSidecar(settings(service, app, [subs(list), ...extra]));
    sidecars.push(s);
    await activeSubs(apiUrl(s), list.length);
    return { app, sidecar: s, base: apiUrl(s) };
  };

  before(async () => {
    nats = await NatsServer.start();
    const app = await TestApp.start("publisher");
    apps.push(app);
    const s = await startSidecar(settings("publisher", app));
    sidecars.push(s);
    pub = apiUrl(s);
  });

  after(() => teardown({ procs, sidecars, apps, nats }));

  it("durable: 200 messages to two instances of one service arrive each exactly once across them, with CloudEvents headers", async () => {
    const sub: Sub = { topic: "orders.created", path: "/events/orders", durable: true, maxInFlight: 8 };
    const a = await instance("orders", "orders-a", [sub]);
    const b = await instance("orders", "orders-b", [sub]);
    const first = await publish(pub, "orders.created", { n: 0 }, { "ce-type": "com.example.order.created", "x-sidecar-tenant": "t1" });
    assert.equal(first.stored, true, "a stream covers the topic: 202 means stored");
    for (let n = 1; n < 200; n++) await publish(pub, "orders.created", { n });
    const all = () => [...a.app.callsTo("/events/orders"), ...b.app.callsTo("/events/orders")];
    await waitFor(() => all().length >= 200, "200 deliveries", 10_000);
    assert.deepEqual(ids(all()).sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i), "each message exactly once");
    assert.ok(a.app.callsTo("/events/orders").length > 0 && b.app.callsTo("/events/orders").length > 0, "both instances get some");
    const c = all().find((x) => JSON.parse(x.body).n === 0)!;
    assert.equal(c.method, "POST");
    assert.equal(c.headers["content-type"], "application/json");
    assert.equal(c.headers["ce-id"], first.id);
    assert.equal(c.headers["ce-type"], "com.example.order.created");
    assert.equal(c.headers["ce-specversion"], "1.0");
    assert.equal(c.headers["ce-source"], "/sidecar/publisher");
    assert.ok(!Number.isNaN(Date.parse(String(c.headers["ce-time"]))));
    assert.equal(c.headers["x-sidecar-topic"], "orders.created");
    assert.equal(c.headers["x-sidecar-attempt"], "1");
    assert.equal(c.headers["x-sidecar-tenant"], "t1");
    const listed = (await (await fetch(`${a.base}/subscriptions`)).json()) as { subscriptions: { delivered: number; durable: boolean; queue: string }[] };
    assert.equal(listed.subscriptions[0]!.durable, true);
    assert.equal(listed.subscriptions[0]!.queue, "orders");
    assert.equal(listed.subscriptions[0]!.delivered, a.app.callsTo("/events/orders").length);
  });

  it("a 500 is retried with backoff and then succeeds; a 400 lands on the dead-letter topic with its reason", async () => {
    const dlq = await instance("audit", "audit", [{ topic: "pay.dead", path: "/dead", durable: true }]);
    const p = await instance("payments", "payments", [
      { topic: "pay.requested", path: "/events/pay", durable: true, retry: { attempts: 4, initial: "50ms", max: "200ms" }, deadLetter: "pay.dead" },
    ]);
    p.app.respond = (call) => {
      const { n } = JSON.parse(call.body) as { n: number };
      if (n === 1) return Number(call.headers["x-sidecar-attempt"]) < 3 ? 500 : 200;
      if (n === 2) return 400;
      return undefined;
    };
    const flaky = await publish(pub, "pay.requested", { n: 1 });
    const rejected = await publish(pub, "pay.requested", { n: 2 });
    await waitFor(() => dlq.app.callsTo("/dead").length === 1, "the dead letter", 5_000);
    await waitFor(() => p.app.callsTo("/events/pay").filter((c) => JSON.parse(c.body).n === 1).length === 3, "three attempts of message 1");
    const attempts = p.app.callsTo("/events/pay").filter((c) => JSON.parse(c.body).n === 1).map((c) => c.headers["x-sidecar-attempt"]);
    assert.deepEqual(attempts, ["1", "2", "3"]);
    assert.equal(p.app.callsTo("/events/pay").filter((c) => JSON.parse(c.body).n === 2).length, 1, "a 4xx is not retried");
    const dead = dlq.app.callsTo("/dead")[0]!;
    assert.equal(JSON.parse(dead.body).n, 2);
    assert.equal(dead.headers["ce-id"], rejected.id);
    assert.equal(dead.headers["x-sidecar-dead-reason"], "the app answered 400");
    assert.equal(dead.headers["x-sidecar-original-topic"], "pay.requested");
    assert.equal(dead.headers["x-sidecar-attempts"], "1");
    assert.notEqual(flaky.id, rejected.id);
    const listed = (await (await fetch(`${p.base}/subscriptions`)).json()) as { subscriptions: { delivered: number; retried: number; deadLettered: number }[] };
    assert.deepEqual([listed.subscriptions[0]!.delivered, listed.subscriptions[0]!.retried, listed.subscriptions[0]!.deadLettered], [1, 2, 1]);
  });

  it("after the last attempt a message is dead-lettered with the reason", async () => {
    const dlq = await instance("audit2", "audit2", [{ topic: "mail.dead", path: "/dead", durable: true }]);
    const m = await instance("mailer", "mailer", [{ topic: "mail.send", path: "/events/mail", durable: true, retry: { attempts: 3, initial: "20ms", max: "50ms" }, deadLetter: "mail.dead" }]);
    m.app.failStatus = 503;
    await publish(pub, "mail.send", { n: 7 });
    await waitFor(() => dlq.app.callsTo("/dead").length === 1, "the dead letter", 5_000);
    assert.equal(m.app.callsTo("/events/mail").length, 3);
    assert.equal(dlq.app.callsTo("/dead")[0]!.headers["x-sidecar-dead-reason"], "the app answered 503 (gave up after 3 attempts)");
  });

  it("deliveries pause while the app is unhealthy and all arrive after recovery", async () => {
    const s = await instance("reports", "reports", [{ topic: "reports.due", path: "/events/reports", durable: true }]);
    s.app.healthy = false;
    await waitFor(async () => ((await (await fetch(`${s.base}/subscriptions`)).json()) as { subscriptions: { state: string }[] }).subscriptions[0]!.state === "paused", "the subscription to pause");
    for (let n = 0; n < 20; n++) await publish(pub, "reports.due", { n });
    await new Promise((r) => setTimeout(r, 300)); // a window in which nothing may arrive
    assert.equal(s.app.callsTo("/events/reports").length, 0, "nothing delivered to an unhealthy app");
    s.app.healthy = true;
    await waitFor(() => s.app.callsTo("/events/reports").length >= 20, "all 20 after recovery", 10_000);
    assert.deepEqual(ids(s.app.callsTo("/events/reports")).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
  });

  it("a durable subscriber killed mid-stream and restarted loses nothing", async () => {
    const app = await TestApp.start("ledger");
    apps.push(app);
    app.respond = () => undefined;
    const sub = subs([{ topic: "ledger.entry", path: "/events/ledger", durable: true, maxInFlight: 4, timeout: "1s" }]);
    const first = await SidecarProcess.start(settings("ledger", app, [sub]));
    procs.push(first);
    await activeSubs(first.apiUrl, 1);
    for (let n = 0; n < 60; n++) await publish(pub, "ledger.entry", { n });
    await waitFor(() => app.callsTo("/events/ledger").length >= 10, "some deliveries");
    first.kill("SIGKILL");
    await first.exit();
    const second = await SidecarProcess.start(settings("ledger", app, [sub]));
    procs.push(second);
    await waitFor(() => new Set(ids(app.callsTo("/events/ledger"))).size === 60, "all 60 messages (redelivered after the ack wait)", 15_000);
    second.kill("SIGTERM");
    assert.equal(await second.exit(), 0);
  });

  it("SIGTERM during deliveries loses nothing: in-flight deliveries finish and are acked", async () => {
    const app = await TestApp.start("stock");
    apps.push(app);
    // Slow deliveries, so the SIGTERM lands while some are in flight.
    app.respond = () => undefined;
    const slowApp = app.server.listeners("request")[0] as (...a: unknown[]) => void;
    app.server.removeAllListeners("request");
    app.server.on("request", (req, res) => setTimeout(() => slowApp(req, res), 50));
    const sub = subs([{ topic: "stock.moved", path: "/events/stock", durable: true, maxInFlight: 4, timeout: "2s" }]);
    const p1 = await SidecarProcess.start(settings("stock", app, [sub]));
    procs.push(p1);
    await activeSubs(p1.apiUrl, 1);
    for (let n = 0; n < 40; n++) await publish(pub, "stock.moved", { n });
    await waitFor(() => app.callsTo("/events/stock").length >= 8, "some deliveries");
    p1.kill("SIGTERM");
    assert.equal(await p1.exit(), 0);
    const afterStop = app.callsTo("/events/stock").length;
    const p2 = await SidecarProcess.start(settings("stock", app, [sub]));
    procs.push(p2);
    await waitFor(() => new Set(ids(app.callsTo("/events/stock"))).size === 40, "all 40 messages", 15_000);
    // Deliveries that finished before the stop were acknowledged: none of them comes again.
    const before = ids(app.callsTo("/events/stock").slice(0, afterStop));
    const again = ids(app.callsTo("/events/stock").slice(afterStop)).filter((n) => before.includes(n));
    assert.deepEqual(again, [], "a delivery completed before SIGTERM is not redelivered");
    p2.kill("SIGTERM");
    assert.equal(await p2.exit(), 0);
  });

  it("core (non-durable) subscription: queue group over two instances, at-most-once", async () => {
    const sub: Sub = { topic: "metrics.tick", path: "/events/tick" };
    const a = await instance("ticker", "ticker-a", [sub]);
    const b = await instance("ticker", "ticker-b", [sub]);
    const r = await publish(pub, "metrics.tick", { n: 0 });
    assert.equal(r.stored, false, "no stream: core NATS");
    for (let n = 1; n < 40; n++) await publish(pub, "metrics.tick", { n });
    const all = () => [...a.app.callsTo("/events/tick"), ...b.app.callsTo("/events/tick")];
    await waitFor(() => all().length >= 40, "40 deliveries");
    assert.deepEqual(ids(all()).sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i));
    assert.ok(a.app.callsTo("/events/tick").length > 0 && b.app.callsTo("/events/tick").length > 0);
  });

  it("subscriptions asked from the app at start (GET /sidecar/subscriptions)", async () => {
    const app = await TestApp.start("asker");
    apps.push(app);
    app.subscriptions = [{ topic: "asked.topic", path: "/events/asked" }];
    const s = await startSidecar(settings("asker", app));
    sidecars.push(s);
    await activeSubs(apiUrl(s), 1);
    await publish(pub, "asked.topic", { n: 1 });
    await waitFor(() => app.callsTo("/events/asked").length === 1, "the delivery");
  });

  it("bad topics answer 400 INVALID_TOPIC", async () => {
    for (const topic of ["a..b", "a.*", "a.>", "has%20space", ".lead", "trail."]) {
      const res = await fetch(`${pub}/publish/${topic}`, { method: "POST", body: "x" });
      assert.equal(res.status, 400, topic);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_TOPIC");
    }
    assert.equal((await fetch(`${pub}/publish/ok.topic`)).status, 405);
  });
});
