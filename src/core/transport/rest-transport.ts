import type { Agent as HttpAgent } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import axios, { type AxiosInstance } from "axios";
import { Bitrix24Error, codeForEmptyError, SYSTEM_ERRORS } from "../rest/errors";
import { USER_AGENT } from "./user-agent";

/** How one HTTP exchange with the portal ended, before any retry decision. */
export type Exchange =
  | { kind: "answer"; httpStatus: number; body: Record<string, unknown>; retryAfterMs?: number }
  | {
      kind: "failure";
      /** 0 when no HTTP answer arrived. */
      httpStatus: number;
      error: Bitrix24Error;
      /** False only when the request certainly did not leave (connection refused, DNS failure). */
      reached: boolean;
      retryAfterMs?: number;
      /** `time.operating_reset_at` of an error answer that carried one (epoch ms). */
      operatingResetAt?: number;
    }
  /** A 301/302/307/308: the portal was renamed and did not run the call; `location` is absolute. */
  | { kind: "moved"; httpStatus: number; location: string };

/** An exchange that got an answer to interpret (or failed), i.e. anything but a redirect. */
export type Answered = Exclude<Exchange, { kind: "moved" }>;

const MOVED_STATUSES = new Set([301, 302, 307, 308]);

// The portal's wording of these does not say what to do about them: the action goes first (a node's status shows
// ~60 characters), the portal's own words after.
const ADVICE: Readonly<Record<string, string>> = {
  OVERLOAD_LIMIT: SYSTEM_ERRORS.OVERLOAD_LIMIT.description,
};

// Failures that happen before a single byte of the request left: retrying cannot duplicate anything.
const NOT_SENT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ENETUNREACH", "EHOSTUNREACH"]);
// A TLS trust problem is a configuration problem: retrying the same handshake will not fix it.
const TLS_TRUST = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/;

/**
 * What of an HTTP client's failure may travel as an error's `cause`: its name, message and code. The axios error
 * itself holds the request (config with the body, i.e. the access token; the shared agent and its sockets, i.e.
 * the OAuth URL with the client secret and refresh token): a log handler that inspects causes would print them.
 */
export function wireCause(err: unknown): Error {
  const e = (typeof err === "object" && err !== null ? err : {}) as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
  };
  const cause: Error & { code?: string } = new Error(typeof e.message === "string" ? e.message : String(err));
  if (typeof e.name === "string") cause.name = e.name;
  if (typeof e.code === "string") cause.code = e.code;
  return cause;
}

/**
 * Maps an axios/socket failure (no HTTP answer) to NETWORK_ERROR or TIMEOUT, and says whether the request may
 * have reached the server. Anything not known to fail before sending counts as "may have reached": a reset or
 * timeout after the body left cannot tell whether the portal ran the method.
 */
export function describeTransportFailure(
  err: unknown,
  method: string,
  target: string,
): { error: Bitrix24Error; reached: boolean } {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code ?? "";
  const message = e.message ?? String(err);
  if (code === "ECONNABORTED" || code === "ETIMEDOUT" || /timeout/i.test(message)) {
    return {
      error: new Bitrix24Error(
        { code: "TIMEOUT", method, description: `${target} did not answer in time (${message})` },
        { cause: wireCause(err) },
      ),
      reached: true,
    };
  }
  if (NOT_SENT_CODES.has(code)) {
    return {
      error: new Bitrix24Error(
        { code: "NETWORK_ERROR", method, description: `${target} could not be reached (${code}: ${message})` },
        { cause: wireCause(err) },
      ),
      reached: false,
    };
  }
  if (TLS_TRUST.test(code)) {
    return {
      error: new Bitrix24Error(
        {
          code: "NETWORK_ERROR",
          method,
          retryable: false,
          description: `TLS failure talking to ${target} (${code}: ${message})`,
        },
        { cause: wireCause(err) },
      ),
      reached: false,
    };
  }
  return {
    error: new Bitrix24Error(
      {
        code: "NETWORK_ERROR",
        method,
        description: `the connection to ${target} failed (${code || "error"}: ${message})`,
      },
      { cause: wireCause(err) },
    ),
    reached: true,
  };
}

