import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import axios from "axios";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { connectComms, type DebugMessage, type EditorComms } from "./editor-comms";
import { EXAMPLES, exampleFlow, until } from "./example-flows";
import { freshUserDir } from "./installed-package";
import { type FlowNode, type NodeRedProcess, startNodeRed } from "./node-red-process";

/**
 * Every shipped example, deployed through the Admin API into a real Node-RED running the packed package, against
 * the sandbox portal: the outcome is checked on the portal (what was deleted, marked, left) and in what the
 * editor shows (debug sidebar, node status).
 */
describe("the example flows in a real Node-RED against the sandbox", function () {
  this.timeout(120000);
  let sandbox: Sandbox;
  let nodeRed: NodeRedProcess;
  let comms: EditorComms;

  before(async () => {
    sandbox = await startSandbox();
    nodeRed = await startNodeRed(freshUserDir("examples"));
    comms = await connectComms(nodeRed.url);
  });

  beforeEach(async () => {
    await nodeRed.deploy([]);
    sandbox.reset();
    comms.statuses.length = 0;
    comms.debug.length = 0;
  });

  after(async () => {
    comms?.close();
    await nodeRed?.stop();
    await sandbox?.close();
  });

  function debugFrom(nodeId: string): DebugMessage[] {
    return comms.debug.filter((d) => d.id === nodeId);
  }

  function deals(count: number): void {
    sandbox.addEvents(count, { name: "ONCRMDEALUPDATE", data: (i) => ({ FIELDS: { ID: i + 1 } }) });
  }

  /** Calls the sandbox's REST API as an application would (to prepare records the flows then find). */
  async function rest<T>(method: string, params: Record<string, unknown>): Promise<T> {
    const response = await axios.post(`${sandbox.url}/rest/${method}.json`, {
      ...params,
      auth: sandbox.credentials.accessToken,
    });
    return (response.data as { result: T }).result;
  }

  it("covers every examples/*.json file", () => {
    should(EXAMPLES.slice().sort()).eql([
      "basic-sync",
      "deal-export",
      "deal-sync",
      "entity-sync",
      "error-replay",
      "push",
      "queue-monitor",
      "stage-changes",
    ]);
  });

  it("basic sync: drains the queue in ack mode, every event acknowledged and deleted", async () => {
    deals(150);
    await nodeRed.deploy(exampleFlow("basic-sync", sandbox));
    await until(() => sandbox.stats().deleted === 150, "150 events deleted by acknowledgements");
    should(sandbox.records()).be.empty();
    // ack mode: fetched with clear=0 (held under a process id) and deleted by the clear node, never on fetch
    const emptied = () => debugFrom("bs-done").map((d) => JSON.parse(d.msg) as { events: number; empty: boolean });
    await until(() => emptied().reduce((n, s) => n + s.events, 0) >= 150, "the 'queue empty' summaries");
    should(emptied().reduce((n, s) => n + s.events, 0)).equal(150);
    should(emptied().every((s) => s.empty)).be.true();
    await until(() => /idle · 0 unacked/.test(comms.statusOf("bs-get") ?? ""), "the get node idle with 0 unacked");
    should(debugFrom("bs-dead")).be.empty();
    should(debugFrom("bs-synced")).be.empty(); // inactive in the example: it must stay quiet
    should(nodeRed.output()).not.match(/\[error\]/);
  });

  it("basic sync: events whose work fails reach Catch and are marked as errors on the portal", async () => {
    deals(40);
    const flow = exampleFlow("basic-sync", sandbox).map(
      (node): FlowNode =>
        node.id === "bs-error"
          ? { ...node, wires: [["marked"]] }
          : node.id === "bs-work"
            ? {
                id: "bs-work",
                type: "function",
                z: node.z,
                name: "work that fails for every 4th deal",
                func: "if (msg.payload.EVENT_DATA.FIELDS.ID % 4 === 0) { throw new Error('deal ' + msg.payload.EVENT_DATA.FIELDS.ID + ' refused'); }\nreturn msg;",
                outputs: 1,
                wires: node.wires,
              }
            : node,
    );
    // what the error node passes on once the portal marked the event: the user's proof in the sidebar
    flow.push({
      id: "marked",
      type: "debug",
      z: "tab-basic-sync",
      active: true,
      tosidebar: true,
      console: false,
      tostatus: false,
      complete: "true",
      targetType: "full",
      wires: [],
    });
    await nodeRed.deploy(flow);
    await until(
      () => sandbox.stats().queue.error === 10 && sandbox.stats().queue.total === 10,
      "30 events acked and 10 marked as errors",
    );
    const failed = sandbox.records();
    should(failed.map((r) => (r.EVENT_DATA as { FIELDS: { ID: number } }).FIELDS.ID).sort((a, b) => a - b)).eql([
      4, 8, 12, 16, 20, 24, 28, 32, 36, 40,
    ]);
    for (const record of failed) {
      should(record.ERROR).equal("1");
      should(record.PROCESS_ID).be.null();
    }
    // each failed msg went Catch -> error node, which passed it on once the portal had marked the event
    await until(() => debugFrom("marked").length === 10, "10 marked msgs in the debug sidebar");
    for (const debug of debugFrom("marked")) {
      const msg = JSON.parse(debug.msg) as { error: { message: string }; bitrix24: { acked: boolean; id: number } };
      should(msg.error.message).match(/^Error: deal \d+ refused$|^deal \d+ refused$/);
      should(msg.bitrix24.acked).be.true();
    }
    await until(() => /0 unacked/.test(comms.statusOf("bs-get") ?? ""), "nothing left unacked");
  });

  it("error replay: records marked as errors are fetched again, retried and cleared", async () => {
    deals(12);
    const taken = await rest<{ process_id: string; events: Array<{ MESSAGE_ID: string }> }>("event.offline.get", {
      clear: 0,
      limit: 50,
    });
    await rest("event.offline.error", {
      process_id: taken.process_id,
      message_id: taken.events.map((e) => e.MESSAGE_ID),
    });
    should(sandbox.stats().queue.error).equal(12);
    deals(3); // fresh events: not error records, the replay flow must leave them alone
    await nodeRed.deploy(exampleFlow("error-replay", sandbox));
    await until(() => sandbox.stats().queue.total === 3, "every error record cleared", 60000);
    should(sandbox.records().every((r) => r.ERROR === "0" && r.PROCESS_ID === null)).be.true();
    await until(() => /idle · 0 unacked/.test(comms.statusOf("er-get") ?? ""), "the replay get idle");
    should(debugFrom("er-store")).be.empty();
  });

  it("push: the portal's ONOFFLINEEVENT notification makes Node-RED drain at once", async () => {
    await nodeRed.deploy(exampleFlow("push", sandbox, { publicUrl: nodeRed.url }));
    // the deploy binds ONOFFLINEEVENT (handler = publicUrl + path) and the listed events
    await until(async () => {
      const state = (await axios.get(`${sandbox.url}/_sandbox/state`)).data as { bindings: unknown[] };
      return JSON.stringify(state.bindings).includes("/bitrix24/offline");
    }, "ONOFFLINEEVENT bound to the trigger's endpoint");
    await until(
      () =>
        /^deploy at/.test(comms.statusOf("pu-trigger") ?? "") &&
        (sandbox.stats().requests.byMethod["event.offline.get"] ?? 0) > 0 &&
        /idle/.test(comms.statusOf("pu-get") ?? ""),
      "the on-deploy drain finished",
    );
    const pushesBefore = sandbox.stats().pushes;
    const startedAt = Date.now();
    deals(20);
    sandbox.addEvents(5, { name: "ONCRMCONTACTADD", data: (i) => ({ FIELDS: { ID: 100 + i } }) });
    // the safety poll is 60 s away: only the push can explain a drain within 20 s
    await until(() => sandbox.stats().queue.total === 0, "the pushed events drained", 20000);
    should(Date.now() - startedAt).be.below(20000);
    should(sandbox.stats().pushes).be.above(pushesBefore);
    should(sandbox.stats().deleted).equal(25);
    // the status travels over the editor's websocket, which may lag the in-process sandbox under load
    await until(() => /^push at/.test(comms.statusOf("pu-trigger") ?? ""), "the trigger's status names the push");
  });

  it("queue monitor: lists the whole queue read-only and shows the summary", async () => {
    deals(60);
    sandbox.addEvents(70, { name: "ONCRMCONTACTADD", data: (i) => ({ FIELDS: { ID: 1000 + i } }) });
    await rest("event.offline.get", { clear: 0, limit: 5 }); // 5 held by some consumer
    await nodeRed.deploy(exampleFlow("queue-monitor", sandbox));
    await until(() => debugFrom("qm-debug").length > 0, "the summary in the debug sidebar", 30000);
    const summary = JSON.parse(debugFrom("qm-debug")[0].msg) as {
      total: number;
      counted: number;
      held: number;
      unprocessed: number;
      byEvent: Record<string, number>;
    };
    should(summary).match({ total: 130, counted: 130, held: 5, unprocessed: 125 });
    should(summary.byEvent).eql({ ONCRMDEALUPDATE: 60, ONCRMCONTACTADD: 70 });
    await until(() => comms.statusOf("qm-debug") === "130", "the debug node's status shows the total");
    should(sandbox.stats().deleted).equal(0);
    should(sandbox.stats().queue.total).equal(130);
  });

  /** n deals in the sandbox's store (the portal's existing data: no events); their IDs in order. */
  function seedDeals(n: number): number[] {
    sandbox.crm.seed("deal", n);
    return [...sandbox.crm.tables.deal.ascending()].map((row) => row.id);
  }

  /**
   * A change made by a portal user: a REST write through the inbound webhook (its own rate-limit bucket, so the
   * test does not compete with Node-RED for the application's), queued as an event for every offline binding.
   */
  async function userWrites(method: string, params: Record<string, unknown>): Promise<void> {
    await axios.post(`${sandbox.credentials.webhookUrl}${method}.json`, params);
  }

  /** The example with its file nodes writing into `dir` instead of Node-RED's working directory. */
  function withFilesIn(name: string, dir: string): FlowNode[] {
    return exampleFlow(name, sandbox).map((node) =>
      node.type === "file" ? { ...node, filename: join(dir, String(node.filename)) } : node,
    );
  }

  function lines(file: string): Array<Record<string, string>> {
    try {
      return readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line) as Record<string, string>);
    } catch {
      return [];
    }
  }

  it("deal sync: each changed deal is read, handed on, written back with the connector (no echo) and cleared", async () => {
    const dir = mkdtempSync(join(tmpdir(), "b24-deal-sync-"));
    try {
      const ids = seedDeals(12);
      await nodeRed.deploy(withFilesIn("deal-sync", dir));
      await until(async () => {
        const state = (await axios.get(`${sandbox.url}/_sandbox/state`)).data as {
          bindings: Array<{ event: string; connector: string }>;
        };
        const bound = state.bindings.filter((b) => b.connector === "deal-sync").map((b) => b.event);
        return ["ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE"].every((event) => bound.includes(event));
      }, "the deal events bound under the deal-sync connector");
      await until(() => /idle/.test(comms.statusOf("ds-get") ?? ""), "the on-deploy drain finished");

      // Someone changes 10 deals and deletes one: 11 events in the flow's queue.
      const changed = ids.slice(0, 10);
      for (const id of changed) await userWrites("crm.deal.update", { id, fields: { OPPORTUNITY: 100 + id } });
      await userWrites("crm.deal.delete", { id: ids[11] });

      const file = join(dir, "bitrix24-deal-sync.ndjson");
      await until(() => lines(file).length === 10, "10 deals handed to the other system (the file)", 60000);
      should(
        lines(file)
          .map((deal) => Number(deal.ID))
          .sort((a, b) => a - b),
      ).eql(changed);
      for (const deal of lines(file)) should(Number(deal.OPPORTUNITY)).equal(100 + Number(deal.ID));

      // written back: every changed deal carries the comment
      const comment = (id: number) => String(sandbox.crm.get("deal", id)?.COMMENTS ?? "");
      await until(
        () => changed.every((id) => /^synced to the other system at /.test(comment(id))),
        "every changed deal written back",
      );
      should(sandbox.crm.get("deal", ids[10])?.COMMENTS).not.match(/synced/); // not changed, not synced
      // every event acknowledged, and the write-back queued nothing for the flow's own binding (no echo)
      await until(
        () => sandbox.records().filter((r) => r.CONNECTOR === "deal-sync").length === 0,
        "the deal-sync queue empty",
      );
      await until(() => /idle · 0 unacked/.test(comms.statusOf("ds-get") ?? ""), "nothing left unacked");
      await new Promise((r) => setTimeout(r, 1500));
      should(sandbox.records().filter((r) => r.CONNECTOR === "deal-sync")).be.empty();
      should(lines(file).length).equal(10);
      // the debug sidebar shows the deals as read
      await until(() => debugFrom("ds-seen").length === 10, "10 deals in the debug sidebar");
      should(debugFrom("ds-failed")).be.empty();
      should(debugFrom("ds-dead")).be.empty();
      should(nodeRed.output()).not.match(/\[error\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** The IDs of the portal's objects of one kind, ascending (what its list method answers). */
  function idsOf(kind: "deal" | "contact" | "task"): number[] {
    if (kind === "task") {
      const { result } = sandbox.portalCall("tasks.task.list", { select: ["ID"], order: { ID: "asc" } });
      return (result as { tasks: Array<{ id: string }> }).tasks.map((t) => Number(t.id));
    }
    const { result } = sandbox.portalCall(`crm.${kind}.list`, { select: ["ID"], order: { ID: "ASC" } });
    return (result as Array<{ ID: string }>).map((r) => Number(r.ID));
  }

  const ENTITY_SYNC_EVENTS = ["DEAL", "CONTACT"]
    .flatMap((kind) => ["ADD", "UPDATE", "DELETE"].map((action) => `ONCRM${kind}${action}`))
    .concat(["ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"]);

  /** Deploys entity-sync with its file in `dir`; resolves once its events are bound and the first drain is over. */
  async function deployEntitySync(dir: string): Promise<void> {
    await nodeRed.deploy(withFilesIn("entity-sync", dir));
    await until(async () => {
      const state = (await axios.get(`${sandbox.url}/_sandbox/state`)).data as {
        bindings: Array<{ event: string; connector: string }>;
      };
      const bound = state.bindings.filter((b) => b.connector === "entity-sync").map((b) => b.event);
      return ENTITY_SYNC_EVENTS.every((event) => bound.includes(event));
    }, "the deal, contact and task events bound under the entity-sync connector");
    await until(() => /idle/.test(comms.statusOf("es-get") ?? ""), "the on-deploy drain finished");
  }

  const queued = () => sandbox.records().filter((r) => r.CONNECTOR === "entity-sync");

  it("entity sync: every event reaches the other system with its current object, deletes with null", async () => {
    const dir = mkdtempSync(join(tmpdir(), "b24-entity-sync-"));
    try {
      sandbox.crm.seedAll({ contacts: 4, deals: 6, tasks: 4 });
      const deals = idsOf("deal");
      const contacts = idsOf("contact");
      const tasks = idsOf("task");
      await deployEntitySync(dir);

      // A mixed queue: each deal changed twice (the object read must carry the second value), a new deal, a
      // contact changed then deleted (its update event finds no object), deletes of each kind.
      for (const id of deals) sandbox.portalCall("crm.deal.update", { id, fields: { OPPORTUNITY: 1 } });
      for (const id of deals) sandbox.portalCall("crm.deal.update", { id, fields: { OPPORTUNITY: 100 + id } });
      sandbox.portalCall("crm.deal.add", { fields: { TITLE: "new deal", OPPORTUNITY: 777 } });
      sandbox.portalCall("crm.deal.delete", { id: deals[5] });
      for (const id of contacts) sandbox.portalCall("crm.contact.update", { id, fields: { NAME: `Contact ${id}` } });
      sandbox.portalCall("crm.contact.delete", { id: contacts[3] });
      for (const id of tasks) sandbox.portalCall("tasks.task.update", { taskId: id, fields: { TITLE: `Task ${id}` } });
      sandbox.portalCall("tasks.task.delete", { taskId: tasks[3] });
      const events = queued().length;
      should(events).be.above(15);

      const file = join(dir, "bitrix24-entity-sync.ndjson");
      const written = () =>
        lines(file) as unknown as Array<{ event: string; id: string | number; entity: Record<string, unknown> | null }>;
      await until(() => written().length === events, `${events} events handed to the other system (the file)`);
      const seen = new Set<string>();
      for (const { event, id, entity } of written()) {
        seen.add(`${event} ${id}`);
        const kind = /^ONCRMDEAL/.test(event) ? "deal" : /^ONCRMCONTACT/.test(event) ? "contact" : "task";
        const current = sandbox.crm.get(kind, Number(id));
        if (/DELETE$/.test(event) || !current) {
          should.strictEqual(entity, null, `${event} ${id}: no object`);
          continue;
        }
        should.notStrictEqual(entity, null, `${event} ${id}: its object`);
        const object = entity as Record<string, unknown>;
        if (kind === "task") {
          should(Number(object.id)).equal(Number(id));
          should(object.title).equal(`Task ${id}`);
        } else {
          should(Number(object.ID)).equal(Number(id));
          // the current object, not its state when the event happened: the second update's value
          if (kind === "deal")
            should(Number(object.OPPORTUNITY)).equal(object.TITLE === "new deal" ? 777 : 100 + Number(id));
          else should(object.NAME).equal(`Contact ${id}`);
        }
        // all of what the portal answers now, user fields included
        should(object).eql(JSON.parse(JSON.stringify(current)));
      }
      should(seen.size).equal(events); // one line per event, none twice
      should(seen.has("ONCRMDEALADD " + String(Math.max(...idsOf("deal"))))).be.true();

      // every event acknowledged; the deletes (and the contact deleted since) shown in the sidebar
      await until(() => queued().length === 0, "the entity-sync queue empty");
      await until(() => /idle · 0 unacked/.test(comms.statusOf("es-get") ?? ""), "nothing left unacked");
      // the deleted deal, contact and task: their delete events, and their updates (deleted since)
      const gone = written()
        .filter((line) => line.entity === null)
        .map((line) => `${line.event} ${line.id}`)
        .sort();
      should(gone).eql(
        [
          `ONCRMDEALUPDATE ${deals[5]}`,
          `ONCRMDEALDELETE ${deals[5]}`,
          `ONCRMCONTACTUPDATE ${contacts[3]}`,
          `ONCRMCONTACTDELETE ${contacts[3]}`,
          `ONTASKUPDATE ${tasks[3]}`,
          `ONTASKDELETE ${tasks[3]}`,
        ].sort(),
      );
      const nulls = gone.length;
      await until(() => debugFrom("es-gone").length === nulls, "the deleted objects in the debug sidebar");
      should(debugFrom("es-unread")).be.empty();
      should(debugFrom("es-failed")).be.empty();
      should(debugFrom("es-dead")).be.empty();
      should(nodeRed.output()).not.match(/\[error\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("entity sync: an object type the application may not read is shown and its events marked as failed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "b24-entity-sync-"));
    sandbox.setOptions({ scopes: ["crm"] }); // no `task` scope: tasks.task.list answers insufficient_scope
    try {
      sandbox.crm.seedAll({ deals: 3, tasks: 2 });
      const deals = idsOf("deal");
      const tasks = idsOf("task");
      await deployEntitySync(dir);
      for (const id of deals) sandbox.portalCall("crm.deal.update", { id, fields: { OPPORTUNITY: 100 + id } });
      for (const id of tasks) sandbox.portalCall("tasks.task.update", { taskId: id, fields: { TITLE: `Task ${id}` } });

      // the deals go on; the task events wait on the portal as error records (error-replay fetches them again)
      const file = join(dir, "bitrix24-entity-sync.ndjson");
      await until(() => lines(file).length === deals.length, "the deals handed to the other system");
      await until(
        () => queued().length === tasks.length && queued().every((r) => r.ERROR === "1" && r.PROCESS_ID === null),
        "the task events marked as failed",
      );
      should(queued().map((r) => r.EVENT_NAME)).eql(tasks.map(() => "ONTASKUPDATE"));
      await until(() => debugFrom("es-unread").length === tasks.length, "the failed reads in the debug sidebar");
      for (const debug of debugFrom("es-unread")) {
        should(JSON.parse(debug.msg)).match({ method: "tasks.task.list", status: 403 });
      }
      // said once, in the node's status and as a warning, not per event
      await until(
        () => /^idle · 0 unacked · tasks\.task\.list: insufficient_scope$/.test(comms.statusOf("es-get") ?? ""),
        "the get node's idle status names the failed read",
      );
      should(nodeRed.output().match(/objects are not attached where tasks\.task\.list reads them/g)).have.length(1);
      should(debugFrom("es-gone")).be.empty();
      should(debugFrom("es-failed")).be.empty();
    } finally {
      sandbox.setOptions({ scopes: null });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("deal export: every deal of the table streamed into a file, the count on the last msg", async () => {
    const dir = mkdtempSync(join(tmpdir(), "b24-deal-export-"));
    try {
      const ids = seedDeals(130);
      await nodeRed.deploy(withFilesIn("deal-export", dir));
      await until(() => debugFrom("dx-debug").length > 0, "the export summary in the debug sidebar");
      should(JSON.parse(debugFrom("dx-debug")[0].msg)).eql({ exported: 130 });
      const file = join(dir, "bitrix24-deals.ndjson");
      const deals = lines(file);
      should(deals.map((deal) => Number(deal.ID)).sort((a, b) => a - b)).eql(ids);
      should(Object.keys(deals[0]).sort()).eql([
        "CURRENCY_ID",
        "DATE_MODIFY",
        "ID",
        "OPPORTUNITY",
        "STAGE_ID",
        "TITLE",
      ]);
      await until(() => /130/.test(comms.statusOf("dx-read") ?? ""), "the call node's status shows the count");
      should(debugFrom("dx-failed")).be.empty();
      should(nodeRed.output()).not.match(/\[error\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("stage changes: deals reaching WON one way, amount changes another, the rest acknowledged unseen", async () => {
    sandbox.crm.seed("deal", 4);
    await nodeRed.deploy(exampleFlow("stage-changes", sandbox));
    await until(async () => {
      const state = (await axios.get(`${sandbox.url}/_sandbox/state`)).data as {
        bindings: Array<{ event: string; connector: string }>;
      };
      return state.bindings.filter((b) => b.connector === "stage-changes").length === 2;
    }, "the deal events bound under the stage-changes connector");
    const queued = () => sandbox.records().filter((r) => r.CONNECTOR === "stage-changes");
    // first sight of every deal: nothing to compare with, straight to the clear node
    for (let id = 1; id <= 4; id++) sandbox.portalCall("crm.deal.update", { id, fields: { TITLE: `Deal ${id}` } });
    await until(() => queued().length === 0, "the first sights acknowledged", 30000);
    sandbox.portalCall("crm.deal.update", { id: 1, fields: { STAGE_ID: "WON" } });
    sandbox.portalCall("crm.deal.update", { id: 2, fields: { OPPORTUNITY: 4321 } });
    sandbox.portalCall("crm.deal.update", { id: 3, fields: { TITLE: "a title is not watched" } });
    await until(() => queued().length === 0 && debugFrom("sc-amount").length === 1, "the changes handled", 30000);
    const won = debugFrom("sc-won").map((d) => JSON.parse(d.msg) as Record<string, unknown>);
    should(won).have.length(1);
    should(won[0]).match({ deal: "1", to: "Deal successful" });
    should(JSON.parse(debugFrom("sc-amount")[0].msg)).match({ deal: "2", after: "4321.00" });
    await until(() => /1 unchanged/.test(comms.statusOf("sc-get") ?? ""), "the status counting the unchanged deal");
    should(debugFrom("sc-failed")).be.empty();
    should(nodeRed.output()).not.match(/\[error\]/);
  });
});
