import { SYSTEM_ERRORS } from "../../core/rest/errors";

/**
 * An error answer of the emulated portal: HTTP status + `{error, error_description}`, the shape every
 * Bitrix24 REST error has. Thrown by method handlers and turned into the answer by the server (or into a
 * `result_error` entry inside a batch).
 */
export class RestError extends Error {
  constructor(
    readonly code: string,
    readonly description: string,
    readonly status: number,
  ) {
    super(`${code}: ${description}`);
    this.name = "RestError";
  }

  body(): { error: string; error_description: string } {
    return { error: this.code, error_description: this.description };
  }
}

/**
 * Texts as the portal words them (the seeds' "Error Message" column and the method pages), which differ from
 * the paraphrases in core's SYSTEM_ERRORS; the status comes from the seeds' table either way.
 */
const PORTAL_TEXTS: Readonly<Record<string, string>> = {
  INTERNAL_SERVER_ERROR: "Internal server error",
  ERROR_UNEXPECTED_ANSWER: "Server returned an unexpected response",
  QUERY_LIMIT_EXCEEDED: "Too many requests",
  ERROR_BATCH_METHOD_NOT_ALLOWED: "Method is not allowed for batch usage",
  ERROR_BATCH_LENGTH_EXCEEDED: "Max batch length exceeded",
  NO_AUTH_FOUND: "Wrong authorization data",
  INVALID_REQUEST: "Https required.",
  OVERLOAD_LIMIT: "REST API is blocked due to overload.",
  ACCESS_DENIED: "Access denied!",
  INVALID_CREDENTIALS: "Invalid request credentials",
  ERROR_MANIFEST_IS_NOT_AVAILABLE: "Manifest is not available",
  insufficient_scope: "The request requires higher privileges than provided by the webhook token",
  expired_token: "The access token provided has expired.",
  invalid_token: "The access token provided is invalid.",
  user_access_error: "The user does not have access to the application.",
  PORTAL_DELETED: "Portal was deleted",
  OPERATION_TIME_LIMIT: "Method is blocked due to operation time limit.",
  WRONG_AUTH_TYPE: "Current authorization type is denied for this method",
  ERROR_METHOD_NOT_FOUND: "Method not found!",
};

/** A system error by code, with the portal's status and wording (unknown codes answer 500). */
export function systemError(code: string, description?: string): RestError {
  const status = code === "WRONG_AUTH_TYPE" ? 403 : code === "ERROR_METHOD_NOT_FOUND" ? 404 : undefined;
  return new RestError(
    code,
    description ?? PORTAL_TEXTS[code] ?? SYSTEM_ERRORS[code]?.description ?? code,
    status ?? SYSTEM_ERRORS[code]?.status ?? 500,
  );
}

/** The REST module turns ArgumentException into 400 ERROR_ARGUMENT with the exception's message. */
export function argumentError(description: string): RestError {
  return new RestError("ERROR_ARGUMENT", description, 400);
}
