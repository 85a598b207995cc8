import { createHash, timingSafeEqual } from "node:crypto";

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * A secret compared in constant time (hashes of equal length, so neither the content nor the
 * length of the expected value leaks through timing). Undefined: nothing is required.
 */
export class Secret {
  readonly #expected: Buffer | undefined;

  constructor(value: string | undefined) {
    this.#expected = value === undefined ? undefined : digest(value);
  }

  get required(): boolean {
    return this.#expected !== undefined;
  }

  /** True when no secret is required, or `given` is it. */
  accepts(given: string | string[] | undefined): boolean {
    if (this.#expected === undefined) return true;
    if (typeof given !== "string") return false;
    return timingSafeEqual(digest(given), this.#expected);
  }

  /** For `Authorization: Bearer <token>`. */
  acceptsBearer(header: string | undefined): boolean {
    if (this.#expected === undefined) return true;
    const m = /^Bearer (\S+)$/i.exec(header ?? "");
    return m !== null && this.accepts(m[1]);
  }
}
