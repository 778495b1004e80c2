import type { OfflineListRecord } from "../rest/types";

/**
 * A dashboard-friendly summary of event.offline.list records. The three states partition the records:
 * `error` = marked failed (ERROR=1, held or not), `held` = taken by a process and not failed,
 * `unprocessed` = waiting for a get.
 */
export interface QueueSummary {
  /** The portal's count of matching records (may exceed `counted` when only one page was read). */
  total: number;
  /** Records this summary was computed from. */
  counted: number;
  held: number;
  error: number;
  unprocessed: number;
  byEvent: Record<string, number>;
  /** TIMESTAMP_X of the oldest counted record, as the portal wrote it; null when none. */
  oldest: string | null;
}

function isError(record: OfflineListRecord): boolean {
  return String(record.ERROR ?? "0") === "1";
}

export function summarizeQueue(records: OfflineListRecord[], total: number = records.length): QueueSummary {
  const summary: QueueSummary = {
    total,
    counted: records.length,
    held: 0,
    error: 0,
    unprocessed: 0,
    byEvent: {},
    oldest: null,
  };
  let oldestMs = Number.POSITIVE_INFINITY;
  for (const record of records) {
    if (isError(record)) summary.error++;
    else if (record.PROCESS_ID) summary.held++;
    else summary.unprocessed++;
    const name = record.EVENT_NAME || "";
    summary.byEvent[name] = (summary.byEvent[name] ?? 0) + 1;
    const ms = Date.parse(record.TIMESTAMP_X);
    if (Number.isFinite(ms) && ms < oldestMs) {
      oldestMs = ms;
      summary.oldest = record.TIMESTAMP_X;
    }
  }
  return summary;
}
