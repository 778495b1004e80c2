import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { drainFlow, readDeliveries } from "./drain-flow";
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
});
