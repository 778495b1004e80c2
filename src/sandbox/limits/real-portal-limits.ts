import type { ServerResponse } from "node:http";

/**
 * The limits of a real cloud portal that the method pages do not show (REFERENCE.md "Real portals"):
 * a request cut off after 60 s, and a method whose execution-time budget is spent.
 */

/** How long a REST request may run before the portal cuts it off. */
export const DEFAULT_CUTOFF_MS = 60_000;

/**
 * What a request cut off at the time limit gets: the front end's 504 page, not REST JSON. Whether the method
 * ran part of its work is unknowable for the client, as on the real portal (here it did not run at all).
 */
export function sendCutOff(res: ServerResponse, cutoffMs: number): void {
  const body = `<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center><!-- cut off after ${cutoffMs} ms --></body></html>`;
  res.writeHead(504, { "content-type": "text/html", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Methods whose execution-time budget is spent (429 OPERATION_TIME_LIMIT) until a reset time: set by the control
 * API, so a test decides which method is blocked and for how long; every other method keeps working.
 */
export class SpentBudgets {
  /** method (lower case) -> epoch ms of `operating_reset_at`. */
  private readonly until = new Map<string, number>();

  spend(method: string, forMs: number, now = Date.now()): number {
    const resetAt = now + Math.max(0, forMs);
    this.until.set(method.toLowerCase(), resetAt);
    return resetAt;
  }

  /** The reset time (epoch ms) while `method` is blocked, else undefined. */
  blockedUntil(method: string, now = Date.now()): number | undefined {
    const key = method.toLowerCase();
    const resetAt = this.until.get(key);
    if (resetAt === undefined) return undefined;
    if (now < resetAt) return resetAt;
    this.until.delete(key);
    return undefined;
  }

  clear(): void {
    this.until.clear();
  }
}

/**
 * app.info: the application and the portal's plan. `LICENSE_FAMILY` "ent" is Enterprise (bucket 250, drain 5/s);
 * most plans are "project", "team", "basic".
 */
export function appInfo(clientId: string, licenseFamily: string, memberId: string): Record<string, unknown> {
  return {
    ID: 1,
    CODE: clientId,
    VERSION: 1,
    STATUS: "L",
    INSTALLED: true,
    PAYMENT_EXPIRED: "N",
    DAYS: null,
    LANGUAGE_ID: "en",
    LICENSE: `en_${licenseFamily}`,
    LICENSE_TYPE: licenseFamily,
    LICENSE_FAMILY: licenseFamily,
    MEMBER_ID: memberId,
  };
}
