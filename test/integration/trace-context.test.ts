import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, registryNodes, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const traceOf = (tp: unknown) => String(tp).split("-")[1];

/** POST /rpc with headers as raw [name, value] pairs, so a header can be sent twice. */
function rawRpc(base: string, headers: [string, string][], envelope: unknown): Promise<number> {
  const url = new URL(`${base}/rpc`);
  const body = JSON.stringify(envelope);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method: "POST", path: "/rpc", headers: ["host", url.host, ...headers.flat(), "content-type", "application/json", "content-length", String(Buffer.byteLength(body))] });
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** What the callee app receives through a sidecar pair (app → sidecar A → sidecar B → app B), W3C Trace Context. */
describe("trace context through a sidecar pair", () => {
  let dir: string;
  let callee: TestApp;
  let base: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-trace-"));
    callee = await TestApp.start("traced");
    const callerApp = await TestApp.start("tracer");
    apps.push(callee, callerApp);
    sidecars.push(await startSidecar(testSettings({ service: "traced", appPort: callee.port, registry: { dir }, extra: ['subscriptions=[{"topic": "trace.events", "path": "/events"}]'] })));
    sidecars.push(await startSidecar(testSettings({ service: "tracer", appPort: callerApp.port, registry: { dir } })));
    base = apiUrl(sidecars[1]!);
    await waitFor(async () => (await registryNodes(base, "traced")).length === 1, "traced in the view");
  });

  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  /** The traceparent and tracestate the callee app received for one call. */
  const received = async (headers: [string, string][]) => {
    const id = `trace-${Math.random().toString(36).slice(2)}`;
    assert.equal(await rawRpc(base, [...headers, ["x-request-id", id]], { service: "traced", endpoint: "Traced.Go" }), 200);
    const call = await waitFor(() => callee.calls.find((c) => c.headers["x-request-id"] === id), "the call at the app");
    return { traceparent: call.headers.traceparent, tracestate: call.headers.tracestate };
  };

  it("tracestate travels hop to hop with the trace id kept", async () => {
    const got = await received([["traceparent", `00-${TRACE}-${PARENT}-01`], ["tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]]);
    assert.equal(traceOf(got.traceparent), TRACE);
    assert.notEqual(String(got.traceparent).split("-")[2], PARENT);
    assert.equal(got.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  });

  it("a higher-version traceparent keeps its trace id (parsed as version 00)", async () => {
    for (const tp of [`cc-${TRACE}-${PARENT}-01`, `01-${TRACE}-${PARENT}-01-future-field`]) {
      const got = await received([["traceparent", tp], ["tracestate", "foo=1"]]);
      assert.equal(got.traceparent?.toString().slice(0, 3), "00-", tp);
      assert.equal(traceOf(got.traceparent), TRACE, tp);
      assert.equal(got.tracestate, "foo=1");
    }
  });

  it("an all-zero parent id is invalid: a new trace, and its tracestate dropped", async () => {
    const got = await received([["traceparent", `00-${TRACE}-${"0".repeat(16)}-01`], ["tracestate", "foo=1"]]);
    assert.notEqual(traceOf(got.traceparent), TRACE);
    assert.equal(got.tracestate, undefined);
  });

  it("a tracestate without a traceparent is dropped", async () => {
    const got = await received([["tracestate", "foo=1,bar=2"]]);
    assert.match(String(got.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(got.tracestate, undefined);
  });

  it("two traceparent headers are invalid: a new trace", async () => {
    const got = await received([["traceparent", `00-${TRACE}-${PARENT}-01`], ["traceparent", `00-${TRACE}-${PARENT}-01`], ["tracestate", "foo=1"]]);
    assert.notEqual(traceOf(got.traceparent), TRACE);
    assert.equal(got.tracestate, undefined);
  });

  it("two tracestate headers are joined in order", async () => {
    const got = await received([["traceparent", `00-${TRACE}-${PARENT}-01`], ["tracestate", "foo=1,bar=2"], ["tracestate", ""], ["tracestate", "baz=3"]]);
    assert.equal(got.tracestate, "foo=1,bar=2,baz=3");
  });

  it("an invalid tracestate (33 members, a duplicated key, a bad key) is dropped and the trace kept", async () => {
    const members = Array.from({ length: 33 }, (_, i) => `k${i}=${i}`).join(",");
    for (const ts of [members, "foo=1,foo=2", "FOO=1"]) {
      const got = await received([["traceparent", `00-${TRACE}-${PARENT}-01`], ["tracestate", ts]]);
      assert.equal(traceOf(got.traceparent), TRACE);
      assert.equal(got.tracestate, undefined, ts);
    }
  });

  it("a published message carries the trace and its tracestate to the subscriber's app", async () => {
    const res = await fetch(`${base}/publish/trace.events`, { method: "POST", headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: "foo=1 , bar=2" }, body: "{}" });
    assert.equal(res.status, 202);
    const d = await waitFor(() => callee.callsTo("/events")[0], "the delivery");
    assert.equal(traceOf(d.headers.traceparent), TRACE);
    assert.equal(d.headers.tracestate, "foo=1,bar=2");
  });
});
