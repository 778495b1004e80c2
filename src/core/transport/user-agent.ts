import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The `User-Agent` of every request (REST and OAuth): Bitrix24's docs ask integrations to name themselves, so
 * the vendor's support can tell whose requests they are looking at. package.json sits three levels up both from
 * src/core/transport (tests) and from nodes/core/transport (the published build).
 */
function readUserAgent(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "..", "package.json"), "utf8")) as {
      name?: unknown;
      version?: unknown;
    };
    if (typeof pkg.name === "string" && typeof pkg.version === "string") return `${pkg.name}/${pkg.version}`;
  } catch {
    // A bundler that moved the file: the name alone still says who we are.
  }
  return "node-red-contrib-bitrix24-offline-events";
}

export const USER_AGENT = `${readUserAgent()} (Node.js ${process.version})`;
