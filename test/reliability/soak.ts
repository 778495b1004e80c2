/**
 * The soak (`npm run soak`; not part of `npm test`): a whole flow in Node-RED (node-red-node-test-helper,
 * in-process, the built nodes) drains the sandbox for 10 minutes while events keep arriving and the sandbox
 * injects random faults — 503/429/5xx storms, dropped connections before and after the portal applied a call,
 * slow answers past the portal's timeout, expiring tokens. A share of the events is marked as failed and
 * drained again from the error queue. At the end it stops the faults and the events, lets the flow finish,
 * and prints what was created, delivered, acked and lost, the faults, and the heap over time.
 *
 *   node --expose-gc --import tsx test/reliability/soak.ts [--minutes 10] [--rate 20]
 *
 * Exit code 1 when an event was lost, the queue did not drain, or the heap kept growing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeHeapSnapshot } from "node:v8";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "node-red";
import type { PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import { type Faults, startSandbox } from "../../src/sandbox";
import { DeliveryBook, FaultCounter, sleep } from "./ledger";
import { GET_DEFAULTS, helper, nodes, portalConfig } from "./node-rig";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : Number(process.env[`SOAK_${name.toUpperCase()}`]);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

const MINUTES = option("minutes", 10);
const RATE = option("rate", 20); // events per second arriving
const MARK_SHARE = 0.03; // share of events the flow marks as failed (event.offline.error)
// Records held under a process id whose get answer was lost (a drop after the portal ran it) are adopted by the
// orphan sweep after ackTimeout × (maxDeliveries + 1) = 30 s here: the grace covers that and the redelivery.
const DRAIN_GRACE_MS = 120_000;

const book = new DeliveryBook();
let marked = 0;
let markedAgain = 0;

/** The flow's work: most events go on to be cleared, a few are marked as failed (output 2). */
function routerNode(RED: NodeAPI): void {
  function SoakRouter(this: Node, config: NodeDef) {
    RED.nodes.createNode(this, config);
    this.on("input", (msg, send, done) => {
      const meta = (msg as NodeMessage & { bitrix24?: { id?: number; error?: number } }).bitrix24;
      if (meta?.id) book.deliver(meta.id);
      // Error records (fetched again with error=1) are stored and cleared; fresh ones sometimes fail.
      if (meta?.error === 0 && Math.random() < MARK_SHARE) send([null, msg]);
      else send([msg, null]);
      done();
    });
  }
  RED.nodes.registerType("soak-router", SoakRouter);
}

/** Books acks (after a clear node) and marks (after an error node). */
function tallyNode(RED: NodeAPI): void {
  function SoakTally(this: Node, config: NodeDef & { kind: string }) {
    RED.nodes.createNode(this, config);
    this.on("input", (msg, _send, done) => {
      const meta = (msg as NodeMessage & { bitrix24?: { id?: number; error?: number } }).bitrix24;
      if (meta?.id) {
        if (config.kind === "mark") {
          book.request(meta.id);
          marked++;
        } else {
          book.ack(meta.id);
          if (meta.error === 1) markedAgain++;
        }
      }
      done();
    });
  }
  RED.nodes.registerType("soak-tally", SoakTally);
}

/** A random fault profile and how long it lasts. */
function randomFaults(): { name: string; faults: Faults; expire?: boolean } {
  const pick = Math.random();
  const rate = 0.2 + Math.random() * 0.6;
  if (pick < 0.25) return { name: "calm", faults: {} };
  if (pick < 0.35) return { name: "503 storm", faults: { errorRate: rate, errorCode: "QUERY_LIMIT_EXCEEDED" } };
  if (pick < 0.42) return { name: "OVERLOAD_LIMIT", faults: { errorRate: rate / 2, errorCode: "OVERLOAD_LIMIT" } };
  if (pick < 0.49) return { name: "429", faults: { errorRate: rate / 2, errorCode: "OPERATION_TIME_LIMIT" } };
  if (pick < 0.58) return { name: "5xx burst", faults: { errorRate: rate / 2, errorCode: "INTERNAL_SERVER_ERROR" } };
  if (pick < 0.68) return { name: "drop before", faults: { dropBeforeRate: rate / 3 } };
  if (pick < 0.8) return { name: "drop after", faults: { dropAfterRate: rate / 3 } };
  if (pick < 0.88) return { name: "slow portal", faults: { latencyMs: 500 + Math.floor(Math.random() * 2500) } };
  if (pick < 0.94) return { name: "token expiry", faults: {}, expire: true };
  return {
    name: "mixed",
    faults: {
      errorRate: 0.2,
      errorCode: "QUERY_LIMIT_EXCEEDED",
      dropBeforeRate: 0.05,
      dropAfterRate: 0.05,
      latencyMs: 50,
    },
  };
}

