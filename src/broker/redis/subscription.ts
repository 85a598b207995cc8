import type { Redis } from "ioredis";
import { waitIdle } from "../../lifecycle/wait-idle.js";
import type { Logger } from "../../log.js";
import type { ActiveSubscription, DeliverFn, Delivery, Outcome, SubscriptionSpec } from "../types.js";
import { autoclaimReply, decodeEntry, deliveryCounts, readReply, type Entry, type Fields } from "./entries.js";
import { groupName } from "./topics.js";

/** One blocking read waits this long for new entries (pause and stop cut it short with CLIENT UNBLOCK). */
export const BLOCK_MS = 5_000;
/** Consumers with nothing pending and idle this long are removed from the group (every restart adds one). */
const REAP_IDLE_MS = 3_600_000;
const REAP_EVERY_MS = 60_000;

/** Deliver again only while this consumer still owns the entry; the retry count is set to the attempt. 1, or 0 when gone. */
const REDELIVER = `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
return #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', ARGV[4], 'JUSTID')`;
/** Durable: leave the group only with nothing pending (deleting a consumer drops its pending entries). */
const LEAVE_DURABLE = `
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`;
/** At-most-once: leave the group, and remove it once nobody is left (so nothing is kept for nobody). */
const LEAVE_AT_MOST_ONCE = `
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
if #redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1]) > 0 then return 0 end
redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
return 1`;
/** Remove the group's consumers (not this one) with nothing pending and idle over ARGV[3] ms. */
const REAP = `
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and f['pending'] == 0 and f['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n`;

const message = (err: unknown) => (err as Error).message;
/** An error Redis answered (NOGROUP, WRONGTYPE...), not a connection that failed. */
const isReplyError = (err: unknown) => (err as Error).name === "ReplyError";

export interface RedisSubscriptionDeps {
  /** The broker's connection: acks, claims, scripts. */
  main: Redis;
  /** This subscription's own connection, for its blocking reads. */
  reader: Redis;
  key: string;
  consumer: string;
  /** XAUTOCLAIM's min-idle (ms). */
  claimIdle: number;
  log: Logger;
  /** Called once the subscription has stopped (the broker forgets it). */
  stopped: () => void;
}

/** An entry this consumer holds: being delivered, waiting for its retry, or parked while paused. */
interface Held {
  entryId: string;
  delivery: Delivery;
  state: "delivering" | "waiting" | "parked";
  /** Parked: whether the next delivery is a retry (attempt + 1) or the one it was read for. */
  next: boolean;
  timer?: NodeJS.Timeout | undefined;
}

/**
 * A subscription: the consumer group `<queue>:<name>` on the topic's stream, created from `$`
 * (new entries), shared by the instances of the service, each with its own consumer name.
 *
 * `durable: true`: at-least-once. Entries are read with XREADGROUP (`>`), at most `maxInFlight`
 * held at once, and acknowledged (XACK, batched per turn of the event loop) after the relay's ack
 * or dead outcome. A retry is held here for its delay, then delivered again only if this consumer
 * still owns the entry (its retry count set to the attempt, so a claimant carries on counting).
 * Entries a dead or stuck consumer left pending longer than `claimIdle` are claimed with
 * XAUTOCLAIM and delivered again with their delivery count as the attempt. After a reconnection,
 * this consumer's own pending entries are read again (a read's reply may have been lost).
 *
 * `durable: false`: at-most-once. The same group read with NOACK: nothing is pending, so nothing
 * is ever delivered twice; what this process holds (retries included) is lost if it stops or dies.
 */
export class RedisSubscription implements ActiveSubscription {
  readonly key: string;
  readonly group: string;
  readonly #held = new Map<string, Held>();
  /** Entry ids whose XACK is queued or in flight (not claimed or recovered again meanwhile). */
  readonly #acking = new Set<string>();
  #acks: string[] = [];
  #ackSoon: NodeJS.Immediate | undefined;
  #ackLater: NodeJS.Timeout | undefined;
  #paused = false;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  /** The reader's CLIENT ID (for CLIENT UNBLOCK), known once asked on its current connection. */
  #readerId: number | undefined;
  #reading = false;
  /** Durable, after a (re)connection: read this consumer's pending entries again from this id. */
  #recoverFrom: string | undefined;
  #grouped = false;
  /** Where the group starts when created: new entries; from the start again if it vanished (durable). */
  #startId = "$";
  #delivering = 0;
  #idle: (() => void)[] = [];
  #ticker: NodeJS.Timeout | undefined;
  #ticking = false;
  #cursor = "0-0";
  #reapedAt = 0;
  #dropped = 0;

