import should from "should";
import type { ConsumerWarning, DeliveryGroup } from "../../src/core/consumer/consumer-types";
import { OfflineConsumer, type OfflineConsumerOptions } from "../../src/core/consumer/offline-consumer";
import { parseEntityMap } from "../../src/core/entities/entity-reads";
import type { Sandbox } from "../../src/sandbox";
import { type ConsumerParts, consumerOptions, consumerPartsPerTest, objectIdOf } from "../kit/consumer";
import { until } from "../wait";

/** The get side attaching each event's object (entity stage) against the sandbox's CRM objects. */

const objectId = objectIdOf;

describe("entity attach (against the sandbox's CRM objects)", function () {
  this.timeout(20000);
  let p: ConsumerParts;
  let sandbox: Sandbox;
  const consumers = consumerPartsPerTest("b24-entity-", (parts) => {
    p = parts;
    sandbox = parts.sandbox;
  });

  function make(options: Partial<OfflineConsumerOptions> = {}) {
    const consumer = new OfflineConsumer(
      p.api,
      p.acks,
      consumerOptions(p.client, sandbox.credentials.clientId, p.stateDir, {
        maxDeliveries: 5,
        entity: true,
        ...options,
      }),
    );
    consumers.push(consumer);
    const delivered: DeliveryGroup[] = [];
    const warnings: ConsumerWarning[] = [];
    consumer.on("deliver", (g) => delivered.push(g));
    consumer.on("warning", (w) => warnings.push(w));
    const ackAll = () =>
      consumer.on("deliver", (group) => {
        setImmediate(() => {
          p.acks.clear({ processId: group.processId!, ids: group.deliveries.map((d) => d.id) }).catch(() => undefined);
        });
      });
    const all = () => delivered.flatMap((g) => g.deliveries);
    return { consumer, delivered, warnings, ackAll, all };
  }

  function queueEvents(name: string, ids: number[]): void {
    sandbox.addEvents(ids.length, { name, data: (i) => ({ FIELDS: { ID: String(ids[i]) } }) });
  }

  it('records as real portals also write them: EVENT_DATA false or null, user_id "0" (an agent), cost no read and stop nothing', async () => {
    sandbox.crm.seed("deal", 3);
    sandbox.addEvents(1, { name: "ONCRMDEALUPDATE", data: () => false, userId: "0" });
    sandbox.addEvents(1, { name: "ONCRMDEALADD", data: () => null, userId: "0" });
    queueEvents("ONCRMDEALUPDATE", [2]);
    const h = make();
    h.ackAll();
    const summary = await h.consumer.trigger();
    should(summary.events).equal(3);
    const [falseData, nullData, named] = h.all();
    should(falseData.event.EVENT_DATA).equal(false);
    should(falseData.event.EVENT_ADDITIONAL).eql({ user_id: "0" });
    should(nullData.event.EVENT_DATA).be.null();
    // Nothing names an object: no entity to attach (not an error), and the event beside it still gets its deal.
    for (const d of [falseData, nullData]) should(d.entity?.entity ?? null).be.null();
    should(named.entity?.entity).eql(sandbox.crm.get("deal", 2));
    await until(() => sandbox.stats().queue.total === 0);
  });

  it("every event carries its object's latest state; deletes and objects deleted since are null + missing; reads ride along", async () => {
    sandbox.crm.seed("contact", 30);
    sandbox.crm.seed("deal", 120);
    const dealIds = Array.from({ length: 120 }, (_, i) => i + 1);
    queueEvents("ONCRMDEALUPDATE", dealIds);
    queueEvents("ONCRMCONTACTUPDATE", [1, 2, 3, 4, 5]);
    queueEvents("ONCRMDEALDELETE", [500]);
    queueEvents("ONCRMDEALUPDATE", [9999]); // no such deal (deleted since)
    queueEvents("ONSOMEOTHEREVENT", [1]);
    // Changed after the event was queued: the msg must carry this, not the state when the event happened.
    await p.client.call("crm.deal.update", { id: 7, fields: { TITLE: "changed later" } });
    const before = sandbox.stats().requests;
    const h = make();
    h.ackAll();
    const summary = await h.consumer.trigger();
    should(summary.events).equal(128);
    for (const d of h.all()) {
      if (d.event.EVENT_NAME === "ONSOMEOTHEREVENT") {
        should(d.entity).be.undefined();
      } else if (d.event.EVENT_NAME === "ONCRMDEALDELETE" || objectId(d) === "9999") {
        should(d.entity).eql({ entity: null, missing: true });
      } else {
        const kind = d.event.EVENT_NAME === "ONCRMDEALUPDATE" ? "deal" : "contact";
        should(d.entity?.entity).eql(sandbox.crm.get(kind, Number(objectId(d))));
      }
    }
    should(
      h.all().find((d) => d.event.EVENT_NAME === "ONCRMDEALUPDATE" && objectId(d) === "7")?.entity?.entity,
    ).have.property("TITLE", "changed later");
    const after = sandbox.stats().requests;
    // No read of its own: the reads travel in the batches that carry the gets (plus one at the end of the drain).
    should(after.byMethod).not.have.keys("crm.deal.list", "crm.contact.list");
    // 128 events at limit 50: feature.get, 3 gets (the last one short), 1 request that only reads; on a busy
    // machine an ack may miss its ride and go out alone (as without objects).
    should(after.total - before.total).be.belowOrEqual(8);
    await until(() => h.consumer.state.pending === 0);
  });

  it("tasks, users and smart-process items: their own answer shapes, filters and ids", async () => {
    sandbox.crm.seed("user", 3);
    sandbox.crm.seed("task", 4);
    sandbox.crm.seed("item", 2);
    sandbox.addEvents(2, {
      name: "ONTASKUPDATE",
      data: (i) => ({ FIELDS_BEFORE: { ID: String(i + 1) }, FIELDS_AFTER: { ID: String(i + 1) } }),
    });
    sandbox.addEvents(1, {
      name: "ONTASKDELETE",
      data: () => ({ FIELDS_BEFORE: { ID: "4" }, FIELDS_AFTER: { ID: "4" } }),
    });
    sandbox.addEvents(2, { name: "ONUSERADD", data: (i) => ({ ID: String(i + 2) }) });
    sandbox.addEvents(2, {
      name: "ONCRMDYNAMICITEMUPDATE",
      data: (i) => ({ FIELDS: { ID: String(i + 1), ENTITY_TYPE_ID: "128" } }),
    });
    const h = make();
    h.ackAll();
    await h.consumer.trigger();
    const byName = (name: string) => h.all().filter((d) => d.event.EVENT_NAME === name);
    should(byName("ONTASKUPDATE").map((d) => d.entity?.entity)).eql([
      sandbox.crm.get("task", 1),
      sandbox.crm.get("task", 2),
    ]);
    should(byName("ONTASKDELETE")[0].entity).eql({ entity: null, missing: true });
    should(byName("ONUSERADD").map((d) => d.entity?.entity)).eql([
      sandbox.crm.get("user", 2),
      sandbox.crm.get("user", 3),
    ]);
    should(byName("ONCRMDYNAMICITEMUPDATE").map((d) => d.entity?.entity)).eql([
      sandbox.crm.get("item", 1),
      sandbox.crm.get("item", 2),
    ]);
    should(h.warnings.filter((w) => w.code === "ENTITY_READ_FAILED")).eql([]);
  });

  it("a read that fails goes out without objects, says which method and why once, and never blocks the queue", async () => {
    const entityMap = parseEntityMap(
      JSON.stringify({ ONWIDGETUPDATE: { method: "widget.item.list", id: "FIELDS.ID" } }),
    );
    sandbox.crm.seed("deal", 3);
    queueEvents(
      "ONWIDGETUPDATE",
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
    queueEvents("ONCRMDEALUPDATE", [1, 2, 3]);
    const h = make({ entityMap });
    h.ackAll();
    await h.consumer.trigger();
    queueEvents("ONWIDGETUPDATE", [100, 101]);
    await h.consumer.trigger();
    const widgets = h.all().filter((d) => d.event.EVENT_NAME === "ONWIDGETUPDATE");
    should(widgets).have.length(62);
    for (const d of widgets) {
      should(d.entity?.entity).be.null();
      should(d.entity?.error).containDeep({ method: "widget.item.list", code: "ERROR_METHOD_NOT_FOUND" });
    }
    should(h.all().filter((d) => d.event.EVENT_NAME === "ONCRMDEALUPDATE" && d.entity?.entity)).have.length(3);
    const failed = h.warnings.filter((w) => w.code === "ENTITY_READ_FAILED");
    should(failed).have.length(1);
    should(failed[0]).containDeep({ method: "widget.item.list" });
    await until(() => h.consumer.state.pending === 0);
    await p.acks.flush();
    should(sandbox.stats().queue.total).equal(0);
  });

  it("a redelivery reads the object again (it may have changed), and so does a re-select after a restart", async () => {
    sandbox.crm.seed("deal", 3);
    queueEvents("ONCRMDEALUPDATE", [1, 2, 3]);
    const h = make({ ackTimeoutMs: 200 });
    await h.consumer.trigger();
    should(h.all().map((d) => d.entity?.entity?.TITLE)).eql([1, 2, 3].map((id) => sandbox.crm.get("deal", id)?.TITLE));
    await p.client.call("crm.deal.update", { id: 2, fields: { TITLE: "second version" } });
    await until(() => h.all().some((d) => d.redelivered));
    const again = h.all().filter((d) => d.redelivered);
    should(again.find((d) => objectId(d) === "2")?.entity?.entity).have.property("TITLE", "second version");
    should(again.every((d) => d.deliveryCount === 2)).be.true();
    await h.consumer.close();

    // Restart: the journal's process is re-selected with clear=0, its objects read once more.
    await p.client.call("crm.deal.update", { id: 3, fields: { TITLE: "third version" } });
    const next = make();
    await next.consumer.trigger();
    const recovered = next.all().filter((d) => d.redelivered);
    should(recovered).have.length(3);
    should(recovered.find((d) => objectId(d) === "3")?.entity?.entity).have.property("TITLE", "third version");
  });

  it("with prefetch, a msg.limit override and auto mode the objects still come along", async () => {
    sandbox.crm.seed("deal", 90);
    queueEvents(
      "ONCRMDEALUPDATE",
      Array.from({ length: 90 }, (_, i) => i + 1),
    );
    const h = make({ prefetch: 3, limit: 50 });
    h.ackAll();
    await h.consumer.trigger({ limit: 20 });
    should(h.all()).have.length(90);
    should(h.all().every((d) => d.entity?.entity?.ID === objectId(d))).be.true();
    await until(() => h.consumer.state.pending === 0);

    queueEvents("ONCRMDEALUPDATE", [4, 5]);
    const auto = make({ mode: "auto" });
    await auto.consumer.trigger();
    should(auto.all().map((d) => d.entity?.entity?.ID)).eql(["4", "5"]);
    should(sandbox.stats().queue.total).equal(0);
  });

  it("pausing mid-drain still hands out the fetched events with their objects", async () => {
    sandbox.crm.seed("deal", 100);
    queueEvents(
      "ONCRMDEALUPDATE",
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    const h = make({ limit: 10 });
    h.consumer.once("deliver", () => h.consumer.pause());
    const summary = await h.consumer.trigger();
    should(summary.stopped).be.true();
    // Whatever was fetched went out, each with its object: nothing waits unseen.
    should(h.all().length).equal(h.consumer.state.pending);
    should(h.all().every((d) => d.entity?.entity?.ID === objectId(d))).be.true();
  });
});
