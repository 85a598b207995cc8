import type { HostProcess } from "./process.js";

/** Reading test/hosts/load.mjs's output: one JSON line per call, view change or publish. */
export interface CallLine { t: number; ok: boolean; status: number; host?: string; ms: number; code?: string }
export interface ViewLine { t: number; view: string }
export interface PubLine { t: number; pub: number; status: number; stored?: boolean }

/** The load driver's output so far, split into calls and view changes. */
export function readLoad(p: HostProcess): { calls: CallLine[]; views: ViewLine[]; pubs: PubLine[] } {
  const calls: CallLine[] = [];
  const views: ViewLine[] = [];
  const pubs: PubLine[] = [];
  for (const l of p.lines) {
    if (!l.startsWith("{")) continue;
    const o = JSON.parse(l) as Partial<CallLine & ViewLine & PubLine>;
    if (o.view !== undefined) views.push(o as ViewLine);
    else if (o.pub !== undefined) pubs.push(o as PubLine);
    else if (o.ok !== undefined) calls.push(o as CallLine);
  }
  return { calls, views, pubs };
}

export async function until<T>(what: string, timeout: number, cond: () => T | undefined, p: HostProcess): Promise<T> {
  const end = Date.now() + timeout;
  for (;;) {
    const v = cond();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout}ms waiting for ${what}\n${p.tail(20)}`);
    await p.line(/./, Math.max(1, end - Date.now()), p.lines.length).catch(() => undefined);
  }
}
