/**
 * The public API of the `sidecar` package: what a Node program may import to embed a sidecar,
 * load and check its configuration, and tell its errors apart. Everything else under `dist/` is
 * internal and may change in any release (package.json `exports` lets nothing else be imported).
 */
export { Sidecar } from "./sidecar.js";
export { loadConfig, ConfigError, DEFAULTS, type Config, type LoadOptions, type LoadedConfig } from "./config/index.js";
export { SidecarError, ERRORS, type ErrorCode } from "./errors.js";
export { createLogger, silentLogger, type Logger, type LogFormat, type LogLevel } from "./log.js";
export type { SidecarEvent, SidecarEventType, StampedEvent, LaggedEvent, BackendStatus } from "./events/types.js";
export type { TrafficSnapshot } from "./traffic/window.js";
export type { NodeRecord, Registry, RegistryEvent, RegistryStatus, RegistryWatch } from "./registry/types.js";
export type { Broker, BrokerStatus, ActiveSubscription, Delivery, Outcome, PublishResult, SubscriptionSpec } from "./broker/types.js";
