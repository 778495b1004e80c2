import { type Bitrix24Client, MAX_BATCH_COMMANDS } from "../client/client";
import type { Bitrix24Error } from "../rest/errors";
import { isJsonObject } from "../rest/json-object";
import type { BatchCommand } from "../rest/types";
import {
  type AllOpts,
  type AllOutcome,
  failureOf,
  type ItemFailure,
  throwIfAborted,
  toBitrix24Error,
} from "./call-outcome";
import { type CursorShape, cursorShape, malformedPage, PAGE_SIZE, pageRecords, recordsKeyOf } from "./list-shapes";

/*
 * Reading every record of a list method (mode `all`), with one of two strategies:
 *
 * - ID cursor (the methods of list-shapes.ts, when the caller's order is ID ascending or none): a batch of 50
 *   page commands sorted by ID ascending, `start=-1` where documented (no count); the first filtered on
 *   `>ID` = the last ID delivered, each next one on `>ID` = `$result[<previous>][49][<ID>]`. What the portal puts
 *   in place of a reference into a page that was short is undocumented, so only pages up to and including the
 *   first short (or empty) page are used, and a page counts only if its IDs are integers, ascending, and all
 *   above the last ID already delivered; at the first page that fails either test, the rest of the batch is
 *   dropped and the next batch starts after the last ID delivered. N records cost ⌈N / 2 500⌉ requests, +1
 *   when N is a multiple of 2 500 (the empty page that says "the end").
 * - Counted pages (any other list method, or a caller's order other than ID ascending, or a `>ID` filter that is
 *   not an integer): the first page with its count (`total`, `next`), then batches of 50 commands with explicit
 *   `start` offsets up to `total`. Offsets on a table that changes during the read may skip or repeat records;
 *   a page that fails is reported as a failure with its offset and the read goes on.
 */

type Params = Record<string, unknown>;

/** The key of `params` named `name` in any case, or undefined. */
function keyOf(params: Params, name: string): string | undefined {
  const lower = name.toLowerCase();
  return Object.keys(params).find((k) => k.toLowerCase() === lower);
}

/** `params` without the keys named (in any case). */
function without(params: Params, ...names: string[]): Params {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  return Object.fromEntries(Object.entries(params).filter(([k]) => !drop.has(k.toLowerCase())));
}

