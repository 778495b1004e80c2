import should from "should";
import { parseGetConfig } from "../../src/nodes/bitrix24-offline-get/bitrix24-offline-get";
import type { PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import type { EventMessage } from "../../src/nodes/shared/msg-contract";
import { getNode } from "../kit/flows.cjs";
import { ackerNode, collect, helper, helpers, lastStatus, nodeRedPerTest, nodes, spied } from "../kit/node-red";
import { sleep, until } from "../wait";

describe("bitrix24-offline-get node", function () {
  this.timeout(15000);
  const t = nodeRedPerTest();
  const { current: sandbox, start } = t;

  /** Loads portal + get (+ acker when `ack`), collecting outputs. */
  async function load(
    get: Record<string, unknown> = {},
    opts: { ack?: boolean; portal?: Record<string, unknown> } = {},
  ) {
    const ack = opts.ack ?? true;
    const flow = [
      getNode({
        id: "g",
        prefetch: 1,
        allowAtMostOnce: false,
        orphanSweep: false,
        ...get,
        wires: [ack ? ["out", "ack"] : ["out"], ["empty"], ["dead"]],
      }),
      { id: "ack", type: "test-acker", portal: "p", wires: [["acked"]] },
      ...helpers("out", "empty", "dead", "acked"),
    ];
    await t.load([nodes.get, ackerNode], flow, { portal: opts.portal });
    const outputOf = (id: string) => ({ msgs: collect<EventMessage>(id) });
    return {
      node: spied("g"),
      out: outputOf("out"),
      empty: outputOf("empty"),
      dead: outputOf("dead"),
      acked: outputOf("acked"),
    };
  }

  it("ack mode end to end: one msg per event per the msg contract, acks delete, output 2 once", async () => {
    await start({ events: 120 });
    const { node, out, empty, acked } = await load();
    node.receive({ _tag: "go" });
    await until(() => empty.msgs.length === 1 && acked.msgs.length === 120);
    should(out.msgs).have.length(120);
    const first = out.msgs[0];
    should(first.topic).equal((first.payload as { EVENT_NAME: string }).EVENT_NAME);
    const meta = first.bitrix24;
    should(meta.portal).equal(new URL(sandbox.url).host);
    should(meta.processId).be.a.String().and.have.length(32);
    should(meta).match({ authConnector: "", error: 0, deliveryCount: 1, redelivered: false });
    should(meta.id).equal(Number((first.payload as { ID: string }).ID));
    should(meta.messageId).equal((first.payload as { MESSAGE_ID: string }).MESSAGE_ID);
    should(meta.batch).eql({ index: 0, size: 50 });
    should(out.msgs[49].bitrix24.batch).eql({ index: 49, size: 50 });
    should(new Set(out.msgs.map((m) => m.bitrix24.id)).size).equal(120);
    const summary = empty.msgs[0].payload as unknown as {
      events: number;
      batches: number;
      ms: number;
      requests: number;
    };
    should(summary).match({ events: 120, batches: 3 });
    should(summary.ms).be.a.Number();
    should(summary.requests).be.aboveOrEqual(3);
    await until(() => sandbox.stats().queue.total === 0);
    await sleep(20);
    should(empty.msgs).have.length(1);
    should(lastStatus(node)).match({ fill: "green" });
  });

  it("each msg is its own object: distinct within a batch, and a second wire gets a copy, not the same msg", async () => {
    await start({ events: 20 });
    const { node, out, empty, acked } = await load({ limit: 10 });
    node.receive({});
    await until(() => empty.msgs.length === 1 && acked.msgs.length === 20);
    should(new Set(out.msgs).size).equal(20);
    should(new Set(out.msgs.map((m) => m.payload)).size).equal(20);
    // The acker (on the same output as "out") passes on what it received: a copy of the msg "out" got.
    const byId = new Map(acked.msgs.map((m) => [m.bitrix24.id, m]));
    for (const m of out.msgs) {
      const other = byId.get(m.bitrix24.id)!;
      should(other).not.equal(m);
      should(other.payload).not.equal(m.payload);
      should(other.payload).eql(m.payload);
    }
    (out.msgs[0].payload as { EVENT_NAME: string }).EVENT_NAME = "CHANGED_DOWNSTREAM";
    should((byId.get(out.msgs[0].bitrix24.id)!.payload as { EVENT_NAME: string }).EVENT_NAME).not.equal(
      "CHANGED_DOWNSTREAM",
    );
  });

  it("status during a drain: phase changes at once, unacked counts at most every 200 ms, the last state last", async () => {
    await start({ events: 400 });
    const { node, empty, acked } = await load({ limit: 10 });
    const before = node.status.args.length;
    const startedAt = Date.now();
    node.receive({});
    await until(() => empty.msgs.length === 1 && acked.msgs.length === 400);
    const elapsed = Date.now() - startedAt;
    const drawn = node.status.args.slice(before).map((a) => a[0]);
    // 40 batches change the unacked count at least twice each (delivered, acked); drawn: the phases (fetching,
    // idle) plus at most one count change per 200 ms of the drain.
    should(drawn[0]).match({ fill: "blue" });
    should(drawn.length).be.belowOrEqual(3 + Math.ceil(elapsed / 200));
    should(drawn.length).be.below(40);
    await sleep(250);
    should(lastStatus(node)).match({ fill: "green", text: /unacked/ });
  });

  it("acks ride in the get's batch: 500 events at limit 50 cost ~11 requests, not 20", async () => {
    await start({ events: 500 });
    const { node, empty, acked } = await load();
    const before = sandbox.stats().requests.total;
    node.receive({});
    await until(() => empty.msgs.length === 1 && acked.msgs.length === 500);
    await until(() => sandbox.stats().queue.total === 0);
    const requests = sandbox.stats().requests.total - before;
    // feature.get + 10 full gets + 1 empty get, with the acks inside the batches; a stray flush at most.
    should(requests).be.belowOrEqual(13);
    should(sandbox.stats().requests.byMethod["event.offline.clear"] ?? 0).be.belowOrEqual(1);
  });

  it("wired to the real clear node with no configuration: 500 events drained in ~11 requests", async () => {
    await start({ events: 500 });
    // No configuration beyond the portal URL and the wires: every other property takes its default.
    const flow = [
      { id: "p", type: "bitrix24-portal", portalUrl: sandbox.url, authType: "oauth", oauthServer: sandbox.url },
      { id: "g", type: "bitrix24-offline-get", portal: "p", limit: 50, wires: [["c"], ["empty"], []] },
      { id: "c", type: "bitrix24-offline-clear", portal: "p", wires: [["cleared"]] },
      ...helpers("empty", "cleared"),
    ];
    const { accessToken, clientId, clientSecret, refreshToken } = sandbox.credentials;
    await helper.load([nodes.portal, nodes.get, nodes.clear], flow, {
      p: { clientId, clientSecret, accessToken, refreshToken },
    });
    let cleared = 0;
    let drained = 0;
    helper.getNode("cleared").on("input", () => cleared++);
    helper.getNode("empty").on("input", () => drained++);
    const before = sandbox.stats().requests.total;
    helper.getNode("g").receive({});
    await until(() => drained === 1 && cleared === 500);
    await until(() => sandbox.stats().queue.total === 0);
    // The drain: 10 full gets + 1 empty one, each carrying the clear of the batch before (the start adds
    // feature.get and the orphan sweep's event.offline.list pages).
    const m = sandbox.stats().requests.byMethod;
    should((m.batch ?? 0) + (m["event.offline.get"] ?? 0) + (m["event.offline.clear"] ?? 0)).be.belowOrEqual(12);
    should(m["event.offline.clear"] ?? 0).be.belowOrEqual(1);
    should(sandbox.stats().requests.total - before).be.belowOrEqual(15);
  });

  it("auto mode: clear=1, no process id, queue emptied without acks", async () => {
    await start({ events: 60 });
    const { node, out, empty } = await load({ mode: "auto" }, { ack: false });
    node.receive({});
    await until(() => empty.msgs.length === 1);
    should(out.msgs).have.length(60);
    should(out.msgs.every((m) => m.bitrix24.processId === null)).be.true();
    should(sandbox.stats().queue.total).equal(0);
    should(lastStatus(node)?.text).match(/atMostOnce/);
  });

  it("batch output: one msg per batch with the events array", async () => {
    await start({ events: 70 });
    const { node, out, acked, empty } = await load({ output: "batch" });
    node.receive({});
    await until(() => empty.msgs.length === 1 && acked.msgs.length === 2);
    should(out.msgs).have.length(2);
    should(out.msgs[0].payload).be.an.Array().and.have.length(50);
    should(out.msgs[1].payload).have.length(20);
    should(out.msgs[0].bitrix24.batch).eql({ index: 0, size: 50 });
    should(out.msgs[0].bitrix24.processId).be.a.String();
    await until(() => sandbox.stats().queue.total === 0);
  });

  it("msg.limit, msg.filter and msg.order override the config for one fetch", async () => {
    await start();
    sandbox.addEvents(30, { name: "ONCRMDEALUPDATE" });
    sandbox.addEvents(10, { name: "ONTASKADD" });
    const { node, out } = await load({ drain: false }, { ack: false });
    node.receive({ limit: 5 });
    await until(() => out.msgs.length === 5);
    node.receive({ filter: { "=EVENT_NAME": "ONTASKADD" }, limit: 50 });
    await until(() => out.msgs.length === 15);
    should(out.msgs.slice(5).every((m) => m.topic === "ONTASKADD")).be.true();
    node.receive({ order: '{"ID": "DESC"}', limit: 3 });
    await until(() => out.msgs.length === 18);
    const ids = out.msgs.slice(15).map((m) => m.bitrix24.id);
    should(ids).eql([...ids].sort((a, b) => b - a));
    await sleep(20);
    should(out.msgs).have.length(18);
  });

  it("msg.processId re-selects that process with clear=0 and emits it as redelivered", async () => {
    await start({ events: 4 });
    const { node, out } = await load({}, { ack: false });
    const got = (await (helper.getNode("p") as unknown as PortalNode).api!.get({ clear: 0, limit: 4 })) as {
      process_id: string;
    };
    node.receive({ processId: got.process_id });
    await until(() => out.msgs.length === 4);
    should(out.msgs.every((m) => m.bitrix24.processId === got.process_id && m.bitrix24.redelivered)).be.true();
    should(sandbox.stats().queue.held).equal(4);
  });

  it("backpressure: stops at maxInFlight and shows n in flight", async () => {
    await start({ events: 200 });
    const { node, out } = await load({ maxInFlight: 50 }, { ack: false });
    node.receive({});
    await until(() => out.msgs.length === 50);
    await until(() => /inFlight/.test(lastStatus(node)?.text ?? ""));
    await sleep(50);
    should(out.msgs).have.length(50);
    should(sandbox.stats().queue.held).equal(50);
  });

  it("redelivers unacked events after ackTimeout, then marks them as errors after maxDeliveries", async () => {
    await start({ events: 3 });
    const { node, out } = await load({ ackTimeout: 0.1, maxDeliveries: 2 }, { ack: false });
    node.receive({});
    await until(() => out.msgs.length === 6);
    const again = out.msgs.slice(3);
    should(again.every((m) => m.bitrix24.redelivered && m.bitrix24.deliveryCount === 2)).be.true();
    should(again.map((m) => m.bitrix24.id).sort()).eql(
      out.msgs
        .slice(0, 3)
        .map((m) => m.bitrix24.id)
        .sort(),
    );
    await until(() => sandbox.records().every((r) => r.ERROR === "1" && r.PROCESS_ID === null));
    await until(() => node.warn.args.length > 0);
    should(String(node.warn.args[0][0])).match(/warnings\.marked/);
  });

  it("error records that exhaust their deliveries leave on the dead-letter output", async () => {
    await start({ events: 2 });
    const { node, out, dead } = await load({ errorRecords: true, ackTimeout: 0.08, maxDeliveries: 1 }, { ack: false });
    const api = (helper.getNode("p") as unknown as PortalNode).api!;
    const got = await api.get({ clear: 0, limit: 10 });
    await api.error({ process_id: got.process_id!, message_id: got.events.map((e) => e.MESSAGE_ID) });
    node.receive({});
    await until(() => out.msgs.length === 2);
    should(out.msgs[0].bitrix24.error).equal(1);
    await until(() => dead.msgs.length >= 2);
    should(dead.msgs[0].bitrix24).match({ error: 1, deliveryCount: 2, redelivered: true });
    should(sandbox.stats().queue.held).equal(2);
  });

  it("restart recovery: unacked events come back redelivered after a redeploy, nothing stays held", async () => {
    await start({ events: 150 });
    let loaded = await load({ maxInFlight: 100 }, { ack: false });
    loaded.node.receive({});
    await until(() => loaded.out.msgs.length === 100);
    const firstIds = loaded.out.msgs.map((m) => m.bitrix24.id).sort();
    await helper.unload(); // stop the flow mid-drain without acking
    should(sandbox.stats().queue.held).equal(100);

    loaded = await load({ maxInFlight: 500 });
    loaded.node.receive({});
    await until(() => loaded.empty.msgs.length === 1 && loaded.acked.msgs.length === 150);
    const recovered = loaded.out.msgs.filter((m) => m.bitrix24.redelivered);
    should(recovered.map((m) => m.bitrix24.id).sort()).eql(firstIds);
    should(recovered.every((m) => m.bitrix24.deliveryCount === 2)).be.true();
    should(loaded.out.msgs[0].bitrix24.redelivered).be.true(); // recovered first
    await until(() => sandbox.stats().queue.total === 0);
    should(sandbox.records().filter((r) => r.PROCESS_ID !== null)).eql([]);
  });

  it("without extended mode: a plain error to Catch, nothing fetched", async () => {
    await start({ events: 3, extendedMode: false });
    const { node, out } = await load({}, { ack: false });
    node.receive({ _tag: "t1" });
    await until(() => node.error.args.length > 0);
    const [err, msg] = node.error.args[0] as [{ code: string; message: string }, { _tag: string }];
    should(err.code).equal("WRONG_LICENSE");
    should(err.message).match(/rest_offline_extended.*ack mode unavailable/);
    should(msg._tag).equal("t1");
    should(lastStatus(node)).match({ fill: "red", text: /noExtended/ });
    should(out.msgs).have.length(0);
    should(sandbox.stats().queue.total).equal(3);
  });

  it("without extended mode and at-most-once allowed: falls back to auto mode with a warning", async () => {
    await start({ events: 3, extendedMode: false });
    const { node, out, empty } = await load({ allowAtMostOnce: true }, { ack: false });
    node.receive({});
    await until(() => empty.msgs.length === 1);
    should(out.msgs).have.length(3);
    should(out.msgs[0].bitrix24.processId).be.null();
    should(node.warn.args.map((a) => String(a[0]))).containEql("bitrix24-offline-get.warnings.fallback");
    should(sandbox.stats().queue.total).equal(0);
  });

  it("a plan without auth_connector: the portal's WRONG_LICENSE reaches Catch as what it is, never taken for a missing extended mode (no at-most-once fallback)", async () => {
    await start({ events: 3, authConnector: false });
    sandbox.addEvents(3, { connector: "key1" });
    const { node, out } = await load({ authConnector: "key1", allowAtMostOnce: true }, { ack: false });
    node.receive({ _tag: "t1" });
    await until(() => node.error.args.length > 0);
    const [err, msg] = node.error.args[0] as [{ code: string; message: string }, { _tag: string }];
    should(err.code).equal("WRONG_LICENSE");
    // The portal's words, naming auth_connector: not the extended-mode message (extended-mode.ts's regex).
    should(err.message).match(/auth_connector/);
    should(err.message).not.match(/rest_offline_extended/);
    should(msg._tag).equal("t1");
    should(lastStatus(node)?.fill).equal("red");
    should(node.warn.args.map((a) => String(a[0]))).not.containEql("bitrix24-offline-get.warnings.fallback");
    should(out.msgs).have.length(0);
    // Nothing was fetched, nothing deleted: a clear=1 fallback would have lost the events.
    should(sandbox.stats().queue.total).equal(6);
    should(sandbox.stats().queue.held).equal(0);
  });

  it("refuses a bad config filter on deploy naming the field, and fails msgs with it", async () => {
    await start({ events: 3 });
    const { node } = await load({ filter: '{"=PROCESS_ID": "x"}' });
    should(lastStatus(node)?.fill).equal("red");
    should(String((node.error.args[0][0] as Error).message)).match(/filter.*PROCESS_ID/);
    node.receive({});
    await until(() => node.error.args.length === 2);
    should(sandbox.stats().requests.total).equal(0);
  });

  it("refuses a bad config order and a bad msg.filter operator with a clear error", async () => {
    await start({ events: 3 });
    let loaded = await load({ order: '{"ID": "UP"}' });
    should(String((loaded.node.error.args[0][0] as Error).message)).match(/order/);
    await helper.unload();
    loaded = await load({}, { ack: false });
    loaded.node.receive({ filter: { "=~ID": 1 }, _tag: "bad" });
    await until(() => loaded.node.error.args.length === 1);
    const [err, msg] = loaded.node.error.args[0] as [{ code: string; message: string }, { _tag: string }];
    should(err.code).equal("INVALID_ARGUMENT");
    should(err.message).match(/msg\.filter.*=~/);
    should(msg._tag).equal("bad");
    should(loaded.out.msgs).have.length(0);
  });

  it("shows a yellow rate-limited status while the client waits on the bucket", async () => {
    await start({ events: 40 });
    // A tight bucket: 1 request of burst at 40/s, so every get after the first waits.
    const { node, empty } = await load(
      { mode: "auto", limit: 10 },
      { ack: false, portal: { rateLimit: 40, rateBurst: 1 } },
    );
    node.receive({});
    await until(() => empty.msgs.length === 1);
    should(node.status.args.some((a) => a[0].fill === "yellow" && /rateLimited/.test(a[0].text ?? ""))).be.true();
    should(lastStatus(node)).match({ fill: "green" });
  });

  it("a portal error during a drain reaches Catch with the trigger msg and a red status", async () => {
    await start({ events: 3, admin: false });
    const { node } = await load({}, { ack: false });
    node.receive({ _tag: "t2" });
    await until(() => node.error.args.length > 0);
    const [err, msg] = node.error.args[0] as [
      { code: string },
      { _tag: string; bitrix24: { error: { code: string } } },
    ];
    should(err.code).equal("ACCESS_DENIED");
    should(msg._tag).equal("t2");
    should(msg.bitrix24.error.code).equal("ACCESS_DENIED");
    should(lastStatus(node)).match({ fill: "red" });
  });

  it("msg.pause stops fetching and msg.pause=false resumes", async () => {
    await start({ events: 10 });
    const { node, out, empty } = await load({ mode: "auto" }, { ack: false });
    node.receive({ pause: true });
    node.receive({});
    await sleep(50);
    should(out.msgs).have.length(0);
    should(lastStatus(node)?.text).match(/paused/);
    node.receive({ pause: false });
    await until(() => empty.msgs.length >= 1);
    await sleep(30);
    should(out.msgs).have.length(10);
    should(empty.msgs).have.length(1); // the trigger while paused and msg.pause=false make ONE drain
  });

  it("close stops timers: nothing left running after the flow stops", async () => {
    await start({ events: 5 });
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const { node, out } = await load({ ackTimeout: 60, orphanSweep: true }, { ack: false });
    node.receive({});
    await until(() => out.msgs.length === 5);
    should(timers()).be.above(before);
    await helper.unload();
    await sleep(20);
    should(timers()).be.belowOrEqual(before);
  });
  it("externalConsumers: absent in a saved flow means none (orphans no live consumer can own are taken at once)", () => {
    should(parseGetConfig({}).externalConsumers).be.false();
    should(parseGetConfig({ externalConsumers: true }).externalConsumers).be.true();
  });

  describe("entity option (msg.entity)", () => {
    function queue(name: string, ids: number[]): void {
      sandbox.addEvents(ids.length, { name, data: (i) => ({ FIELDS: { ID: String(ids[i]) } }) });
    }
    const objectId = (msg: EventMessage) =>
      Number((msg.payload as { EVENT_DATA: { FIELDS: { ID: string } } }).EVENT_DATA.FIELDS.ID);

    it("one msg per event carries the object's current state; deletes and unknown objects say entityMissing", async () => {
      await start();
      sandbox.crm.seed("deal", 60);
      sandbox.crm.seed("contact", 5);
      queue(
        "ONCRMDEALUPDATE",
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
      queue("ONCRMCONTACTADD", [1, 2]);
      queue("ONCRMDEALDELETE", [77]);
      queue("ONCRMDEALUPDATE", [4242]);
      queue("ONAPPTEST", [1]);
      const { node, out, empty, acked } = await load({ entity: true });
      // Changed after the event was queued: the msg must show this.
      const changed = await fetch(`${sandbox.url}/rest/crm.deal.update.json`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ auth: sandbox.credentials.accessToken, id: 3, fields: { TITLE: "latest title" } }),
      });
      should(changed.status).equal(200);
      node.receive({});
      await until(() => empty.msgs.length === 1 && acked.msgs.length === 65);
      for (const msg of out.msgs) {
        const name = msg.topic;
        if (name === "ONAPPTEST") {
          should(msg).not.have.property("entity");
        } else if (name === "ONCRMDEALDELETE" || objectId(msg) === 4242) {
          should(msg.entity).be.null();
          should(msg.bitrix24.entityMissing).be.true();
        } else {
          const kind = name === "ONCRMCONTACTADD" ? "contact" : "deal";
          should(msg.entity).eql(sandbox.crm.get(kind, objectId(msg)));
          should(msg.bitrix24).not.have.property("entityMissing");
        }
      }
      should(out.msgs.find((m) => m.topic === "ONCRMDEALUPDATE" && objectId(m) === 3)?.entity).have.property(
        "TITLE",
        "latest title",
      );
      should(sandbox.stats().requests.byMethod).not.have.key("crm.deal.list");
      await until(() => sandbox.stats().queue.total === 0);
    });

    it("batch output: msg.entity and msg.bitrix24.entityMissing are arrays in the order of msg.payload", async () => {
      await start();
      sandbox.crm.seed("deal", 3);
      queue("ONCRMDEALUPDATE", [1, 2]);
      queue("ONCRMDEALDELETE", [3]);
      const { node, out, empty } = await load({ entity: true, output: "batch" });
      node.receive({});
      await until(() => empty.msgs.length === 1 && out.msgs.length === 1);
      const msg = out.msgs[0];
      should(msg.entity).eql([sandbox.crm.get("deal", 1), sandbox.crm.get("deal", 2), null]);
      should(msg.bitrix24.entityMissing).eql([false, false, true]);
      should(msg.bitrix24).not.have.property("entityError");
    });

    it("a failing read: events go out with entityError, the warning and status name the method once", async () => {
      await start();
      queue("ONWIDGETUPDATE", [1, 2, 3]);
      const entityMap = JSON.stringify({ "ONWIDGET*": { method: "widget.item.list", id: "FIELDS.ID" } });
      const { node, out, empty } = await load({ entity: true, entityMap });
      node.receive({});
      await until(() => empty.msgs.length === 1);
      queue("ONWIDGETUPDATE", [4]);
      node.receive({});
      await until(() => empty.msgs.length === 2 && out.msgs.length === 4);
      for (const msg of out.msgs) {
        should(msg.entity).be.null();
        should(msg.bitrix24.entityError).containDeep({ code: "ERROR_METHOD_NOT_FOUND", method: "widget.item.list" });
      }
      const warnings = node.warn.args.map((a) => String(a[0])).filter((w) => w.includes("warnings.entity"));
      should(warnings).have.length(1);
      should(
        node.status.args.some((a) => a[0].fill === "yellow" && /widget\.item\.list/.test(a[0].text ?? "")),
      ).be.true();
      await until(() => sandbox.stats().queue.total === 0);
    });

    it("the idle status keeps naming a failed read until a read of that method succeeds again", async () => {
      await start({ scopes: ["crm"] }); // no `task` scope: tasks.task.list answers insufficient_scope
      sandbox.crm.seed("task", 2);
      const taskEvents = () =>
        sandbox.addEvents(2, { name: "ONTASKUPDATE", data: (i) => ({ FIELDS_AFTER: { ID: String(i + 1) } }) });
      taskEvents();
      const { node, out, empty } = await load({ entity: true });
      node.receive({});
      await until(() => empty.msgs.length === 1 && out.msgs.length === 2);
      for (const msg of out.msgs) {
        should(msg.entity).be.null();
        should(msg.bitrix24.entityError).match({ code: "insufficient_scope", method: "tasks.task.list" });
      }
      // a later drain (the failure is not warned again) still shows it once idle
      const gets = () => sandbox.stats().requests.total;
      const before = gets();
      node.receive({});
      await until(() => gets() > before);
      await until(() => /idle/.test(lastStatus(node)?.text ?? ""));
      should(lastStatus(node)).match({ fill: "yellow", text: /· tasks\.task\.list: insufficient_scope$/ });

      sandbox.setOptions({ scopes: null });
      taskEvents();
      node.receive({});
      await until(() => out.msgs.length === 4);
      should(out.msgs[3].entity).match({ id: "2" });
      await until(() => /idle/.test(lastStatus(node)?.text ?? ""));
      should(lastStatus(node)?.fill).equal("green");
      should(lastStatus(node)?.text).not.match(/tasks\.task\.list/);
    });

    it("refuses an entityMap that is not valid JSON on deploy, with a clear error", async () => {
      await start({ events: 3 });
      const { node } = await load({ entity: true, entityMap: '{"ONX": {"method": ' });
      should(lastStatus(node)?.fill).equal("red");
      should(String((node.error.args[0][0] as Error).message)).match(/entityMap: not valid JSON/);
      node.receive({});
      await until(() => node.error.args.length === 2);
      should(sandbox.stats().requests.total).equal(0);
    });
  });
});
