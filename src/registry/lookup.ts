import { SidecarError } from "../errors.js";
import type { RegistryView } from "./view.js";

/** Wait (within `timeout`) for the view to hold `service`, watching it from now on. */
export async function lookup(view: RegistryView, service: string, timeout: number): Promise<void> {
  const pending = view.want(service);
  if (!pending) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      pending,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no listing within ${timeout} ms`)), timeout);
      }),
    ]);
  } catch (err) {
    throw new SidecarError("REGISTRY_UNAVAILABLE", `cannot watch service '${service}' in the registry: ${(err as Error).message}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}