function retryAfter(header: unknown): number | undefined {
  if (typeof header !== "string" || header === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Reads a REST answer: `{error, error_description}` becomes a Bitrix24Error with the HTTP status; a body that
 * is not JSON, or has neither `error` nor `result`, is MALFORMED_ANSWER (retryable when the status was 5xx,
 * e.g. a proxy's HTML error page).
 */
export function interpretAnswer(status: number, text: string, method: string): Answered {
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      body = parsed as Record<string, unknown>;
    }
  } catch {
    // handled below
  }
  const said =
    body && typeof body.error_description === "string" && body.error_description !== ""
      ? body.error_description
      : undefined;
  // An empty code with a description is still the portal's error (crm.*.get's "Not found"), not garbage.
  const code = body && typeof body.error === "string" ? body.error || (said ? codeForEmptyError(said) : "") : "";
  if (code !== "") {
    const advice = ADVICE[code];
    const description = advice ? `${advice}${said ? ` - ${said}` : ""}` : said;
    const failure: Answered = {
      kind: "failure",
      httpStatus: status,
      reached: true,
      error: new Bitrix24Error({ code, status: status >= 400 ? status : undefined, method, description }),
    };
    const resetAt = operatingResetAt(body?.time);
    return resetAt === undefined ? failure : { ...failure, operatingResetAt: resetAt };
  }
  if (!body || !("result" in body) || status >= 400) {
    const snippet = text.replace(/\s+/g, " ").slice(0, 200);
    return {
      kind: "failure",
      httpStatus: status,
      reached: true,
      error: new Bitrix24Error({
        code: "MALFORMED_ANSWER",
        status,
        method,
        retryable: status >= 500 || status === 429,
        description: `HTTP ${status}: the answer is not Bitrix24 REST JSON with a result: ${snippet || "(empty)"}`,
      }),
    };
  }
  return { kind: "answer", httpStatus: status, body };
}

/** `time.operating_reset_at` (epoch seconds, as the portal sends it) in epoch ms. */
export function operatingResetAt(time: unknown): number | undefined {
  if (typeof time !== "object" || time === null) return undefined;
  const at = Number((time as Record<string, unknown>).operating_reset_at);
  return Number.isFinite(at) && at > 0 ? at * 1000 : undefined;
}

/**
 * POSTs JSON to a REST method URL; never throws for HTTP statuses or network failures, only reports them.
 * Redirects are not followed here: a redirect means the portal moved, which the client decides about (where to,
 * and that from now on every call goes there), and the method is repeated there as the same POST.
 */
export class RestTransport {
  private readonly http: AxiosInstance;

  constructor(
    private readonly o: {
      timeoutMs: number;
      signal: AbortSignal;
      /** Reused connections, for everything that is safe to resend. */
      keepAlive: { http: HttpAgent; https: HttpsAgent };
      /** Fresh connections, for requests that must not be lost to a stale pooled socket (see post()). */
      fresh: { http: HttpAgent; https: HttpsAgent };
    },
  ) {
    this.http = axios.create({
      timeout: o.timeoutMs,
      validateStatus: () => true,
      responseType: "text",
      transformResponse: [(data: unknown) => data],
      proxy: false,
      maxRedirects: 0,
      headers: { "Content-Type": "application/json", Accept: "application/json", "User-Agent": USER_AGENT },
    });
  }

  /**
   * `unsafe` requests (a clear=1 event.offline.get) go out on a fresh connection: on a pooled keep-alive socket
   * the server may close just as we write, and that reset is indistinguishable from one after the portal ran
   * the method — which would report lost events that were never fetched.
   */
  async post(url: string, body: unknown, method: string, unsafe: boolean): Promise<Exchange> {
    const agents = unsafe ? this.o.fresh : this.o.keepAlive;
    try {
      const response = await this.http.post(url, JSON.stringify(body), {
        signal: this.o.signal,
        httpAgent: agents.http,
        httpsAgent: agents.https,
      });
      const location = response.headers.location;
      if (MOVED_STATUSES.has(response.status) && typeof location === "string" && location !== "") {
        try {
          return { kind: "moved", httpStatus: response.status, location: new URL(location, url).toString() };
        } catch {
          // An unusable Location: reported below as what it is, an answer that is not REST JSON.
        }
      }
      const exchange = interpretAnswer(response.status, String(response.data ?? ""), method);
      const after = retryAfter(response.headers["retry-after"]);
      return after === undefined ? exchange : { ...exchange, retryAfterMs: after };
    } catch (err) {
      if (this.o.signal.aborted) {
        const error = new Bitrix24Error({ code: "CLOSED", method }, { cause: wireCause(err) });
        return { kind: "failure", httpStatus: 0, reached: true, error };
      }
      return { kind: "failure", httpStatus: 0, ...describeTransportFailure(err, method, "the portal") };
    }
  }
}
