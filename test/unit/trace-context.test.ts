import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nextTraceContext, parseTraceparent, parseTracestate, TRACESTATE_MAX_LENGTH } from "../../src/http/trace.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const VALID = `00-${TRACE}-${PARENT}-01`;
const FORMAT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** One test per processing rule of W3C Trace Context (Level 1 §3.2-3.3, §4; Level 2's tracestate limits). */
describe("W3C Trace Context: traceparent", () => {
  it("a valid version-00 traceparent keeps its trace id and flags and gets a new parent id (§4.3)", () => {
    const next = nextTraceContext(VALID).traceparent;
    assert.match(next, FORMAT);
    const [, trace, parent, flags] = next.split("-");
    assert.equal(trace, TRACE);
    assert.notEqual(parent, PARENT);
    assert.equal(flags, "01");
    assert.equal(nextTraceContext(`00-${TRACE}-${PARENT}-00`).traceparent.split("-")[3], "00", "an unsampled trace stays unsampled");
  });

  it("a missing traceparent starts a new trace (§4.2)", () => {
    const a = nextTraceContext(undefined).traceparent;
    const b = nextTraceContext(undefined).traceparent;
    assert.match(a, FORMAT);
    assert.notEqual(a.split("-")[1], b.split("-")[1]);
  });

  it("a higher version is parsed as version 00 and its trace id kept (§3.2.4)", () => {
    for (const v of ["cc", "01", "fe"]) {
      const p = parseTraceparent(`${v}-${TRACE}-${PARENT}-01`);
      assert.equal(p?.traceId, TRACE, v);
      assert.equal(nextTraceContext(`${v}-${TRACE}-${PARENT}-01`).traceparent.slice(0, 3), "00-", "this sidecar writes the version it knows");
    }
  });

  it("a higher version may carry more fields after a '-', and nothing else (§3.2.4)", () => {
    assert.equal(parseTraceparent(`cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`)?.traceId, TRACE);
    assert.equal(parseTraceparent(`cc-${TRACE}-${PARENT}-01.what-the-future-will-be-like`), undefined);
  });

  it("version 00 with anything after the flags is invalid (§3.2.2.1)", () => {
    assert.equal(parseTraceparent(`${VALID}.`), undefined);
    assert.equal(parseTraceparent(`${VALID}-what-the-future-will-be-like`), undefined);
  });

  it("version ff is invalid (§3.2.2.1)", () => {
    assert.equal(parseTraceparent(`ff-${TRACE}-${PARENT}-01`), undefined);
  });

  it("a version that is not two lowercase hex digits is invalid (§3.2.2.1)", () => {
    for (const v of [".0", "0.", "0", "000", "0000", "0A", "AA"]) assert.equal(parseTraceparent(`${v}-${TRACE}-${PARENT}-01`), undefined, v);
  });

  it("an all-zero trace id is invalid (§3.2.2.3)", () => {
    assert.equal(parseTraceparent(`00-${"0".repeat(32)}-${PARENT}-01`), undefined);
    assert.notEqual(nextTraceContext(`00-${"0".repeat(32)}-${PARENT}-01`).traceparent.split("-")[1], "0".repeat(32));
  });

  it("an all-zero parent id is invalid (§3.2.2.4)", () => {
    assert.equal(parseTraceparent(`00-${TRACE}-${"0".repeat(16)}-01`), undefined);
    assert.notEqual(nextTraceContext(`00-${TRACE}-${"0".repeat(16)}-01`).traceparent.split("-")[1], TRACE);
  });

  it("a trace id or parent id of the wrong length or with non-hex characters is invalid (§3.2.2.3-3.2.2.4)", () => {
    for (const bad of [
      `00-${TRACE}0-${PARENT}-01`, `00-${TRACE.slice(1)}-${PARENT}-01`, `00-.${TRACE.slice(1)}-${PARENT}-01`,
      `00-${TRACE}-${PARENT}0-01`, `00-${TRACE}-${PARENT.slice(1)}-01`, `00-${TRACE}-.${PARENT.slice(1)}-01`,
    ]) assert.equal(parseTraceparent(bad), undefined, bad);
  });

  it("upper-case hex is invalid (§3.2.2)", () => {
    assert.equal(parseTraceparent(`00-${TRACE.toUpperCase()}-${PARENT}-01`), undefined);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT.toUpperCase()}-01`), undefined);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-0A`), undefined);
  });

  it("flags that are not two hex digits are invalid (§3.2.2.5)", () => {
    for (const f of [".0", "0.", "001", "1"]) assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-${f}`), undefined, f);
  });

  it("flags this version does not define are zeroed; sampled is kept (§3.2.2.5)", () => {
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-ff`)?.flags, "03");
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-09`)?.flags, "01");
  });

  it("white space around the header value is ignored (RFC 9110 OWS)", () => {
    for (const v of [` ${VALID}`, `\t${VALID}`, `${VALID} `, `${VALID}\t`, `\t ${VALID} \t`]) assert.equal(parseTraceparent(v)?.traceId, TRACE, JSON.stringify(v));
  });

  it("two traceparent header fields are invalid: a new trace is started (§3.2.1)", () => {
    // node:http joins repeated fields with ", "; header arrays (NATS headers) are not a string either.
    assert.equal(parseTraceparent(`${VALID}, 00-${"1".repeat(32)}-${PARENT}-01`), undefined);
    assert.equal(parseTraceparent(`cc-${TRACE}-${PARENT}-01, cc-${TRACE}-${PARENT}-01`), undefined);
    assert.equal(parseTraceparent([VALID, VALID]), undefined);
  });
});

describe("W3C Trace Context: tracestate", () => {
  it("a tracestate with a valid traceparent travels on as it came (§3.3)", () => {
    assert.equal(nextTraceContext(VALID, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  });

  it("a tracestate without a valid traceparent is dropped (§3.3, §4.2)", () => {
    assert.equal(nextTraceContext(undefined, "foo=1").tracestate, undefined);
    assert.equal(nextTraceContext(`00-${TRACE}-${"0".repeat(16)}-01`, "foo=1").tracestate, undefined);
    assert.equal(nextTraceContext(`ff-${TRACE}-${PARENT}-01`, "foo=1").tracestate, undefined);
  });

  it("several tracestate header fields are one list, in order (§3.3.1, RFC 9110 §5.3)", () => {
    assert.equal(parseTracestate(["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]), "foo=1,bar=2,rojo=1,congo=2,baz=3");
    assert.equal(parseTracestate("foo=1,bar=2, rojo=1,congo=2, baz=3"), "foo=1,bar=2,rojo=1,congo=2,baz=3", "as node:http joins them");
  });

  it("empty list members and empty headers are skipped (§3.3.1.1)", () => {
    assert.equal(parseTracestate("foo=1, "), "foo=1");
    assert.equal(parseTracestate(", foo=1"), "foo=1");
    assert.equal(parseTracestate("foo=1,,bar=2"), "foo=1,bar=2");
    assert.equal(parseTracestate(""), undefined);
  });

  it("white space around list members is removed (§3.3.1.1)", () => {
    assert.equal(parseTracestate("foo=1 \t , \t bar=2, \t baz=3"), "foo=1,bar=2,baz=3");
    assert.equal(parseTracestate("\t foo=1 \t"), "foo=1");
  });

  it("every allowed key and value character is kept (§3.3.1.3)", () => {
    const key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value = "";
    for (let c = 0x20; c <= 0x7e; c++) if (c !== 0x2c && c !== 0x3d) value += String.fromCharCode(c);
    assert.equal(parseTracestate(`${key}=${value}`), `${key}=${value}`);
    assert.equal(parseTracestate(`${key}@a-z0-9_-*/=${value}`), `${key}@a-z0-9_-*/=${value}`);
  });

  it("an invalid key drops the whole tracestate (§3.3.1.3.1)", () => {
    for (const bad of ["foo =1", "FOO=1", "foo.bar=1", "1foo=1,bar=2", "foo@=1,bar=2", "@foo=1,bar=2", "foo@@bar=1,bar=2", "foo@bar@baz=1,bar=2", "foo@1bar=1", "=1"]) {
      assert.equal(parseTracestate(`ok=1,${bad}`), undefined, bad);
    }
  });

  it("keys are at most 256 characters, tenant ids 241 and system ids 14 (§3.3.1.3.1)", () => {
    assert.equal(parseTracestate(`foo=1,${"z".repeat(256)}=1`)?.startsWith("foo=1"), true);
    assert.equal(parseTracestate(`foo=1,${"z".repeat(257)}=1`), undefined);
    assert.equal(parseTracestate(`foo=1,${"t".repeat(241)}@${"v".repeat(14)}=1`)?.startsWith("foo=1"), true);
    assert.equal(parseTracestate(`foo=1,${"t".repeat(242)}@v=1`), undefined);
    assert.equal(parseTracestate(`foo=1,t@${"v".repeat(15)}=1`), undefined);
  });

  it("an invalid value drops the whole tracestate: empty, with '=' or ',', a trailing space, over 256 characters (§3.3.1.3.2)", () => {
    for (const bad of ["foo=bar=baz", "foo=,bar=3", "foo", `foo=${"v".repeat(257)}`, "foo=a\tb", "foo=\u00e9"]) {
      assert.equal(parseTracestate(bad), undefined, bad);
    }
    assert.equal(parseTracestate(`foo=${"v".repeat(256)}`), `foo=${"v".repeat(256)}`);
    assert.equal(parseTracestate("foo= 1"), "foo= 1", "a value may start with a space");
  });

  it("a duplicated key drops the whole tracestate, within one header or across several (§3.3.1.1)", () => {
    assert.equal(parseTracestate("foo=1,foo=1"), undefined);
    assert.equal(parseTracestate("foo=1,foo=2"), undefined);
    assert.equal(parseTracestate(["foo=1", "foo=2"]), undefined);
  });

  it("32 list members travel; 33 drop the whole tracestate (§3.3.1.1)", () => {
    const members = (n: number) => Array.from({ length: n }, (_, i) => `bar${String(i + 1).padStart(2, "0")}=${i + 1}`);
    assert.equal(parseTracestate(members(32).join(","))?.split(",").length, 32);
    assert.equal(parseTracestate(members(33).join(",")), undefined);
  });

  it(`past ${TRACESTATE_MAX_LENGTH} characters whole members are removed: those over 128 characters first, then from the end (§3.3.1.5)`, () => {
    const long = `long=${"x".repeat(200)}`;
    const short = Array.from({ length: 20 }, (_, i) => `k${i}=${"y".repeat(20)}`);
    const out = parseTracestate([short[0]!, long, ...short.slice(1)].join(","))!;
    assert.ok(out.length <= TRACESTATE_MAX_LENGTH, String(out.length));
    assert.ok(!out.includes("long="), "the long member went first");
    assert.equal(out, short.join(","), "the 20 short members (489 characters) fit once the long one is gone");
    const many = Array.from({ length: 30 }, (_, i) => `k${String(i).padStart(2, "0")}=${"y".repeat(20)}`);
    const cut = parseTracestate(many.join(","))!;
    assert.ok(cut.length <= TRACESTATE_MAX_LENGTH);
    assert.equal(cut, many.slice(0, cut.split(",").length).join(","), "then from the end, keeping the first members");
    assert.equal(cut.split(",").length, 20, "no more removed than needed: 20 members of 24 characters are 499, 21 would be 524");
  });
});
