import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CloudEvent, HTTP } from "cloudevents";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp, type ReceivedCall } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** What an app's official CloudEvents SDK makes of a delivery (it throws on an invalid event). */
function asEvent(call: ReceivedCall): CloudEvent<unknown> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(call.headers)) if (typeof v === "string") headers[k] = v;
  const event = HTTP.toEvent({ headers, body: call.body }) as CloudEvent<unknown>;
  assert.equal(event.validate(), true);
  return event;
}

/**
 * CloudEvents 1.0 through the relay (spec.md, http-protocol-binding.md), checked at the
 * subscriber app with the official JS SDK, on NATS JetStream (so the de-duplication key matters).
 */
describe("CloudEvents: structured and binary publishes, checked with the CloudEvents SDK", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let pub: string;
  let sub: TestApp;

  before(async () => {
    nats = await NatsServer.start();
    const publisher = await TestApp.start("publisher");
    sub = await TestApp.start("subscriber");
    apps.push(publisher, sub);
    const list = [{ topic: "ce.>", path: "/events", durable: true }];
    const s = await startSidecar(testSettings({ service: "subscriber", appPort: sub.port, registry: { nats: nats.url }, extra: [`subscriptions=${JSON.stringify(list)}`] }));
    sidecars.push(s);
    await waitFor(async () => ((await (await fetch(`${apiUrl(s)}/subscriptions`)).json()) as { subscriptions: { state: string }[] }).subscriptions[0]?.state === "active", "the subscription active");
    const p = await startSidecar(testSettings({ service: "publisher", appPort: publisher.port, registry: { nats: nats.url } }));
    sidecars.push(p);
    pub = apiUrl(p);
  });

  after(() => teardown({ sidecars, apps, nats }));

  const publish = (topic: string, init: { headers?: Record<string, string>; body: string }) =>
    fetch(`${pub}/publish/${topic}`, { method: "POST", headers: init.headers ?? {}, body: init.body });

  it("a structured publish (application/cloudevents+json) keeps its own id, source and type: in the 202, at the app, and as the de-duplication key", async () => {
    const event = { specversion: "1.0", id: "order-42", source: "https://shop.example/orders", type: "com.example.order.created", subject: "42", datacontenttype: "application/json", data: { n: 42 } };
    const res = await publish("ce.structured", { headers: { "content-type": "application/cloudevents+json" }, body: JSON.stringify(event) });
    assert.equal(res.status, 202, await res.clone().text());
    const answer = (await res.json()) as { id: string; stored: boolean };
    assert.equal(answer.id, "order-42", "the 202 names the event's own id");
    assert.equal(answer.stored, true);
    // The same event again (a publisher's retry): JetStream de-duplicates it by the event's id.
    const again = await publish("ce.structured", { headers: { "content-type": "application/cloudevents+json" }, body: JSON.stringify(event) });
    assert.equal(again.status, 202);
    const marker = await publish("ce.marker", { headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(marker.status, 202);
    await waitFor(() => sub.callsTo("/events").some((c) => c.headers["x-sidecar-topic"] === "ce.marker"), "the marker delivered");
    const got = sub.callsTo("/events").filter((c) => c.headers["x-sidecar-topic"] === "ce.structured");
    assert.equal(got.length, 1, "stored and delivered once");
    assert.equal(got[0]!.headers["content-type"], "application/cloudevents+json");
    assert.deepEqual(Object.keys(got[0]!.headers).filter((k) => k.startsWith("ce-")), [], "structured: the attributes are in the body only");
    assert.deepEqual(JSON.parse(got[0]!.body), event, "the event as it was published");
    const e = asEvent(got[0]!);
    assert.equal(e.id, "order-42");
    assert.equal(e.source, "https://shop.example/orders");
    assert.equal(e.type, "com.example.order.created");
    assert.equal(e.subject, "42");
    assert.deepEqual(e.data, { n: 42 });
  });

  it("a binary publish is delivered as a binary event the SDK accepts, with the sidecar's defaults for missing attributes", async () => {
    const res = await publish("ce.binary", { headers: { "content-type": "application/json", "ce-id": "b-1", "ce-type": "com.example.thing", "ce-tenant": "acme" }, body: '{"n":1}' });
    assert.equal(res.status, 202);
    await waitFor(() => sub.callsTo("/events").some((c) => c.headers["x-sidecar-topic"] === "ce.binary"), "the binary event delivered");
    const e = asEvent(sub.callsTo("/events").find((c) => c.headers["x-sidecar-topic"] === "ce.binary")!);
    assert.equal(e.id, "b-1");
    assert.equal(e.type, "com.example.thing");
    assert.equal(e.source, "/sidecar/publisher");
    assert.equal(e.specversion, "1.0");
    assert.equal((e as unknown as Record<string, unknown>).tenant, "acme");
    assert.deepEqual(e.data, { n: 1 });
  });

  it("a binary publish whose ce-* names are not CloudEvents attribute names is refused 400 INVALID_CLOUDEVENT and never delivered", async () => {
    for (const name of ["ce-my_ext", "ce-my-ext", "ce-"]) {
      const res = await publish("ce.badname", { headers: { [name]: "x" }, body: "{}" });
      assert.equal(res.status, 400, name);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_CLOUDEVENT", name);
    }
    const badValues: Record<string, string>[] = [{ "ce-specversion": "0.1" }, { "ce-time": "yesterday" }, { "ce-id": "" }, { "ce-datacontenttype": "application/json" }];
    for (const headers of badValues) {
      const res = await publish("ce.badname", { headers, body: "{}" });
      assert.equal(res.status, 400, JSON.stringify(headers));
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_CLOUDEVENT");
    }
    const marker = await publish("ce.marker2", { body: "{}" });
    assert.equal(marker.status, 202);
    await waitFor(() => sub.callsTo("/events").some((c) => c.headers["x-sidecar-topic"] === "ce.marker2"), "the marker delivered");
    assert.equal(sub.callsTo("/events").filter((c) => c.headers["x-sidecar-topic"] === "ce.badname").length, 0);
  });

  it("a structured publish without id, source, type or specversion 1.0, with extra ce-* headers, or a batch, is refused 400 INVALID_CLOUDEVENT", async () => {
    const good = { specversion: "1.0", id: "x", source: "/s", type: "t" };
    const cases: [Record<string, string>, unknown][] = [
      [{}, { ...good, id: undefined }],
      [{}, { ...good, source: "" }],
      [{}, { ...good, type: 7 }],
      [{}, { ...good, specversion: "0.3" }],
      [{}, { ...good, "bad-name": 1 }],
      [{}, { ...good, time: "not a time" }],
      [{}, [good]],
      [{ "ce-id": "other" }, good],
    ];
    for (const [headers, event] of cases) {
      const res = await publish("ce.badstructured", { headers: { "content-type": "application/cloudevents+json; charset=utf-8", ...headers }, body: JSON.stringify(event) });
      assert.equal(res.status, 400, JSON.stringify(event));
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_CLOUDEVENT", JSON.stringify(event));
    }
    const notJson = await publish("ce.badstructured", { headers: { "content-type": "application/cloudevents+json" }, body: "{nope" });
    assert.equal(notJson.status, 400);
    const batch = await publish("ce.badstructured", { headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify([good]) });
    assert.equal(batch.status, 400);
    assert.equal(((await batch.json()) as { error: { code: string } }).error.code, "INVALID_CLOUDEVENT");
  });
});
