import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, rpc, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

const DEPTH = 100_000;
const deepArray = "[".repeat(DEPTH) + "]".repeat(DEPTH);
const deepObject = '{"a":'.repeat(DEPTH) + "1" + "}".repeat(DEPTH);

/**
 * Input a hostile or careless app sends: every case is a 4xx with the JSON error body and a stable
 * code, never a 500, and the sidecar keeps serving (the last call of each test still works).
 */
describe("hostile input to the api listener", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let callee: TestApp;
  let subscriber: TestApp;

  const stillServes = async () => {
    const r = await rpc(base, { service: "greeter", endpoint: "Greeter.Hello", request: { n: 1 } });
    assert.equal(r.status, 200, "the sidecar still serves calls");
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-hostile-"));
    callee = await TestApp.start("callee");
    subscriber = await TestApp.start("subscriber");
    const client = await TestApp.start("client");
    apps.push(callee, subscriber, client);
    sidecars.push(await startSidecar(testSettings({ service: "greeter", appPort: callee.port, registry: { dir } })));
    sidecars.push(await startSidecar(testSettings({ service: "orders", appPort: subscriber.port, registry: { dir }, extra: [`subscriptions=${JSON.stringify([{ topic: "orders.>", path: "/events" }])}`] })));
    const s = await startSidecar(testSettings({ service: "client", appPort: client.port, registry: { dir } }));
    sidecars.push(s);
    base = apiUrl(s);
    await waitFor(async () => (await fetch(`${base}/registry/greeter`)).status === 200 && (await fetch(`${base}/registry/orders`)).status === 200, "greeter and orders in the view");
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("100,000-deep nesting in service, endpoint, method, timeout or retries answers 400, not 500 (stack overflow)", async () => {
    for (const field of ["service", "endpoint", "method", "timeout", "retries"]) {
      for (const deep of [deepArray, deepObject]) {
        const fields: Record<string, string> = { service: '"greeter"', endpoint: '"Greeter.Hello"' };
        if (field === "method") delete fields.endpoint;
        fields[field] = deep;
        const body = `{${Object.entries(fields).map(([k, v]) => `"${k}":${v}`).join(",")}}`;
        const r = await rpc(base, body);
        assert.equal(r.status, 400, `${field} = ${deep.slice(0, 6)}...: ${JSON.stringify(r.body).slice(0, 200)}`);
        assert.match(r.body.error.code, /^(INVALID_REQUEST|INVALID_NAME)$/);
        assert.ok(r.body.error.message.length < 400, "the bad value is shown short");
      }
    }
    await stillServes();
  });

  it("a 100,000-deep envelope at the top level answers 400", async () => {
    for (const deep of [deepArray, deepObject]) {
      const r = await rpc(base, deep);
      assert.equal(r.status, 400, JSON.stringify(r.body).slice(0, 200));
    }
    await stillServes();
  });

  it("a deep request under an escaped key (req\\u0075est) passes as the caller's bytes, not re-encoded (stack overflow)", async () => {
    const r = await rpc(base, `{"service":"greeter","endpoint":"Greeter.Hello","req\\u0075est":${deepArray}}`);
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 200));
    assert.equal(callee.calls.at(-1)!.body, deepArray, "the app got the request member's exact bytes");
    await stillServes();
  });

  it("/publish with a malformed percent-escape (%ZZ) answers 400 INVALID_TOPIC, not 500 (URIError)", async () => {
    for (const topic of ["%ZZ", "orders.%E0%A4%A", "%"]) {
      const res = await fetch(`${base}/publish/${topic}`, { method: "POST", body: "{}" });
      assert.equal(res.status, 400, topic);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_TOPIC");
    }
  });

  it("/registry/{service} with a malformed percent-escape answers 400 INVALID_NAME", async () => {
    const res = await fetch(`${base}/registry/%ZZ`);
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_NAME");
  });

  it("control characters in a topic (%00, %01, %1f, %7f, %c2%85) are refused with 400 INVALID_TOPIC and reach no subscriber", async () => {
    const before = subscriber.callsTo("/events").length;
    for (const c of ["%00", "%01", "%1f", "%7f", "%C2%85"]) {
      const res = await fetch(`${base}/publish/orders.a${c}b`, { method: "POST", body: "{}" });
      assert.equal(res.status, 400, c);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_TOPIC", c);
    }
    // A good publish after them is the only delivery.
    assert.equal((await fetch(`${base}/publish/orders.ok`, { method: "POST", body: "{}" })).status, 202);
    await waitFor(() => subscriber.callsTo("/events").length === before + 1, "the good message delivered");
    assert.equal(subscriber.callsTo("/events").at(-1)!.headers["x-sidecar-topic"], "orders.ok");
  });

  it("a message whose headers are over 8 KiB is refused with 431 MESSAGE_HEADERS_TOO_LARGE (1-byte bodies must not cost 12 KiB each)", async () => {
    const res = await fetch(`${base}/publish/orders.big`, { method: "POST", headers: { "x-sidecar-tenant": "t".repeat(12 * 1024) }, body: "x" });
    assert.equal(res.status, 431);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "MESSAGE_HEADERS_TOO_LARGE");
    // Many ce-* headers under the HTTP limit but over the message limit, too.
    const many: Record<string, string> = {};
    for (let i = 0; i < 10; i++) many[`ce-ext${i}`] = "v".repeat(1000);
    const res2 = await fetch(`${base}/publish/orders.big`, { method: "POST", headers: many, body: "x" });
    assert.equal(res2.status, 431);
    const ok = await fetch(`${base}/publish/orders.big`, { method: "POST", headers: { "x-sidecar-tenant": "t".repeat(4 * 1024) }, body: "x" });
    assert.equal(ok.status, 202, "a message under the limit goes through");
  });

  it("an app may not set the sidecar's own message headers (x-sidecar-caller, -deliver, -mesh-token, -attempt...) on a publish: 400", async () => {
    for (const name of ["x-sidecar-caller", "x-sidecar-deliver", "x-sidecar-mesh-token", "x-sidecar-attempt", "x-sidecar-topic", "x-sidecar-dead-reason", "x-sidecar-service"]) {
      const res = await fetch(`${base}/publish/orders.forged`, { method: "POST", headers: { [name]: "evil" }, body: "{}" });
      assert.equal(res.status, 400, name);
      const err = ((await res.json()) as { error: { code: string; message: string } }).error;
      assert.equal(err.code, "INVALID_REQUEST");
      assert.match(err.message, new RegExp(name));
    }
  });
});
