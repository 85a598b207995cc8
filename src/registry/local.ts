import { watch as fsWatch, type FSWatcher } from "node:fs";
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../log.js";
import { parseNodeRecord, type NodeRecord, type Registry, type RegistryEvent, type RegistryStatus, type RegistryWatch, type WatchScope } from "./types.js";
import { closedError } from "../lifecycle/component.js";

export interface LocalRegistryOptions {
  /** Shared directory, one JSON file per node. */
  dir: string;
  /** A file not refreshed within the TTL is dead. */
  ttl: number;
}

/** Files this much older than the TTL are deleted by any watcher: their sidecar died without deregistering. */
const GC_AFTER_TTLS = 3;

/**
 * The embedded registry for one machine: `<dir>/<service>.<nodeId>.json`, written
 * atomically (temp file + rename), refreshed by heartbeats, aged out by mtime. Watchers learn of
 * changes through fs.watch plus a periodic rescan (which also catches expiry).
 * Not for more than one machine: the directory is the whole registry.
 */
export class LocalRegistry implements Registry {
  readonly kind = "local";
  #files = new Map<string, string>();
  #watches = new Set<RegistryWatch>();
  #closed = false;

  private constructor(private readonly options: LocalRegistryOptions, private readonly log: Logger) {}

  static async open(options: LocalRegistryOptions, log: Logger): Promise<LocalRegistry> {
    await mkdir(options.dir, { recursive: true });
    return new LocalRegistry(options, log);
  }

  async register(node: NodeRecord): Promise<void> {
    if (this.#closed) throw closedError("local registry");
    const file = path.join(this.options.dir, `${node.service}.${node.id}.json`);
    this.#files.set(node.id, file);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(node));
    await rename(tmp, file);
  }

  async deregister(nodeId: string): Promise<void> {
    if (this.#closed) throw closedError("local registry");
    const file = this.#files.get(nodeId);
    if (!file) return;
    this.#files.delete(nodeId);
    await unlink(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  /** Every live record (of `service`, when given) with the mtime it was last refreshed at. */
  async #scan(service?: string): Promise<Map<string, { node: NodeRecord; mtime: number }>> {
    const out = new Map<string, { node: NodeRecord; mtime: number }>();
    const now = Date.now();
    let names: string[];
    try {
      names = await readdir(this.options.dir);
    } catch (err) {
      this.log.warn("cannot read the local registry directory", { dir: this.options.dir, error: (err as Error).message });
      return out;
    }
    await Promise.all(
      names
        // `shop.` also prefixes shop.cart's files: the record's own service decides (below).
        .filter((n) => n.endsWith(".json") && (service === undefined || n.startsWith(`${service}.`)))
        .map(async (name) => {
          const file = path.join(this.options.dir, name);
          try {
            const st = await stat(file);
            const age = now - st.mtimeMs;
            if (age > this.options.ttl * GC_AFTER_TTLS) {
              await unlink(file).catch(() => undefined);
              return;
            }
            if (age > this.options.ttl) return;
            const node = parseNodeRecord(JSON.parse(await readFile(file, "utf8")));
            if (node && (service === undefined || node.service === service)) out.set(`${node.service}.${node.id}`, { node, mtime: st.mtimeMs });
          } catch {
            // Vanished between readdir and read (deregistered), or half-read: the next scan settles it.
          }
        }),
    );
    return out;
  }

  async list(service?: string): Promise<NodeRecord[]> {
    return [...(await this.#scan(service)).values()].map((e) => e.node);
  }

  /**
   * A watch of one service's files (or all). Every watch shares one fs.watch and one rescan every
   * TTL/6 (at most 1 s) of the directory: a sidecar watching many services reads the directory
   * once per change, not once per service.
   */
  async watch(onEvent: (event: RegistryEvent) => void, scope?: WatchScope): Promise<RegistryWatch> {
    if (this.#closed) throw closedError("local registry");
    const w: LocalWatch = { service: scope?.service, onEvent, known: new Map(), stopped: false };
    this.#watching.add(w);
    this.#startScanning();
    // Its listing is the next shared scan: every watch of this process sees a record in the same pass
    // (a view that lists a subscriber before the local broker's view would lose a publish to it).
    await this.#rescan();
    if (this.#closed) throw closedError("local registry");
    const stop = {
      stop: () => {
        w.stopped = true;
        this.#watching.delete(w);
        this.#watches.delete(stop);
        if (this.#watching.size === 0) this.#stopScanning();
      },
    };
    this.#watches.add(stop);
    return stop;
  }

  #watching = new Set<LocalWatch>();
  #scanner: { fsw: FSWatcher | undefined; timer: NodeJS.Timeout } | undefined;
  /** The scan loop while it runs; `#again` asks it for one more pass. */
  #loop: Promise<void> | undefined;
  #again = false;

  #startScanning(): void {
    if (this.#scanner) return;
    let fsw: FSWatcher | undefined;
    try {
      fsw = fsWatch(this.options.dir, () => void this.#rescan().catch(() => undefined));
      fsw.on("error", () => undefined);
    } catch (err) {
      this.log.warn("fs.watch unavailable on the registry directory; relying on periodic scans", { error: (err as Error).message });
    }
    const period = Math.max(50, Math.min(1_000, Math.floor(this.options.ttl / 6)));
    const timer = setInterval(() => void this.#rescan().catch(() => undefined), period);
    timer.unref();
    this.#scanner = { fsw, timer };
  }

  #stopScanning(): void {
    if (!this.#scanner) return;
    clearInterval(this.#scanner.timer);
    this.#scanner.fsw?.close();
    this.#scanner = undefined;
  }

  /**
   * One scan of the directory for every watch, one at a time. Resolves once a scan that began
   * after the call has been applied (asked during a scan, it runs one more).
   */
  #rescan(): Promise<void> {
    this.#again = true;
    this.#loop ??= (async () => {
      try {
        while (this.#again && this.#watching.size > 0) {
          this.#again = false;
          const now = await this.#scan();
          for (const w of [...this.#watching]) if (!w.stopped) diff(w, now);
        }
      } finally {
        this.#loop = undefined;
      }
    })();
    return this.#loop;
  }

  status(): RegistryStatus {
    return this.#closed ? "closed" : "connected";
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of [...this.#watches]) w.stop();
    this.#stopScanning();
  }
}

interface LocalWatch {
  /** Only this service's records; undefined: all. */
  service: string | undefined;
  onEvent: (event: RegistryEvent) => void;
  /** The mtime of each record this watch reported present, by `<service>.<id>`. */
  known: Map<string, number>;
  stopped: boolean;
}

/** Report to `w` what changed between what it knows and a scan, and remember the scan. */
function diff(w: LocalWatch, scan: Map<string, { node: NodeRecord; mtime: number }>): void {
  const next = new Map<string, number>();
  for (const [key, { node, mtime }] of scan) {
    if (w.service !== undefined && node.service !== w.service) continue;
    next.set(key, mtime);
    if (w.known.get(key) !== mtime) w.onEvent({ type: "put", node, seenAt: mtime });
  }
  for (const key of w.known.keys()) {
    if (!next.has(key)) {
      const dot = key.lastIndexOf(".");
      w.onEvent({ type: "delete", service: key.slice(0, dot), id: key.slice(dot + 1) });
    }
  }
  w.known = next;
}