function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

async function main(): Promise<void> {
  const userDir = mkdtempSync(join(tmpdir(), "b24-soak-"));
  helper.settings({ userDir });
  const sandbox = await startSandbox({ rateLimit: { burst: 50, perSecond: 5 } });
  const c = sandbox.credentials;
  const flow = [
    portalConfig(sandbox, { rateLimit: 5, rateBurst: 50, timeout: 2 }),
    {
      id: "t1",
      type: "bitrix24-offline-trigger",
      portal: "p",
      path: "",
      interval: 0.5,
      onDeploy: true,
      bindEvents: "",
      publicUrl: "",
      followUp: 0,
      minGap: 0,
      wires: [["g1"]],
    },
    {
      id: "g1",
      ...GET_DEFAULTS,
      limit: 50,
      prefetch: 2,
      ackTimeout: 5,
      maxDeliveries: 5,
      orphanSweep: true,
      wires: [["r"], [], ["r"]],
    },
    { id: "r", type: "soak-router", wires: [["c"], ["e"]] },
    { id: "c", type: "bitrix24-offline-clear", portal: "p", wires: [["acked"]] },
    { id: "e", type: "bitrix24-offline-error", portal: "p", wires: [["marked"]] },
    {
      id: "t2",
      type: "bitrix24-offline-trigger",
      portal: "p",
      path: "",
      interval: 3,
      onDeploy: true,
      bindEvents: "",
      publicUrl: "",
      followUp: 0,
      minGap: 0,
      wires: [["g2"]],
    },
    {
      id: "g2",
      ...GET_DEFAULTS,
      errorRecords: true,
      limit: 50,
      ackTimeout: 5,
      maxDeliveries: 5,
      orphanSweep: true,
      wires: [["r"], [], ["r"]],
    },
    { id: "acked", type: "soak-tally", kind: "ack" },
    { id: "marked", type: "soak-tally", kind: "mark" },
  ];
  await helper.load(
    [nodes.portal, nodes.get, nodes.clear, nodes.error, nodes.trigger, routerNode, tallyNode],
    // On a tab, as in a real flows file: nodes without `z` would be taken for config nodes.
    [
      { id: "f1", type: "tab", label: "soak" },
      ...flow.map((n) => (n.id === "p" ? n : { ...n, z: "f1" })),
    ] as Parameters<typeof helper.load>[1],
    {
      p: {
        clientId: c.clientId,
        clientSecret: c.clientSecret,
        accessToken: c.accessToken,
        refreshToken: c.refreshToken,
      },
    },
  );
  // The test helper spies on every Node method with sinon, which keeps every call's arguments (msgs included)
  // forever: fine for a test, a leak for a 10-minute soak. Put the real methods back.
  const internals = helper as unknown as { _sandbox: { restore(): void }; _logSpy?: { restore(): void } };
  internals._sandbox.restore();
  internals._logSpy?.restore();
  // Node-RED copies Node.prototype.send onto each wired node: re-wire so they pick up the real one again.
  for (const n of flow) {
    const live = helper.getNode(String(n.id)) as unknown as { wires?: unknown[]; updateWires?(w: unknown[]): void };
    if (live?.updateWires && live.wires) live.updateWires(live.wires);
  }
  const portal = helper.getNode("p") as unknown as PortalNode;
  const counter = new FaultCounter();
  if (portal.client) counter.watch(portal.client);

  const started = Date.now();
  const end = started + MINUTES * 60_000;
  const heap: Array<{ t: number; mb: number }> = [{ t: 0, mb: heapMb() }];
  const profiles: Record<string, number> = {};
  // The profile in force when the faults stop explains how long the queue then takes to empty.
  let lastProfile = "";
  let expiries = 0;
  let lastReport = started;

  // Events keep arriving: RATE per second in 10 ticks.
  let owed = 0;
  const arrivals = setInterval(() => {
    owed += RATE / 10;
    const n = Math.floor(owed);
    owed -= n;
    if (n > 0) sandbox.addEvents(n, { name: Math.random() < 0.5 ? "ONCRMDEALUPDATE" : "ONCRMCONTACTADD" });
  }, 100);

  // Faults change every 5-15 s.
  let nextFaultAt = Date.now();
  while (Date.now() < end) {
    const now = Date.now();
    if (now >= nextFaultAt) {
      const profile = randomFaults();
      profiles[profile.name] = (profiles[profile.name] ?? 0) + 1;
      lastProfile = profile.name;
      sandbox.setFaults(profile.faults);
      if (profile.expire) {
        sandbox.expireTokens();
        expiries++;
      }
      nextFaultAt = now + 5000 + Math.random() * 10000;
    }
    if (now - lastReport >= 30_000) {
      lastReport = now;
      const q = sandbox.stats().queue;
      heap.push({ t: Math.round((now - started) / 1000), mb: heapMb() });
      // For hunting a leak: SOAK_HEAP_DIR=/tmp/x writes a heap snapshot at every report.
      if (process.env.SOAK_HEAP_DIR)
        writeHeapSnapshot(join(process.env.SOAK_HEAP_DIR, `soak-${heap.length}.heapsnapshot`));
      console.log(
        `[soak ${Math.round((now - started) / 1000)}s] created ${sandbox.stats().created} delivered ${book.deliveries} acked ${book.acks} marked ${marked} queue ${JSON.stringify(q)} heap ${heap[heap.length - 1].mb.toFixed(1)} MB faults ${counter.faults}`,
      );
    }
    await sleep(250);
  }

  // Wind down: no new events, no faults; the flow must finish what is queued.
  clearInterval(arrivals);
  sandbox.setFaults({});
  const drainStart = Date.now();
  // What is left, every 2 s of the wind-down: which kind of record (waiting, held, error) keeps the queue up.
  const windDown: string[] = [];
  let windDownNoteAt = 0;
  while (Date.now() - drainStart < DRAIN_GRACE_MS) {
    const q = sandbox.stats().queue;
    if (Date.now() - windDownNoteAt >= 2000) {
      windDownNoteAt = Date.now();
      windDown.push(`${((windDownNoteAt - drainStart) / 1000).toFixed(0)}s:${q.unprocessed}/${q.held}/${q.error}`);
    }
    if (q.total === 0) break;
    await sleep(500);
  }
  const drainMs = Date.now() - drainStart;
  heap.push({ t: Math.round((Date.now() - started) / 1000), mb: heapMb() });

  const stats = sandbox.stats();
  for (let id = 1; id <= stats.created; id++) book.created.add(id);
  const lost = book.lostIds(sandbox);
  const undelivered = book.undelivered().filter((id) => sandbox.records().some((r) => Number(r.ID) === id));
  const leftover = stats.queue;
  await helper.unload();
  await sandbox.close();
  rmSync(userDir, { recursive: true, force: true });

  // Flat memory: the heap at the end (after GC) within 1.5x + 16 MB of the first sample after warm-up.
  const warm = heap.find((h) => h.t >= 60) ?? heap[1] ?? heap[0];
  const last = heap[heap.length - 1];
  const flat = last.mb <= warm.mb * 1.5 + 16;
  const summary = {
    minutes: MINUTES,
    ratePerSecond: RATE,
    created: stats.created,
    delivered: book.deliveries,
    duplicates: book.duplicates,
    acked: book.acks,
    markedAsFailed: marked,
    errorRecordsClearedLater: markedAgain,
    lost: lost.length,
    leftInQueue: leftover,
    notYetDelivered: undelivered.length,
    drainAfterStopMs: drainMs,
    lastFaultProfile: lastProfile,
    windDownWaitingHeldError: windDown.join(" "),
    faultAnswersSeenByClient: counter.faults,
    requests: counter.requests,
    tokenRefreshes: counter.tokenRequests,
    tokenExpiriesInjected: expiries,
    faultProfiles: profiles,
    portalRequests: stats.requests.total,
    portal503: stats.requests.rejected503,
    heapMb: heap.map((h) => `${h.t}s:${h.mb.toFixed(1)}`).join(" "),
    memoryFlat: flat,
  };
  console.log("\nSOAK SUMMARY");
  console.log(JSON.stringify(summary, null, 2));
  const ok = lost.length === 0 && leftover.total === 0 && flat;
  console.log(ok ? "SOAK OK" : "SOAK FAILED");
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
