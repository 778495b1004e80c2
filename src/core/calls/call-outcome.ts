import { Bitrix24Error } from "../rest/errors";

/** One item (each) or page (all) that failed while the others went on. */
export interface ItemFailure {
  /** each: the item's index in the input; all: the offset (`start`) of the page that could not be read. */
  index: number;
  code: string;
  status: number;
  description: string;
  method: string;
}

export interface CallProgress {
  /** Items answered (each) or records delivered (all) so far. */
  done: number;
  /** each: the number of items; all: the portal's count where the strategy asks for one. */
  total?: number;
  /** all: pages delivered so far. */
  page?: number;
  /** all: records delivered so far. */
  records?: number;
}

export interface AllOpts {
  /** Awaited before more is fetched: at most one batch answer (50 pages) is held in memory at a time. */
  onRecords(records: unknown[]): Promise<void> | void;
  signal?: AbortSignal;
  onProgress?(p: CallProgress): void;
}

export interface AllOutcome {
  count: number;
  requests: number;
  failures: ItemFailure[];
}

export function toBitrix24Error(err: unknown, method: string): Bitrix24Error {
  if (err instanceof Bitrix24Error) return err;
  return new Bitrix24Error({ code: "INTERNAL_SERVER_ERROR", method, description: String(err) }, { cause: err });
}

export function failureOf(index: number, method: string, error: Bitrix24Error): ItemFailure {
  return { index, code: error.code, status: error.status, description: error.description, method };
}

export function throwIfAborted(signal: AbortSignal | undefined, method: string): void {
  if (signal?.aborted) {
    throw new Bitrix24Error({ code: "ABORTED", method, description: "the call was cancelled before it was sent" });
  }
}
