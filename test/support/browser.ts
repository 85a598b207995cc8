import { chromium, type Browser } from "playwright-core";

const EXECUTABLE = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

/**
 * Debian's Chromium, headless, driven by playwright-core (which downloads no browser of its own;
 * it gives each launch a new empty profile). Background networking is off: nothing beyond
 * loopback is reachable here.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: EXECUTABLE,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
