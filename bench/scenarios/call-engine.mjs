// 7. and 8.: the bitrix24-call node's engine (src/core/calls/rest-calls.ts, built) against a sandbox with seeded deals,
// at the portal's rate limit. Each is measured next to its bound and a naive baseline in the same run:
// 7. `all` (chained list pages, 50 to a batch) vs. one counted page per request;
// 8. `each` (50 calls to a batch) vs. one call per item.
// The engine runs in this process with the sandbox: at Y requests/s the portal's bucket, not the CPU, is the limit.
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { sandboxAuth } from "../../test/kit/flows.cjs";
import { ratio, round } from "../lib/measures.mjs";
import { packageRoot } from "../lib/node-red-process.mjs";
import { requestsSince, startSandbox } from "../lib/sandbox-watch.mjs";

const require = createRequire(import.meta.url);
const GOAL = 0.9;

function core() {
  const built = join(packageRoot, "nodes", "core");
  return {
    Bitrix24Client: require(join(built, "client", "client.js")).Bitrix24Client,
    RestCalls: require(join(built, "calls", "rest-calls.js")).RestCalls,
  };
}

// Full run: the cloud's common bucket (50 burst, 2/s). Quick run: a faster, smaller one (same bound logic).
const bucketFor = (ctx) => (ctx.quick ? { burst: 10, perSecond: 5 } : { burst: 50, perSecond: 2 });

/** A client configured like the portal node would be (same numbers as the portal's bucket). */
function clientFor(sandbox, bucket) {
  const { Bitrix24Client } = core();
  return new Bitrix24Client({
    portalUrl: sandbox.url,
    auth: sandboxAuth(sandbox, sandbox.url),
    rateLimit: bucket,
  });
}

/**
 * Spends the burst of both buckets (the client's and the portal's) with cheap calls, so what follows runs at
 * the steady rate Y: a measurement of N requests smaller than the burst would otherwise not see the limit.
 */
async function spendBurst(client, bucket) {
  for (let i = 0; i < bucket.burst; i++)
    await client.call("crm.deal.list", { select: ["ID"], start: -1, filter: { ID: 0 } });
}

/** Reads pages one request each (start=0, 50, 100, ... with the count) for `windowMs`: the naive way. */
async function naivePaging(client, windowMs) {
  const started = performance.now();
  let records = 0;
  let start = 0;
  while (performance.now() - started < windowMs) {
    const page = await client.call("crm.deal.list", { select: SELECT, start });
    records += page.result.length;
    if (page.next === undefined) start = 0;
    else start = page.next;
  }
  return { records, ms: performance.now() - started };
}

// What a sync reads: a few fields, as the docs advise (every field of a deal is ~1 KB of JSON per record).
const SELECT = ["ID", "TITLE", "STAGE_ID", "OPPORTUNITY", "CONTACT_ID"];

export async function callAll(ctx) {
  const bucket = bucketFor(ctx);
  const deals = ctx.quick ? 50_000 : 100_000;
  const windowMs = ctx.quick ? 3000 : 15_000;
  const { RestCalls } = core();
  ctx.log(`  seeding ${deals} deals; bucket ${bucket.burst} burst / ${bucket.perSecond} per s`);
  const sandbox = await startSandbox({ rateLimit: bucket });
  const problems = [];
  const rows = [];
  try {
    sandbox.crm.seed("deal", deals);
    // Every field (~1 KB of JSON per deal) shows what the CPU costs; the quick run leaves it out for time.
    const variants = [{ label: `all, select ${SELECT.length} fields`, params: { select: SELECT } }];
    if (!ctx.quick) variants.push({ label: "all, every field", params: {} });
    for (const v of variants) {
      const client = clientFor(sandbox, bucket);
      try {
        await spendBurst(client, bucket);
        const before = sandbox.stats().requests;
        const seen = new Set();
        let duplicates = 0;
        const started = performance.now();
        const out = await new RestCalls(client).all("crm.deal.list", v.params, {
          onRecords: (page) => {
            for (const r of page) {
              if (seen.has(r.ID)) duplicates += 1;
              seen.add(r.ID);
            }
          },
        });
        const ms = performance.now() - started;
        const used = requestsSince(before, sandbox.stats().requests);
        const requests = used.total;
        const maxRequests = Math.ceil(deals / 2500) + 1;
        if (seen.size !== deals || duplicates > 0) {
          problems.push(`${v.label}: ${seen.size} of ${deals} deals read, ${duplicates} duplicates`);
        }
        if (requests > maxRequests)
          problems.push(`${v.label}: ${requests} requests > ⌈N / 2 500⌉ + 1 = ${maxRequests}`);
        const perSecond = (deals / ms) * 1000;
        const bound = bucket.perSecond * 2500;
        rows.push({
          label: v.label,
          records: out.count,
          seconds: round(ms / 1000, 2),
          perSecond: round(perSecond),
          bound,
          ratioToBound: round(ratio(perSecond, bound), 3),
          requests,
          maxRequests,
          rejected503: used.rejected503,
          duplicates,
        });
        ctx.log(`  ${v.label}: ${round(perSecond)} records/s vs bound ${bound}, ${requests} requests`);
      } finally {
        client.close();
      }
    }
    const client = clientFor(sandbox, bucket);
    try {
      await spendBurst(client, bucket);
      const before = sandbox.stats().requests;
      const naive = await naivePaging(client, windowMs);
      const used = requestsSince(before, sandbox.stats().requests);
      const perSecond = (naive.records / naive.ms) * 1000;
      rows.push({
        label: "baseline: one counted page per request",
        records: naive.records,
        seconds: round(naive.ms / 1000, 2),
        perSecond: round(perSecond),
        bound: bucket.perSecond * 50,
        ratioToBound: round(ratio(perSecond, bucket.perSecond * 50), 3),
        requests: used.total,
        maxRequests: null,
        rejected503: used.rejected503,
        duplicates: null,
      });
      ctx.log(`  baseline: ${round(perSecond)} records/s`);
    } finally {
      client.close();
    }
  } finally {
    await sandbox.close();
  }
  return outcome({
    id: "call-all",
    title: "7. Call node engine: all records of a list",
    config: { bucket, deals, windowSeconds: windowMs / 1000, select: SELECT },
    rows,
    problems,
    unit: "records",
    goalText: `>= ${GOAL * 100} % of Y × 2 500 records/s, at most ⌈N / 2 500⌉ + 1 requests, zero 503s`,
  });
}

