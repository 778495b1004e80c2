import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { drainFlow, readDeliveries, untilDelivered } from "./drain-flow";
import { PORTAL_ID, sandboxPortal, until } from "./example-flows";
import { freshUserDir } from "./installed-package";
import { type NodeRedProcess, startNodeRed } from "./node-red-process";

/**
 * Scale-out as DESIGN.md promises it: N Node-RED instances with the same flow drain one portal; the portal's
 * queue hands them disjoint sets, and together they run at the portal's rate limit (each takes its share of
 * the bucket through the portal config's `instances`), so the bucket, not our code, bounds throughput.
 */
describe("two Node-RED instances draining one portal queue", function () {
  this.timeout(150000);
  const EVENTS = 1500;
  const BUCKET = { burst: 4, perSecond: 4 };
  let sandbox: Sandbox;
  const instances: NodeRedProcess[] = [];

  before(async () => {
    sandbox = await startSandbox({ rateLimit: BUCKET });
  });

  after(async () => {
    await Promise.all(instances.map((n) => n.stop()));
    await sandbox?.close();
  });

  it("deliver disjoint sets, ack everything, at the pace of the portal's bucket", async () => {
    const userDirs = [freshUserDir("scale-a"), freshUserDir("scale-b")];
    const logs = userDirs.map((dir) => join(dir, "deliveries.log"));
    instances.push(...(await Promise.all(userDirs.map((dir) => startNodeRed(dir)))));
    const portal = sandboxPortal(sandbox, { rateLimit: BUCKET.perSecond, rateBurst: BUCKET.burst, instances: 2 });
    await Promise.all(
      instances.map((n, i) =>
        n.deploy([portal, ...drainFlow({ portalId: PORTAL_ID, logFile: logs[i], pollSeconds: 1 })]),
      ),
    );
    // both started and polling (each get node's first, empty get)
    await until(() => (sandbox.stats().requests.byMethod["event.offline.get"] ?? 0) >= 2, "both instances polling");
    await new Promise((resolve) => setTimeout(resolve, 1500));

    const before = sandbox.stats();
    const startedAt = Date.now();
    sandbox.addEvents(EVENTS, { name: "ONCRMDEALUPDATE", data: (i) => ({ FIELDS: { ID: i + 1 } }) });
    const ids = sandbox.records().map((r) => Number(r.ID));
    await until(() => sandbox.stats().queue.total === 0, `${EVENTS} events drained`, 120000, 50).catch((err) => {
      throw new Error(
        `${err.message}: ${JSON.stringify(sandbox.stats())}\n${instances.map((n) => n.output().slice(-3000)).join("\n---\n")}`,
      );
    });
    const seconds = (Date.now() - startedAt) / 1000;
    const after = sandbox.stats();

    // every event acked, nothing held
    should(after.deleted - before.deleted).equal(EVENTS);
    should(sandbox.records()).be.empty();
    // disjoint: no event reached both instances (nor one twice), and both did real work
    const perInstance = logs.map((log) => readDeliveries(log).map((d) => d.id));
    const all = perInstance.flat();
    const duplicates = all.length - new Set(all).size;
    should(duplicates).equal(0);
    should(new Set(all)).eql(new Set(ids));
    for (const share of perInstance) should(share.length).be.above(EVENTS / 10);

    // the bucket bounds the pace: the portal accepted at most burst + perSecond * t requests ...
    const accepted =
      after.requests.total - before.requests.total - (after.requests.rejected503 - before.requests.rejected503);
    should(accepted).be.belowOrEqual(BUCKET.burst + BUCKET.perSecond * seconds + 1);
    // ... and our side kept it busy: at least 60 % of what the bucket allowed went out, each request carrying
    // a good share of a batch (acks ride along with gets), and almost nothing was refused with 503
    should(accepted / seconds).be.aboveOrEqual(0.6 * BUCKET.perSecond);
    should(EVENTS / accepted).be.aboveOrEqual(15);
    should(after.requests.rejected503 - before.requests.rejected503).be.belowOrEqual(accepted * 0.1);
    console.log(
      `      ${EVENTS} events in ${seconds.toFixed(1)} s (${(EVENTS / seconds).toFixed(0)}/s): ${accepted} requests (${(accepted / seconds).toFixed(2)}/s, bucket ${BUCKET.perSecond}/s), ${after.requests.rejected503 - before.requests.rejected503} refused; shares ${perInstance.map((s) => s.length).join(" + ")}`,
    );
  });

  it("one machine, one state folder: a neighbour killed inside the window has its batch adopted within the bound; a live one's batch is never taken", async () => {
    const BOUND_MS = 10_000; // README, "Delivery semantics"
    const portalSandbox = await startSandbox();
    try {
      const [dirA, dirB] = [freshUserDir("window-a"), freshUserDir("window-b")];
      // several Node-RED instances on one machine share the state folder
      mkdirSync(join(dirA, ".bitrix24-offline-events"), { recursive: true });
      symlinkSync(join(dirA, ".bitrix24-offline-events"), join(dirB, ".bitrix24-offline-events"));
      const [logA, logB] = [join(dirA, "deliveries.log"), join(dirB, "deliveries.log")];
      const portal = sandboxPortal(portalSandbox);
      // B drains slowly (5 msgs/s) and polls rarely: it holds its batch for long, alive
      const b = await startNodeRed(dirB);
      instances.push(b);
      await b.deploy([
        portal,
        ...drainFlow({ portalId: PORTAL_ID, logFile: logB, pollSeconds: 600, workRate: 5, limit: 20 }),
      ]);
      portalSandbox.addEvents(20, { name: "ONCRMDEALUPDATE", data: (i) => ({ FIELDS: { ID: i + 1 } }) });
      await b.deploy([
        portal,
        ...drainFlow({ portalId: PORTAL_ID, logFile: logB, pollSeconds: 600, workRate: 5, limit: 20 }),
      ]);
      await until(() => readDeliveries(logB).length === 20, "B holds a batch of 20");
      const bBatch = new Set(portalSandbox.records().map((r) => r.PROCESS_ID));
      should(bBatch.size).equal(1);

      // A fetches; the portal holds its batch and answers late; A is killed inside the delay
      portalSandbox.addEvents(50, { name: "ONCRMDEALUPDATE", data: (i) => ({ FIELDS: { ID: 1000 + i } }) });
      portalSandbox.setFaults({ holdAnswerMs: 4000, methods: ["event.offline.get", "batch"] });
      const holds = portalSandbox.stats().queue.holds;
      let a = await startNodeRed(dirA);
      instances.push(a);
      await a.deploy([portal, ...drainFlow({ portalId: PORTAL_ID, logFile: logA, pollSeconds: 1 })]);
      await until(() => portalSandbox.stats().queue.holds > holds, "A's batch held, its answer delayed", 30000, 5);
      await a.stop("SIGKILL");
      const killedAt = Date.now();
      portalSandbox.setFaults({});
      const aBatch = portalSandbox.records().filter((r) => r.PROCESS_ID !== null && !bBatch.has(r.PROCESS_ID));
      should(aBatch).have.length(50);

      // B sees A's death at its next heartbeat and takes A's batch over
      const aIds = new Set(aBatch.map((r) => Number(r.ID)));
      const why = () =>
        `${JSON.stringify(portalSandbox.stats())}\nB log: ${readDeliveries(logB).length} lines, of A: ${readDeliveries(logB).filter((d) => aIds.has(d.id)).length} after ${Date.now() - killedAt} ms\n${b
          .output()
          .split("\n")
          .filter((l) => !/\[info\]/.test(l))
          .join("\n")
          .slice(-3000)}`;
      await untilDelivered(logB, aIds, "B adopted A's batch", BOUND_MS, why);
      const adoptedIn = Date.now() - killedAt;

      // A starts again while B still works through its batches: A must take none of them
      a = await startNodeRed(dirA);
      instances.push(a);
      await until(() => portalSandbox.stats().queue.total === 0, "everything acked", 90000);
      const bIds = new Set(readDeliveries(logB).map((d) => d.id));
      const takenFromB = readDeliveries(logA).filter((d) => bIds.has(d.id));
      should(takenFromB).eql([]);
      should(readDeliveries(logB).length).equal(70); // 20 of its own + 50 adopted, each once
      console.log(
        `      A killed inside the window: B delivered A's ${aIds.size} held events ${adoptedIn} ms later (bound ${BOUND_MS} ms)`,
      );
    } finally {
      await Promise.all(instances.splice(0).map((n) => n.stop("SIGKILL")));
      await portalSandbox.close();
    }
  });
});
