// The hosts tests' load: CALLERS concurrent loops calling SERVICE through the sidecar on this host,
// for at most SECONDS or CALLS calls in all, one JSON line per call ({t, ok, status, host, ms});
// the sidecar's view of SERVICE every 100 ms when it changes ({t, view}); and with PUBLISH=<topic>,
// one message every 20 ms with {"n": i} ({t, pub: i, status, stored}). Ends by itself (bounded).
const base = process.env.SIDECAR_URL ?? "http://127.0.0.1:8081";
const service = process.env.SERVICE ?? "echo";
const callers = Number(process.env.CALLERS ?? 8);
const until = Date.now() + Number(process.env.SECONDS ?? 60) * 1000;
const maxCalls = Number(process.env.CALLS ?? 200_000);
const timeout = Number(process.env.TIMEOUT_MS ?? 2000);
let calls = 0;
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
async function loop() {
  while (Date.now() < until && calls < maxCalls) {
    calls += 1;
    const t0 = Date.now();
    try {
      const r = await fetch(`${base}/rpc`, { method: "POST", body: JSON.stringify({ service, endpoint: "Echo.Call", request: {}, timeout }), signal: AbortSignal.timeout(timeout + 3000) });
      const text = await r.text();
      let host;
      try { host = JSON.parse(text).host; } catch { host = undefined; }
      out({ t: t0, ok: r.status === 200, status: r.status, host, ms: Date.now() - t0, code: r.status === 200 ? undefined : text.slice(0, 200) });
    } catch (err) {
      out({ t: t0, ok: false, status: 0, ms: Date.now() - t0, code: String(err.cause?.code ?? err.name) });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
async function publish(topic) {
  for (let i = 1; Date.now() < until && i <= maxCalls; i++) {
    const t = Date.now();
    try {
      const r = await fetch(`${base}/publish/${topic}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ n: i }), signal: AbortSignal.timeout(timeout + 3000) });
      const body = await r.json().catch(() => ({}));
      out({ t, pub: i, status: r.status, stored: body.stored === true, id: body.id });
    } catch (err) {
      out({ t, pub: i, status: 0, code: String(err.cause?.code ?? err.name) });
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
let last = "";
const watch = setInterval(async () => {
  try {
    const r = await fetch(`${base}/registry/${service}`, { signal: AbortSignal.timeout(1000) });
    const body = await r.json();
    const view = (body.nodes ?? []).map((n) => n.address).sort().join(",");
    if (view !== last) out({ t: Date.now(), view });
    last = view;
  } catch {
    // the sidecar is busy or starting: the next tick tries again
  }
}, 100);
await Promise.all([...Array.from({ length: callers }, loop), ...(process.env.PUBLISH ? [publish(process.env.PUBLISH)] : [])]);
clearInterval(watch);
out({ t: Date.now(), done: calls });
