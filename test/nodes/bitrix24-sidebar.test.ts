import should from "should";
import { PortalMetrics } from "../../src/core/metrics/portal-metrics";
import { QueueLook } from "../../src/core/metrics/queue-look";
import { addOpsPortal } from "../../src/nodes/shared/ops-hub";
import { OpsFeed, type OpsUpdate } from "../../src/plugins/bitrix24-sidebar/ops-feed";
import { sleep, until } from "../wait";

/**
 * The sidebar's runtime feed: it publishes only while an editor holds a lease (an open Bitrix24 tab), and the
 * queue look it asks for costs one event.offline.list a minute at most. (The editor half: test/e2e/sidebar.test.ts.)
 */
describe("bitrix24-sidebar feed", () => {
  const removers: Array<() => void> = [];
  afterEach(() => {
    for (const remove of removers.splice(0)) remove();
  });

  function portal(id: string, inUse = true) {
    const metrics = new PortalMetrics({ id, name: id, host: `${id}.bitrix24.com`, perSecond: 2, burst: 50 });
    let lists = 0;
    const queueLook = new QueueLook(metrics, async () => {
      lists++;
      return { records: [], total: 7 };
    });
    removers.push(addOpsPortal({ id, metrics, queueLook, inUse: () => inUse, owns: () => false }));
    return { metrics, lists: () => lists };
  }

  it("publishes nothing and looks at nothing until an editor watches; stops when the lease runs out", async () => {
    const used = portal("p1");
    portal("p2", false); // deployed, but no node uses it: not shown
    const updates: OpsUpdate[] = [];
    const feed = new OpsFeed({ publish: (u) => updates.push(u), leaseMs: 300, everyMs: 40, pushSeconds: 5 });
    await sleep(150);
    should(updates).have.length(0);
    should(used.lists()).equal(0);

    feed.watch();
    await sleep(200);
    should(updates.length).be.above(2);
    should(updates[0].portals.map((p) => p.id)).eql(["p1"]);
    // each push carries the last seconds of the series, not the whole 15 minutes
    should(updates[0].portals[0].series.delivered.length).be.belowOrEqual(6);
    // the queue's depth: looked at once, not once per push
    should(used.lists()).equal(1);
    should(updates.at(-1)?.portals[0].queue?.total).equal(7);

    await until(() => !feed.watched, 1000, "the lease to run out");
    const count = updates.length;
    await sleep(150);
    should(updates.length).equal(count);
  });

  it("a renewed lease keeps it going", async () => {
    portal("p1");
    const updates: OpsUpdate[] = [];
    const feed = new OpsFeed({ publish: (u) => updates.push(u), leaseMs: 150, everyMs: 30, pushSeconds: 5 });
    feed.watch();
    for (let i = 0; i < 4; i++) {
      await sleep(100);
      feed.watch();
    }
    should(feed.watched).be.true();
    feed.stop();
  });
});
