/**
 * The one error type of the package. Every failure a caller can see — an error answer of the portal, a
 * network failure, a malformed answer, a refused argument — is a Bitrix24Error, so nodes can show `code`
 * in their status and hand the whole detail to a Catch node.
 */
export interface Bitrix24ErrorDetail {
  code: string;
  /** HTTP status of the answer; 0 when no answer arrived (network failure, timeout). */
  status: number;
  description: string;
  /** The REST method the error belongs to ("" when none, e.g. a config error). */
  method: string;
  /** True when the same call may succeed if sent again later (rate limit, overload, 5xx, network). */
  retryable: boolean;
}

export class Bitrix24Error extends Error implements Bitrix24ErrorDetail {
  readonly code: string;
  readonly status: number;
  readonly description: string;
  readonly method: string;
  readonly retryable: boolean;

  constructor(detail: Partial<Bitrix24ErrorDetail> & { code: string }, options?: { cause?: unknown }) {
    const description = detail.description ?? SYSTEM_ERRORS[detail.code]?.description ?? detail.code;
    super(
      detail.method ? `${detail.method}: ${detail.code}: ${description}` : `${detail.code}: ${description}`,
      options,
    );
    this.name = "Bitrix24Error";
    this.code = detail.code;
    this.status = detail.status ?? SYSTEM_ERRORS[detail.code]?.status ?? 0;
    this.description = description;
    this.method = detail.method ?? "";
    this.retryable = detail.retryable ?? isRetryable(this.code, this.status);
  }

  /** The plain object that travels in `msg.bitrix24.error` (DESIGN.md, the msg contract). */
  toJSON(): Omit<Bitrix24ErrorDetail, "retryable"> & { retryable: boolean } {
    return {
      code: this.code,
      status: this.status,
      method: this.method,
      description: this.description,
      retryable: this.retryable,
    };
  }
}

/** The system errors every method may answer (seeds' "Statuses and System Error Codes" table). */
export const SYSTEM_ERRORS: Readonly<Record<string, { status: number; description: string }>> = {
  INTERNAL_SERVER_ERROR: { status: 500, description: "Internal server error" },
  ERROR_UNEXPECTED_ANSWER: { status: 500, description: "Internal server error (unexpected answer)" },
  QUERY_LIMIT_EXCEEDED: { status: 503, description: "The request intensity limit has been exceeded" },
  ERROR_BATCH_METHOD_NOT_ALLOWED: { status: 405, description: "The method is not allowed to be called using batch" },
  ERROR_BATCH_LENGTH_EXCEEDED: { status: 400, description: "The maximum length of a batch has been exceeded" },
  NO_AUTH_FOUND: { status: 401, description: "Invalid access token or webhook code" },
  INVALID_REQUEST: { status: 400, description: "The methods must be called using the HTTPS protocol" },
  OVERLOAD_LIMIT: {
    status: 503,
    description:
      "Blocked by Bitrix24 support (overload): retrying does not help, ask Bitrix24 support to lift the block",
  },
  ACCESS_DENIED: {
    status: 403,
    description: "The REST API is available only on commercial plans, or access is denied",
  },
  INVALID_CREDENTIALS: { status: 403, description: "The user behind the access token or webhook lacks permissions" },
  ERROR_MANIFEST_IS_NOT_AVAILABLE: { status: 404, description: "The manifest is not available" },
  insufficient_scope: { status: 403, description: "The request requires higher privileges than the token provides" },
  expired_token: { status: 401, description: "The access token has expired" },
  invalid_token: { status: 401, description: "The access token is invalid" },
  invalid_grant: { status: 401, description: "The refresh token is invalid or revoked: re-authorise the application" },
  user_access_error: { status: 403, description: "The user does not have access to the application" },
  PORTAL_DELETED: { status: 500, description: "The portal has been deleted or its public part is closed" },
  // The per-method execution-time budget (REFERENCE.md "Calling the API") is answered with 429.
  OPERATION_TIME_LIMIT: { status: 429, description: "The method's execution-time budget is spent for now" },
  // Made from the description of an answer with an empty code (codeForEmptyError).
  NOT_FOUND: { status: 400, description: "Not found" },
  ERROR_ARGUMENT: { status: 400, description: "An argument of the call was refused by the portal" },
  ERROR_WITHOUT_CODE: { status: 400, description: "The portal refused the call without an error code" },
  // Not from the portal: failures on our side of the wire.
  NETWORK_ERROR: { status: 0, description: "The portal could not be reached" },
  TIMEOUT: { status: 0, description: "The portal did not answer in time" },
  MALFORMED_ANSWER: { status: 0, description: "The portal's answer is not Bitrix24 REST JSON" },
  INVALID_CONFIG: { status: 0, description: "The configuration is invalid" },
  INVALID_ARGUMENT: { status: 0, description: "An argument is invalid" },
  CLOSED: { status: 0, description: "The client was closed before the call finished" },
  NO_REFRESH_TOKEN: {
    status: 401,
    description:
      "No refresh token to get an access token with: let the portal install the application (installation path) or re-authorise it",
  },
  TOKEN_STORE_ERROR: { status: 0, description: "The token file could not be read, written or locked" },
  REDIRECT_REFUSED: {
    status: 0,
    description:
      "The portal redirected the call somewhere the client does not follow (not https, not REST, or too many hops)",
  },
  EVENTS_MAY_BE_LOST: {
    status: 0,
    description: "An event.offline.get with clear=1 may have reached the portal; its events cannot be fetched again",
  },
};

/**
 * crm.deal/contact/lead/company answer their own errors with an EMPTY code (HTTP 400
 * `{"error": "", "error_description": "Not found"}`, alone and in a batch's result_error; their method pages print
 * it so). The description is then all the portal said, so the code is made from it: a Catch node or a switch on
 * `msg.error.code` can tell "the object is gone" from "the call was wrong" without parsing English text.
 */
export function codeForEmptyError(description: string): string {
  const text = description.trim();
  if (/not found|не найден/i.test(text)) return "NOT_FOUND";
  if (/access denied|доступ запрещ/i.test(text)) return "ACCESS_DENIED";
  // "ID is not defined or invalid.", "Parameter 'fields' must be array.", ...
  if (/invalid|must be|not defined|required|is empty|неверн|не указан/i.test(text)) return "ERROR_ARGUMENT";
  return "ERROR_WITHOUT_CODE";
}

// OVERLOAD_LIMIT is a block set by hand by the vendor's support (REFERENCE.md "Real portals"): a retry only
// adds to the load that caused it.
const NON_RETRYABLE_5XX = new Set(["PORTAL_DELETED", "OVERLOAD_LIMIT"]);
const RETRYABLE_CODES = new Set(["QUERY_LIMIT_EXCEEDED", "NETWORK_ERROR", "TIMEOUT"]);

export function isRetryable(code: string, status: number): boolean {
  if (RETRYABLE_CODES.has(code)) return true;
  if (NON_RETRYABLE_5XX.has(code)) return false;
  return status === 429 || status >= 500;
}

export function isBitrix24Error(err: unknown): err is Bitrix24Error {
  return err instanceof Bitrix24Error;
}
