// Run with --expose-gc: N objects tracked by the BUILT change tracker (nodes/core/changes) over the embedded
// store in a temporary folder, as the get node drives it: prepare (read acked state, compare, stage) for a batch
// of 50 events, then the ack notice (commit). Pass 1: every object seen for the first time. Pass 2: the same
// objects again, one in ten with a new stage, the rest unchanged. Prints one JSON line.
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);
const root = process.env.BENCH_PACKAGE_ROOT;
const { ChangeTracker } = require(join(root, "nodes/core/changes/change-tracker.js"));
const { LmdbSnapshotStore } = require(join(root, "nodes/core/state/lmdb-snapshot-store.js"));
const { BUILTIN_ENTITY_MAP } = require(join(root, "nodes/core/entities/entity-reads.js"));

const N = Number(process.env.OBJECTS ?? 100000);
const BATCH = 50;
const STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE"];

function deal(id, pass) {
  const stage = STAGES[(id + (pass > 1 && id % 10 === 0 ? 1 : 0)) % STAGES.length];
  // About what crm.deal.list answers with select ["*", "UF_*"]: 40 fields, ~1 KB of JSON.
  const d = { ID: String(id), TITLE: `Deal #${id}`, STAGE_ID: stage, OPPORTUNITY: `${(id % 997) * 10}.00` };
  for (let f = 0; f < 36; f++) d[`F_${f}`] = f % 3 === 0 ? String(id * f) : f % 3 === 1 ? `text ${f} of ${id}` : null;
  return d;
}

function heapMb() {
  global.gc();
  global.gc();
  return process.memoryUsage().heapUsed / 1048576;
}

async function pass(tracker, n, passNo) {
  const t0 = performance.now();
  let unchanged = 0;
  for (let first = 1; first <= n; first += BATCH) {
    const processId = `p${passNo}_${first}`;
    const deliveries = [];
    for (let id = first; id < Math.min(first + BATCH, n + 1); id++) {
      deliveries.push({
        id,
        event: {
          ID: String(id),
          EVENT_NAME: "ONCRMDEALUPDATE",
          EVENT_DATA: { FIELDS: { ID: String(id) } },
          MESSAGE_ID: "",
        },
        entity: { entity: deal(id, passNo) },
      });
    }
    await tracker.prepare([{ processId, deliveries }], "ack");
    unchanged += deliveries.filter((d) => d.changes?.unchanged).length;
    await tracker.acked({
      kind: "clear",
      processId,
      authConnector: "",
      ids: deliveries.map((d) => d.id),
      messageIds: [],
      allOfProcess: false,
    });
  }
  return { msPerEvent: (performance.now() - t0) / n, unchanged };
}

const dir = mkdtempSync(join(tmpdir(), "b24-bench-changes-"));
try {
  const heapBefore = heapMb();
  const store = await LmdbSnapshotStore.open(dir, "bench");
  const tracker = new ChangeTracker({
    store,
    map: BUILTIN_ENTITY_MAP,
    watch: (process.env.WATCH ?? "").split(",").filter(Boolean),
    // Labels: the metadata read is the network's part, not measured here.
    send: async () => ({ result: {}, errors: {}, total: {}, next: {}, requests: 0 }),
  });
  const first = await pass(tracker, N, 1);
  const heapTracked = heapMb();
  const second = await pass(tracker, N, 2);
  const heapAfter = heapMb();
  const stats = await store.stats();
  await tracker.close();
  process.stdout.write(
    `${JSON.stringify({ objects: N, heapBeforeMb: heapBefore, heapTrackedMb: heapTracked, heapAfterMb: heapAfter, first, second, stats })}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
