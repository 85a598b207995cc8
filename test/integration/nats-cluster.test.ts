import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/**
 * A 3-server NATS cluster (routes on loopback) with a replicated registry bucket and stream; the
 * sidecars are given all three URLs. One server is killed mid-run.
 */
describe("NATS cluster: one server of three lost", () => {
  let servers: NatsServer[];
  let urls: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let ledger: TestApp;
  let ledgerBase: string;

  const start = async (service: string, extra: string[] = []) => {
    const app = await TestApp.start(service);
    apps.push(app);
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { nats: urls }, extra: ["registry.replicas=3", "registry.ttl=3s", "broker.streamReplicas=3", ...extra] }));
    sidecars.push(s);
    return { app, s };
  };

  before(async () => {
    servers = await NatsServer.cluster(3);
    urls = servers.map((s) => s.url).join(",");
    base = apiUrl((await start("client")).s);
    await start("greeter");
    await start("greeter");
    const l = await start("ledger", ['subscriptions=[{"topic": "cluster.entries", "path": "/events", "durable": true}]', "calls.timeout=1s"]);
    ledger = l.app;
    ledgerBase = apiUrl(l.s);
    await waitFor(async () => (await registryNodes(base, "greeter")).length === 2, "two greeters", 20_000);
    await waitFor(async () => ((await (await fetch(`${ledgerBase}/subscriptions`)).json()) as { subscriptions: { state: string }[] }).subscriptions[0]?.state === "active", "the durable subscription", 20_000);
  });

  after(async () => {
    await teardown({ sidecars, apps });
    await Promise.all(servers.map((s) => s.stop()));
  });

  it("calls never fail, no live node leaves a view, a new node registers, and every durable message is delivered", async (t) => {
    const publish = async (n: number) => (await fetch(`${base}/publish/cluster.entries`, { method: "POST", headers: { "content-type": "application/json", "ce-id": `entry-${n}` }, body: JSON.stringify({ n }) })).status;
    for (let n = 0; n < 20; n++) assert.equal(await publish(n), 202);
    const t0 = Date.now();
    await servers[0]!.kill();

    // Calls go on from the view over the http transport, whatever NATS is doing; and the view
    // keeps both greeters throughout (sampled while the cluster elects new leaders).
    let sampled = 0;
    while (Date.now() - t0 < 8_000) {
      const r = await rpc(base, { service: "greeter", endpoint: "G.Hello" });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await registryNodes(base, "greeter")).length, 2, `both greeters in the view ${Date.now() - t0} ms after the kill`);
      sampled += 1;
      await new Promise((r) => setTimeout(r, 50));
    }
    t.diagnostic(`${sampled} calls and view samples in the 8 s after the kill, all good`);

    // Publishing resumes once the stream has a leader again (503 BROKER_UNAVAILABLE meanwhile, never a hang).
    for (let n = 20; n < 40; n++) await waitFor(async () => (await publish(n)) === 202, `publish ${n}`, 15_000);
    t.diagnostic(`publishing again ${Date.now() - t0} ms after the kill`);

    // Registration works on the surviving servers: a new node appears in the caller's view.
    const late = await start("greeter");
    await waitFor(async () => (await registryNodes(base, "greeter")).includes(late.s.node.id), "the new greeter in the view", 10_000);
    assert.equal((await registryNodes(base, "greeter")).length, 3);

    // At least once: every entry arrives (a redelivery may repeat one), none is lost.
    await waitFor(() => new Set(ledger.callsTo("/events").map((c) => (JSON.parse(c.body) as { n: number }).n)).size === 40, "all 40 entries", 30_000);
    t.diagnostic(`all 40 entries delivered ${Date.now() - t0} ms after the kill (${ledger.callsTo("/events").length} deliveries)`);
  });
});
