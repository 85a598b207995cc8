import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { H, INTERNAL, publicHeaders, toApp } from "../../src/http/headers.js";

describe("internal headers (toApp, publicHeaders)", () => {
  it("every name of the H catalogue but x-request-id is internal", () => {
    for (const name of Object.values(H)) assert.equal(INTERNAL.has(name), name !== H.requestId, name);
  });

  it("toApp drops every internal header a peer sent and sets only the vouched caller", () => {
    const peer = Object.fromEntries([...INTERNAL].map((k) => [k, "forged"]));
    const out = toApp({ ...peer, "x-sidecar-note": "kept", "x-request-id": "r1", connection: "close" }, undefined);
    assert.deepEqual(out, { "x-sidecar-note": "kept", "x-request-id": "r1" });
    assert.equal(toApp(peer, "trusted")[H.caller], "trusted");
  });

  it("publicHeaders drops an app's x-sidecar-refused and x-sidecar-status on its way back", () => {
    assert.deepEqual(publicHeaders({ [H.refused]: "SHUTTING_DOWN", [H.status]: "500", "content-type": "text/plain" }), { "content-type": "text/plain" });
  });
});
