// 11. The PostgreSQL store (issue 20): what keeping the state in a database costs, and whether several instances on
// one store stay under the portal's bucket together.
//   a. the rate-limited drain with the store vs. the same drain with files, same run (goal: >= 95 %);
//   b. two Node-RED instances on one store, one shared bucket, vs. the portal's bound (goal: >= 90 %, 0 × 503);
//   c. the unlimited drain with the store beside the file journal (what the database costs per batch).
import { performance } from "node:perf_hooks";
import { drainThroughNodeRed } from "../lib/drain-run.mjs";
import { drainFlow } from "../lib/flows.mjs";
import { burstEnd, ratio, round } from "../lib/measures.mjs";
import { startNodeRed } from "../lib/node-red-process.mjs";
import { startPostgres } from "../lib/postgres.mjs";
import { requestsSince, sampleStats, startSandbox, waitForDeleted } from "../lib/sandbox-watch.mjs";

const LIMIT = 50;

function afterBurst(samples, bucket, events, endedAt) {
  const end = burstEnd(samples, bucket);
  if (!end || endedAt - end.t <= 1000) return null;
  return ((events - end.deleted) / (endedAt - end.t)) * 1000;
}

function checkDrained(sandbox, events, label, problems) {
  const s = sandbox.stats();
  if (s.queue.total !== 0 || s.deleted !== events) {
    problems.push(`${label}: ${s.queue.total} events left in the queue, ${s.deleted} of ${events} cleared`);
  }
  return s;
}

const pct = (r) => (r === null ? "n/a" : `${round(r * 100, 1)} %`);

