import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { TestApp } from "../support/app.js";
import { registryNodes, rpc, SidecarProcess, teardown, testSettings, waitFor } from "../support/sidecar.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const traceOf = (tp: unknown) => String(tp).split("-")[1];
const spanOf = (tp: unknown) => String(tp).split("-")[2];

/** x-request-id and traceparent in every log line about a request, on both sidecars of a call (log.requests). */
describe("request ids and traces in the logs", () => {
  let dir: string;
  let callee: TestApp;
  let caller: SidecarProcess;
  let server: SidecarProcess;
  const apps: TestApp[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-reqlog-"));
    callee = await TestApp.start("traced");
    const callerApp = await TestApp.start("tracer");
    apps.push(callee, callerApp);
    const extra = ["log.requests=true", "log.level=debug"];
    [server, caller] = await Promise.all([
      SidecarProcess.start(testSettings({ service: "traced", appPort: callee.port, registry: { dir }, extra })),
      SidecarProcess.start(testSettings({ service: "tracer", appPort: callerApp.port, registry: { dir }, extra })),
    ]);
    await waitFor(async () => (await registryNodes(caller.apiUrl, "traced")).length === 1, "traced in the view");
  });

  after(async () => {
    await teardown({ procs: [caller, server], apps });
    rmSync(dir, { recursive: true, force: true });
  });

  const accessLine = (p: SidecarProcess, requestId: string, listener: string) =>
    waitFor(() => p.lines.find((l) => l.message === "request" && l.requestId === requestId && l.listener === listener), `the ${listener} access line of ${requestId}`);

  it("one call: the caller's api line, the callee's inbound line and the app share the request id and the trace; each hop is its own span", async () => {
    const given = `00-${TRACE}-00f067aa0ba902b7-01`;
    const r = await rpc(caller.apiUrl, { service: "traced", endpoint: "Traced.Go" }, { headers: { traceparent: given, "x-request-id": "req-logs-1" } });
    assert.equal(r.status, 200);
    const out = await accessLine(caller, "req-logs-1", "api");
    const inn = await accessLine(server, "req-logs-1", "inbound");
    assert.equal(out.method, "POST");
    assert.equal(out.path, "/rpc");
    assert.equal(out.status, 200);
    assert.equal(typeof out.durationMs, "number");
    assert.equal(inn.status, 200);
    const seen = callee.calls.at(-1)!.headers;
    assert.equal(seen["x-request-id"], "req-logs-1");
    for (const tp of [out.traceparent, inn.traceparent, seen.traceparent]) assert.equal(traceOf(tp), TRACE, String(tp));
    const spans = new Set([spanOf(given), spanOf(out.traceparent), spanOf(inn.traceparent)]);
    assert.equal(spans.size, 3, "the caller's sidecar and the callee's sidecar each add a span");
    assert.equal(seen.traceparent, inn.traceparent, "the app's parent span is its sidecar's");
  });

  it("without ids from the app: the sidecar makes them, answers with the request id and logs both on both hops", async () => {
    const r = await rpc(caller.apiUrl, { service: "traced", endpoint: "Traced.Go" });
    const id = r.headers.get("x-request-id")!;
    assert.ok(id);
    const out = await accessLine(caller, id, "api");
    const inn = await accessLine(server, id, "inbound");
    assert.match(String(out.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(traceOf(inn.traceparent), traceOf(out.traceparent));
  });

  it("a failed call: the error line and the access line both carry the request id and the trace", async () => {
    const r = await rpc(caller.apiUrl, { service: "nobody", endpoint: "X.Y" }, { headers: { "x-request-id": "req-logs-404", traceparent: `00-${TRACE}-1111111111111111-01` } });
    assert.equal(r.status, 404);
    assert.equal(r.body.error.requestId, "req-logs-404");
    const refused = await waitFor(() => caller.lines.find((l) => l.message === "request refused" && l.requestId === "req-logs-404"), "the error line");
    assert.equal(refused.code, "SERVICE_NOT_FOUND");
    assert.equal(traceOf(refused.traceparent), TRACE);
    const out = await accessLine(caller, "req-logs-404", "api");
    assert.equal(out.status, 404);
    assert.equal(out.traceparent, refused.traceparent);
  });
});