function asInteger(value: unknown): number | undefined {
  const n = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

function isAscending(direction: unknown): boolean {
  return typeof direction === "string" && direction.trim().toUpperCase() === "ASC";
}

/** How the cursor strategy sends pages: the caller's params it keeps, its filter, and the ID to start after. */
interface CursorPlan {
  base: Params;
  filter: Params;
  startAfter: number;
}

/**
 * The cursor plan for the caller's params, or undefined when their order asks for something else than ID
 * ascending, or their `>ID` filter is not an integer (then counted pages keep their meaning).
 */
function planCursor(shape: CursorShape, params: Params): CursorPlan | undefined {
  const id = shape.queryId.toLowerCase();
  if (shape.orderStyle === "sort") {
    const sortKey = keyOf(params, "sort");
    const orderKey = keyOf(params, "order");
    const sort = sortKey === undefined ? undefined : params[sortKey];
    const order = orderKey === undefined ? undefined : params[orderKey];
    if (sort !== undefined && String(sort).toLowerCase() !== id) return undefined;
    if (order !== undefined && !isAscending(order)) return undefined;
  } else {
    const orderKey = keyOf(params, "order");
    const order = orderKey === undefined ? undefined : params[orderKey];
    if (order !== undefined && !(isJsonObject(order) && Object.keys(order).length === 0)) {
      // ID is unique, so only the first sort key matters.
      const first = isJsonObject(order) ? Object.entries(order)[0] : undefined;
      if (!first || first[0].toLowerCase() !== id || !isAscending(first[1])) return undefined;
    }
  }
  const filterKey = keyOf(params, shape.filterParam);
  const given = filterKey === undefined ? {} : params[filterKey];
  if (!isJsonObject(given)) return undefined;
  const filter: Params = {};
  let startAfter = 0;
  for (const [key, value] of Object.entries(given)) {
    // The cursor owns `>ID`; the caller's `>ID` becomes where it starts. Other ID conditions (>=, <, =, @)
    // are different keys, and the portal ANDs them with the cursor's.
    if (key.replace(/\s+/g, "").toLowerCase() === `>${id}`) {
      const after = asInteger(value);
      if (after === undefined) return undefined;
      startAfter = Math.max(startAfter, after);
    } else {
      filter[key] = value;
    }
  }
  let base = without(params, "order", "sort", "start", shape.filterParam);
  const selectKey = keyOf(base, "select");
  const select = selectKey === undefined ? undefined : base[selectKey];
  if (shape.select && selectKey !== undefined && Array.isArray(select)) {
    const hasId = select.some((f) => typeof f === "string" && (f === "*" || f.toLowerCase() === id));
    if (!hasId) base = { ...base, [selectKey]: [...select, shape.queryId] };
  }
  return { base, filter, startAfter };
}

function cursorParams(shape: CursorShape, plan: CursorPlan, after: number | string): Params {
  const params: Params = { ...plan.base, [shape.filterParam]: { ...plan.filter, [`>${shape.queryId}`]: after } };
  if (shape.orderStyle === "sort") {
    params.sort = shape.queryId;
    params.order = "ASC";
  } else {
    params.order = { [shape.queryId]: "ASC" };
  }
  if (shape.noCount) params.start = -1;
  return params;
}

/** `$result[p3][49][ID]`, `$result[p3][tasks][49][id]`: the last record's ID of the page before. */
function referenceToLastId(shape: CursorShape, key: string): string {
  const records = shape.recordsKey ? `[${shape.recordsKey}]` : "";
  return `$result[${key}]${records}[${PAGE_SIZE - 1}][${shape.recordId}]`;
}

/** The integer IDs of a page, or undefined if one is missing or not an integer. */
function idsOf(records: unknown[], field: string): number[] | undefined {
  const ids: number[] = [];
  for (const record of records) {
    const id = isJsonObject(record) ? asInteger(record[field]) : undefined;
    if (id === undefined) return undefined;
    ids.push(id);
  }
  return ids;
}

function trustworthy(ids: number[], after: number): boolean {
  let last = after;
  for (const id of ids) {
    if (id <= last) return false;
    last = id;
  }
  return true;
}

class Delivery {
  count = 0;
  pages = 0;
  requests = 0;
  total: number | undefined;
  readonly failures: ItemFailure[] = [];

  constructor(private readonly opts: AllOpts) {}

  async page(records: unknown[]): Promise<void> {
    if (records.length === 0) return;
    await this.opts.onRecords(records);
    this.count += records.length;
    this.pages += 1;
    const progress = { done: this.count, records: this.count, page: this.pages };
    this.opts.onProgress?.(this.total === undefined ? progress : { ...progress, total: this.total });
  }

  outcome(): AllOutcome {
    return { count: this.count, requests: this.requests, failures: this.failures };
  }
}

async function readByCursor(
  client: Bitrix24Client,
  method: string,
  shape: CursorShape,
  plan: CursorPlan,
  opts: AllOpts,
  out: Delivery,
): Promise<void> {
  let after = plan.startAfter;
  let stalls = 0;
  for (;;) {
    throwIfAborted(opts.signal, method);
    const commands: Record<string, BatchCommand> = {};
    for (let k = 0; k < MAX_BATCH_COMMANDS; k++) {
      const from = k === 0 ? after : referenceToLastId(shape, `p${k - 1}`);
      commands[`p${k}`] = { method, params: cursorParams(shape, plan, from) };
    }
    const outcome = await client.batch(commands, { signal: opts.signal });
    out.requests += outcome.requests;
    let progressed = false;
    let untrusted: Bitrix24Error | undefined;
    for (let k = 0; k < MAX_BATCH_COMMANDS; k++) {
      const key = `p${k}`;
      if (!(key in outcome.result)) {
        untrusted = outcome.errors[key] ?? malformedPage(method, `no answer for page ${k} of the batch`);
        break;
      }
      const records = pageRecords(outcome.result[key], shape.recordsKey);
      if (records === undefined) {
        untrusted = malformedPage(method, "the answer holds no list of records");
        break;
      }
      if (records.length === 0) return;
      const ids = idsOf(records, shape.recordId);
      if (ids === undefined || !trustworthy(ids, after)) {
        untrusted = malformedPage(method, `its records are not integer IDs ascending after ${after}`);
        break;
      }
      await out.page(records);
      after = ids[ids.length - 1];
      progressed = true;
      if (records.length < PAGE_SIZE) return;
    }
    // A page that failed after others went through is simply asked again first in the next batch; one that
    // fails as the first of two batches in a row will not get better.
    stalls = progressed ? 0 : stalls + 1;
    if (stalls >= 2) throw untrusted ?? malformedPage(method, `no page after ID ${after} could be trusted`);
  }
}

async function readByOffset(
  client: Bitrix24Client,
  method: string,
  params: Params,
  knownKey: string | undefined,
  opts: AllOpts,
  out: Delivery,
): Promise<void> {
  const base = without(params, "start");
  throwIfAborted(opts.signal, method);
  const first = await client.call<unknown>(method, { ...base, start: 0 }, { signal: opts.signal });
  out.requests += 1;
  const recordsKey = knownKey ?? recordsKeyOf(first.result);
  const firstRecords = recordsKey === undefined ? undefined : pageRecords(first.result, recordsKey);
  if (recordsKey === undefined || firstRecords === undefined) {
    throw malformedPage(method, "the answer holds no list of records (is it a list method?)");
  }
  out.total = first.total;
  await out.page(firstRecords);
  // The portal's `next` is the offset of page 2, i.e. its page size. Without one, a count above the first page
  // still says there is more (nothing is dropped on a missing `next`), and the first page's length is the size.
  const pageSize = first.next !== undefined && first.next > 0 ? first.next : firstRecords.length || PAGE_SIZE;
  const more = first.next !== undefined ? first.next > 0 : (first.total ?? 0) > firstRecords.length;
  if (!more) return;
  const total = first.total ?? Number.POSITIVE_INFINITY;
  let offset = pageSize;
  while (offset < total) {
    throwIfAborted(opts.signal, method);
    const offsets: number[] = [];
    for (let o = offset; o < total && offsets.length < MAX_BATCH_COMMANDS; o += pageSize) offsets.push(o);
    const commands = Object.fromEntries(offsets.map((o) => [`s${o}`, { method, params: { ...base, start: o } }]));
    const outcome = await client.batch(commands, { signal: opts.signal });
    out.requests += outcome.requests;
    let short = false;
    for (const o of offsets) {
      const key = `s${o}`;
      const records = key in outcome.result ? pageRecords(outcome.result[key], recordsKey) : undefined;
      if (records === undefined) {
        const error = outcome.errors[key] ?? malformedPage(method, `no list of records at start=${o}`);
        out.failures.push(failureOf(o, method, toBitrix24Error(error, method)));
        continue;
      }
      await out.page(records);
      if (records.length < pageSize) short = true;
    }
    // Without a count, a short page is the end; with one, the offsets end at it.
    if (short && first.total === undefined) return;
    offset = offsets[offsets.length - 1] + pageSize;
  }
}

/** Every record of `method`, page by page into `opts.onRecords`; see the strategies above. */
export async function readAll(
  client: Bitrix24Client,
  method: string,
  params: Params,
  opts: AllOpts,
): Promise<AllOutcome> {
  const out = new Delivery(opts);
  const shape = cursorShape(method);
  const plan = shape ? planCursor(shape, params) : undefined;
  if (shape && plan) await readByCursor(client, method, shape, plan, opts, out);
  else await readByOffset(client, method, params, shape?.recordsKey, opts, out);
  return out.outcome();
}
