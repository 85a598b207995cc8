import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { launchChromium } from "../support/browser.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** GET / on the api listener, rendered by headless Chromium: services, nodes, ejections, subscriptions, recent errors. */
describe("status page (headless Chromium)", () => {
  let dir: string;
  let browser: Browser;
  let page: Page;
  let base: string;
  let good: Sidecar;
  let bad: Sidecar;
  let badApp: TestApp;
  let subscriber: TestApp;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];

  const start = async (service: string, extra: string[] = []) => {
    const app = await TestApp.start(service);
    apps.push(app);
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra }));
    sidecars.push(s);
    return { app, s };
  };

  /** The text of a table's body, row by row, as the page shows it now. */
  const rows = (id: string) => page.$$eval(`#${id} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")));

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-status-"));
    good = (await start("inventory")).s;
    ({ s: bad, app: badApp } = await start("inventory"));
    const viewer = await start("storefront", ['subscriptions=[{"name": "restock", "topic": "stock.low", "path": "/events/restock"}]']);
    subscriber = viewer.app;
    base = apiUrl(viewer.s);
    await waitFor(async () => (await registryNodes(base, "inventory")).length === 2, "both inventory nodes in the view");
    browser = await launchChromium();
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("shows this sidecar, its health, every node of every service and the subscriptions", async () => {
    const res = await page.goto(`${base}/`);
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()["content-type"] ?? "", /^text\/html/);
    await page.waitForSelector("body[data-loaded]");
    assert.match((await page.textContent("h1")) ?? "", /storefront 0\.0\.0/);
    assert.deepEqual((await rows("health")).map((r) => r.join(" ")), ["app passing", "registered yes", "registry connected", "broker connected", "draining no"]);
    const services = await rows("services");
    const ids = services.filter((r) => r[0] === "inventory").map((r) => r[1]).sort();
    assert.deepEqual(ids, [good.node.id, bad.node.id].sort());
    assert.ok(services.every((r) => r[0] !== "inventory" || r[4] === "serving"), JSON.stringify(services));
    const subs = await rows("subscriptions");
    assert.deepEqual(subs[0], ["restock", "stock.low", "/events/restock", "active", "0", "0", "0", "0", "0"], "name, topic, path, state, delivered, retried, dead-lettered, dropped, in flight");
    // The one warning so far: embedded mode's limits, said at start.
    const errors = await rows("errors");
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]![1], "warn");
    assert.match(errors[0]![2]!, /^embedded mode: no NATS configured/);
  });

  it("updates by itself: an ejected node, delivery counters and the errors behind them appear without a reload", async () => {
    badApp.failStatus = 500;
    for (let i = 0; i < 10; i++) await rpc(base, { service: "inventory", endpoint: "Stock.Get" });
    const pub = await fetch(`${base}/publish/stock.low`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"sku": 1}' });
    assert.equal(pub.status, 202);
    await waitFor(() => subscriber.callsTo("/events/restock").length === 1, "the delivery");
    const ejected = await waitFor(async () => (await rows("services")).find((r) => r[1] === bad.node.id && r[4]!.startsWith("ejected until")), "the ejected node on the page", 6_000);
    assert.equal(ejected[0], "inventory");
    assert.ok(Number(ejected[7]) >= 1, "ejections counted");
    assert.equal((await rows("services")).find((r) => r[1] === good.node.id)![4], "serving");
    await waitFor(async () => (await rows("subscriptions"))[0]![4] === "1", "the delivered counter", 6_000);
    const errors = await rows("errors");
    assert.ok(errors.some((r) => r[1] === "warn" && r[2] === "node ejected" && r[3]!.includes(bad.node.id)), JSON.stringify(errors));
  });

  it("shows the last minute's traffic per service called and per subscription, with sparklines; the ejected node's failures show", async () => {
    // The previous test's 10 calls to inventory: 3 answered 500 by the bad node before it was ejected.
    const status = (await (await fetch(`${base}/status`)).json()) as { traffic: { calls: { key: string; total: number; failed: number }[] } };
    const inventory = status.traffic.calls.find((t) => t.key === "inventory")!;
    assert.deepEqual([inventory.total, inventory.failed], [10, 3]);
    const traffic = (id: string) =>
      page.$$eval(`#${id} tbody tr`, (trs) =>
        trs.map((tr) => {
          // (no named helpers in here: the page runs this function's source, without tsx's __name)
          const svg = tr.querySelector("svg");
          const [points, failed] = [svg?.dataset.points, svg?.dataset.failed].map((v) => (v ? v.split(",").reduce((a, b) => a + Number(b), 0) : -1));
          return { cells: [...tr.querySelectorAll("td")].map((td) => td.textContent ?? ""), successClass: tr.children[2]?.className ?? "", points, failed, lines: svg?.querySelectorAll("polyline").length ?? 0 };
        }),
      );
    const calls = await waitFor(async () => (await traffic("calls")).find((r) => r.cells[0] === "inventory"), "inventory's traffic row", 6_000);
    assert.equal(calls.cells[2], "70.0%");
    assert.match(calls.successClass, /\bbad\b/, "70% success is shown as bad");
    assert.match(calls.cells[3]!, /^\d+(\.\d+)? ms$/, "p50");
    assert.match(calls.cells[4]!, /^\d+(\.\d+)? ms$/, "p99");
    assert.deepEqual([calls.points, calls.failed, calls.lines], [10, 3, 2], "the sparkline: 10 calls, 3 failed, two lines");
    assert.match(calls.cells[5]!, /^peak \d+\/s, 3 failed in the last minute$/, "the sparkline's title says what it draws");
    const deliveries = await waitFor(async () => (await traffic("deliveries")).find((r) => r.cells[0] === "restock"), "restock's delivery row", 6_000);
    assert.equal(deliveries.cells[2], "100.0%");
    assert.deepEqual([deliveries.points, deliveries.failed], [1, 0]);
    // The typed events behind it, newest first.
    const events = await rows("events");
    const ejected = events.find((r) => r[1] === "node-ejected");
    assert.ok(ejected && ejected[2]!.includes(bad.node.id) && ejected[2]!.includes('"failures":3'), JSON.stringify(events));
    assert.ok(events.some((r) => r[1] === "registered"), "this sidecar's own registration is among them");
  });

  it("with api.token: the page asks for the token, refuses a wrong one, and shows the status with the right one", async () => {
    const token = "status-token-0123456789abcdef";
    const locked = await start("locked", [`api.token=${token}`]);
    const base = apiUrl(locked.s);
    assert.equal((await fetch(`${base}/status`)).status, 401, "the data needs the token");
    const p = await browser.newPage();
    try {
      await p.goto(`${base}/`);
      await p.waitForSelector("#login:not([hidden])");
      assert.equal(await p.textContent("h1"), "sidecar ", "no data shown without the token");
      await p.fill("#token", "wrong-token-0123456789abcdef");
      await p.click("#login button");
      await p.waitForFunction(() => document.getElementById("error")?.textContent === "the token was refused");
      await p.fill("#token", token);
      await p.click("#login button");
      await p.waitForSelector("body[data-loaded]");
      assert.match((await p.textContent("h1")) ?? "", /locked 0\.0\.0/);
      assert.equal(await p.isHidden("#login"), true);
    } finally {
      await p.close();
    }
  });

  it("data from the registry is shown as text, never as HTML", async () => {
    // A node record with markup in a field must not inject it into the page.
    const metadataNode = await start("markup", ["service.version=<img src=x onerror=alert(1)>"]);
    await waitFor(() => metadataNode.s.registered, "markup to register");
    // The listing of every service (read when the section is opened) shows it before anything calls it.
    await page.click("#listing summary");
    await waitFor(async () => (await rows("registry")).some((r) => r[0] === "markup"), "the markup service in the registry listing", 6_000);
    assert.equal((await rows("registry")).find((r) => r[0] === "markup")![2], "<img src=x onerror=alert(1)>");
    // Looked up (as a call would), it is watched: in the services table, with its nodes.
    await registryNodes(base, "markup");
    await waitFor(async () => (await rows("services")).some((r) => r[0] === "markup"), "the markup service on the page", 6_000);
    const cell = (await rows("services")).find((r) => r[0] === "markup")!;
    assert.equal(cell[3], "<img src=x onerror=alert(1)>");
    assert.equal(await page.$$eval("#services img, #registry img", (imgs) => imgs.length), 0);
  });
});
