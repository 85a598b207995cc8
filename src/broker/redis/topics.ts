import { isValidSubject } from "../../subjects.js";
import type { SubscriptionSpec } from "../types.js";

/** Why a wildcard subscription cannot run on the Redis broker (config check and subscribe). */
export const REDIS_NO_WILDCARDS =
  "Redis Streams has no subject wildcards ('*', '>'): with broker.kind redis, subscribe to each topic by name (one stream per topic)";

/** The stream a topic lives in. */
export const streamKey = (prefix: string, topic: string): string => `${prefix}${topic}`;

/**
 * The consumer group of one subscription: its queue (instances of one service share it) and its
 * name, so that two subscriptions of one service to the same topic each get every message.
 */
export const groupName = (spec: SubscriptionSpec): string => `${spec.queue}:${spec.name}`;

/** Throws when the topic has wildcards: a stream is one topic, and Redis cannot match several. */
export function checkTopic(topic: string): void {
  if (!isValidSubject(topic, false)) throw new Error(`topic '${topic}': ${REDIS_NO_WILDCARDS}`);
}
