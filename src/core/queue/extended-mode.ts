import { Bitrix24Error } from "../rest/errors";

/** Ack mode (clear=0) needs the portal's extended offline mode: how the portal says it lacks it. */

export const EXTENDED_MODE_FEATURE = "rest_offline_extended";
export const NO_EXTENDED_MODE =
  "this portal's plan lacks extended offline mode (rest_offline_extended): ack mode unavailable";

/** The portal refused clear=0 for its plan (WRONG_LICENSE "…extended offline events handling"). */
export function isExtendedModeRefusal(err: unknown): boolean {
  if (!(err instanceof Bitrix24Error)) return false;
  if (err.code !== "WRONG_LICENSE" && err.code !== "ERROR_LICENSE") return false;
  // The same code refuses auth_connector on plans without source keys: that is another problem.
  return !/auth_connector/i.test(err.description);
}

export function extendedModeError(cause?: Bitrix24Error): Bitrix24Error {
  return new Bitrix24Error({
    code: cause?.code ?? "WRONG_LICENSE",
    status: cause?.status ?? 403,
    method: "event.offline.get",
    description: NO_EXTENDED_MODE,
    retryable: false,
  });
}
