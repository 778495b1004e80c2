// 6. Scale-out: 1, 2 and 4 Node-RED processes with the same flow on one sandbox queue (bucket off). Every event
// leaving a get node is reported to the benchmark, so duplicates and events never delivered are counted exactly.
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { drainFlow } from "../lib/flows.mjs";
import { ratio, round } from "../lib/measures.mjs";
import { startNodeRed } from "../lib/node-red-process.mjs";
import { sleep, startSandbox, waitForDeleted } from "../lib/sandbox-watch.mjs";

export async function scaleOut(ctx) {
  const events = ctx.quick ? 5_000 : 50_000;
  const limit = 50;
  const rows = [];
  const problems = [];
  const notes = [];
  let nodeRedVersion;
  // Quick mode (CI) keeps what can fail — duplicates and losses with several readers — and skips the speed-up.
  for (const instances of ctx.quick ? [4] : [1, 2, 4]) {
    ctx.log(`  ${instances} instance(s): ${events} events`);
    const sandbox = await startSandbox({ rateLimit: false });
    // One machine: the instances share the state folder, so each sees the others alive in the instance registry
    // and never takes a live neighbour's held batch for an orphan (with separate folders they cannot see each
    // other: that is the get node's "Other consumers" case).
    const stateDir = mkdtempSync(join(tmpdir(), `b24-bench-scale-${instances}-state-`));
    const deliveries = new Uint32Array(events + 1); // by record ID (ids start at 1 in a fresh sandbox)
    const perInstance = new Array(instances).fill(0);
    let strays = 0;
    const nodeReds = [];
    try {
      sandbox.addEvents(events);
      const started = await Promise.all(
        Array.from({ length: instances }, (_, i) =>
          startNodeRed({
            name: `scale-${instances}-${i}`,
            stateDir,
            flows: () => drainFlow(sandbox, { limit, prefetch: 1, rate: false, report: true }),
            onSeen: (ids) => {
              perInstance[i] += ids.length;
              for (const id of ids) {
                const n = Number(id);
                if (n >= 1 && n <= events) deliveries[n]++;
                else strays++;
              }
            },
          }),
        ),
      );
      nodeReds.push(...started);
      nodeRedVersion = started[0].nodeRedVersion;
      let retriggers = 0;
      const startedAt = performance.now();
      for (const nodeRed of nodeReds) nodeRed.inject("start");
      const endedAt = await waitForDeleted(sandbox, events, {
        timeoutMs: 600_000,
        onStall: () => {
          retriggers++;
          for (const nodeRed of nodeReds) nodeRed.inject("start");
        },
      });
      await sleep(300); // the function nodes report every 20 ms
      let duplicates = 0;
      let neverDelivered = 0;
      for (let id = 1; id <= events; id++) {
        if (deliveries[id] === 0) neverDelivered++;
        else duplicates += deliveries[id] - 1;
      }
      const s = sandbox.stats();
      if (duplicates > 0) problems.push(`${instances} instances: ${duplicates} duplicate deliveries`);
      if (neverDelivered > 0)
        problems.push(`${instances} instances: ${neverDelivered} events cleared but never delivered`);
      if (strays > 0) problems.push(`${instances} instances: ${strays} deliveries of unknown records`);
      if (s.queue.total !== 0) problems.push(`${instances} instances: ${s.queue.total} events left in the queue`);
      if (retriggers > 0)
        notes.push(`${instances} instances: the drain stalled and needed ${retriggers} more trigger(s)`);
      const ms = endedAt - startedAt;
      rows.push({
        instances,
        seconds: round(ms / 1000, 2),
        perSecond: round((events / ms) * 1000),
        duplicates,
        neverDelivered,
        perInstance: [...perInstance],
        requests: s.requests.total,
      });
    } finally {
      await Promise.all(nodeReds.map((n) => n.stop()));
      await sandbox.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  }
  const one = rows.find((r) => r.instances === 1);
  for (const r of rows) r.speedUp = one ? round(ratio(r.perSecond, one.perSecond), 2) : null;
  const totalDuplicates = rows.reduce((sum, r) => sum + r.duplicates, 0);
  return {
    id: "scale-out",
    title: "6. Scale-out: N Node-RED instances on one queue",
    config: { events, limit, cores: cpus().length },
    rows,
    goal: {
      text: `0 duplicates and 0 lost events with ${rows.map((r) => r.instances).join(", ")} instances`,
      met: problems.length === 0,
      headline: rows.map((r) => `${r.instances}×: ${r.perSecond}/s`).join(", ") + `; ${totalDuplicates} duplicates`,
    },
    nodeRedVersion,
    problems,
    notes,
  };
}
