import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_SERVICES, Metrics, type MetricSources } from "../../src/metrics.js";

/** A Metrics fed from plain values, as the sidecar feeds it from its own state at scrape time. */
function metricsWith(subscriptions: Record<string, unknown>[] = []): Metrics {
  const sources: MetricSources = { nodes: () => [], subscriptions: () => subscriptions, natsConnected: () => undefined, appHealthy: () => true, callsInFlight: () => 0 };
  return new Metrics(sources);
}

function sample(text: string, line: RegExp): number | undefined {
  const m = new RegExp(`^${line.source} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

describe("metrics", () => {
  it("subscription totals are counters that never go down, across a subscription restart", async () => {
    const sub: Record<string, unknown> = { name: "orders", topic: "orders.created", delivered: 3, retried: 0, deadLettered: 0, dropped: 0, inFlight: 2 };
    const m = metricsWith([sub]);
    const delivered = /sidecar_deliveries_total\{subscription="orders",topic="orders.created"\}/;
    let text = await m.text();
    assert.match(text, /^# TYPE sidecar_deliveries_total counter$/m);
    assert.match(text, /^# TYPE sidecar_deliveries_in_flight gauge$/m);
    assert.equal(sample(text, delivered), 3);
    assert.equal(sample(text, /sidecar_dead_letters_total\{subscription="orders",topic="orders.created"\}/), 0, "a zero total is a series too");
    sub.delivered = 5;
    assert.equal(sample(await m.text(), delivered), 5);
    assert.equal(sample(await m.text(), delivered), 5, "a scrape with nothing new adds nothing");
    sub.delivered = 1; // restarted: its own count began again
    assert.equal(sample(await m.text(), delivered), 6);
  });

  it(`at most ${MAX_SERVICES} service label values; past them calls count as other`, async () => {
    const m = metricsWith();
    for (let i = 0; i < MAX_SERVICES + 50; i++) m.call(`svc-${i}`, "A.b", 200, 0.001);
    const text = await m.text();
    const services = new Set([...text.matchAll(/^sidecar_calls_total\{service="([^"]*)"/gm)].map((x) => x[1]));
    assert.equal(services.size, MAX_SERVICES + 1);
    assert.equal(sample(text, /sidecar_calls_total\{service="other",endpoint="other",status="200"\}/), 50);
  });

  it("a forgotten service's series are dropped", async () => {
    const m = metricsWith();
    m.call("gone", "A.b", 200, 0.001);
    m.retry("gone", "failover");
    m.ejection("gone");
    m.call("stays", "A.b", 200, 0.001);
    m.forget("gone");
    const text = await m.text();
    assert.doesNotMatch(text, /service="gone"/);
    assert.match(text, /service="stays"/);
  });

  it("requests refused before they became calls count under service=\"\", without latency", async () => {
    const m = metricsWith();
    m.refused(400);
    m.refused(400);
    m.refused(413);
    const text = await m.text();
    assert.equal(sample(text, /sidecar_calls_total\{service="",endpoint="",status="400"\}/), 2);
    assert.equal(sample(text, /sidecar_calls_total\{service="",endpoint="",status="413"\}/), 1);
    assert.doesNotMatch(text, /sidecar_call_duration_seconds_count\{service=""\}/);
  });
});
