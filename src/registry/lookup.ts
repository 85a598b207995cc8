import { SidecarError } from "../errors.js";
import { Deadline } from "../http/deadline.js";
import type { RegistryView } from "./view.js";

/**
 * Wait for a service's first listing within `deadline` (REGISTRY_UNAVAILABLE when it does not
 * come, or the registry refused the watch). `after` ends the message (a call says it was not sent).
 */
export function listed(listing: Promise<void>, service: string, deadline: Deadline, after = ""): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const off = deadline.onCancel(() =>
      reject(new SidecarError("REGISTRY_UNAVAILABLE", `the registry did not list service '${service}' within the deadline (this sidecar was not watching it yet)${after}`)),
    );
    listing.then(
      () => {
        off();
        resolve();
      },
      (err: Error) => {
        off();
        reject(new SidecarError("REGISTRY_UNAVAILABLE", `cannot watch service '${service}' in the registry: ${err.message}${after}`, { cause: err }));
      },
    );
  });
}

/** Wait (within `timeout`) for the view to hold `service`, watching it from now on. */
export async function lookup(view: RegistryView, service: string, timeout: number): Promise<void> {
  const pending = view.want(service);
  if (!pending) return;
  const deadline = new Deadline(timeout);
  try {
    await listed(pending, service, deadline);
  } finally {
    deadline.done();
  }
}
