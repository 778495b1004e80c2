import { Bitrix24Error } from "../rest/errors";
import type { RestTime } from "../rest/types";
import type { TokenStore } from "../state/token-store";
import { DEFAULT_RETRY, type RetryPolicy } from "../transport/backoff";
import type { RateGate } from "../transport/rate-limiter";

/**
 * The client's vocabulary: its options and defaults, what a batch returns, per-call options, and the payloads
 * of its events. client.ts re-exports all of it, so callers keep importing from there.
 */

export const DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info";
export const DEFAULT_RATE_LIMIT = { perSecond: 2, burst: 50 };
export const MAX_BATCH_COMMANDS = 50;
/**
 * Per HTTP request. Above the 60 s a portal lets a REST request run before cutting it off (REFERENCE.md "Real
 * portals"), plus room for the network and the portal's front end: a shorter timeout would turn slow but
 * successful calls into "may have run".
 */
export const DEFAULT_TIMEOUT_MS = 75_000;

export interface OAuthAuth {
  type: "oauth";
  clientId: string;
  clientSecret: string;
  accessToken?: string;
  refreshToken?: string;
  /**
   * Default "https://oauth.bitrix.info"; the token URL is `${oauthServer}/oauth/token/`. Only the first guess:
   * refreshes go where `serverEndpoint` or the last token answer's `server_endpoint` says.
   */
  oauthServer?: string;
  /** `server_endpoint` as the portal handed it over (installation POST, authorization-code answer). */
  serverEndpoint?: string;
}

export interface WebhookAuth {
  type: "webhook";
  /** `https://<portal>/rest/<user_id>/<secret>/` */
  webhookUrl: string;
}

export interface ClientOptions {
  /** https only, except loopback hosts (127.0.0.0/8, localhost, ::1). */
  portalUrl: string;
  auth: OAuthAuth | WebhookAuth;
  /** Default {perSecond: 2, burst: 50}; false = no client-side limiter. */
  rateLimit?: { perSecond: number; burst: number } | false;
  /** Per HTTP request, default DEFAULT_TIMEOUT_MS (75000: above the portal's own 60 s cut-off). */
  timeoutMs?: number;
  /** Defaults 6 / 500 / 30000. maxAttempts counts the first try. */
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Where rotated tokens persist (see token-store.ts); without one they live in memory only. */
  tokenStore?: TokenStore;
  /** A bucket shared beyond this process (the PostgreSQL store's); replaces the in-process one of rateLimit. */
  rateGate?: RateGate;
}

export interface BatchOutcome {
  /** Per command key, for the commands that succeeded. */
  result: Record<string, unknown>;
  /** Per command key, for the commands that failed. A command in neither was not run (halt). */
  errors: Record<string, Bitrix24Error>;
  total: Record<string, number>;
  next: Record<string, number>;
  time?: RestTime;
  /** Calls it took: 1 for the batch, plus one per command re-run singly after the portal refused it in a batch. */
  requests: number;
}

/** Per call (or batch): how failures may be retried, and when to stop waiting. */
export interface CallOptions {
  /**
   * The call may change data on the portal: once the request may have reached it (timeout, reset, 5xx), it
   * fails with WRITE_MAY_HAVE_RUN instead of being sent again. Refusals before running (503 limits, 429,
   * connection refused) are still retried. Default false: retried like any read.
   */
  mayChangeData?: boolean;
  /**
   * Stops the call while it waits (for the rate limiter or between retries) with ABORTED; a request already on
   * the wire is not cut off, so a write is never left half-known because of it.
   */
  signal?: AbortSignal;
}

export interface RequestInfo {
  method: string;
  /** HTTP status; 0 when no answer arrived. */
  status: number;
  /** From sending (after the bucket let it go) to the answer, fractional. */
  ms: number;
}

export interface RetryInfo {
  method: string;
  /** The attempt that failed (1 = the first try). */
  attempt: number;
  delayMs: number;
  error: Bitrix24Error;
}

export interface PortalMove {
  /** The origin calls went to. */
  from: string;
  /** The origin the portal now answers at; every later call goes there. */
  to: string;
  /** The redirect's HTTP status (301/302/307/308). */
  status: number;
}

/** An answer's `time.operating`: the server time the method used in its current 10-minute window. */
export interface OperatingInfo {
  method: string;
  /** Seconds. */
  operating: number;
  /** Epoch ms when the method's window resets (`time.operating_reset_at`), when the answer said. */
  resetAt?: number;
}

export interface MethodPause {
  method: string;
  /** Epoch ms: calls of this method wait until then (`time.operating_reset_at`). */
  until: number;
}

/** A configured number, or the default; anything but a positive number is a configuration error. */
export function positive(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!(Number.isFinite(value) && value > 0)) {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: `${what} must be a positive number (got ${value})`,
    });
  }
  return value;
}

/** The retry policy of ClientOptions.retry, defaults filled in and checked. */
export function retryPolicy(retry: ClientOptions["retry"]): RetryPolicy {
  return {
    maxAttempts: Math.max(1, Math.floor(positive(retry?.maxAttempts, DEFAULT_RETRY.maxAttempts, "retry.maxAttempts"))),
    baseDelayMs: positive(retry?.baseDelayMs, DEFAULT_RETRY.baseDelayMs, "retry.baseDelayMs"),
    maxDelayMs: positive(retry?.maxDelayMs, DEFAULT_RETRY.maxDelayMs, "retry.maxDelayMs"),
  };
}
