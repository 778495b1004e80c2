import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { parseArgs } from "../../src/sandbox/cli";
import { bindOffline, control, rest } from "./rest-call";

describe("sandbox: seeding objects, programmatic access, lost answers", () => {
  let sandbox: Sandbox;

  before(async () => {
    sandbox = await startSandbox({ rateLimit: false, objects: { deals: 30, contacts: 5 } });
  });
  after(async () => {
    await sandbox.close();
  });

  it("startSandbox({objects}) seeds at start, without queueing events", async () => {
    should(sandbox.crm.counts()).eql({ deal: 30, contact: 5, lead: 0, company: 0, item: 0, task: 0, user: 1 });
    should(sandbox.stats().queue.total).equal(0);
    const list = await rest(sandbox, "crm.deal.list", { select: ["ID"] });
    should(list.body.total).equal(30);
  });

  it("the CLI takes --deals/--contacts/--leads/--companies/--items/--tasks/--users and --scopes", () => {
    const options = parseArgs(["--deals", "1000", "--contacts=200", "--leads", "3", "--companies", "4"]);
    should(options.objects).eql({ deals: 1000, contacts: 200, leads: 3, companies: 4 });
    const more = parseArgs(["--items", "5", "--tasks", "100", "--users=7", "--scopes", "crm,user"]);
    should(more.objects).eql({ items: 5, tasks: 100, users: 7 });
    should(more.scopes).eql(["crm", "user"]);
  });

  it("POST /_sandbox/objects seeds more; GET /_sandbox/objects counts; GET objects/<kind>/<id> reads one", async () => {
    sandbox.reset();
    const seeded = await control(sandbox.url, "objects", { deals: 100, companies: 2 });
    should(seeded.body).eql({ deal: 100, contact: 0, lead: 0, company: 2, item: 0, task: 0, user: 1 });
    should((await control(sandbox.url, "objects")).body.deal).equal(100);
    const deal = await control(sandbox.url, "objects/deal/7");
    should(deal.body).have.properties({ ID: "7", TITLE: "Deal #7" });
    should(deal.body).eql(sandbox.crm.get("deal", 7));
    should((await control(sandbox.url, "objects/deal/700")).status).equal(404);
  });

  it("100 000 deals seed in a few seconds and read page by page", async () => {
    sandbox.reset();
    const started = Date.now();
    sandbox.crm.seed("deal", 100_000);
    const seedMs = Date.now() - started;
    should(seedMs).be.below(10_000); // a shared, busy machine; unloaded it takes well under a second
    const deep = await rest(sandbox, "crm.deal.list", {
      order: { ID: "ASC" },
      filter: { ">ID": 99_980 },
      select: ["ID"],
      start: -1,
    });
    should(deep.body.result.map((d: { ID: string }) => Number(d.ID))).eql(
      Array.from({ length: 20 }, (_, i) => 99_981 + i),
    );
  });

  it("portalCall / POST /_sandbox/call: a change made inside the portal queues events like any write", async () => {
    sandbox.reset();
    sandbox.crm.seed("deal", 5);
    await bindOffline(sandbox, ["ONCRMDEALUPDATE"], "app");
    sandbox.setFaults({ errorRate: 1, methods: ["crm.deal.update"] }); // not HTTP: faults do not apply
    try {
      should(
        sandbox.portalCall("crm.deal.update", { id: 5, fields: { TITLE: "edited in the portal" } }).result,
      ).be.true();
      const viaHttp = await control(sandbox.url, "call", { method: "crm.deal.update", params: { ID: 4, FIELDS: {} } });
      should(viaHttp.body).have.property("result", true);
      const missing = await control(sandbox.url, "call", { method: "crm.deal.get", params: { id: 99 } });
      should(missing).eql({ status: 400, body: { error: "", error_description: "Not found" } });
      should(() => sandbox.portalCall("crm.deal.get", { id: 99 })).throw(/Not found/);
    } finally {
      sandbox.setFaults({});
    }
    should(sandbox.crm.get("deal", 5)?.TITLE).equal("edited in the portal");
    should(sandbox.records().map((r) => r.EVENT_DATA)).eql([{ FIELDS: { ID: "5" } }, { FIELDS: { ID: "4" } }]);
  });

  it("dropAfterRate applies a write and loses its answer: one deal, no answer", async () => {
    sandbox.reset();
    sandbox.setFaults({ dropAfterRate: 1, methods: ["crm.deal.add"] });
    try {
      await should(rest(sandbox, "crm.deal.add", { fields: { TITLE: "lost answer" } })).be.rejected();
      should(sandbox.crm.count("deal")).equal(1);
      should(sandbox.crm.get("deal", 1)?.TITLE).equal("lost answer");
      // other methods are not faulted
      should((await rest(sandbox, "crm.deal.get", { id: 1 })).status).equal(200);
    } finally {
      sandbox.setFaults({});
    }
  });
});
