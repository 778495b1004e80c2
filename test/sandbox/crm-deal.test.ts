import should from "should";
import type { Sandbox } from "../../src/sandbox";
import { bindOffline, rest, restForm, sharedSandbox, webhookCall } from "./rest-call";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/;

async function addDeals(sandbox: Sandbox, count: number, fields: (i: number) => Record<string, unknown> = () => ({})) {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    const res = await rest(sandbox, "crm.deal.add", { fields: fields(i) });
    ids.push(res.body.result);
  }
  return ids;
}

describe("sandbox: crm.deal.*", () => {
  const sandbox = sharedSandbox();

  describe("add / get / update / delete", () => {
    it("add answers the new id as a number; get answers the deal with the portal's value shapes", async () => {
      const add = await rest(sandbox, "crm.deal.add", {
        fields: {
          TITLE: "New Deal #1",
          TYPE_ID: "COMPLEX",
          STAGE_ID: "PREPARATION",
          OPPORTUNITY: 1000000,
          PROBABILITY: 99,
          COMPANY_ID: 9,
          CONTACT_IDS: [84, 83],
          UF_CRM_1721244482250: "Hello world!",
          ID: 999,
          DATE_CREATE: "2001-01-01T00:00:00+00:00",
        },
      });
      should(add.status).equal(200);
      should(add.body.result).equal(1);
      const get = await rest(sandbox, "crm.deal.get", { id: 1 });
      const deal = get.body.result;
      should(deal).have.properties({
        ID: "1",
        TITLE: "New Deal #1",
        TYPE_ID: "COMPLEX",
        STAGE_ID: "PREPARATION",
        STAGE_SEMANTIC_ID: "P",
        PROBABILITY: "99",
        CURRENCY_ID: "USD",
        OPPORTUNITY: "1000000.00",
        TAX_VALUE: "0.00",
        IS_MANUAL_OPPORTUNITY: "N",
        COMPANY_ID: "9",
        LEAD_ID: null,
        CATEGORY_ID: "0",
        ASSIGNED_BY_ID: "1",
        OPENED: "Y",
        CLOSED: "N",
        UF_CRM_1721244482250: "Hello world!",
      });
      // read-only fields are not writable; CONTACT_IDS is never answered by get
      should(deal.DATE_CREATE).match(ISO).and.not.equal("2001-01-01T00:00:00+00:00");
      should(deal.DATE_MODIFY).match(ISO);
      should(deal.BEGINDATE).match(ISO);
      should(deal).not.have.property("CONTACT_IDS");
      should(deal.CONTACT_ID).equal("84"); // the deprecated single contact follows CONTACT_IDS[0]
      should(sandbox.crm.get("deal", 1)).eql(deal);
    });

    it("TITLE defaults to 'Deal #<id>'; ids ascend", async () => {
      const ids = await addDeals(sandbox, 3);
      should(ids).eql([1, 2, 3]);
      should(sandbox.crm.get("deal", 2)?.TITLE).equal("Deal #2");
    });

    it("update changes only the given fields and refreshes DATE_MODIFY; WON closes the deal", async () => {
      await addDeals(sandbox, 1, () => ({ TITLE: "a", COMMENTS: "keep" }));
      const res = await rest(sandbox, "crm.deal.update", { id: 1, fields: { STAGE_ID: "WON", NOT_A_FIELD: 1 } });
      should(res.body.result).be.true();
      should(sandbox.crm.get("deal", 1)).have.properties({
        TITLE: "a",
        COMMENTS: "keep",
        STAGE_ID: "WON",
        STAGE_SEMANTIC_ID: "S",
        CLOSED: "Y",
      });
      should(sandbox.crm.get("deal", 1)).not.have.property("NOT_A_FIELD");
    });

    it("delete removes the deal", async () => {
      await addDeals(sandbox, 2);
      const res = await rest(sandbox, "crm.deal.delete", { id: 1 });
      should(res.body.result).be.true();
      should(sandbox.crm.get("deal", 1)).be.undefined();
      should(sandbox.crm.count("deal")).equal(1);
    });

    it("errors: 400 with an empty code and the proxies' texts", async () => {
      await addDeals(sandbox, 1);
      const cases: [string, Record<string, unknown>, string][] = [
        ["crm.deal.get", { id: 5 }, "Not found"],
        ["crm.deal.get", {}, "ID is not defined or invalid."],
        ["crm.deal.get", { id: "abc" }, "ID is not defined or invalid."],
        ["crm.deal.update", { id: 5, fields: { TITLE: "x" } }, "Not found"],
        ["crm.deal.update", { id: 1 }, "Parameter 'fields' must be array."],
        ["crm.deal.delete", { id: 5 }, "Not found"],
        ["crm.deal.delete", { id: -1 }, "ID is not defined or invalid."],
        ["crm.deal.add", { fields: "x" }, "Parameter 'fields' must be array."],
        ["crm.deal.list", { filter: "x" }, "Parameter 'filter' must be array."],
        ["crm.deal.list", { order: "x" }, "Parameter 'order' must be array."],
      ];
      for (const [method, params, description] of cases) {
        const res = await rest(sandbox, method, params);
        should({ method, status: res.status, body: res.body }).eql({
          method,
          status: 400,
          body: { error: "", error_description: description },
        });
      }
      should(sandbox.crm.count("deal")).equal(1);
    });

    it("fields describes every field in the page's shape, user fields included once written", async () => {
      await addDeals(sandbox, 1, () => ({ UF_CRM_SOURCE: "x" }));
      const res = await rest(sandbox, "crm.deal.fields");
      should(res.body.result.ID).eql({
        type: "integer",
        isRequired: false,
        isReadOnly: true,
        isImmutable: false,
        isMultiple: false,
        isDynamic: false,
        title: "ID",
      });
      should(res.body.result.TYPE_ID).have.properties({ type: "crm_status", statusType: "DEAL_TYPE" });
      should(res.body.result.CONTACT_IDS).have.properties({ type: "crm_contact", isMultiple: true });
      should(res.body.result.UF_CRM_SOURCE).have.properties({ type: "string", isDynamic: true });
    });

    it("works through a webhook and a PHP form body", async () => {
      const viaHook = await webhookCall(sandbox, "crm.deal.add", { fields: { TITLE: "hook" } });
      should(viaHook.body.result).equal(1);
      const viaForm = await restForm(sandbox, "crm.deal.add", "fields[TITLE]=form&fields[OPPORTUNITY]=12.5");
      should(viaForm.body.result).equal(2);
      should(sandbox.crm.get("deal", 2)).have.properties({ TITLE: "form", OPPORTUNITY: "12.50" });
    });
  });

  describe("list", () => {
    it("pages of 50 with total and next: 0, 1, 50 and 51 records", async () => {
      for (const count of [0, 1, 50, 51]) {
        sandbox.reset();
        sandbox.crm.seed("deal", count);
        const first = await rest(sandbox, "crm.deal.list", { select: ["ID"] });
        should(first.body.result).have.length(Math.min(count, 50));
        should(first.body.total).equal(count);
        if (count > 50) should(first.body.next).equal(50);
        else should(first.body).not.have.property("next");
        if (count > 50) {
          const second = await rest(sandbox, "crm.deal.list", { select: ["ID"], start: 50 });
          should(second.body.result.map((d: { ID: string }) => d.ID)).eql(["51"]);
          should(second.body.total).equal(51);
          should(second.body).not.have.property("next");
        }
      }
    });

    it("start=-1 skips the count: total 0 and no next, pages walked with >ID", async () => {
      sandbox.crm.seed("deal", 120);
      const seen: string[] = [];
      let last = 0;
      for (;;) {
        const res = await rest(sandbox, "crm.deal.list", {
          order: { ID: "ASC" },
          filter: { ">ID": last },
          select: ["ID"],
          start: -1,
        });
        should(res.body.total).equal(0);
        should(res.body).not.have.property("next");
        const page = res.body.result as { ID: string }[];
        seen.push(...page.map((d) => d.ID));
        if (page.length < 50) break;
        last = Number(page[page.length - 1].ID);
      }
      should(seen).have.length(120);
      should(seen[119]).equal("120");
    });

    it("select: explicit fields (ID always), '*' without user fields, 'UF_*', and the default of both", async () => {
      await addDeals(sandbox, 1, () => ({ TITLE: "t", UF_CRM_X: "u" }));
      const only = await rest(sandbox, "crm.deal.list", { select: ["TITLE"] });
      should(only.body.result[0]).eql({ ID: "1", TITLE: "t" });
      const star = await rest(sandbox, "crm.deal.list", { select: ["*"] });
      should(star.body.result[0]).have.property("STAGE_ID");
      should(star.body.result[0]).not.have.property("UF_CRM_X");
      should(star.body.result[0]).not.have.property("CONTACT_IDS");
      const uf = await rest(sandbox, "crm.deal.list", { select: ["UF_*"] });
      should(uf.body.result[0]).eql({ ID: "1", UF_CRM_X: "u" });
      const all = await rest(sandbox, "crm.deal.list", {});
      should(all.body.result[0]).have.properties({ STAGE_ID: "NEW", UF_CRM_X: "u" });
    });

    it("filters with the documented operators", async () => {
      const titles = ["Alpha", "beta", "Gamma", "delta", "alphabet"];
      await addDeals(sandbox, 5, (i) => ({
        TITLE: titles[i],
        OPPORTUNITY: (i + 1) * 100,
        ASSIGNED_BY_ID: i % 2 ? 6 : 1,
      }));
      const ids = async (filter: Record<string, unknown>) => {
        const res = await rest(sandbox, "crm.deal.list", { filter, select: ["ID"] });
        should(res.status).equal(200);
        return res.body.result.map((d: { ID: string }) => Number(d.ID));
      };
      should(await ids({ ">OPPORTUNITY": 200 })).eql([3, 4, 5]);
      should(await ids({ ">=OPPORTUNITY": 200, "<=OPPORTUNITY": 400 })).eql([2, 3, 4]);
      should(await ids({ "<OPPORTUNITY": 200 })).eql([1]);
      should(await ids({ ASSIGNED_BY_ID: 6 })).eql([2, 4]);
      should(await ids({ "=ASSIGNED_BY_ID": "6" })).eql([2, 4]);
      should(await ids({ "!ASSIGNED_BY_ID": 6 })).eql([1, 3, 5]);
      should(await ids({ "!=ASSIGNED_BY_ID": 6 })).eql([1, 3, 5]);
      should(await ids({ "@ID": [1, 3, 9] })).eql([1, 3]);
      should(await ids({ ID: [2, 5] })).eql([2, 5]);
      should(await ids({ "!@ID": [1, 3] })).eql([2, 4, 5]);
      should(await ids({ "%TITLE": "ALPHA" })).eql([1, 5]);
      should(await ids({ "=%TITLE": "%a" })).eql([1, 2, 3, 4]);
      should(await ids({ "%=TITLE": "alpha%" })).eql([1, 5]);
      should(await ids({ TITLE: "gamma" })).eql([3]);
      should(await ids({ ">DATE_CREATE": "2000-01-01" })).eql([1, 2, 3, 4, 5]);
      should(await ids({ "<DATE_CREATE": "2000-01-01" })).eql([]);
      // unknown filter fields are dropped, as the proxies' GetList does
      should(await ids({ NO_SUCH_FIELD: 1 })).eql([1, 2, 3, 4, 5]);
    });

    it("orders by any field, ties by ID; default ID ascending", async () => {
      await addDeals(sandbox, 4, (i) => ({ OPPORTUNITY: [300, 100, 300, 200][i] }));
      const res = await rest(sandbox, "crm.deal.list", { order: { OPPORTUNITY: "DESC" }, select: ["ID"] });
      should(res.body.result.map((d: { ID: string }) => d.ID)).eql(["1", "3", "4", "2"]);
      const desc = await rest(sandbox, "crm.deal.list", { order: { ID: "DESC" }, select: ["ID"] });
      should(desc.body.result.map((d: { ID: string }) => d.ID)).eql(["4", "3", "2", "1"]);
    });
  });

  describe("offline events", () => {
    it("writes queue ONCRMDEALADD/UPDATE/DELETE with FIELDS.ID for every offline binding", async () => {
      await bindOffline(sandbox, ["ONCRMDEALADD"], "A");
      await bindOffline(sandbox, ["ONCRMDEALUPDATE"], "A");
      await bindOffline(sandbox, ["ONCRMDEALDELETE"], "A");
      await bindOffline(sandbox, ["ONCRMDEALUPDATE"], "B");
      await addDeals(sandbox, 1);
      await rest(sandbox, "crm.deal.update", { id: 1, fields: { TITLE: "x" } });
      await rest(sandbox, "crm.deal.delete", { id: 1 });
      const records = sandbox.records().map((r) => [r.EVENT_NAME, r.CONNECTOR, r.EVENT_DATA]);
      should(records).eql([
        ["ONCRMDEALADD", "A", { FIELDS: { ID: "1" } }],
        ["ONCRMDEALUPDATE", "A", { FIELDS: { ID: "1" } }],
        ["ONCRMDEALUPDATE", "B", { FIELDS: { ID: "1" } }],
        ["ONCRMDEALDELETE", "A", { FIELDS: { ID: "1" } }],
      ]);
      // the binding's connector reads its own copy
      const got = await rest(sandbox, "event.offline.get", { auth_connector: "B" });
      should(got.body.result.events.map((e: { EVENT_NAME: string }) => e.EVENT_NAME)).eql(["ONCRMDEALUPDATE"]);
    });

    it("no binding, no event; repeated changes of one deal collapse into one waiting record", async () => {
      await addDeals(sandbox, 2);
      should(sandbox.stats().queue.total).equal(0);
      await bindOffline(sandbox, ["ONCRMDEALUPDATE"]);
      for (let i = 0; i < 5; i++) await rest(sandbox, "crm.deal.update", { id: 1, fields: { TITLE: `t${i}` } });
      await rest(sandbox, "crm.deal.update", { id: 2, fields: { TITLE: "t" } });
      should(sandbox.records().map((r) => r.EVENT_DATA)).eql([{ FIELDS: { ID: "1" } }, { FIELDS: { ID: "2" } }]);
      should(sandbox.stats().created).equal(2);
    });

    it("a write with auth_connector=<key> queues nothing for that key's binding, and does for another", async () => {
      await bindOffline(sandbox, ["ONCRMDEALUPDATE"], "mine");
      await bindOffline(sandbox, ["ONCRMDEALUPDATE"], "other");
      await addDeals(sandbox, 1);
      await rest(sandbox, "crm.deal.update", { id: 1, fields: { TITLE: "x" }, auth_connector: "mine" });
      should(sandbox.records().map((r) => r.CONNECTOR)).eql(["other"]);
      const mine = await rest(sandbox, "event.offline.get", { auth_connector: "mine", clear: 0 });
      should(mine.body.result.events).have.length(0);
    });

    it("the guide's loop: get the event, read the deal, write back with the connector, nothing echoes", async () => {
      await bindOffline(sandbox, ["ONCRMDEALUPDATE"], "sync");
      sandbox.crm.seed("deal", 3);
      // someone edits deal 2 twice in the portal
      await rest(sandbox, "crm.deal.update", { id: 2, fields: { TITLE: "edited" } });
      await rest(sandbox, "crm.deal.update", { id: 2, fields: { COMMENTS: "again" } });
      const got = await rest(sandbox, "event.offline.get", { auth_connector: "sync", clear: 0 });
      const [event] = got.body.result.events;
      should(got.body.result.events).have.length(1);
      const deal = await rest(sandbox, "crm.deal.get", { id: event.EVENT_DATA.FIELDS.ID });
      should(deal.body.result).have.properties({ TITLE: "edited", COMMENTS: "again" });
      // the other system's answer is written back with the app's connector
      await rest(sandbox, "crm.deal.update", { id: 2, fields: { UF_CRM_EXT: "ext-2" }, auth_connector: "sync" });
      await rest(sandbox, "event.offline.clear", {
        process_id: got.body.result.process_id,
        message_id: [event.MESSAGE_ID],
        auth_connector: "sync",
      });
      should(sandbox.stats().queue.total).equal(0);
      should(sandbox.crm.get("deal", 2)?.UF_CRM_EXT).equal("ext-2");
    });

    it("an offline write notifies ONOFFLINEEVENT handlers once per change", async () => {
      const received: string[] = [];
      const { createServer } = await import("node:http");
      const server = createServer((req, res) => {
        let body = "";
        req.on("data", (c) => {
          body += c;
        });
        req.on("end", () => {
          received.push(body);
          res.end("ok");
        });
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as { port: number }).port;
      try {
        await rest(sandbox, "event.bind", {
          event: "ONOFFLINEEVENT",
          handler: `http://127.0.0.1:${port}/hook`,
          options: { minTimeout: 0 },
        });
        await bindOffline(sandbox, ["ONCRMDEALADD"]);
        await addDeals(sandbox, 2);
        for (let i = 0; i < 50 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
        should(received).have.length(2);
        should(received[0]).match(/event=ONOFFLINEEVENT/);
      } finally {
        server.close();
      }
    });
  });
});
