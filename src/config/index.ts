export { loadConfig, ConfigError, type LoadOptions, type LoadedConfig } from "./load.js";
export { DEFAULTS, type Config } from "./schema.js";
