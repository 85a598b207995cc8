import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { goFields } from "../../src/micro/go-json.js";

describe("goFields: a JSON object's fields as Go's encoding/json fills a struct", () => {
  it("takes micro README's Go-cased keys ({\"Name\", \"Nodes\"}) for lowercase fields", () => {
    assert.deepEqual(goFields({ Name: "foo.bar", Nodes: [1] }, ["name", "nodes", "version"]), { name: "foo.bar", nodes: [1] });
    assert.deepEqual(goFields({ PORT: 9091, address: "127.0.0.1" }, ["port", "address"]), { port: 9091, address: "127.0.0.1" });
  });

  it("an exact key wins over a case-folded one; unknown keys are ignored", () => {
    assert.deepEqual(goFields({ Name: "folded", name: "exact", extra: 1 }, ["name"]), { name: "exact" });
  });
});
