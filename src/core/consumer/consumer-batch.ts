import type { BatchOutcome, Bitrix24Client } from "../client/client";
import { MAX_BATCH_COMMANDS } from "../client/client";
import { parseGetResult } from "../queue/offline-api";
import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand, OfflineGetResult } from "../rest/types";
import { asError } from "./consumer-types";

/** client.batch() with at most 50 commands per request (the portal's limit): more become several requests. */
export async function sendChunked(
  client: Pick<Bitrix24Client, "batch">,
  commands: Record<string, BatchCommand>,
): Promise<BatchOutcome> {
  const entries = Object.entries(commands);
  if (entries.length <= MAX_BATCH_COMMANDS) return client.batch(commands);
  const merged: BatchOutcome = { result: {}, errors: {}, total: {}, next: {}, requests: 0 };
  for (let i = 0; i < entries.length; i += MAX_BATCH_COMMANDS) {
    const part = await client.batch(Object.fromEntries(entries.slice(i, i + MAX_BATCH_COMMANDS)));
    Object.assign(merged.result, part.result);
    Object.assign(merged.errors, part.errors);
    Object.assign(merged.total, part.total);
    Object.assign(merged.next, part.next);
    merged.time = part.time;
    merged.requests += part.requests;
  }
  return merged;
}

/** A batch command's answer as a get result, or the failure it stands for. */
export function getAnswer(outcome: BatchOutcome, key: string): { result?: OfflineGetResult; error?: Bitrix24Error } {
  const error = outcome.errors[key];
  if (error) return { error };
  try {
    return { result: parseGetResult(outcome.result[key]) };
  } catch (err) {
    return { error: asError(err) };
  }
}
