import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import type { AckQueue } from "../../src/core/acks/ack-queue";
import { canonical, diffFields, sameValue } from "../../src/core/changes/compare";
import type { Bitrix24Client } from "../../src/core/client/client";
import type { Delivery, DeliveryGroup, DrainSummary } from "../../src/core/consumer/consumer-types";
import { OfflineConsumer, type OfflineConsumerOptions } from "../../src/core/consumer/offline-consumer";
import { parseEntityMap } from "../../src/core/entities/entity-reads";
import type { OfflineEventsApi } from "../../src/core/queue/offline-api";
import { LmdbSnapshotStore } from "../../src/core/state/lmdb-snapshot-store";
import type { Sandbox } from "../../src/sandbox";
import { consumerOptions, consumerPartsPerTest, objectIdOf } from "../kit/consumer";
import { bindOffline } from "../sandbox/rest-call";
import { until } from "../wait";

/** Issue 21: what changed since the object's last acknowledged state (core: compare, store, consumer). */

describe("changes: values compare by meaning", () => {
  it("numbers as text, key order, multi-field order, empty values, instants in another zone", () => {
    should(sameValue("10", 10)).be.true();
    should(sameValue("10.00", 10)).be.true();
    should(sameValue("007", 7)).be.false(); // an identifier, not a number
    should(sameValue({ a: 1, b: "2" }, { b: 2, a: "1" })).be.true();
    const phones = [
      { ID: "1", VALUE: "+7 900", VALUE_TYPE: "WORK" },
      { ID: "2", VALUE: "+7 901", VALUE_TYPE: "HOME" },
    ];
    should(sameValue(phones, [phones[1], phones[0]])).be.true();
    should(sameValue(phones, [phones[0]])).be.false();
    should(sameValue(null, "")).be.true();
    should(sameValue([], null)).be.true();
    should(sameValue("2026-12-04T10:00:00+03:00", "2026-12-04T07:00:00+00:00")).be.true();
    should(sameValue("NEW", "WON")).be.false();
    should(canonical(["2", 1])).equal(canonical([1, "2"]));
  });

  it("diffFields: every field, or only the watched ones; a field the read did not return is not a change", () => {
    const before = { STAGE_ID: "NEW", OPPORTUNITY: "10.00", TITLE: "a" };
    should(diffFields(before, { STAGE_ID: "WON", OPPORTUNITY: 10, TITLE: "b" }, [])).eql({
      STAGE_ID: { before: "NEW", after: "WON" },
      TITLE: { before: "a", after: "b" },
    });
    should(diffFields(before, { STAGE_ID: "NEW", OPPORTUNITY: 10, TITLE: "b" }, ["STAGE_ID", "OPPORTUNITY"])).eql({});
    should(diffFields(before, { OPPORTUNITY: 12 }, [])).eql({ OPPORTUNITY: { before: "10.00", after: 12 } });
  });
});

describe("changes: the embedded snapshot store (lmdb)", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), "b24-snap-"));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("stage → commit advances; discard does not; an older read acked last never wins; namespaces apart", async () => {
    const a = await LmdbSnapshotStore.open(dir, "ns-a");
    const b = await LmdbSnapshotStore.open(dir, "ns-b");
    await a.stage([
      { ref: "p:1", key: "deal:1", snapshot: { fields: { STAGE_ID: "NEW" }, seq: 1 } },
      { ref: "p:2", key: "deal:1", snapshot: { fields: { STAGE_ID: "WON" }, seq: 2 } },
      { ref: "p:3", key: "deal:2", snapshot: { fields: { STAGE_ID: "LOSE" }, seq: 3 } },
    ]);
    should((await a.read(["deal:1"])).size).equal(0);
    await a.commit(["p:2"]);
    await a.commit(["p:1"]); // older read, acked last
    await a.discard(["p:3"]);
    should((await a.read(["deal:1"])).get("deal:1")?.fields).eql({ STAGE_ID: "WON" });
    should((await a.read(["deal:2"])).size).equal(0);
    should(await a.staged()).eql([]);
    should((await b.read(["deal:1"])).size).equal(0);
    await a.put([{ key: "deal:1", snapshot: null }]);
    should((await a.read(["deal:1"])).size).equal(0);
    await a.close();
    await b.close();
  });
});

const objectId = (d: Delivery): number => Number(objectIdOf(d));