export async function postgresStore(ctx) {
  const problems = [];
  const notes = [];
  const rows = [];
  const pg = await startPostgres();
  const store = () => ({ ...pg.server, schema: pg.schema(), lease: 15 });
  try {
    // a. Rate-limited drain, files then store, same bucket and queue size.
    const bucket = ctx.quick ? { burst: 10, perSecond: 5 } : { burst: 50, perSecond: 2 };
    // Quick: 2 000, not fewer: after a 500-event burst, a shorter drain leaves the after-burst rate too few samples.
    const events = ctx.quick ? 2000 : 5000;
    const bound = bucket.perSecond * LIMIT;
    const drained = {};
    for (const kind of ["files", "store"]) {
      ctx.log(
        `  a. rate-limited drain with ${kind}: ${events} events, bucket ${bucket.burst} / ${bucket.perSecond} per s`,
      );
      const sandbox = await startSandbox({ rateLimit: bucket });
      try {
        sandbox.addEvents(events);
        const before = sandbox.stats().requests;
        const run = await drainThroughNodeRed(sandbox, {
          name: `pg-a-${kind}`,
          events,
          flow: { limit: LIMIT, prefetch: 1, rate: bucket, ...(kind === "store" ? { store: store() } : {}) },
          timeoutMs: ((events / bound) * 3 + 60) * 1000,
        });
        const s = checkDrained(sandbox, events, `a. ${kind}`, problems);
        const steady = afterBurst(run.samples, bucket, events, run.endedAt);
        drained[kind] = {
          afterBurstPerSecond: round(steady),
          seconds: round(run.ms / 1000, 2),
          rejected503: requestsSince(before, s.requests).rejected503,
        };
        ctx.log(`    ${round(steady)} events/s after the burst (bound ${bound}), ${drained[kind].rejected503} × 503`);
      } finally {
        await sandbox.close();
      }
    }
    const storeVsFiles = round(ratio(drained.store.afterBurstPerSecond, drained.files.afterBurstPerSecond), 3);
    rows.push({
      row: "a. rate-limited drain, store vs files",
      bucket,
      events,
      files: drained.files,
      store: drained.store,
      ratio: storeVsFiles,
      goal: ">= 95 %",
      met: storeVsFiles !== null && storeVsFiles >= 0.95 && drained.store.rejected503 === 0,
    });

    // b. Two instances, one store, one shared bucket: together against the portal's bound.
    const twoEvents = ctx.quick ? 2000 : 8000;
    ctx.log(`  b. two instances on one store: ${twoEvents} events, bucket ${bucket.burst} / ${bucket.perSecond} per s`);
    const sandbox = await startSandbox({ rateLimit: bucket });
    const shared = store();
    const nodeReds = [];
    try {
      sandbox.addEvents(twoEvents);
      const before = sandbox.stats().requests;
      const started = await Promise.all(
        [0, 1].map((i) =>
          startNodeRed({
            name: `pg-b-${i}`,
            // Old flows divided the bucket with `instances`; with a store it is shared and that option means nothing.
            flows: () => drainFlow(sandbox, { limit: LIMIT, prefetch: 1, rate: bucket, store: shared }),
          }),
        ),
      );
      nodeReds.push(...started);
      const sampler = sampleStats(sandbox, 25);
      const startedAt = performance.now();
      for (const n of nodeReds) n.inject("start");
      let retriggers = 0;
      const endedAt = await waitForDeleted(sandbox, twoEvents, {
        timeoutMs: ((twoEvents / bound) * 3 + 60) * 1000,
        onStall: () => {
          retriggers++;
          for (const n of nodeReds) n.inject("start");
        },
      });
      const samples = sampler.stop();
      const s = checkDrained(sandbox, twoEvents, "b. two instances", problems);
      const requests = requestsSince(before, s.requests);
      const steady = afterBurst(samples, bucket, twoEvents, endedAt);
      const r = round(ratio(steady, bound), 3);
      if (retriggers > 0) notes.push(`b. two instances: the drain stalled and needed ${retriggers} more trigger(s)`);
      rows.push({
        row: "b. two instances on one store vs the bound",
        bucket,
        events: twoEvents,
        seconds: round((endedAt - startedAt) / 1000, 2),
        afterBurstPerSecond: round(steady),
        bound,
        ratio: r,
        rejected503: requests.rejected503,
        requests: requests.total,
        goal: ">= 90 %, 0 × 503",
        met: r !== null && r >= 0.9 && requests.rejected503 === 0,
      });
      ctx.log(
        `    ${round(steady)} events/s after the burst vs bound ${bound} (${pct(r)}), ${requests.rejected503} × 503`,
      );
    } finally {
      await Promise.all(nodeReds.map((n) => n.stop()));
      await sandbox.close();
    }

    // c. Unlimited drain: the file journal vs the store (a database round trip per batch instead of an fdatasync).
    const fast = ctx.quick ? 10_000 : 50_000;
    const unlimited = {};
    for (const kind of ["files", "store"]) {
      ctx.log(`  c. unlimited drain with ${kind}: ${fast} events`);
      const sb = await startSandbox({ rateLimit: false });
      try {
        sb.addEvents(fast);
        const run = await drainThroughNodeRed(sb, {
          name: `pg-c-${kind}`,
          events: fast,
          flow: { limit: LIMIT, prefetch: 1, rate: false, ...(kind === "store" ? { store: store() } : {}) },
          timeoutMs: 600_000,
        });
        checkDrained(sb, fast, `c. ${kind}`, problems);
        unlimited[kind] = { perSecond: round((fast / run.ms) * 1000), seconds: round(run.ms / 1000, 2) };
        ctx.log(`    ${unlimited[kind].perSecond} events/s`);
      } finally {
        await sb.close();
      }
    }
    const msPerBatch = (perSecond) => (LIMIT / perSecond) * 1000;
    rows.push({
      row: "c. unlimited drain, store beside the file journal",
      events: fast,
      files: unlimited.files,
      store: unlimited.store,
      ratio: round(ratio(unlimited.store.perSecond, unlimited.files.perSecond), 3),
      extraMsPerBatch: round(msPerBatch(unlimited.store.perSecond) - msPerBatch(unlimited.files.perSecond), 2),
      goal: "reported (what the database costs per batch)",
      met: null,
    });
  } finally {
    await pg.stop();
  }
  const [a, b, c] = rows;
  return {
    id: "postgres-store",
    title: "11. PostgreSQL store",
    rows,
    goal: {
      text: "a. the store's rate-limited drain >= 95 % of the files' (same run); b. two instances on one store >= 90 % of the bound, 0 × 503; c. reported",
      met: rows.filter((r) => r.met !== null).every((r) => r.met),
      headline: `a. ${a?.store?.afterBurstPerSecond} vs ${a?.files?.afterBurstPerSecond} events/s (${pct(a?.ratio ?? null)}); b. ${b?.afterBurstPerSecond} vs bound ${b?.bound} (${pct(b?.ratio ?? null)}), ${b?.rejected503} × 503; c. ${c?.store?.perSecond} vs ${c?.files?.perSecond} events/s (+${c?.extraMsPerBatch} ms per batch)`,
    },
    problems,
    notes,
  };
}
