import should from "should";
import { RestCalls } from "../../src/core/calls/rest-calls";
import type { Bitrix24Client } from "../../src/core/client/client";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { rejection } from "../kit/rejection";
import { sandboxClient } from "../kit/sandbox-client";

describe("core/rest-calls against the sandbox portal", () => {
  let sandbox: Sandbox;
  let client: Bitrix24Client;

  const batches = () => sandbox.stats().requests.byMethod.batch ?? 0;

  beforeEach(async () => {
    sandbox = await startSandbox({ rateLimit: false });
    client = sandboxClient(sandbox, { retry: { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 2 } });
  });

  afterEach(async () => {
    client.close();
    await sandbox.close();
  });

  it("all: 2 501 deals in 2 batch requests, every ID once, in order", async () => {
    sandbox.crm.seed("deal", 2501);
    const seen: number[] = [];
    const out = await new RestCalls(client).all(
      "crm.deal.list",
      { select: ["ID", "TITLE"] },
      { onRecords: (page) => void seen.push(...page.map((r) => Number((r as { ID: string }).ID))) },
    );
    should(out.count).equal(2501);
    should(seen).eql(Array.from({ length: 2501 }, (_, i) => i + 1));
    should(out.requests).equal(2);
    should(batches()).equal(2);
  });

  for (const [method, kind, params, id] of [
    ["crm.item.list", "item", { entityTypeId: 128, select: ["title"] }, "id"],
    ["tasks.task.list", "task", { select: ["TITLE"] }, "id"],
    ["user.get", "user", { sort: "ID", order: "asc" }, "ID"],
    ["crm.contact.list", "contact", { filter: { ">=ID": 3 }, select: ["NAME"] }, "ID"],
  ] as const) {
    it(`all: ${method} comes out as plain records, every ID once (2 600 seeded)`, async () => {
      sandbox.crm.seed(kind, 2600);
      const seen: number[] = [];
      const out = await new RestCalls(client).all(method, params, {
        onRecords: (page) => void seen.push(...page.map((r) => Number((r as Record<string, unknown>)[id]))),
      });
      // The sandbox's portal has its administrator, user 1, before the seeded users.
      const first = kind === "contact" ? 3 : 1;
      const last = kind === "user" ? 2601 : 2600;
      should(seen).eql(Array.from({ length: last + 1 - first }, (_, i) => i + first));
      should(out.requests).equal(2);
      should(batches()).equal(2);
    });
  }

  it("all: the access token expiring mid-read is refreshed and the read goes on", async () => {
    sandbox.crm.seed("deal", 6000);
    const refreshed: string[] = [];
    client.on("tokens", (t: { accessToken: string }) => refreshed.push(t.accessToken));
    const seen = new Set<number>();
    let records = 0;
    const out = await new RestCalls(client).all(
      "crm.deal.list",
      {},
      {
        onRecords: (page) => {
          records += page.length;
          for (const r of page) seen.add(Number((r as { ID: string }).ID));
          // After the first batch, and again after the second: every token issued so far stops working.
          if (records === 2500 || records === 5000) sandbox.expireTokens();
        },
      },
    );
    should(out.count).equal(6000);
    should(seen.size).equal(6000);
    should(refreshed).have.length(2);
    should(out.requests).equal(3);
  });

  it("a crm.deal.add whose answer is lost after the portal applied it: WRITE_MAY_HAVE_RUN and exactly one deal", async () => {
    sandbox.setFaults({ dropAfterRate: 1, methods: ["crm.deal.add"] });
    const err = await rejection(new RestCalls(client).call("crm.deal.add", { fields: { TITLE: "only once" } }));
    should(err.code).equal("WRITE_MAY_HAVE_RUN");
    should((err.cause as Bitrix24Error).code).equal("NETWORK_ERROR");
    should(sandbox.crm.count("deal")).equal(1);
    should(sandbox.stats().requests.byMethod["crm.deal.add"]).equal(1);
  });

  it("each: writes with the connector queue no event for that connector's binding, and do for another", async () => {
    sandbox.crm.seed("deal", 3);
    const rc = new RestCalls(client);
    await rc.call("event.bind", { event: "ONCRMDEALUPDATE", event_type: "offline", auth_connector: "sync" });
    await rc.call("event.bind", { event: "ONCRMDEALUPDATE", event_type: "offline", auth_connector: "other" });
    const out = await rc.each(
      "crm.deal.update",
      [1, 2, 3].map((id) => ({ id, fields: { TITLE: `synced ${id}` } })),
      { authConnector: "sync" },
    );
    should(out.failures).eql([]);
    should(out.requests).equal(1);
    const held = sandbox.records();
    should(held.filter((r) => r.CONNECTOR === "sync")).have.length(0);
    should(held.filter((r) => r.CONNECTOR === "other")).have.length(3);
  });
});
