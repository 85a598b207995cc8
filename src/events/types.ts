/**
 * What happens to a sidecar, as a discriminated union on `type` (as nats.js's `status()`):
 * `Sidecar.events()` yields these in order, `GET /events` streams them (Server-Sent Events),
 * the status page lists the last ones. They carry names, ids and addresses, never a secret.
 */
export type SidecarEvent =
  /** The api and inbound listeners are up and the node record is built (the app may not be healthy yet). */
  | { type: "listening"; api: string; inbound: string; advertise: string; node: string }
  /** A backbone connection changed: NATS connecting (`waiting`, `refused` credentials), lost, back; the registry unreachable or back. */
  | { type: "backend"; backend: "nats" | "registry"; status: BackendStatus; error?: string }
  | { type: "app-healthy" }
  | { type: "app-unhealthy"; reason: string }
  /** This node's record was written for the first time since it was last absent. */
  | { type: "registered"; service: string; node: string; address: string; registry: string }
  | { type: "deregistered"; service: string; node: string; reason: string }
  /** Another (or this) node appeared in the registry view. */
  | { type: "node-joined"; service: string; node: string; address: string }
  /** A node left the view: `deleted` by the backend (deregistered, or its lease expired: etcd), or `expired` here (not refreshed within the TTL). */
  | { type: "node-left"; service: string; node: string; reason: "deleted" | "expired" }
  /** This sidecar's outlier detection stopped sending calls to a node for `forMs`. */
  | { type: "node-ejected"; service: string; node: string; forMs: number; failures: number }
  | { type: "subscription"; subscription: string; topic: string; state: "active" | "paused" | "failed"; error?: string }
  /** close() began: the node deregisters, then calls in flight drain. */
  | { type: "draining" }
  /** close() finished; an events() iterator ends after this one. */
  | { type: "stopped" };

export type BackendStatus = "waiting" | "refused" | "connected" | "disconnected" | "unavailable" | "closed";

export type SidecarEventType = SidecarEvent["type"];

/** An event as delivered: numbered (1, 2, …, per sidecar) and timed. */
export type StampedEvent = SidecarEvent & { seq: number; time: string };

/**
 * Yielded by an events() iterator whose reader fell more than its buffer behind: `dropped`
 * older events were discarded (as tokio's broadcast says Lagged); the stream goes on.
 */
export interface LaggedEvent {
  type: "lagged";
  dropped: number;
}

/** The function components are given to report an event. */
export type Emit = (event: SidecarEvent) => void;
