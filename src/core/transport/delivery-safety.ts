import { Bitrix24Error } from "../rest/errors";
import type { BatchCommand } from "../rest/types";
import type { Exchange } from "./rest-transport";

const OFFLINE_GET = "event.offline.get";

/**
 * True for an event.offline.get that deletes what it returns: `clear` not explicitly 0 (the portal's default is
 * 1). The portal upper-cases parameter names, so `CLEAR` counts too. Only 0 and "0" are an explicit 0:
 * anything else (false, "", "no") is not worth betting events on.
 */
export function isLossyGet(method: string, params: Record<string, unknown> | undefined): boolean {
  if (method.toLowerCase() !== OFFLINE_GET) return false;
  if (!params) return true;
  for (const [key, value] of Object.entries(params)) {
    if (key.toLowerCase() === "clear") return !(value === 0 || value === "0");
  }
  return true;
}

export function batchIsLossy(commands: Record<string, BatchCommand>): boolean {
  return Object.values(commands).some((c) => isLossyGet(c.method, c.params));
}

/**
 * What a request risks when it fails after it may have reached the portal: `events` = a clear=1 get deleted
 * what it would have returned; `write` = the caller said the call may change data (a deal may already exist).
 * Either way it is not sent again; undefined = safe to resend.
 */
export type DeliveryRisk = "events" | "write";

export function callRisk(
  method: string,
  params: Record<string, unknown> | undefined,
  mayChangeData: boolean | undefined,
): DeliveryRisk | undefined {
  if (isLossyGet(method, params)) return "events";
  return mayChangeData === true ? "write" : undefined;
}

export function batchRisk(
  commands: Record<string, BatchCommand>,
  mayChangeData: boolean | undefined,
): DeliveryRisk | undefined {
  if (batchIsLossy(commands)) return "events";
  return mayChangeData === true ? "write" : undefined;
}

// Answers the portal gives before it runs the method: nothing happened, so nothing can have been deleted.
const REFUSED_BEFORE_RUNNING = new Set(["QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT", "OPERATION_TIME_LIMIT"]);

/**
 * Whether a failed exchange may have run the method on the portal. A well-formed error answer below 500 is a
 * refusal (argument, auth, access); 429 and the limit codes are refusals too. Timeouts, resets after sending,
 * 5xx and garbled answers may have run it.
 */
export function mayHaveRun(failure: Extract<Exchange, { kind: "failure" }>): boolean {
  if (!failure.reached) return false;
  const { code, status } = failure.error;
  if (code === "CLOSED") return true;
  if (REFUSED_BEFORE_RUNNING.has(code) || status === 429) return false;
  if (code === "MALFORMED_ANSWER" || code === "NETWORK_ERROR" || code === "TIMEOUT") return true;
  return status >= 500 && code !== "PORTAL_DELETED";
}

/** The error for a request that failed after it may have run, by what it risks; the original is its `cause`. */
export function mayHaveRunError(risk: DeliveryRisk, method: string, cause: Bitrix24Error): Bitrix24Error {
  return risk === "events" ? eventsMayBeLost(method, cause) : writeMayHaveRun(method, cause);
}

export function writeMayHaveRun(method: string, cause: Bitrix24Error): Bitrix24Error {
  return new Bitrix24Error(
    {
      code: "WRITE_MAY_HAVE_RUN",
      status: cause.status,
      method,
      retryable: false,
      description:
        `a call that may change data failed after it may have reached the portal (${cause.code}: ${cause.description}); ` +
        "the portal may have applied it, so it was not repeated (a second try could e.g. create a second deal). " +
        "Check the portal's state before sending it again",
    },
    { cause },
  );
}

export function eventsMayBeLost(method: string, cause: Bitrix24Error): Bitrix24Error {
  return new Bitrix24Error(
    {
      code: "EVENTS_MAY_BE_LOST",
      method,
      retryable: false,
      description:
        `an event.offline.get with clear=1 failed after it may have reached the portal (${cause.code}: ${cause.description}); ` +
        "the portal deletes what such a get returns, so those events may be gone and the call was not repeated. " +
        "Use ack mode (clear=0) for at-least-once delivery",
    },
    { cause },
  );
}
