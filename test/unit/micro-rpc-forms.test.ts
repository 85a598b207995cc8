import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { requestSpan } from "../../src/api/envelope.js";
import { microErrorBody, wantsMicro } from "../../src/micro/errors.js";
import { foldedFields, formEnvelope, isForm, jsonStringRequest } from "../../src/micro/rpc-forms.js";
import { SidecarError } from "../../src/errors.js";

describe("micro's /rpc envelopes", () => {
  it("form-encoded: only application/x-www-form-urlencoded (any case, with parameters)", () => {
    assert.equal(isForm("application/x-www-form-urlencoded"), true);
    assert.equal(isForm("Application/X-WWW-Form-Urlencoded; charset=utf-8"), true);
    for (const other of [undefined, "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencodedx", "text/plain"]) assert.equal(isForm(other), false, String(other));
  });
  it("form fields service, method, address and request (request as JSON text)", () => {
    const f = formEnvelope(Buffer.from("service=go.micro.srv.greeter&method=Say.Hello&address=127.0.0.1%3A9&request=%7B%22name%22%3A%22John%22%7D"));
    assert.deepEqual(f, { service: "go.micro.srv.greeter", method: "Say.Hello", address: "127.0.0.1:9", request: '{"name":"John"}' });
  });
  it("form: endpoint stands for method, an empty request is no request", () => {
    assert.deepEqual(formEnvelope(Buffer.from("service=a&endpoint=B.c&request=")), { service: "a", method: "B.c", address: undefined, request: undefined });
  });
  it("JSON keys in another case fold to micro's fields (last spelling wins, as in Go)", () => {
    assert.deepEqual(foldedFields({ Service: "a", METHOD: "B.c", Request: { x: 1 }, Address: "h:1", Other: 1 }), { service: "a", method: "B.c", request: { x: 1 }, requestKey: "Request", address: "h:1" });
    assert.equal(foldedFields({ service: "a", method: "B.c", Timeout: 5 }), undefined);
    assert.equal(foldedFields({ SERVICE: "a", Service: "b" })!.service, "b");
  });
  it("a request as a JSON-encoded string passes its text on; a string that is not JSON is INVALID_REQUEST", () => {
    assert.equal(jsonStringRequest('{"big":12345678901234567890}', "r").toString(), '{"big":12345678901234567890}');
    assert.throws(() => jsonStringRequest("not json", "field 'request'"), (e: SidecarError) => e.code === "INVALID_REQUEST" && e.status === 400);
  });
  it("requestSpan finds the request under micro's key spelling", () => {
    const body = Buffer.from('{"Service":"a","Request": {"n": 12345678901234567890} }');
    const span = requestSpan(body, "Request")!;
    assert.equal(body.subarray(span.start, span.end).toString(), '{"n": 12345678901234567890}');
    assert.equal(requestSpan(body), undefined);
  });
});

describe("micro's error shape", () => {
  it("is go-micro's {id, code, detail, status}", () => {
    const body = microErrorBody("go.micro.rpc", new SidecarError("INVALID_REQUEST", "invalid service"));
    assert.equal(body, '{"id":"go.micro.rpc","code":400,"detail":"invalid service","status":"Bad Request"}');
  });
  it("micro.errors: true always, false never, auto for micro-style requests", () => {
    assert.deepEqual([wantsMicro(true, false), wantsMicro(false, true), wantsMicro("auto", true), wantsMicro("auto", false)], [true, false, true, false]);
  });
});
