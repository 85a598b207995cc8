import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/log.js";
import { LocalRegistry } from "../../src/registry/local.js";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, rpc, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

/** Every error of the /rpc slice answers the JSON body with its stable code, and the sidecar keeps serving. */
describe("/rpc answers and errors (local registry)", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let callee: TestApp;

  const start = async (service: string, app: TestApp, extra: string[] = []) => {
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra }));
    sidecars.push(s);
    return s;
  };
  const known = (service: string) => waitFor(async () => (await fetch(`${base}/registry/${service}`)).status === 200, `'${service}' in the view`);

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-err-"));
    callee = await TestApp.start("callee");
    const callerApp = await TestApp.start("caller");
    apps.push(callee, callerApp);
    await start("greeter", callee);
    const caller = await start("client", callerApp, ["api.maxBody=2KiB", "api.headersTimeout=400ms", "api.requestTimeout=800ms"]);
    base = apiUrl(caller);
    await known("greeter");
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("the envelope's request reaches the app as the caller's exact bytes (big integers, escapes, spacing)", async () => {
    const request = '{"id": 12345678901234567890, "name": "caf\\u00e9"}';
    const r = await rpc(base, `{"service": "greeter", "endpoint": "Greeter.Hello", "request": ${request}}`);
    assert.equal(r.status, 200);
    assert.equal(callee.calls.at(-1)!.body, request);
    assert.equal(callee.calls.at(-1)!.headers["content-type"], "application/json");
  });

  it("passes the callee's status, content type and body through unchanged", async () => {
    const r = await rpc(base, { service: "greeter", endpoint: "/status/418" });
    assert.equal(r.status, 418);
    assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(r.body, "status 418 from callee");
    assert.ok(r.headers.get("x-request-id"));
    assert.equal(r.headers.get("x-sidecar-refused"), null);
  });

  it("carries x-request-id end to end; without mesh.token the app is not told a caller name it cannot trust", async () => {
    const r = await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" }, { headers: { "x-request-id": "req-42" } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-request-id"), "req-42");
    const seen = callee.calls.at(-1)!;
    assert.equal(seen.headers["x-request-id"], "req-42");
    assert.equal(seen.headers["x-sidecar-caller"], undefined, "no mesh.token here: the name is only a claim (see internal-headers.test.ts for the vouched one)");
    assert.equal(seen.headers["content-type"], "application/json");
    assert.equal(seen.body, "{}", "an absent request is sent as {}");
  });

  it("W3C traceparent: a caller's trace id is kept with a new parent id; one is started when absent", async () => {
    const given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" }, { headers: { traceparent: given, tracestate: "vendor=x" } });
    const seen = callee.calls.at(-1)!.headers;
    assert.match(String(seen.traceparent), /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    assert.notEqual(seen.traceparent, given, "this hop's own parent id");
    assert.equal(seen.tracestate, "vendor=x");
    await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" });
    assert.match(String(callee.calls.at(-1)!.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" }, { headers: { traceparent: "garbage" } });
    assert.match(String(callee.calls.at(-1)!.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  it("raw form: POST /rpc/{service}/{endpoint} passes any body and content type", async () => {
    const res = await fetch(`${base}/rpc/greeter/Greeter.Hello?x=1`, { method: "POST", headers: { "content-type": "text/csv" }, body: "a,b\n1,2" });
    assert.equal(res.status, 200);
    const seen = callee.calls.at(-1)!;
    assert.equal(seen.path, "/Greeter/Hello?x=1");
    assert.equal(seen.headers["content-type"], "text/csv");
    assert.equal(seen.body, "a,b\n1,2");
  });

  const bad: { name: string; send: () => Promise<Response>; status: number; code: string }[] = [
    { name: "malformed JSON", send: () => post("{bad"), status: 400, code: "BAD_JSON" },
    { name: "a JSON array", send: () => post("[1,2]"), status: 400, code: "INVALID_REQUEST" },
    { name: "missing service", send: () => post({ endpoint: "A.b" }), status: 400, code: "INVALID_REQUEST" },
    { name: "service of the wrong type", send: () => post({ service: 7, endpoint: "A.b" }), status: 400, code: "INVALID_REQUEST" },
    { name: "missing endpoint", send: () => post({ service: "greeter" }), status: 400, code: "INVALID_REQUEST" },
    { name: "endpoint of the wrong type", send: () => post({ service: "greeter", endpoint: ["A"] }), status: 400, code: "INVALID_REQUEST" },
    { name: "endpoint with a traversal", send: () => post({ service: "greeter", endpoint: "/a/../admin" }), status: 400, code: "INVALID_REQUEST" },
    { name: "endpoint with spaces", send: () => post({ service: "greeter", endpoint: "Greeter Hello" }), status: 400, code: "INVALID_REQUEST" },
    { name: "service with a path traversal", send: () => post({ service: "../etc", endpoint: "A.b" }), status: 400, code: "INVALID_NAME" },
    { name: "service with spaces", send: () => post({ service: "my service", endpoint: "A.b" }), status: 400, code: "INVALID_NAME" },
    { name: "service of 1000 characters", send: () => post({ service: "a".repeat(1000), endpoint: "A.b" }), status: 400, code: "INVALID_NAME" },
    { name: "service of 1000 characters, raw form", send: () => fetch(`${base}/rpc/${"a".repeat(1000)}/A.b`, { method: "POST", body: "x" }), status: 400, code: "INVALID_NAME" },
    { name: "negative timeout", send: () => post({ service: "greeter", endpoint: "A.b", timeout: -1 }), status: 400, code: "INVALID_REQUEST" },
    { name: "unparseable timeout header", send: () => post({ service: "greeter", endpoint: "A.b" }, { "x-sidecar-timeout": "soon" }), status: 400, code: "INVALID_REQUEST" },
    { name: "unknown service", send: () => post({ service: "nobody", endpoint: "A.b" }), status: 404, code: "SERVICE_NOT_FOUND" },
    { name: "raw form without endpoint", send: () => fetch(`${base}/rpc/greeter`, { method: "POST", body: "x" }), status: 400, code: "INVALID_REQUEST" },
    { name: "GET on /rpc", send: () => fetch(`${base}/rpc`), status: 405, code: "METHOD_NOT_ALLOWED" },
    { name: "PUT on /registry", send: () => fetch(`${base}/registry`, { method: "PUT" }), status: 405, code: "METHOD_NOT_ALLOWED" },
    { name: "POST on /registry without a body (micro's registration)", send: () => fetch(`${base}/registry`, { method: "POST" }), status: 400, code: "BAD_JSON" },
    { name: "a body over api.maxBody", send: () => post({ service: "greeter", endpoint: "A.b", request: "x".repeat(4096) }), status: 413, code: "BODY_TOO_LARGE" },
    { name: "an unknown route", send: () => fetch(`${base}/nope`), status: 404, code: "NOT_FOUND" },
    { name: "an invalid name in /registry/{service}", send: () => fetch(`${base}/registry/bad%20name`), status: 400, code: "INVALID_NAME" },
    { name: "an unknown service in /registry/{service}", send: () => fetch(`${base}/registry/nobody`), status: 404, code: "SERVICE_NOT_FOUND" },
  ];
  function post(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${base}/rpc`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  }

  for (const c of bad) {
    it(`${c.name} → ${c.status} ${c.code}, and the sidecar keeps serving`, async () => {
      const calls = callee.callCount();
      const res = await c.send();
      assert.equal(res.status, c.status);
      assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
      const body = (await res.json()) as { error: { code: string; message: string; requestId: string } };
      assert.equal(body.error.code, c.code);
      assert.ok(body.error.message.length > 10, "a message naming the problem");
      assert.ok(body.error.requestId, "a request id");
      assert.equal(callee.callCount(), calls, "nothing reached the app");
      assert.equal((await fetch(`${base}/health/live`)).status, 200);
    });
  }

  it("after a 413 mid-upload the connection is closed, so the client's next request is not stuck behind it", async () => {
    const big = "x".repeat(3 * 1024 * 1024);
    const res = await fetch(`${base}/rpc/greeter/Files.Put`, { method: "POST", body: big });
    assert.equal(res.status, 413);
    assert.equal(res.headers.get("connection"), "close");
    await res.arrayBuffer();
    const t0 = Date.now();
    const r = await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" });
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 1000, `next call took ${Date.now() - t0}ms`);
  });

  it("requests too broken for a handler still get a JSON error: huge headers → 431, garbage → 400", async () => {
    const { port } = new URL(base);
    const raw = async (text: string) => {
      const net = await import("node:net");
      return new Promise<string>((resolve) => {
        const sock = net.connect(Number(port), "127.0.0.1", () => sock.write(text));
        let out = "";
        sock.on("data", (c) => (out += c.toString()));
        sock.on("close", () => resolve(out));
        sock.on("error", () => resolve(out));
      });
    };
    const huge = await raw(`GET /registry HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(huge, /"code":"HEADERS_TOO_LARGE"/);
    const garbage = await raw("NOT AN HTTP REQUEST\r\n\r\n");
    assert.match(garbage, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(garbage, /"code":"BAD_REQUEST"/);
    assert.equal((await fetch(`${base}/health/live`)).status, 200, "and keeps serving");
  });

  it("slow clients: headers or a body trickled past api.headersTimeout / api.requestTimeout get 408 REQUEST_TIMEOUT, and the sidecar keeps serving", async () => {
    const { port } = new URL(base);
    const net = await import("node:net");
    // Sends `head` at once, then one byte of `trickle` every 100 ms (bounded: at most 40 bytes, 4 s)
    // until the sidecar answers and closes.
    const slow = (head: string, trickle: string) =>
      new Promise<{ text: string; ms: number }>((resolve) => {
        const t0 = Date.now();
        const sock = net.connect(Number(port), "127.0.0.1", () => sock.write(head));
        let i = 0;
        const timer = setInterval(() => {
          if (i >= Math.min(trickle.length, 40) || sock.destroyed) return clearInterval(timer);
          sock.write(trickle[i++]!);
        }, 100);
        let text = "";
        sock.on("data", (c) => (text += c.toString()));
        const done = () => {
          clearInterval(timer);
          resolve({ text, ms: Date.now() - t0 });
        };
        sock.on("close", done);
        sock.on("error", done);
        setTimeout(() => sock.destroy(), 4_000);
      });
    const headers = await slow("POST /rpc HTTP/1.1\r\nhost: x\r\n", "x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert.match(headers.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(headers.text, /"code":"REQUEST_TIMEOUT"/);
    assert.ok(headers.ms < 2_500, `cut after ${headers.ms}ms`);
    const body = await slow("POST /rpc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n", `{"service": "greeter", "endpoint": "Greeter.Hello", "request": "${"x".repeat(100)}"}`);
    assert.match(body.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.ok(body.ms < 3_000, `cut after ${body.ms}ms`);
    const r = await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" });
    assert.equal(r.status, 200, "and keeps serving");
  });

  it("a call past its timeout answers 504 promptly and aborts the upstream request", async () => {
    const aborted = callee.aborted;
    const t0 = Date.now();
    const r = await rpc(base, { service: "greeter", endpoint: "/slow?ms=3000", timeout: 200 });
    const took = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.equal(r.body.error.code, "TIMEOUT");
    assert.ok(took < 1000, `answered after ${took}ms`);
    // The remaining deadline travelled to the callee's app.
    const seen = callee.calls.at(-1)!;
    assert.ok(Number(seen.headers["x-sidecar-timeout"]) <= 200);
    await waitFor(() => callee.aborted > aborted, "the app's request to be aborted", 2000);
  });

  it("a caller that goes away cancels the call all the way to the app", async () => {
    const aborted = callee.aborted;
    const calls = callee.callCount();
    const ac = new AbortController();
    const pending = fetch(`${base}/rpc`, { method: "POST", body: JSON.stringify({ service: "greeter", endpoint: "/slow?ms=5000" }), signal: ac.signal });
    await waitFor(() => callee.callCount() > calls, "the call to reach the app");
    ac.abort();
    await assert.rejects(pending);
    await waitFor(() => callee.aborted > aborted, "the app's request to be aborted", 2000);
    assert.equal((await fetch(`${base}/health/live`)).status, 200);
  });

  it("the x-sidecar-timeout header sets the deadline too", async () => {
    const r = await rpc(base, { service: "greeter", endpoint: "/slow?ms=3000" }, { headers: { "x-sidecar-timeout": "150" } });
    assert.equal(r.status, 504);
  });

  it("a registered node whose sidecar is unreachable → 502 UPSTREAM_UNREACHABLE", async () => {
    const registry = await LocalRegistry.open({ dir, ttl: 1500 }, silentLogger());
    await registry.register({
      id: "ghost-1", service: "ghost", version: "1", address: "127.0.0.1:1", transport: "http",
      metadata: {}, endpoints: [], subscriptions: [], registeredAt: new Date().toISOString(),
    });
    await known("ghost");
    const r = await rpc(base, { service: "ghost", endpoint: "A.b" });
    assert.equal(r.status, 502);
    assert.equal(r.body.error.code, "UPSTREAM_UNREACHABLE");
    assert.match(r.body.error.message, /ghost-1: ECONNREFUSED/);
    await registry.deregister("ghost-1");
  });

  it("a callee whose app went away before its health check noticed → 502 APP_UNREACHABLE", async () => {
    const app = await TestApp.start("fragile");
    await start("fragile", app, ["app.health.interval=1m"]);
    await known("fragile");
    await app.stop();
    const r = await rpc(base, { service: "fragile", endpoint: "A.b" });
    assert.equal(r.status, 502);
    assert.equal(r.body.error.code, "APP_UNREACHABLE");
  });

  it("a known service whose only node is unhealthy → 503 NO_HEALTHY_NODE with Retry-After", async () => {
    const app = await TestApp.start("lonely");
    apps.push(app);
    const s = await start("lonely", app);
    await known("lonely");
    app.healthy = false;
    await waitFor(() => !s.registered, "the lonely node to deregister");
    await waitFor(async () => ((await (await fetch(`${base}/registry/lonely`)).json()) as { nodes: unknown[] }).nodes.length === 0, "the view to drop it");
    const r = await rpc(base, { service: "lonely", endpoint: "A.b" });
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, "NO_HEALTHY_NODE");
    assert.equal(r.headers.get("retry-after"), "1");
    assert.equal(app.callCount(), 0);
  });

  it("app.maxConcurrency: a call beyond the limit is refused with 503 OVERLOADED and Retry-After, before the app sees it", async () => {
    const app = await TestApp.start("narrow");
    apps.push(app);
    await start("narrow", app, ["app.maxConcurrency=1"]);
    await known("narrow");
    const first = rpc(base, { service: "narrow", endpoint: "/slow?ms=400" });
    await waitFor(() => app.callCount() === 1, "the first call to reach the app");
    const second = await rpc(base, { service: "narrow", endpoint: "/slow?ms=400" });
    assert.equal(second.status, 503);
    assert.equal(second.body.error.code, "OVERLOADED");
    assert.equal(second.headers.get("retry-after"), "1");
    assert.equal((await first).status, 200);
    assert.equal(app.callCount(), 1, "the refused call never reached the app");
    assert.equal((await rpc(base, { service: "narrow", endpoint: "Narrow.Call" })).status, 200, "free again once the first call ended");
  });

  it("/health reports each part; /health/ready follows registration", async () => {
    const h = (await (await fetch(`${base}/health`)).json()) as Record<string, string>;
    assert.deepEqual(h, { status: "ok", app: "passing", registry: "connected", broker: "connected" });
    assert.equal((await fetch(`${base}/health/ready`)).status, 200);
    const app = await TestApp.start("notyet");
    app.healthy = false;
    apps.push(app);
    const s = await start("notyet", app);
    const res = await fetch(`${apiUrl(s)}/health/ready`);
    assert.equal(res.status, 503);
    assert.match(JSON.stringify(await res.json()), /not registered/);
    const health = await fetch(`${apiUrl(s)}/health`);
    assert.equal(health.status, 503);
  });
});
