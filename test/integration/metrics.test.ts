import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** The value of one sample in Prometheus text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}

/** GET /metrics in Prometheus text, on real sidecars and a real nats-server. */
describe("metrics", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let bad: TestApp;

  before(async () => {
    nats = await NatsServer.start();
    const s = (service: string, app: TestApp, extra: string[] = []) => startSidecar(testSettings({ service, appPort: app.port, registry: { nats: nats.url }, extra }));
    const callerApp = await TestApp.start("caller");
    const good = await TestApp.start("good");
    bad = await TestApp.start("bad");
    const sub = await TestApp.start("sub");
    apps.push(callerApp, good, bad, sub);
    const caller = await s("client", callerApp);
    sidecars.push(caller, await s("svc", good), await s("svc", bad), await s("listener", sub, ['subscriptions=[{"topic": "m.events", "path": "/events"}]']));
    base = apiUrl(caller);
    await waitFor(async () => (await registryNodes(base, "svc")).length === 2 && (await registryNodes(base, "listener")).length === 1, "nodes");
  });

  after(() => teardown({ sidecars, apps, nats }));

  it("counts calls by service, endpoint and status, latency, failovers and ejections; gauges nodes, NATS and the app", async () => {
    bad.failStatus = 500;
    for (let i = 0; i < 10; i++) await rpc(base, { service: "svc", endpoint: "Svc.Call" });
    await rpc(base, { service: "nobody", endpoint: "A.b" });
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const ok = sample(text, "sidecar_calls_total", { service: "svc", endpoint: "Svc.Call", status: "200" })!;
    const failed = sample(text, "sidecar_calls_total", { service: "svc", endpoint: "Svc.Call", status: "500" })!;
    assert.equal(ok + failed, 10);
    assert.equal(failed, 3, "three 500s, then the bad node is ejected");
    assert.equal(sample(text, "sidecar_calls_total", { service: "other", endpoint: "other", status: "404" }), 1, "a service the registry does not know is counted as other");
    assert.equal(sample(text, "sidecar_calls_total", { service: "nobody" }), undefined);
    assert.equal(sample(text, "sidecar_ejections_total", { service: "svc" }), 1);
    assert.equal(sample(text, "sidecar_call_duration_seconds_count", { service: "svc" }), 10);
    assert.ok(sample(text, "sidecar_call_duration_seconds_bucket", { service: "svc", le: "0.1" })! >= 9);
    assert.equal(sample(text, "sidecar_registry_nodes", { service: "svc" }), 2);
    const watching = ((await (await fetch(`${base}/status`)).json()) as { watching: { services: { service: string }[] } }).watching.services;
    assert.ok(watching.some((w) => w.service === "svc"), "svc is watched: it was called");
    assert.equal(sample(text, "sidecar_registry_watched_services"), watching.length, "the services watched, as /status lists them");
    assert.equal(sample(text, "sidecar_nats_connected"), 1);
    assert.equal(sample(text, "sidecar_app_healthy"), 1);
    assert.equal(sample(text, "sidecar_calls_in_flight"), 0);
    assert.ok(sample(text, "sidecar_process_resident_memory_bytes")! > 0);
  });

  it("counts deliveries per subscription", async () => {
    for (let i = 0; i < 3; i++) await fetch(`${base}/publish/m.events`, { method: "POST", body: "{}" });
    await waitFor(() => apps[3]!.callsTo("/events").length === 3, "deliveries");
    const text = await (await fetch(`${apiUrl(sidecars[3]!)}/metrics`)).text();
    assert.equal(sample(text, "sidecar_deliveries_total", { subscription: "m.events", topic: "m.events" }), 3);
    assert.equal(sample(text, "sidecar_dead_letters_total", { subscription: "m.events" }), 0);
    assert.equal(sample(text, "sidecar_messages_dropped_total", { subscription: "m.events" }), 0);
  });

  it("requests refused before any service is known are counted under service=\"\"", async () => {
    const bad = await fetch(`${base}/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    assert.equal(bad.status, 400);
    assert.equal((await rpc(base, { service: "not a name!", endpoint: "A.b" })).status, 400);
    assert.equal((await fetch(`${base}/proxy/-bad/x`)).status, 400);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.equal(sample(text, "sidecar_calls_total", { service: "", endpoint: "", status: "400" }), 3);
    assert.equal(sample(text, "sidecar_call_duration_seconds_count", { service: "" }), undefined, "no latency for requests that never became calls");
  });

  it("promtool check metrics is clean: cumulative counts are counters, in-flight counts gauges", async () => {
    await rpc(base, { service: "svc", endpoint: "Svc.Call" });
    await fetch(`${base}/rpc`, { method: "POST", body: "{not json" });
    for (const s of [base, apiUrl(sidecars[3]!)]) {
      const text = await (await fetch(`${s}/metrics`)).text();
      const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      assert.equal(check.error, undefined, "promtool (Debian package prometheus) must be installed");
      assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
      assert.equal(check.stdout + check.stderr, "", "no lint findings");
    }
    const text = await (await fetch(`${apiUrl(sidecars[3]!)}/metrics`)).text();
    const type = (name: string) => new RegExp(`^# TYPE ${name} (\\w+)$`, "m").exec(text)?.[1];
    for (const name of ["sidecar_deliveries_total", "sidecar_delivery_retries_total", "sidecar_dead_letters_total", "sidecar_messages_dropped_total", "sidecar_calls_total", "sidecar_retries_total", "sidecar_ejections_total"]) {
      assert.equal(type(name), "counter", name);
    }
    for (const name of ["sidecar_deliveries_in_flight", "sidecar_calls_in_flight", "sidecar_registry_nodes", "sidecar_app_healthy"]) assert.equal(type(name), "gauge", name);
    assert.equal(type("sidecar_call_duration_seconds"), "histogram");
  });
});
