import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { requestSpan } from "../../src/api/envelope.js";

const slice = (text: string) => {
  const b = Buffer.from(text);
  const s = requestSpan(b);
  return s ? b.subarray(s.start, s.end).toString() : undefined;
};

describe("requestSpan: the bytes of the envelope's request member", () => {
  it("finds the request among the other members, whatever its type and position", () => {
    const cases: [string, string][] = [
      ['{"service":"a","endpoint":"b","request":{"x":1}}', '{"x":1}'],
      ['{"request":[1,2,{"a":[3]}],"service":"a"}', '[1,2,{"a":[3]}]'],
      ['{ "service" : "a" ,\n "request" :\t"text" , "endpoint":"b" }', '"text"'],
      ['{"service":"a","request":42}', "42"],
      ['{"service":"a","request":-1.5e3 }', "-1.5e3"],
      ['{"service":"a","request":null}', "null"],
      ['{"service":"a","request":true,"timeout":5}', "true"],
    ];
    for (const [body, want] of cases) assert.equal(slice(body), want, body);
  });

  it("passes the caller's bytes unchanged: big integers, escapes and formatting survive", () => {
    const body = '{"service":"a","endpoint":"b","request": {"id": 12345678901234567890, "s": "caf\\u00e9 \\"}{\\" ]", "n": [ 1 ,2 ]}}';
    assert.equal(slice(body), '{"id": 12345678901234567890, "s": "caf\\u00e9 \\"}{\\" ]", "n": [ 1 ,2 ]}');
    assert.notEqual(JSON.stringify(JSON.parse(body).request), slice(body), "re-serialising would have changed them");
  });

  it("agrees with JSON.parse: only top-level keys count, and the last duplicate wins", () => {
    for (const body of [
      '{"service":"a","meta":{"request":"nested"},"request":"top"}',
      '{"request":"first","service":"a","request":"last"}',
      '{"service":"a","payload":"\\"request\\": 1","request":{"k":"v"}}',
      '{"service":"é ü 日本","request":{"emoji":"😀"}}',
    ]) {
      assert.deepEqual(JSON.parse(slice(body)!), JSON.parse(body).request, body);
    }
  });

  it("no request member, or no object: undefined", () => {
    assert.equal(slice('{"service":"a","endpoint":"b"}'), undefined);
    assert.equal(slice("[1,2]"), undefined);
  });

  it("an escaped key is decoded as JSON.parse decodes it: 'req\\u0075est' is the request member", () => {
    assert.equal(slice('{"service":"a","re\\u0071uest":2}'), "2");
    assert.equal(slice('{"service":"a","re\\u0071uest":2,"request":1}'), "1");
    assert.equal(slice('{"service":"a","request":1,"re\\u0071uest":[2]}'), "[2]");
    assert.equal(slice('{"service":"a","requ\\"est":2}'), undefined);
  });
});