export async function callEach(ctx) {
  const bucket = bucketFor(ctx);
  const items = ctx.quick ? 500 : 5000;
  const windowMs = ctx.quick ? 3000 : 10_000;
  const { RestCalls } = core();
  const sandbox = await startSandbox({ rateLimit: bucket });
  const problems = [];
  const rows = [];
  try {
    sandbox.crm.seed("deal", items);
    const ids = Array.from({ length: items }, (_, i) => i + 1);
    let client = clientFor(sandbox, bucket);
    try {
      await spendBurst(client, bucket);
      const before = sandbox.stats().requests;
      const started = performance.now();
      const out = await new RestCalls(client).each("crm.deal.get", ids);
      const ms = performance.now() - started;
      const used = requestsSince(before, sandbox.stats().requests);
      const wrongOrder = out.results.filter((r, i) => r === null || Number(r.ID) !== ids[i]).length;
      if (out.failures.length > 0 || wrongOrder > 0) {
        problems.push(`each: ${out.failures.length} failures, ${wrongOrder} results missing or out of order`);
      }
      const perSecond = (items / ms) * 1000;
      const bound = bucket.perSecond * 50;
      rows.push({
        label: "each: crm.deal.get, 50 to a batch",
        items,
        seconds: round(ms / 1000, 2),
        perSecond: round(perSecond),
        bound,
        ratioToBound: round(ratio(perSecond, bound), 3),
        requests: used.total,
        rejected503: used.rejected503,
      });
      ctx.log(`  each: ${round(perSecond)} items/s vs bound ${bound}, ${used.total} requests`);
    } finally {
      client.close();
    }
    client = clientFor(sandbox, bucket);
    try {
      await spendBurst(client, bucket);
      const before = sandbox.stats().requests;
      const started = performance.now();
      let done = 0;
      while (performance.now() - started < windowMs) {
        await client.call("crm.deal.get", { id: ids[done % items] });
        done += 1;
      }
      const ms = performance.now() - started;
      const used = requestsSince(before, sandbox.stats().requests);
      const perSecond = (done / ms) * 1000;
      rows.push({
        label: "baseline: one call per item",
        items: done,
        seconds: round(ms / 1000, 2),
        perSecond: round(perSecond, 2),
        bound: bucket.perSecond,
        ratioToBound: round(ratio(perSecond, bucket.perSecond), 3),
        requests: used.total,
        rejected503: used.rejected503,
      });
      ctx.log(`  baseline: ${round(perSecond, 2)} items/s`);
    } finally {
      client.close();
    }
  } finally {
    await sandbox.close();
  }
  return outcome({
    id: "call-each",
    title: "8. Call node engine: one call per item",
    config: { bucket, items, windowSeconds: windowMs / 1000 },
    rows,
    problems,
    unit: "items",
    goalText: `>= ${GOAL * 100} % of Y × 50 items/s, zero 503s`,
  });
}

/** The measurement's result: rows[0] is measured against its bound, the last row is the baseline. */
function outcome({ id, title, config, rows, problems, unit, goalText }) {
  const main = rows[0];
  const baseline = rows.at(-1);
  const met = main !== undefined && main.ratioToBound >= GOAL && rows.every((r) => r.rejected503 === 0);
  return {
    id,
    title,
    config,
    rows,
    speedUp: main && baseline ? round(main.perSecond / baseline.perSecond, 1) : null,
    goal: {
      text: goalText,
      met,
      headline: main
        ? `${main.perSecond} ${unit}/s vs bound ${main.bound} (${pct(main.ratioToBound)}), ${main.requests} requests, ${main.rejected503} × 503; baseline ${baseline?.perSecond} ${unit}/s`
        : "no result",
    },
    problems,
    notes: [],
  };
}

function pct(r) {
  return r === null ? "n/a" : `${round(r * 100, 1)} %`;
}
