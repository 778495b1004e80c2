import { createHash, timingSafeEqual } from "node:crypto";
import { parsePhpForm } from "../rest/php-form";

/**
 * The ONOFFLINEEVENT notification a portal POSTs to a bound handler (REFERENCE.md, "The queue"): checked,
 * verified and reduced to what is safe to pass on. The `auth` block carries the application's access and
 * refresh tokens, so nothing of it leaves this module.
 */
export const OFFLINE_EVENT = "ONOFFLINEEVENT";

/** What the trigger emits: `data` is passed through as sent (the vendor says it is empty in practice). */
export interface OfflineNotification {
  event: string;
  /** Unix seconds as the portal sent them (a number when numeric), null when absent. */
  ts: number | string | null;
  data: unknown;
}

/** A refused notification and the HTTP status to answer it with. */
export class NotificationError extends Error {
  constructor(
    readonly status: 400 | 401,
    message: string,
  ) {
    super(message);
    this.name = "NotificationError";
  }
}

function isJsonType(contentType: string): boolean {
  return /^application\/([\w.-]+\+)?json\b/i.test(contentType.trim());
}

function isFormType(contentType: string): boolean {
  return /^application\/x-www-form-urlencoded\b/i.test(contentType.trim());
}

/**
 * The body as an object: JSON or PHP-style form fields, chosen by content type; without one, a body that
 * starts with `{` is JSON and anything else a form.
 */
export function parseNotificationBody(raw: string, contentType?: string): Record<string, unknown> {
  const type = contentType ?? "";
  const json = isJsonType(type) || (!isFormType(type) && raw.trimStart().startsWith("{"));
  if (!json) return parsePhpForm(raw);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new NotificationError(400, "the body is not valid JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new NotificationError(400, "the body is not a JSON object");
  }
  return parsed as Record<string, unknown>;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * Constant-time comparison of the received application_token with the configured one. Both sides are hashed
 * first so timingSafeEqual sees equal lengths and the length of the secret does not leak either.
 * An empty configured token matches nothing: an unverifiable endpoint must refuse everything.
 */
export function tokenMatches(expected: string, received: unknown): boolean {
  if (!expected || typeof received !== "string" || !received) return false;
  return timingSafeEqual(digest(expected), digest(received));
}

function applicationTokenOf(body: Record<string, unknown>): unknown {
  const auth = body.auth;
  if (auth === null || typeof auth !== "object") return undefined;
  return (auth as Record<string, unknown>).application_token;
}

function normaliseTs(ts: unknown): number | string | null {
  if (typeof ts === "number" && Number.isFinite(ts)) return ts;
  if (typeof ts === "string" && ts !== "") return /^\d+$/.test(ts) ? Number(ts) : ts;
  return null;
}

/**
 * Verifies a parsed body and returns the notification without `auth`. The token is checked before anything
 * else is looked at, so an unauthenticated caller learns nothing about what a valid body looks like.
 */
export function verifyNotification(body: Record<string, unknown>, applicationToken: string): OfflineNotification {
  if (!tokenMatches(applicationToken, applicationTokenOf(body))) {
    throw new NotificationError(401, "missing or wrong application_token");
  }
  const event = typeof body.event === "string" ? body.event.trim() : "";
  if (!event) throw new NotificationError(400, "the body has no `event` field");
  if (event.toUpperCase() !== OFFLINE_EVENT) {
    throw new NotificationError(400, `expected ${OFFLINE_EVENT}, got ${event.slice(0, 64)}`);
  }
  return { event: OFFLINE_EVENT, ts: normaliseTs(body.ts), data: body.data ?? null };
}

/** Parse + verify in one step, for a raw body as it came off the wire. */
export function readNotification(raw: string, contentType: string | undefined, applicationToken: string) {
  return verifyNotification(parseNotificationBody(raw, contentType), applicationToken);
}