describe("changes: the consumer against the sandbox", function () {
  this.timeout(20000);
  let sandbox: Sandbox;
  let client: Bitrix24Client;
  let api: OfflineEventsApi;
  let acks: AckQueue;
  let stateDir: string;
  const consumers = consumerPartsPerTest("b24-changes-", async (parts) => {
    ({ sandbox, client, api, acks, stateDir } = parts);
    sandbox.crm.seed("deal", 5);
    await bindOffline(sandbox, ["ONCRMDEALUPDATE", "ONCRMDEALDELETE"]);
  });

  function make(options: Partial<OfflineConsumerOptions> = {}, ack = true) {
    const consumer = new OfflineConsumer(
      api,
      acks,
      consumerOptions(client, sandbox.credentials.clientId, stateDir, { maxDeliveries: 5, changes: true, ...options }),
    );
    consumers.push(consumer);
    const delivered: DeliveryGroup[] = [];
    const drained: DrainSummary[] = [];
    consumer.on("deliver", (g) => {
      delivered.push(g);
      if (ack)
        setImmediate(() =>
          acks.clear({ processId: g.processId!, ids: g.deliveries.map((d) => d.id) }).catch(() => undefined),
        );
    });
    consumer.on("drained", (s) => drained.push(s));
    const all = () => delivered.flatMap((g) => g.deliveries);
    return { consumer, delivered, drained, all };
  }

  const edit = (id: number, fields: Record<string, string | number>) =>
    sandbox.portalCall("crm.deal.update", { id, fields });

  it("first sight, then only the watched changes with stage labels; the rest is acked unseen and counted", async () => {
    for (let id = 1; id <= 5; id++) edit(id, { TITLE: `first ${id}` });
    const first = make({ watchFields: ["STAGE_ID", "OPPORTUNITY"] });
    await first.consumer.trigger();
    should(first.all().map((d) => d.changes)).eql(
      Array.from({ length: 5 }, () => ({ changes: null, firstSeen: true, unchanged: false })),
    );
    await until(() => sandbox.records().length === 0);

    const stageBefore = String(sandbox.crm.get("deal", 1)?.STAGE_ID);
    edit(1, { STAGE_ID: "WON" });
    edit(2, { OPPORTUNITY: 777 });
    edit(3, { TITLE: "only the title" });
    edit(4, { OPPORTUNITY: String(sandbox.crm.get("deal", 4)?.OPPORTUNITY) }); // same amount, as text
    const second = make({ watchFields: ["STAGE_ID", "OPPORTUNITY"] });
    // Which methods travel together in each batch request.
    const batches: string[][] = [];
    const batch = client.batch.bind(client);
    client.batch = (commands, ...rest) => {
      batches.push(Object.values(commands).map((c) => c.method));
      return batch(commands, ...rest);
    };
    await second.consumer.trigger();
    // The field metadata rides with the object reads; only the stage directory (known once the metadata is) needs
    // a request of its own, once.
    should(batches.some((b) => b.includes("crm.deal.list") && b.includes("crm.deal.fields"))).be.true();
    should(batches.filter((b) => b.every((m) => m === "crm.status.list"))).have.length(1);
    const byId = new Map(second.all().map((d) => [objectId(d), d.changes]));
    should([...byId.keys()].sort()).eql([1, 2]);
    should(byId.get(1)?.changes?.STAGE_ID).containEql({
      before: stageBefore,
      after: "WON",
      afterLabel: "Deal successful",
    });
    should(byId.get(1)?.changes?.STAGE_ID?.beforeLabel).be.a.String();
    should(Object.keys(byId.get(2)?.changes ?? {})).eql(["OPPORTUNITY"]);
    should(second.drained.at(-1)).have.property("unchanged", 2);
    should(second.consumer.state.unchanged).equal(2);
    await until(() => sandbox.records().length === 0); // the unchanged two were acked by the node
    // Cached: the next stage change costs no label read at all.
    batches.length = 0;
    edit(1, { STAGE_ID: "LOSE" });
    await second.consumer.trigger();
    should(second.all().at(-1)?.changes?.changes?.STAGE_ID).match({
      afterLabel: "Deal failed",
      beforeLabel: "Deal successful",
    });
    should(batches.flat().filter((m) => m === "crm.status.list" || m === "crm.deal.fields")).eql([]);
    // A stage added in the portal since: its id is unknown, the directory is read again (once) for its label.
    sandbox.portalCall("crm.status.add", {
      fields: { ENTITY_ID: "DEAL_STAGE", STATUS_ID: "REVIEW", NAME: "Under review" },
    });
    edit(1, { STAGE_ID: "REVIEW" });
    await second.consumer.trigger();
    should(second.all().at(-1)?.changes?.changes?.STAGE_ID).match({ after: "REVIEW", afterLabel: "Under review" });
    // a value the portal does not know at all is looked for once, not on every event
    await until(() => sandbox.records().length === 0);
    batches.length = 0;
    edit(1, { STAGE_ID: "NO_SUCH_STAGE" });
    await second.consumer.trigger();
    await until(() => sandbox.records().length === 0);
    edit(1, { STAGE_ID: "REVIEW" });
    await second.consumer.trigger();
    should(second.all().at(-1)?.changes?.changes?.STAGE_ID).match({
      before: "NO_SUCH_STAGE",
      afterLabel: "Under review",
    });
    should(second.all().at(-1)?.changes?.changes?.STAGE_ID).not.have.property("beforeLabel");
    should(batches.flat().filter((m) => m === "crm.status.list")).have.length(1);
  });

  it("an unacked event comes back with the same changes; the state advances only on ack; a delete forgets", async () => {
    edit(1, { TITLE: "seen" });
    const a = make();
    await a.consumer.trigger();
    await until(() => sandbox.records().length === 0);
    const before = String(sandbox.crm.get("deal", 1)?.STAGE_ID);

    edit(1, { STAGE_ID: "LOSE" });
    const b = make({}, false); // the flow fails: no ack
    await b.consumer.trigger();
    const firstTry = b.all()[0].changes?.changes;
    should(firstTry?.STAGE_ID).containEql({ before, after: "LOSE" });
    const processId = b.delivered[0].processId!;
    await b.consumer.reselect(processId); // redelivered (as after an ack timeout)
    should(b.all()[1].redelivered).be.true();
    should(b.all()[1].changes?.changes).eql(firstTry);
    await acks.clear({ processId, ids: [b.all()[1].id] });

    edit(1, { STAGE_ID: "WON" });
    await b.consumer.trigger();
    should(b.all()[2].changes?.changes?.STAGE_ID).containEql({ before: "LOSE", after: "WON" });
    await acks.clear({ processId: b.delivered[2].processId!, ids: [b.all()[2].id] });

    sandbox.portalCall("crm.deal.delete", { id: 1 });
    await b.consumer.trigger();
    should(b.all()[3].changes).eql({ changes: null, firstSeen: false, unchanged: false });
    await acks.clear({ processId: b.delivered[3].processId!, ids: [b.all()[3].id] });
    await until(() => sandbox.records().length === 0);
  });

  it("two events of one object in flight are each compared with the last acked state", async () => {
    edit(2, { TITLE: "seen" });
    const a = make();
    await a.consumer.trigger();
    await until(() => sandbox.records().length === 0);
    const c = make({ watchFields: ["OPPORTUNITY"] }, false);
    edit(2, { OPPORTUNITY: 100 });
    await c.consumer.trigger(); // held, not acked
    edit(2, { OPPORTUNITY: 200 }); // a change while held: a second record (REFERENCE.md)
    await c.consumer.trigger();
    const [x, y] = c.all();
    should(x.changes?.firstSeen).be.true(); // its watch list has its own history
    should(y.changes?.firstSeen).be.true(); // still nothing acked
    await acks.clear({ processId: c.delivered[1].processId!, ids: [y.id] });
    await acks.clear({ processId: c.delivered[0].processId!, ids: [x.id] }); // the older read acked last
    edit(2, { OPPORTUNITY: 300 });
    await c.consumer.trigger();
    await until(() => c.all().length === 3);
    should(c.all()[2].changes?.changes).eql({ OPPORTUNITY: { before: "200.00", after: "300.00" } });
  });
  it("every family: smart-process stages and enumeration user fields with labels, tasks, users, entityMap entries", async () => {
    // An enumeration user field "in the portal": crm.deal.fields describes it with its items.
    sandbox.crm.entities.deal.schema.add({
      name: "UF_CRM_LEVEL",
      type: "enumeration",
      title: "Level",
      extra: {
        items: [
          { ID: "7", VALUE: "Gold" },
          { ID: "8", VALUE: "Silver" },
        ],
      },
    });
    sandbox.crm.seed("item", 2);
    sandbox.crm.seed("task", 2);
    sandbox.crm.seed("user", 2);
    await bindOffline(sandbox, ["ONCRMDYNAMICITEMUPDATE", "ONTASKUPDATE"]);
    const entityMap = parseEntityMap(JSON.stringify({ "ONMYDEAL*": { method: "crm.deal.list", id: "FIELDS.ID" } }));
    const touchAll = (round: number) => {
      sandbox.portalCall("crm.item.update", { entityTypeId: 128, id: 1, fields: { title: `item ${round}` } });
      sandbox.portalCall("tasks.task.update", { taskId: 1, fields: { TITLE: `task ${round}` } });
      sandbox.addEvents(1, { name: "ONUSERUPDATE", data: () => ({ FIELDS: { ID: "2" } }) });
      sandbox.addEvents(1, { name: "ONMYDEALCHANGE", data: () => ({ FIELDS: { ID: "3" } }) });
    };
    edit(3, { UF_CRM_LEVEL: "8" });
    touchAll(1);
    const first = make({ entityMap });
    await first.consumer.trigger();
    should(first.all().map((d) => d.changes?.firstSeen)).eql([true, true, true, true, true]);
    await until(() => sandbox.records().length === 0);

    sandbox.portalCall("crm.item.update", { entityTypeId: 128, id: 1, fields: { stageId: "DT128_1:SUCCESS" } });
    sandbox.portalCall("tasks.task.update", { taskId: 1, fields: { TITLE: "renamed task", STATUS: 3 } });
    const user = sandbox.crm.users.get(2);
    if (user) user.fields = { ...user.fields, NAME: "Renamed" };
    sandbox.addEvents(1, { name: "ONUSERUPDATE", data: () => ({ FIELDS: { ID: "2" } }) });
    sandbox.portalCall("crm.deal.update", { id: 3, fields: { UF_CRM_LEVEL: "7" } }); // also ONCRMDEALUPDATE
    sandbox.addEvents(1, { name: "ONMYDEALCHANGE", data: () => ({ FIELDS: { ID: "3" } }) });
    const second = make({ entityMap });
    await second.consumer.trigger();
    const byName = new Map(second.all().map((d) => [d.event.EVENT_NAME, d.changes?.changes]));
    should(byName.get("ONCRMDYNAMICITEMUPDATE")?.stageId).match({ after: "DT128_1:SUCCESS", afterLabel: "Success" });
    should(byName.get("ONTASKUPDATE")?.title).match({ after: "renamed task" });
    // tasks.task.getFields' enums (UPPER_CASE names) label tasks.task.list's camelCase fields
    should(byName.get("ONTASKUPDATE")?.status).match({ after: "3", afterLabel: "In progress" });
    should(byName.get("ONUSERUPDATE")?.NAME).match({ after: "Renamed" });
    // one deal, two event families (built-in and the map's): one history, each compared with the acked state
    for (const name of ["ONCRMDEALUPDATE", "ONMYDEALCHANGE"]) {
      should(byName.get(name)?.UF_CRM_LEVEL).match({
        before: "8",
        after: "7",
        beforeLabel: "Silver",
        afterLabel: "Gold",
      });
    }
  });
  it("auto mode: the state advances when the event is emitted; unchanged events are dropped unseen", async () => {
    edit(1, { TITLE: "one" });
    const a = make({ mode: "auto", watchFields: ["STAGE_ID"] }, false);
    await a.consumer.trigger();
    should(a.all()[0].changes?.firstSeen).be.true();
    edit(1, { TITLE: "two" }); // not watched
    edit(2, { TITLE: "first sight" });
    await a.consumer.trigger();
    should(a.all().map((d) => d.changes?.firstSeen)).eql([true, true]); // deal 1 unchanged: not emitted
    should(a.drained.at(-1)).have.property("unchanged", 1);
    edit(1, { STAGE_ID: "WON" });
    await a.consumer.trigger();
    should(a.all()[2].changes?.changes).match({ STAGE_ID: { after: "WON" } });
    should(sandbox.records()).be.empty(); // auto mode: deleted on fetch
  });
});
