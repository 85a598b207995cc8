import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { endpointToPath } from "../../src/api/rpc.js";
import { isValidName } from "../../src/names.js";

describe("endpoint mapping (DESIGN §4)", () => {
  it("maps Service.Method to /Service/Method and keeps paths", () => {
    assert.equal(endpointToPath("Greeter.Hello"), "/Greeter/Hello");
    assert.equal(endpointToPath("v1.Greeter.Hello"), "/v1/Greeter/Hello");
    assert.equal(endpointToPath("/api/hello?x=1"), "/api/hello?x=1");
  });
  for (const bad of ["Greeter Hello", "Greeter..Hello", ".Hello", "/a/../b", "/./a", "/a b", "/a#frag", "", "Greeter/Hello"]) {
    it(`rejects ${JSON.stringify(bad)} with INVALID_REQUEST`, () => {
      assert.throws(() => endpointToPath(bad), (e: { code?: string }) => e.code === "INVALID_REQUEST");
    });
  }
});

describe("service names (DESIGN §3)", () => {
  for (const good of ["greeter", "Greeter-2", "a", "orders.v1", "a_b", "x".repeat(63)]) {
    it(`accepts ${JSON.stringify(good.length > 20 ? `${good.length} chars` : good)}`, () => assert.equal(isValidName(good), true));
  }
  for (const bad of ["", "-a", ".a", "a b", "../etc", "a/b", "a..b", "a.", "x".repeat(64), "é"]) {
    it(`rejects ${JSON.stringify(bad.length > 20 ? `${bad.length} chars` : bad)}`, () => assert.equal(isValidName(bad), false));
  }
});
