// 9. What changed (issue 21): (a) the rate-limited drain of one queue of deal events with only `entity` on and
// with `changes` on (watching STAGE_ID, OPPORTUNITY), same run, same bucket: the changes option reads and writes
// the embedded store for every event and must keep >= 90 % of the entity-only rate with no 503; (b) 100 000
// objects tracked by the built tracker over the embedded store: heap before / after, size on disk, time per event.
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { drainThroughNodeRed } from "../lib/drain-run.mjs";
import { burstEnd, ratio, round } from "../lib/measures.mjs";
import { requestsSince, startSandbox } from "../lib/sandbox-watch.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = join(here, "..", "..");
const GOAL = 0.9;
const HEAP_GROWTH_LIMIT_MB = 10;

async function drainRow(ctx, bucket, events, label, flowExtra) {
  ctx.log(`  ${label}: ${events} events, bucket ${bucket.burst} burst / ${bucket.perSecond} per s`);
  const sandbox = await startSandbox({ rateLimit: false });
  try {
    sandbox.crm.seed("deal", events);
    sandbox.addEvents(events, { name: "ONCRMDEALUPDATE", data: (k) => ({ FIELDS: { ID: String(k + 1) } }) });
    sandbox.setOptions({ rateLimit: bucket });
    const setUp = sandbox.stats().requests;
    const limit = 50;
    const bound = bucket.perSecond * limit;
    const run = await drainThroughNodeRed(sandbox, {
      name: `changes-${label.replace(/\W+/g, "-")}`,
      events,
      flow: { limit, prefetch: 1, rate: bucket, entity: true, ...flowExtra },
      timeoutMs: ((events / bound) * 3 + 60) * 1000,
    });
    const end = burstEnd(run.samples, bucket);
    const steady = end && run.endedAt - end.t > 1000 ? ((events - end.deleted) / (run.endedAt - end.t)) * 1000 : null;
    const s = run.stats;
    const requests = requestsSince(setUp, s.requests);
    const row = {
      label,
      events,
      seconds: round(run.ms / 1000, 2),
      afterBurstPerSecond: round(steady),
      bound,
      ratioToBound: round(ratio(steady, bound), 3),
      rejected503: requests.rejected503,
      requests: requests.total,
      byMethod: requests.byMethod,
      left: s.queue.total,
      deleted: s.deleted,
      retriggers: run.retriggers,
    };
    ctx.log(`    ${row.afterBurstPerSecond} events/s after the burst (bound ${bound}), ${row.rejected503} × 503`);
    return row;
  } finally {
    await sandbox.close();
  }
}

function tracking(objects, watch) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--expose-gc", join(here, "..", "lib", "changes-tracking-child.mjs")],
      {
        env: { ...process.env, BENCH_PACKAGE_ROOT: packageRoot, OBJECTS: String(objects), WATCH: watch },
        timeout: 600_000,
        maxBuffer: 1 << 20,
      },
      (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout.trim().split("\n").at(-1)))),
    );
  });
}

export async function changesMeasurement(ctx) {
  const bucket = ctx.quick ? { burst: 10, perSecond: 5 } : { burst: 50, perSecond: 2 };
  const events = ctx.quick ? 1000 : 5000;
  const problems = [];
  const notes = [];
  // Same run, same queue size and bucket: only the option differs.
  const entityOnly = await drainRow(ctx, bucket, events, "entity only", {});
  const withChanges = await drainRow(ctx, bucket, events, "changes on (STAGE_ID, OPPORTUNITY)", {
    changes: true,
    watchFields: "STAGE_ID, OPPORTUNITY",
  });
  for (const r of [entityOnly, withChanges]) {
    if (r.left !== 0 || r.deleted !== events)
      problems.push(`${r.label}: ${r.left} left, ${r.deleted} of ${events} cleared`);
    if (r.retriggers > 0) notes.push(`${r.label}: the drain stalled and needed ${r.retriggers} more trigger(s)`);
  }
  const ratioToEntity = round(ratio(withChanges.afterBurstPerSecond, entityOnly.afterBurstPerSecond), 3);
  const objects = ctx.quick ? 10_000 : 100_000;
  ctx.log(`  ${objects} objects tracked (every field, then watching STAGE_ID + OPPORTUNITY)`);
  const all = await tracking(objects, "");
  const watched = await tracking(objects, "STAGE_ID,OPPORTUNITY");
  const trackingRows = [
    { label: "every field kept", ...all },
    { label: "STAGE_ID, OPPORTUNITY kept", ...watched },
  ].map((t) => ({
    label: t.label,
    objects: t.objects,
    heapBeforeMb: round(t.heapBeforeMb, 1),
    heapAfterMb: round(t.heapAfterMb, 1),
    diskMb: round(t.stats.bytes / 1048576, 1),
    bytesPerObject: Math.round(t.stats.bytes / t.objects),
    firstSightMsPerEvent: round(t.first.msPerEvent, 3),
    secondPassMsPerEvent: round(t.second.msPerEvent, 3),
    secondPassUnchanged: t.second.unchanged,
  }));
  for (const t of trackingRows) {
    ctx.log(
      `    ${t.label}: heap ${t.heapBeforeMb} -> ${t.heapAfterMb} MB, ${t.diskMb} MB on disk, ${t.firstSightMsPerEvent} / ${t.secondPassMsPerEvent} ms per event`,
    );
  }
  const heapFlat = trackingRows.every((t) => t.heapAfterMb - t.heapBeforeMb < HEAP_GROWTH_LIMIT_MB);
  const met = ratioToEntity !== null && ratioToEntity >= GOAL && withChanges.rejected503 === 0 && heapFlat;
  return {
    id: "changes",
    title: "9. What changed (changes option)",
    config: { bucket, events, objects },
    rows: [entityOnly, withChanges],
    ratioToEntity,
    tracking: trackingRows,
    goal: {
      text: `changes on >= ${GOAL * 100} % of the entity-only rate after the burst (same run), zero 503s; heap grows < ${HEAP_GROWTH_LIMIT_MB} MB with ${objects} objects tracked`,
      met,
      headline: `${withChanges.afterBurstPerSecond} vs ${entityOnly.afterBurstPerSecond} events/s (${round((ratioToEntity ?? 0) * 100, 1)} %), ${withChanges.rejected503} × 503; ${objects} objects: heap ${trackingRows[0].heapBeforeMb} -> ${trackingRows[0].heapAfterMb} MB`,
    },
    problems,
    notes,
  };
}
