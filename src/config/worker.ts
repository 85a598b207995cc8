/**
 * Runs loadConfig in a worker thread (isolated.ts): the schema validator and the YAML parser
 * are loaded into an isolate that is gone once the config is read, not into the sidecar's.
 */
import { parentPort, workerData } from "node:worker_threads";
import { ConfigError, loadConfig, type LoadOptions } from "./load.js";

try {
  parentPort!.postMessage({ loaded: loadConfig(workerData as LoadOptions) });
} catch (err) {
  parentPort!.postMessage(err instanceof ConfigError ? { problems: err.problems } : { failure: (err as Error).stack ?? String(err) });
}