  constructor(readonly spec: SubscriptionSpec, private readonly deliver: DeliverFn, private readonly d: RedisSubscriptionDeps) {
    this.key = d.key;
    this.group = groupName(spec);
    d.reader.on("ready", () => {
      this.#readerId = undefined;
      if (spec.durable) this.#recoverFrom = "0";
      this.#nudge();
    });
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** At-most-once: messages lost at a stop; both: pending entries trimmed (redis.maxLen) before delivery. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Create the group (a Redis refusal is an error; an unreachable Redis is retried by the read loop) and start reading. */
  async start(): Promise<void> {
    try {
      await this.#ensureGroup();
    } catch (err) {
      if (isReplyError(err)) throw new Error(`cannot create the consumer group ${this.group} on ${this.key}: ${message(err)}`, { cause: err });
    }
    this.#loop = this.#run();
    const every = Math.max(250, Math.min(5_000, this.d.claimIdle / 2));
    this.#ticker = setInterval(() => void this.#tick(), every);
    this.#ticker.unref();
  }

  async #ensureGroup(): Promise<void> {
    try {
      await this.d.main.xgroup("CREATE", this.key, this.group, this.#startId, "MKSTREAM");
      if (this.#startId === "0") this.d.log.warn("created the consumer group again from the start of the stream: what it still holds is delivered again", { subscription: this.spec.name, stream: this.key, group: this.group });
    } catch (err) {
      if (!/BUSYGROUP/.test(message(err))) throw err;
    }
    this.#grouped = true;
  }

  /** Read until paused or stopped; a failure (Redis gone, the group gone) is retried, never the end. */
  async #run(): Promise<void> {
    const { reader, log } = this.d;
    let failures = 0;
    while (!this.#paused && !this.#stopped) {
      try {
        if (reader.status !== "ready") {
          await this.#sleep(1_000); // woken by the reader's "ready"
          continue;
        }
        if (!this.#grouped) await this.#ensureGroup();
        const room = this.spec.maxInFlight - this.#held.size;
        if (room <= 0) {
          await this.#sleep(1_000); // woken when a held entry is released
          continue;
        }
        this.#readerId ??= Number(await reader.client("ID"));
        if (this.#paused || this.#stopped) break;
        if (this.#recoverFrom !== undefined) await this.#recover(room);
        else await this.#read(room);
        failures = 0;
      } catch (err) {
        this.#reading = false;
        if (this.#paused || this.#stopped) break;
        if (/NOGROUP/.test(message(err))) {
          // Redis lost its data, or the group was destroyed. Durable: start again from the start of
          // the stream (a duplicate rather than a loss); at-most-once: from new entries.
          this.#grouped = false;
          if (this.spec.durable) this.#startId = "0";
          log.warn("the consumer group is gone; creating it again", { subscription: this.spec.name, stream: this.key, group: this.group });
          continue;
        }
        failures += 1;
        // A lost connection is logged once by the broker; a refusal (WRONGTYPE...) here.
        if (isReplyError(err)) log.warn("reading the stream failed; retrying", { subscription: this.spec.name, stream: this.key, error: message(err), attempt: failures });
        await this.#sleep(Math.min(5_000, 250 * 2 ** failures));
      }
    }
  }

  async #read(room: number): Promise<void> {
    this.#reading = true;
    const noack = this.spec.durable ? [] : ["NOACK"];
    const reply = await this.d.reader.callBuffer("XREADGROUP", "GROUP", this.group, this.d.consumer, "COUNT", room, "BLOCK", BLOCK_MS, ...noack, "STREAMS", this.key, ">");
    this.#reading = false;
    for (const [id, fields] of readReply(reply)) this.#take(id, fields, 1);
  }

  /** This consumer's pending entries, from #recoverFrom: those it does not hold are delivered again. */
  async #recover(room: number): Promise<void> {
    const entries = readReply(await this.d.reader.callBuffer("XREADGROUP", "GROUP", this.group, this.d.consumer, "COUNT", room, "STREAMS", this.key, this.#recoverFrom!));
    if (entries.length === 0) {
      this.#recoverFrom = undefined;
      return;
    }
    this.#recoverFrom = entries.at(-1)![0];
    const fresh = entries.filter(([id]) => !this.#held.has(id) && !this.#acking.has(id));
    if (fresh.length === 0) return;
    const counts = await this.#counts(fresh);
    for (const [id, fields] of fresh) this.#take(id, fields, counts.get(id) ?? 2);
    this.d.log.info("delivering again messages this consumer had read when its connection dropped", { subscription: this.spec.name, count: fresh.length });
  }

  /** Delivery counts (XPENDING) of entries this consumer just took: their attempt numbers. */
  async #counts(entries: Entry[]): Promise<Map<string, number>> {
    const span = entries.length + this.#held.size + this.#acking.size;
    return deliveryCounts(await this.d.main.call("XPENDING", this.key, this.group, entries[0]![0], entries.at(-1)![0], span, this.d.consumer));
  }

  /** Claim what others left pending past claimIdle (durable), and reap long-idle consumers. */
  async #tick(): Promise<void> {
    const { main, log } = this.d;
    if (this.#ticking || this.#paused || this.#stopped || main.status !== "ready" || !this.#grouped) return;
    this.#ticking = true;
    try {
      if (Date.now() - this.#reapedAt > REAP_EVERY_MS) {
        this.#reapedAt = Date.now();
        const n = Number(await main.eval(REAP, 1, this.key, this.group, this.d.consumer, REAP_IDLE_MS));
        if (n > 0) log.info("removed consumers idle for an hour with nothing pending", { subscription: this.spec.name, group: this.group, count: n });
      }
      if (!this.spec.durable) return;
      for (let room = this.spec.maxInFlight - this.#held.size; room > 0 && !this.#paused && !this.#stopped; room = this.spec.maxInFlight - this.#held.size) {
        const r = autoclaimReply(await main.callBuffer("XAUTOCLAIM", this.key, this.group, this.d.consumer, this.d.claimIdle, this.#cursor, "COUNT", room));
        this.#cursor = r.cursor;
        for (const id of r.deleted) this.#trimmed(id);
        // Redis 6.2 lists an entry trimmed while pending with null fields (7.0 in `deleted`): acknowledged, so it leaves the pending list.
        for (const [id] of r.entries.filter(([, fields]) => fields === null)) this.#take(id, null, 0);
        const fresh = r.entries.filter(([id, fields]) => fields !== null && !this.#held.has(id) && !this.#acking.has(id));
        if (fresh.length > 0 && !this.#stopped) {
          const counts = await this.#counts(fresh);
          for (const [id, fields] of fresh) this.#take(id, fields, counts.get(id) ?? 2);
          log.warn("claimed messages left pending by a stopped or stuck consumer; delivering them again", { subscription: this.spec.name, count: fresh.length, claimIdleMs: this.d.claimIdle });
        }
        if (this.#cursor === "0-0") break;
      }
    } catch (err) {
      if (isReplyError(err) && !/NOGROUP/.test(message(err))) log.warn("claiming pending messages failed", { subscription: this.spec.name, error: message(err) });
    } finally {
      this.#ticking = false;
    }
  }

  #trimmed(entryId: string): void {
    this.#dropped += 1;
    this.d.log.error("a pending message was trimmed from the stream before it was acknowledged (redis.maxLen): it cannot be delivered again", { subscription: this.spec.name, stream: this.key, entry: entryId });
  }

  #take(entryId: string, fields: Fields | null, attempt: number): void {
    if (fields === null) {
      this.#trimmed(entryId);
      if (this.spec.durable) this.#ack(entryId); // clear it from the pending list
      return;
    }
    const m = decodeEntry(entryId, fields, this.key);
    const h: Held = { entryId, delivery: { ...m, topic: this.spec.topic, attempt }, state: "parked", next: false };
    this.#held.set(entryId, h);
    if (!this.#paused && !this.#stopped) void this.#deliver(h);
  }

  async #deliver(h: Held): Promise<void> {
    h.state = "delivering";
    this.#delivering += 1;
    let outcome: Outcome;
    try {
      outcome = await this.deliver(h.delivery);
    } catch (err) {
      this.d.log.error("delivery failed unexpectedly; the message will be delivered again", { subscription: this.spec.name, id: h.delivery.id, error: message(err) });
      outcome = { kind: "retry", delay: this.spec.retry.max };
    } finally {
      this.#delivering -= 1;
      if (this.#delivering === 0) for (const w of this.#idle.splice(0)) w();
    }
    if (outcome.kind !== "retry") {
      this.#release(h);
      if (this.spec.durable) this.#ack(h.entryId);
    } else if (this.#stopped) {
      this.#letGo(h);
    } else {
      h.state = "waiting";
      h.timer = setTimeout(() => void this.#again(h, true), outcome.delay);
    }
  }

  /** A held entry's next delivery: a retry (`next`), or the first one of an entry parked while paused. */
  async #again(h: Held, next: boolean): Promise<void> {
    h.timer = undefined;
    if (this.#stopped || this.#held.get(h.entryId) !== h) return;
    if (this.#paused) {
      h.state = "parked";
      h.next = next;
      return;
    }
    const attempt = h.delivery.attempt + (next ? 1 : 0);
    if (this.spec.durable) {
      let mine: boolean;
      try {
        mine = Number(await this.d.main.eval(REDELIVER, 1, this.key, this.group, this.d.consumer, h.entryId, attempt)) === 1;
      } catch {
        // Redis unreachable: keep holding it, and ask again shortly.
        if (!this.#stopped) h.timer = setTimeout(() => void this.#again(h, next), 1_000);
        return;
      }
      if (this.#stopped || this.#held.get(h.entryId) !== h) return;
      if (!mine) {
        this.#release(h);
        this.d.log.warn("a message waiting here for its retry is no longer pending with this consumer (another instance claimed it, or redis.maxLen trimmed it)", { subscription: this.spec.name, id: h.delivery.id, attempt });
        return;
      }
      if (this.#paused) {
        h.state = "parked";
        h.next = false; // the retry count already says `attempt`
        h.delivery = { ...h.delivery, attempt };
        return;
      }
    }
    h.delivery = { ...h.delivery, attempt };
    void this.#deliver(h);
  }

  #release(h: Held): void {
    clearTimeout(h.timer);
    this.#held.delete(h.entryId);
    this.#nudge();
  }

  /** Stopping with `h` not delivered: durable, it stays pending (claimed elsewhere after claimIdle); at-most-once, it is lost. */
  #letGo(h: Held): void {
    this.#release(h);
    if (this.spec.durable) return;
    this.#dropped += 1;
    this.d.log.error("subscription stopped with a message not delivered; dropped (at-most-once)", { subscription: this.spec.name, id: h.delivery.id, attempt: h.delivery.attempt });
  }

  #ack(entryId: string): void {
    this.#acking.add(entryId);
    this.#acks.push(entryId);
    this.#ackSoon ??= setImmediate(() => void this.#flushAcks());
  }

  /** Send the queued acks in one XACK; if Redis cannot take them now, again every second until it does. */
  async #flushAcks(): Promise<void> {
    if (this.#ackSoon) clearImmediate(this.#ackSoon);
    this.#ackSoon = undefined;
    clearTimeout(this.#ackLater);
    this.#ackLater = undefined;
    const ids = this.#acks;
    this.#acks = [];
    if (ids.length === 0) return;
    try {
      await this.d.main.xack(this.key, this.group, ...ids);
      for (const id of ids) this.#acking.delete(id);
    } catch {
      this.#acks.unshift(...ids);
      if (!this.#abandoned) this.#ackLater ??= setTimeout(() => void this.#flushAcks(), 1_000);
    }
  }

  #nudge(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** The loop's one wait: `ms`, or until nudged (room freed, the reader ready, pause, stop). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  /** End the loop: cut its blocking read short (again every 250 ms, in case the unblock arrived before the read). */
  async #endLoop(): Promise<void> {
    this.#nudge();
    const unblock = () => {
      if (this.#reading && this.#readerId !== undefined) this.d.main.client("UNBLOCK", this.#readerId).catch(() => undefined);
    };
    unblock();
    const again = setInterval(unblock, 250);
    try {
      await this.#loop;
    } finally {
      clearInterval(again);
    }
  }

  async pause(): Promise<void> {
    if (this.#paused || this.#stopped) return;
    this.#paused = true;
    await this.#endLoop();
    this.d.log.info("subscription paused: the app is not passing its health check; messages wait in the stream", { subscription: this.spec.name });
  }

  resume(): void {
    if (!this.#paused || this.#stopped) return;
    this.#paused = false;
    for (const h of [...this.#held.values()]) if (h.state === "parked") void this.#again(h, h.next);
    this.#loop = this.#run();
    this.d.log.info("subscription resumed", { subscription: this.spec.name });
  }

  /** Stop reading; deliveries in flight finish (up to `timeout`) and are acknowledged; then leave the group. */
  async stop(timeout: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#ticker);
    await this.#endLoop();
    for (const h of [...this.#held.values()]) if (h.state !== "delivering") this.#letGo(h);
    // Past the deadline, what is still in flight stays pending (durable): claimed elsewhere after claimIdle.
    await waitIdle(() => this.#delivering === 0, (wake) => this.#idle.push(wake), timeout);
    await this.#flushAcks();
    try {
      await this.d.main.eval(this.spec.durable ? LEAVE_DURABLE : LEAVE_AT_MOST_ONCE, 1, this.key, this.group, this.d.consumer);
    } catch {
      /* Redis unreachable: the consumer stays in the group until reaped */
    }
    this.#close();
  }

  #abandoned = false;

  /** The broker is closing under a running subscription: drop everything, connections included. */
  abandon(): void {
    this.#stopped = true;
    this.#abandoned = true;
    clearInterval(this.#ticker);
    this.#nudge();
    for (const h of this.#held.values()) clearTimeout(h.timer);
    clearTimeout(this.#ackLater);
    this.#close();
  }

  #close(): void {
    this.d.reader.disconnect();
    this.d.stopped();
  }
}
