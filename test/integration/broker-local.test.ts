import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, registryNodes, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

/** The embedded broker: no NATS anywhere, sidecars on one machine. */
describe("pub/sub on the local broker (no NATS)", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let pub: string;

  const instance = async (service: string, name: string, list: unknown[], extra: string[] = []) => {
    const app = await TestApp.start(name);
    apps.push(app);
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra: [`subscriptions=${JSON.stringify(list)}`, ...extra] }));
    sidecars.push(s);
    return { app, sidecar: s };
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-broker-"));
    const { sidecar } = await instance("publisher", "publisher", []);
    pub = apiUrl(sidecar);
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("announces subscriptions in the node record and delivers each message to one node of each subscribed service", async () => {
    const a1 = await instance("shipping", "ship-1", [{ topic: "orders.*", path: "/events/orders" }]);
    const a2 = await instance("shipping", "ship-2", [{ topic: "orders.*", path: "/events/orders" }]);
    const b = await instance("billing", "bill-1", [{ topic: "orders.created", path: "/hooks/billing" }]);
    await waitFor(async () => (await registryNodes(pub, "shipping")).length === 2 && (await registryNodes(pub, "billing")).length === 1, "subscribers in the view");
    const record = ((await (await fetch(`${pub}/registry/billing`)).json()) as { nodes: { subscriptions: string[] }[] }).nodes[0]!;
    assert.deepEqual(record.subscriptions, ["orders.created"]);

    for (let n = 0; n < 10; n++) {
      const res = await fetch(`${pub}/publish/orders.created`, { method: "POST", headers: { "content-type": "application/json", "ce-type": "order" }, body: JSON.stringify({ n }) });
      assert.equal(res.status, 202);
      const body = (await res.json()) as { id: string; stored: boolean };
      assert.equal(body.stored, false, "the local broker stores nothing");
    }
    await waitFor(() => a1.app.callsTo("/events/orders").length + a2.app.callsTo("/events/orders").length === 10 && b.app.callsTo("/hooks/billing").length === 10, "deliveries");
    assert.ok(a1.app.callsTo("/events/orders").length > 0 && a2.app.callsTo("/events/orders").length > 0, "the group's nodes share the messages");
    const c = b.app.callsTo("/hooks/billing")[0]!;
    assert.equal(c.headers["ce-type"], "order");
    assert.equal(c.headers["ce-specversion"], "1.0");
    assert.equal(c.headers["x-sidecar-topic"], "orders.created");
    assert.equal(c.headers["x-sidecar-deliver"], undefined, "the broker's own header does not reach the app");
    assert.ok(c.headers["ce-id"]);
  });

  it("retries a 500 in process and dead-letters a 400", async () => {
    const dlq = await instance("dlq", "dlq", [{ topic: "jobs.dead", path: "/dead" }]);
    const w = await instance("worker", "worker", [{ topic: "jobs.run", path: "/run", retry: { attempts: 3, initial: "20ms", max: "50ms" }, deadLetter: "jobs.dead" }]);
    await waitFor(async () => (await registryNodes(pub, "worker")).length === 1 && (await registryNodes(pub, "dlq")).length === 1, "worker and dlq");
    w.app.respond = (call) => {
      const { n } = JSON.parse(call.body) as { n: number };
      if (n === 1) return call.headers["x-sidecar-attempt"] === "1" ? 500 : 200;
      return 400;
    };
    for (const n of [1, 2]) await fetch(`${pub}/publish/jobs.run`, { method: "POST", body: JSON.stringify({ n }) });
    await waitFor(() => dlq.app.callsTo("/dead").length === 1 && w.app.callsTo("/run").length === 3, "retry and dead letter");
    assert.equal(dlq.app.callsTo("/dead")[0]!.headers["x-sidecar-dead-reason"], "the app answered 400");
  });

  it("a publish no node of a subscribed service took says so (202 with notTakenBy) and is counted, rather than silently 202", async () => {
    // A publisher whose view keeps a record for 30 s: long enough to still list a node that died without deregistering.
    const { sidecar } = await instance("publisher2", "publisher2", [], ["registry.ttl=30s"]);
    const base = apiUrl(sidecar);
    const alive = await instance("alive", "alive", [{ topic: "crash.topic", path: "/events" }]);
    const ghost = await instance("ghost", "ghost", [{ topic: "crash.topic", path: "/events" }]);
    await waitFor(async () => (await registryNodes(base, "ghost")).length === 1 && (await registryNodes(base, "alive")).length === 1, "both subscribers in the view");
    // The ghost's node crashes: its record outlives it (written back as it was), its listener is gone.
    const file = readdirSync(dir).find((f) => f.startsWith("ghost.") && f.endsWith(".json"))!;
    const record = readFileSync(path.join(dir, file));
    await ghost.sidecar.close();
    writeFileSync(path.join(dir, `${file}.tmp`), record);
    renameSync(path.join(dir, `${file}.tmp`), path.join(dir, file));
    await waitFor(async () => (await registryNodes(base, "ghost")).length === 1, "the dead node's record back in the view");
    const res = await fetch(`${base}/publish/crash.topic`, { method: "POST", body: JSON.stringify({ n: 1 }) });
    assert.equal(res.status, 202, "the broker took it, and another service did");
    const body = (await res.json()) as { id: string; notTakenBy?: string[] };
    assert.deepEqual(body.notTakenBy, ["ghost"]);
    await waitFor(() => alive.app.callsTo("/events").length === 1, "the delivery to the service that took it");
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^sidecar_published_not_taken_total 1$/m);
    // A publish every subscribed service took carries no notTakenBy.
    rmSync(path.join(dir, file));
    await waitFor(async () => (await registryNodes(base, "ghost")).length === 0, "the dead node's record gone");
    const ok = (await (await fetch(`${base}/publish/crash.topic`, { method: "POST", body: JSON.stringify({ n: 2 }) })).json()) as { notTakenBy?: string[] };
    assert.equal(ok.notTakenBy, undefined);
  });

  it("a proxied request cannot forge a broker delivery", async () => {
    const target = await instance("victim", "victim", [{ topic: "secret.topic", path: "/events/secret" }]);
    await waitFor(async () => (await registryNodes(pub, "victim")).length === 1, "victim");
    const res = await fetch(`${pub}/proxy/victim/anything`, { method: "POST", headers: { "x-sidecar-deliver": "secret.topic" }, body: "{}" });
    assert.equal(res.status, 200, "an ordinary proxied call");
    assert.equal(target.app.callsTo("/events/secret").length, 0);
  });
});
