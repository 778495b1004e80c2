import should from "should";
import { isReadMethod, RestCalls } from "../../src/core/calls/rest-calls";
import type { ClientOptions } from "../../src/core/client/client";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { webhookClientsPerTest } from "../kit/clients";
import { FakeCrm, type Unresolved } from "../kit/fake-crm";
import { sendError } from "../kit/fake-portal";
import { rejection } from "../kit/rejection";

const bound = (n: number) => Math.ceil(n / 2500) + 1;

describe("core/rest-calls: the bitrix24-call engine", () => {
  let crm: FakeCrm;
  const client = webhookClientsPerTest(() => crm.url, { maxAttempts: 4 });
  const calls = (options: Partial<ClientOptions> = {}): RestCalls => new RestCalls(client(options));

  async function readAll(
    method: string,
    params: Record<string, unknown> = {},
    rc = calls(),
  ): Promise<{ records: Array<Record<string, unknown>>; requests: number; reported: number }> {
    const records: Array<Record<string, unknown>> = [];
    const before = crm.requests();
    const out = await rc.all(method, params, { onRecords: (page) => void records.push(...(page as typeof records)) });
    should(out.failures).eql([]);
    should(out.count).equal(records.length);
    return { records, requests: crm.requests() - before, reported: out.requests };
  }

  /** The commands of every batch request the portal got, as `<method>?<query>` lines. */
  function batchCommands(): string[] {
    return crm.portal.rest("batch").flatMap((r) => Object.values(r.body.cmd as Record<string, string>));
  }

  const ids = (records: Array<Record<string, unknown>>, field = "ID") => records.map((r) => Number(r[field]));
  const tableIds = () => crm.rows.map((r) => r.id);

  beforeEach(async () => {
    crm = await FakeCrm.start({ records: 0 });
  });

  afterEach(async () => {
    await crm.close();
  });

  describe("isReadMethod", () => {
    it("knows reads by their last segment and a few names, and takes everything else for a write", () => {
      for (const m of ["crm.deal.get", "crm.deal.list", "crm.deal.fields", "tasks.task.getFields", "user.get"]) {
        should(isReadMethod(m)).be.true(m);
      }
      for (const m of ["app.info", "feature.get", "event.get", "user.current", "crm.deal.userfield.list"]) {
        should(isReadMethod(m)).be.true(m);
      }
      for (const m of ["crm.deal.add", "crm.deal.update", "crm.deal.delete", "tasks.task.add", "batch", "get"]) {
        should(isReadMethod(m)).be.false(m);
      }
      // It deletes what it returns (or holds it in a process): never a read.
      should(isReadMethod("event.offline.get")).be.false();
      should(isReadMethod("EVENT.OFFLINE.GET")).be.false();
    });
  });

  describe("call", () => {
    it("gives the result with total and next, and sends reads without the connector", async () => {
      crm.seed(120);
      const answer = await calls().call("crm.deal.list", { start: 50 }, { authConnector: "sync" });
      should((answer.result as unknown[]).length).equal(50);
      should(answer.total).equal(120);
      should(answer.next).equal(100);
      should(crm.portal.rest("crm.deal.list")[0].body).not.have.property("auth_connector");
    });

    it("adds auth_connector to a write, unless the params name one", async () => {
      const rc = calls();
      await rc.call("crm.deal.add", { fields: { TITLE: "a" } }, { authConnector: "sync" });
      await rc.call("crm.deal.add", { fields: { TITLE: "b" }, AUTH_CONNECTOR: "mine" }, { authConnector: "sync" });
      const bodies = crm.portal.rest("crm.deal.add").map((r) => r.body);
      should(bodies[0].auth_connector).equal("sync");
      should(bodies[1]).not.have.property("auth_connector");
      should(bodies[1].AUTH_CONNECTOR).equal("mine");
    });

    it("a signal ends the wait for the rate limiter without sending", async () => {
      const rc = calls({ rateLimit: { burst: 1, perSecond: 0.01 } });
      await rc.call("crm.deal.list", {});
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 30);
      const started = Date.now();
      const err = await rejection(rc.call("crm.deal.list", {}, { signal: controller.signal }));
      should(err.code).equal("ABORTED");
      should(Date.now() - started).be.below(5000);
      should(crm.requests()).equal(1);
    });

    it("an aborted signal stops it before anything is sent", async () => {
      const controller = new AbortController();
      controller.abort();
      const err = await rejection(calls().call("crm.deal.get", { id: 3 }, { signal: controller.signal }));
      should(err.code).equal("ABORTED");
      should(crm.requests()).equal(0);
    });
  });

  describe("each", () => {
    it("1 000 IDs for a .get method are 20 batch requests, results in input order", async () => {
      crm.seed(1000);
      const items = tableIds().reverse();
      const progress: number[] = [];
      const out = await calls().each("crm.deal.get", items, { onProgress: (p) => progress.push(p.done) });
      should(out.failures).eql([]);
      should(out.requests).equal(20);
      should(crm.requests()).equal(20);
      should(crm.requests("batch")).equal(20);
      should(out.results.map((r) => Number((r as { ID: string }).ID))).eql(items);
      should(progress).have.length(20);
      should(progress.at(-1)).equal(1000);
      // A bare ID becomes crm.deal.get's `id`; reads carry no connector.
      should(batchCommands()[0]).match(/^crm\.deal\.get\?id=\d+$/);
    });

    it("reports every failing item with its index, code and description; the successes still come back", async () => {
      crm.seed(60);
      const good = tableIds();
      const items: unknown[] = [good[0], 999999, { id: good[1] }, null, good[2], "", [1], ...good.slice(3, 55)];
      const out = await calls().each("crm.deal.get", items);
      should(out.requests).equal(2);
      should(out.failures.map((f) => [f.index, f.code])).eql([
        [1, "NOT_FOUND"],
        [3, "INVALID_ARGUMENT"],
        [5, "INVALID_ARGUMENT"],
        [6, "INVALID_ARGUMENT"],
      ]);
      // Inside a batch the portal gives no HTTP status; NOT_FOUND's own (400, what it answers alone) stands in.
      should(out.failures[0]).containEql({ status: 400, description: "Not found", method: "crm.deal.get" });
      should(out.results.length).equal(items.length);
      should(out.results[1]).be.null();
      should(out.results[3]).be.null();
      should((out.results[0] as { ID: string }).ID).equal(String(good[0]));
      should((out.results[2] as { ID: string }).ID).equal(String(good[1]));
      should((out.results.at(-1) as { ID: string }).ID).equal(String(good[54]));
    });

    it("after an authorisation failure of a whole batch, the remaining items fail with it unsent", async () => {
      crm.intercept = (_req, res) => {
        sendError(res, 401, "NO_AUTH_FOUND", "Wrong authorization data");
        return true;
      };
      const out = await calls().each(
        "crm.deal.get",
        Array.from({ length: 120 }, (_, i) => i + 1),
      );
      should(out.requests).equal(1);
      should(crm.requests()).equal(1);
      should(out.failures).have.length(120);
      should(out.failures.every((f) => f.code === "NO_AUTH_FOUND" && f.status === 401)).be.true();
      should(out.results.every((r) => r === null)).be.true();
    });

    it("refuses items that are not an array, sending nothing", async () => {
      const err = await rejection(calls().each("crm.deal.get", { id: 1 } as unknown as unknown[]));
      should(err.code).equal("INVALID_ARGUMENT");
      should(crm.requests()).equal(0);
    });

    it("writes carry auth_connector in every command; IDs use the family's parameter name", async () => {
      crm.seed(3);
      const seen: Array<[string, Record<string, unknown>]> = [];
      crm.beforeCommand = (method, params) => seen.push([method, params]);
      const rc = calls();
      const updates = tableIds().map((id) => ({ id, fields: { TITLE: `x${id}` } }));
      const out = await rc.each("crm.deal.update", updates, { authConnector: "sync" });
      should(out.failures).eql([]);
      should(seen.map(([, p]) => p.auth_connector)).eql(["sync", "sync", "sync"]);
      should(crm.rows.map((r) => r.title)).eql(tableIds().map((id) => `x${id}`));
      seen.length = 0;
      await rc.each("tasks.task.list", [7]);
      should(seen[0][1]).eql({ taskId: "7" });
      // crm.item.get needs entityTypeId too: a bare ID is refused without sending.
      const item = await rc.each("crm.item.get", [5]);
      should(item.failures[0].code).equal("INVALID_ARGUMENT");
      should(item.requests).equal(0);
    });
  });

  describe("all: ID cursor in batches of 50 chained pages", () => {
    for (const n of [0, 1, 50, 51, 2500, 2501]) {
      it(`${n} records: exact, in ID order, at most ⌈N / 2 500⌉ + 1 = ${bound(n)} requests`, async () => {
        crm.seed(n);
        const { records, requests, reported } = await readAll("crm.deal.list", { select: ["TITLE"] });
        should(ids(records)).eql(tableIds());
        should(requests).be.belowOrEqual(bound(n));
        should(reported).equal(requests);
        // The first command: no count, ID ascending, the cursor, ID added to the caller's select.
        const first = decodeURIComponent(batchCommands()[0]);
        should(first).match(/start=-1/);
        should(first).match(/order\[ID\]=ASC/);
        should(first).match(/filter\[>ID\]=0/);
        should(first).match(/select\[0\]=TITLE&select\[1\]=ID/);
        should(decodeURIComponent(batchCommands()[1])).match(/filter\[>ID\]=\$result\[p0\]\[49\]\[ID\]/);
      });
    }

    const variants: Unresolved[] = ["literal", "empty", "null", "error"];
    for (const unresolved of variants) {
      for (const n of [20, 51, 2501]) {
        it(`an unresolvable reference replaced as "${unresolved}", ${n} records: exact, no duplicates`, async () => {
          crm.seed(n);
          crm.unresolved = unresolved;
          const { records, requests } = await readAll("crm.deal.list");
          should(ids(records)).eql(tableIds());
          should(new Set(ids(records)).size).equal(n);
          should(requests).be.belowOrEqual(bound(n));
        });
      }
    }

    for (const unresolved of ["empty", "null", "literal"] as Unresolved[]) {
      it(`even references to full pages replaced as "${unresolved}": each page checked, records exact`, async () => {
        crm.seed(180);
        crm.unresolved = unresolved;
        crm.garbleAll = true;
        const { records, requests } = await readAll("crm.deal.list");
        should(ids(records)).eql(tableIds());
        // Only the literal first page of each batch can be trusted: one page per request.
        should(requests).equal(4);
      });
    }

    it("crm.item.list, tasks.task.list and user.get come out as plain arrays of records", async () => {
      crm.seed(130);
      const items = await readAll("crm.item.list", { entityTypeId: 1032, select: ["title"] });
      should(ids(items.records, "id")).eql(tableIds());
      should(decodeURIComponent(batchCommands()[1])).match(/filter\[>id\]=\$result\[p0\]\[items\]\[49\]\[id\]/);
      should(decodeURIComponent(batchCommands()[1])).match(/select\[0\]=title&select\[1\]=id/);
      const tasks = await readAll("tasks.task.list", { select: ["ID", "TITLE"] });
      should(ids(tasks.records, "id")).eql(tableIds());
      should(decodeURIComponent(batchCommands().at(-1) as string)).match(/\$result\[p48\]\[tasks\]\[49\]\[id\]/);
      const users = await readAll("user.get", { FILTER: { ACTIVE: true } });
      should(ids(users.records)).eql(tableIds());
      const userCommand = decodeURIComponent(batchCommands().at(-1) as string);
      should(userCommand).match(/sort=ID&order=ASC/);
      should(userCommand).match(/FILTER\[ACTIVE\]=1&FILTER\[>ID\]=\$result\[p48\]\[49\]\[ID\]/);
      should(userCommand).not.match(/start=/);
      for (const r of [items, tasks, users]) should(r.requests).equal(1);
    });

    it("keeps the caller's filter; a caller's >ID is where the cursor starts", async () => {
      crm.seed(400);
      const want = tableIds().filter((id) => id > 100 && id < 600);
      const { records } = await readAll("crm.deal.list", { filter: { ">ID": 100, "<ID": 600 }, order: { id: "asc" } });
      should(ids(records)).eql(want);
      should(decodeURIComponent(batchCommands()[0])).match(/filter\[<ID\]=600&filter\[>ID\]=100/);
    });

    it("onRecords is awaited before more is fetched", async () => {
      crm.seed(2600);
      const rc = calls();
      let pages = 0;
      await rc.all(
        "crm.deal.list",
        {},
        {
          onRecords: async () => {
            const sent = crm.requests();
            pages += 1;
            await new Promise((r) => setTimeout(r, 2));
            should(crm.requests()).equal(sent);
          },
        },
      );
      should(pages).equal(52);
    });

    it("a page that fails mid-batch is asked again; one that fails first twice in a row fails the read", async () => {
      crm.seed(300);
      let failOnce = true;
      crm.beforeCommand = (_m, params) => {
        const after = (params.filter as Record<string, unknown> | undefined)?.[">ID"];
        if (failOnce && after === String(crm.rows[99].id)) {
          failOnce = false;
          throw Object.assign(new Error("busy"), {});
        }
      };
      const { records, requests } = await readAll("crm.deal.list");
      should(ids(records)).eql(tableIds());
      should(requests).equal(2);

      crm.beforeCommand = () => {
        throw new Error("always");
      };
      const records2: unknown[] = [];
      const err = await rejection(calls().all("crm.deal.list", {}, { onRecords: (p) => void records2.push(...p) }));
      should(err.code).equal("INTERNAL_SERVER_ERROR");
      should(records2).have.length(0);
    });

    it("refuses a method that is not a read, and stops when the signal aborts", async () => {
      crm.seed(3000);
      const rc = calls();
      should((await rejection(rc.all("crm.deal.add", {}, { onRecords: () => {} }))).code).equal("INVALID_ARGUMENT");
      should(crm.requests()).equal(0);
      const controller = new AbortController();
      let seen = 0;
      const err = await rejection(
        rc.all(
          "crm.deal.list",
          {},
          {
            signal: controller.signal,
            onRecords: (p) => {
              seen += p.length;
              if (seen >= 2500) controller.abort();
            },
          },
        ),
      );
      should(err.code).equal("ABORTED");
      should(seen).equal(2500);
      should(crm.requests()).equal(1);
    });
  });

  describe("all: counted pages when the ID cursor does not fit", () => {
    for (const n of [0, 1, 50, 51, 2500, 2501]) {
      it(`order by TITLE DESC, ${n} records: the caller's order, exact, at most ${bound(n)} requests`, async () => {
        crm.seed(n);
        const { records, requests } = await readAll("crm.deal.list", { order: { TITLE: "DESC" }, start: 100 });
        const want = crm.rows
          .slice()
          .sort((a, b) => -a.title.localeCompare(b.title) || a.id - b.id)
          .map((r) => r.id);
        should(ids(records)).eql(want);
        should(requests).be.belowOrEqual(bound(n));
        // The first page is counted (start=0), the rest are explicit offsets.
        should(crm.portal.rest("crm.deal.list")[0].body.start).equal(0);
        if (n > 50) should(decodeURIComponent(batchCommands()[0])).match(/start=50$/);
      });
    }

    it("a >ID filter that is not an integer keeps its meaning through counted pages", async () => {
      crm.seed(120);
      const { records, requests } = await readAll("crm.deal.list", { filter: { ">ID": "abc" } });
      should(ids(records)).eql(tableIds());
      should(requests).equal(2);
    });

    it("a count above the first page says there is more even without next", async () => {
      crm.seed(120);
      crm.omitNext = true;
      const { records, requests } = await readAll("crm.deal.list", { order: { TITLE: "ASC" } });
      should(records).have.length(120);
      should(new Set(ids(records)).size).equal(120);
      should(requests).equal(2);
    });

    it("a page that fails is reported with its offset; the others still come", async () => {
      crm.seed(200);
      crm.beforeCommand = (_m, params) => {
        if (String(params.start) === "100") throw new Error("boom");
      };
      const records: Array<Record<string, unknown>> = [];
      const out = await calls().all(
        "crm.deal.list",
        { order: { TITLE: "ASC" } },
        { onRecords: (p) => void records.push(...(p as typeof records)) },
      );
      should(out.failures.map((f) => [f.index, f.code])).eql([[100, "INTERNAL_SERVER_ERROR"]]);
      should(records).have.length(150);
      should(out.count).equal(150);
    });
  });

  describe("writes are never sent twice once they may have run", () => {
    it("a write whose connection drops after the portal applied it: WRITE_MAY_HAVE_RUN, exactly one deal", async () => {
      crm.intercept = (req, _res, raw) => {
        if (req.restMethod !== "crm.deal.add") return false;
        crm.run("crm.deal.add", req.body as never);
        raw.socket.destroy();
        return true;
      };
      const err = await rejection(calls().call("crm.deal.add", { fields: { TITLE: "once" } }));
      should(err.code).equal("WRITE_MAY_HAVE_RUN");
      should(err.retryable).be.false();
      should(err.method).equal("crm.deal.add");
      should((err.cause as Bitrix24Error).code).equal("NETWORK_ERROR");
      should(crm.rows).have.length(1);
      should(crm.requests()).equal(1);
    });

    it("a write that times out after it was applied, and one answered 500: not repeated, status from the cause", async () => {
      crm.intercept = (req, res) => {
        if (req.restMethod !== "crm.deal.add") return false;
        crm.run("crm.deal.add", req.body as never);
        if (crm.rows.length === 1) setTimeout(() => res.destroyed || res.end(), 400);
        else sendError(res, 500, "INTERNAL_SERVER_ERROR");
        return true;
      };
      const rc = calls({ timeoutMs: 100 });
      const timeout = await rejection(rc.call("crm.deal.add", { fields: { TITLE: "slow" } }));
      should(timeout.code).equal("WRITE_MAY_HAVE_RUN");
      should((timeout.cause as Bitrix24Error).code).equal("TIMEOUT");
      const five = await rejection(rc.call("crm.deal.add", { fields: { TITLE: "500" } }));
      should(five.code).equal("WRITE_MAY_HAVE_RUN");
      should(five.status).equal(500);
      should(crm.rows).have.length(2);
      should(crm.requests()).equal(2);
    });

    it("a write refused before running (503 QUERY_LIMIT_EXCEEDED, 429) is retried: one deal", async () => {
      let refusals = 2;
      crm.intercept = (req, res) => {
        if (req.restMethod !== "crm.deal.add" || refusals === 0) return false;
        refusals -= 1;
        if (refusals === 1) sendError(res, 503, "QUERY_LIMIT_EXCEEDED");
        else sendError(res, 429, "OPERATION_TIME_LIMIT");
        return true;
      };
      const answer = await calls().call("crm.deal.add", { fields: { TITLE: "x" } });
      should(answer.result).equal(crm.rows[0].id);
      should(crm.rows).have.length(1);
      should(crm.requests()).equal(3);
    });

    it("a write whose connection is refused (nothing sent) is retried, and fails as NETWORK_ERROR", async () => {
      const c = client();
      const rc = new RestCalls(c);
      await crm.close();
      const retries: unknown[] = [];
      c.on("retry", (r) => retries.push(r));
      const err = await rejection(rc.call("crm.deal.add", { fields: { TITLE: "x" } }));
      should(err.code).equal("NETWORK_ERROR");
      should(retries).have.length(3);
    });

    it("a read that times out is retried", async () => {
      crm.seed(5);
      let slow = 1;
      crm.intercept = (req, res) => {
        if (slow-- <= 0) return false;
        setTimeout(() => res.destroyed || res.end(), 400);
        return req.restMethod === "crm.deal.get";
      };
      const answer = await calls({ timeoutMs: 100 }).call("crm.deal.get", { id: crm.rows[0].id });
      should((answer.result as { ID: string }).ID).equal(String(crm.rows[0].id));
      should(crm.requests()).equal(2);
    });

    it("each: a batch of writes dropped after it ran fails its items with WRITE_MAY_HAVE_RUN; the next batch goes on", async () => {
      let drop = true;
      crm.intercept = (req, res, raw) => {
        if (req.restMethod !== "batch" || !drop) return false;
        drop = false;
        void res;
        const cmd = req.body.cmd as Record<string, string>;
        for (const line of Object.values(cmd)) crm.run("crm.deal.add", { fields: { TITLE: line } });
        raw.socket.destroy();
        return true;
      };
      const items = Array.from({ length: 60 }, (_, i) => ({ fields: { TITLE: `d${i}` } }));
      const out = await calls().each("crm.deal.add", items, { authConnector: "sync" });
      should(out.failures).have.length(50);
      should(out.failures.every((f) => f.code === "WRITE_MAY_HAVE_RUN" && f.method === "crm.deal.add")).be.true();
      should(out.failures.map((f) => f.index)).eql(Array.from({ length: 50 }, (_, i) => i));
      should(out.results.slice(50).every((r) => typeof r === "number")).be.true();
      should(crm.rows).have.length(60);
      should(crm.requests("batch")).equal(2);
      should(batchCommands().every((line) => line.includes("auth_connector=sync"))).be.true();
    });

    it("a clear=1 event.offline.get stays EVENTS_MAY_BE_LOST even when called as a write", async () => {
      crm.intercept = (_req, _res, raw) => {
        raw.socket.destroy();
        return true;
      };
      const err = await rejection(calls().call("event.offline.get", { clear: 1 }));
      should(err.code).equal("EVENTS_MAY_BE_LOST");
      should(crm.requests()).equal(1);
    });
  });
});
