import should from "should";
import { rest, restForm, sharedSandbox } from "./rest-call";

const TIME_KEYS = ["start", "finish", "duration", "processing", "date_start", "date_finish", "operating"];
const EVENT_KEYS = ["ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID"];

describe("sandbox: event.offline.* semantics", () => {
  const sandbox = sharedSandbox();

  describe("event.offline.get", () => {
    it("answers the seed's example request with the seed's response shape", async () => {
      sandbox.addEvents(1, { name: "ONCRMLEADADD", connector: "BxTest", data: () => ({ FIELDS: { ID: "1" } }) });
      const [record] = sandbox.records();
      const res = await rest(sandbox, "event.offline.get", {
        filter: { "=MESSAGE_ID": record.MESSAGE_ID, "=EVENT_NAME": "ONCRMLEADADD", ">=ID": 1 },
        auth_connector: "BxTest",
      });
      should(res.status).equal(200);
      should(Object.keys(res.body).sort()).eql(["result", "time"]);
      should(res.body.result.process_id).be.null();
      should(res.body.result.events).have.length(1);
      const event = res.body.result.events[0];
      should(Object.keys(event)).eql(EVENT_KEYS);
      should(event.ID).equal("1");
      should(event.TIMESTAMP_X).match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
      should(event.EVENT_DATA).eql({ FIELDS: { ID: "1" } });
      for (const key of TIME_KEYS) should(res.body.time).have.property(key);
      should(res.body.time.operating_reset_at).be.a.Number();
      // clear=1 (the default) deleted it
      should(sandbox.stats().queue.total).equal(0);
    });

    it("MESSAGE_ID is the md5 of EVENT_NAME|<JSON of EVENT_DATA> (EventOfflineTable.php)", async () => {
      sandbox.addEvents(1, { name: "ONCRMDEALUPDATE", data: () => ({ FIELDS: { ID: "7" } }) });
      const { createHash } = await import("node:crypto");
      const expected = createHash("md5")
        .update(`ONCRMDEALUPDATE|${JSON.stringify({ FIELDS: { ID: "7" } })}`)
        .digest("hex");
      should(sandbox.records()[0].MESSAGE_ID).equal(expected);
    });

    it("defaults: limit 50, order TIMESTAMP_X ASC, clear=1 deletes and answers process_id null", async () => {
      sandbox.addEvents(120);
      const res = await rest(sandbox, "event.offline.get");
      should(res.body.result.process_id).be.null();
      should(res.body.result.events.map((e: { ID: string }) => Number(e.ID))).eql(
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      should(sandbox.stats().queue.total).equal(70);
      should(sandbox.stats().deleted).equal(50);
    });

    it("clear=0 marks the records with a new 32-character process id and hides them from other readers", async () => {
      sandbox.addEvents(10);
      const first = await rest(sandbox, "event.offline.get", { clear: 0, limit: 4 });
      const second = await rest(sandbox, "event.offline.get", { clear: 0, limit: 4 });
      should(first.body.result.process_id).match(/^[a-z0-9]{32}$/);
      should(second.body.result.process_id).match(/^[a-z0-9]{32}$/);
      should(first.body.result.process_id).not.equal(second.body.result.process_id);
      should(second.body.result.events[0].ID).equal("5");
      should(sandbox.stats().queue).eql({ total: 10, unprocessed: 2, held: 8, error: 0, holds: 2 });
      const held = sandbox.records().filter((r) => r.PROCESS_ID === first.body.result.process_id);
      should(held.map((r) => r.ID)).eql(["1", "2", "3", "4"]);
    });

    it("20 concurrent gets receive disjoint sets", async () => {
      sandbox.addEvents(500);
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => rest(sandbox, "event.offline.get", { clear: 0, limit: 30 })),
      );
      const ids = answers.flatMap((a) => a.body.result.events.map((e: { ID: string }) => e.ID));
      should(ids).have.length(500);
      should(new Set(ids).size).equal(500);
      // every get opens its own process, even the 3 that found nothing left
      should(new Set(answers.map((a) => a.body.result.process_id)).size).equal(20);
      should(answers.filter((a) => a.body.result.events.length === 0)).have.length(3);
    });

    it("process_id recovery: clear=0 re-selects the process's records; default clear=1 deletes the whole process", async () => {
      sandbox.addEvents(6);
      const taken = await rest(sandbox, "event.offline.get", { clear: 0, limit: 5 });
      const pid = taken.body.result.process_id;
      const again = await rest(sandbox, "event.offline.get", { process_id: pid, clear: 0 });
      should(again.body.result.process_id).equal(pid);
      should(again.body.result.events.map((e: { ID: string }) => e.ID)).eql(["1", "2", "3", "4", "5"]);
      should(sandbox.stats().queue.held).equal(5);
      // with the default clear=1 even the records `limit` left out of the answer go
      const cleared = await rest(sandbox, "event.offline.get", { process_id: pid, limit: 2 });
      should(cleared.body.result.events).have.length(2);
      should(sandbox.stats().queue).eql({ total: 1, unprocessed: 1, held: 0, error: 0, holds: 1 });
    });

    it("filters with operators, orders, and refuses bad arguments with ERROR_ARGUMENT", async () => {
      sandbox.addEvents(5, { name: "ONCRMLEADADD" });
      sandbox.addEvents(5, { name: "ONCRMDEALUPDATE" });
      const filtered = await rest(sandbox, "event.offline.get", {
        clear: 0,
        filter: { "=EVENT_NAME": "ONCRMDEALUPDATE", ">ID": 7 },
        order: { ID: "DESC" },
      });
      should(filtered.body.result.events.map((e: { ID: string }) => e.ID)).eql(["10", "9", "8"]);
      const notEqual = await rest(sandbox, "event.offline.get", {
        clear: 0,
        filter: { "!EVENT_NAME": "ONCRMLEADADD" },
      });
      should(notEqual.body.result.events.map((e: { ID: string }) => e.ID)).eql(["6", "7"]);
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ limit: 0 }, /positive integer/],
        [{ limit: -5 }, /positive integer/],
        [{ filter: { ">=PROCESS_ID": "x" } }, /Filter field not allowed: PROCESS_ID/],
        [{ filter: { "~ID": 1 } }, /Filter operation not allowed: ~/],
        [{ filter: { ">>=ID": 1 } }, /Filter operation not allowed/],
        [{ filter: { "=ID": [1, 2] } }, /invalid type/],
        [{ filter: "ID" }, /filter is not an array/],
        [{ order: { ERROR: "ASC" } }, /Order field not allowed/],
        [{ order: { ID: "UP" } }, /Order direction/],
      ];
      for (const [params, message] of cases) {
        const res = await rest(sandbox, "event.offline.get", params);
        should(res.status).equal(400);
        should(res.body.error).equal("ERROR_ARGUMENT");
        should(res.body.error_description).match(message);
      }
    });

    it("filters TIMESTAMP_X by ISO 8601 with offset", async () => {
      sandbox.addEvents(2);
      const ts = sandbox.records()[0].TIMESTAMP_X;
      const before = await rest(sandbox, "event.offline.get", { clear: 0, filter: { "<TIMESTAMP_X": ts } });
      should(before.body.result.events).have.length(0);
      const at = await rest(sandbox, "event.offline.get", { clear: 0, filter: { ">=TIMESTAMP_X": ts } });
      should(at.body.result.events).have.length(2);
    });

    it("extendedMode off refuses clear=0 with WRONG_LICENSE; feature.get reports it", async () => {
      sandbox.setOptions({ extendedMode: false });
      try {
        sandbox.addEvents(1);
        const res = await rest(sandbox, "event.offline.get", { clear: 0 });
        should(res.status).equal(403);
        should(res.body.error).equal("WRONG_LICENSE");
        const feature = await rest(sandbox, "feature.get", { CODE: "rest_offline_extended" });
        should(feature.body.result).eql({ value: "N" });
        const auto = await rest(sandbox, "event.offline.get", {});
        should(auto.body.result.events).have.length(1);
      } finally {
        sandbox.setOptions({ extendedMode: true });
      }
    });

    it("a non-administrator token gets ACCESS_DENIED from every offline method", async () => {
      sandbox.setOptions({ admin: false });
      try {
        for (const method of [
          "event.offline.get",
          "event.offline.clear",
          "event.offline.error",
          "event.offline.list",
        ]) {
          const res = await rest(sandbox, method, { process_id: "x", message_id: ["y"] });
          should(res.status).equal(403);
          should(res.body.error).equal("ACCESS_DENIED");
        }
      } finally {
        sandbox.setOptions({ admin: true });
      }
    });
  });

  describe("collapsing", () => {
    it("a change of a waiting object updates its record; a change of a held one adds a new record", async () => {
      const deal = () => ({ FIELDS: { ID: "42" } });
      sandbox.addEvents(3, { data: deal });
      should(sandbox.records()).have.length(1);
      sandbox.addEvents(1, { data: () => ({ FIELDS: { ID: "43" } }) });
      sandbox.addEvents(1, { data: deal });
      // the collapsed record moved behind the newer one (new TIMESTAMP_X)
      should(sandbox.records().map((r) => r.ID)).eql(["1", "2"]);
      const order = await rest(sandbox, "event.offline.get", { clear: 0 });
      should(order.body.result.events.map((e: { ID: string }) => e.ID)).eql(["2", "1"]);
      sandbox.addEvents(1, { data: deal });
      const records = sandbox.records();
      should(records).have.length(3);
      should(records[2].PROCESS_ID).be.null();
      should(records[2].MESSAGE_ID).equal(records[0].MESSAGE_ID);
      should(sandbox.stats().created).equal(3);
    });
  });

  describe("event.offline.clear", () => {
    async function hold(
      count: number,
      connector = "",
    ): Promise<{ pid: string; events: { ID: string; MESSAGE_ID: string }[] }> {
      const res = await rest(sandbox, "event.offline.get", { clear: 0, limit: count, auth_connector: connector });
      return { pid: res.body.result.process_id, events: res.body.result.events };
    }

    it("answers the seed's example shape and clears by id", async () => {
      sandbox.addEvents(3);
      const { pid } = await hold(3);
      const res = await rest(sandbox, "event.offline.clear", { process_id: pid, id: [2] });
      should(res.status).equal(200);
      should(res.body.result).equal(true);
      for (const key of TIME_KEYS) should(res.body.time).have.property(key);
      should(sandbox.records().map((r) => r.ID)).eql(["1", "3"]);
    });

    it("checks message_id before id, as the source does", async () => {
      sandbox.addEvents(3);
      const { pid, events } = await hold(3);
      await rest(sandbox, "event.offline.clear", { process_id: pid, id: [1], message_id: [events[2].MESSAGE_ID] });
      should(sandbox.records().map((r) => r.ID)).eql(["1", "2"]);
    });

    it("clears the whole process without a list AND with an empty list", async () => {
      sandbox.addEvents(6);
      const a = await hold(3);
      const b = await hold(3);
      await rest(sandbox, "event.offline.clear", { process_id: a.pid, id: [] });
      should(sandbox.records().map((r) => r.ID)).eql(["4", "5", "6"]);
      await rest(sandbox, "event.offline.clear", { process_id: b.pid });
      should(sandbox.records()).have.length(0);
    });

    it("malformed lists answer 400 ERROR_ARGUMENT and delete NOTHING (the old sandbox dropped them and cleared the whole process)", async () => {
      sandbox.addEvents(3);
      const { pid } = await hold(3);
      for (const params of [
        { message_id: ["abc"] },
        { id: [0] },
        { id: ["x"] },
        { id: [1, -2] },
        { message_id: "a" },
      ]) {
        const res = await rest(sandbox, "event.offline.clear", { process_id: pid, ...params });
        should([res.status, res.body.error]).eql([400, "ERROR_ARGUMENT"]);
        should(sandbox.records()).have.length(3);
      }
    });

    it("a plan without source keys refuses auth_connector (403 WRONG_LICENSE naming it) on get, clear, error, list and the bindings", async () => {
      sandbox.setOptions({ authConnector: false });
      try {
        sandbox.addEvents(2);
        const calls: [string, Record<string, unknown>][] = [
          ["event.offline.get", { clear: 0 }],
          ["event.offline.clear", { process_id: "p" }],
          ["event.offline.error", { process_id: "p", message_id: [] }],
          ["event.offline.list", {}],
          ["event.bind", { event: "ONCRMDEALUPDATE", event_type: "offline" }],
          ["event.unbind", { event: "ONCRMDEALUPDATE", event_type: "offline" }],
        ];
        for (const [method, params] of calls) {
          const res = await rest(sandbox, method, { ...params, auth_connector: "key1" });
          should([method, res.status, res.body.error]).eql([method, 403, "WRONG_LICENSE"]);
          should(res.body.error_description).match(/auth_connector/);
        }
        // Without a connector everything works; feature.get tells in advance.
        should((await rest(sandbox, "event.offline.get", { clear: 0 })).status).equal(200);
        const feature = await rest(sandbox, "feature.get", { CODE: "rest_auth_connector" });
        should(feature.body.result.value).equal("N");
        should(sandbox.records().filter((r) => r.PROCESS_ID !== null)).have.length(2);
      } finally {
        sandbox.setOptions({ authConnector: true });
      }
    });

    it("requires process_id", async () => {
      const res = await rest(sandbox, "event.offline.clear", { id: [1] });
      should(res.status).equal(400);
      should(res.body).eql({ error: "ERROR_ARGUMENT", error_description: "Argument 'PROCESS_ID' is null or empty" });
    });

    it("without the get's auth_connector matches nothing and still answers true", async () => {
      sandbox.addEvents(2, { connector: "BxTest" });
      const { pid } = await hold(2, "BxTest");
      should(pid).be.a.String();
      const wrong = await rest(sandbox, "event.offline.clear", { process_id: pid });
      should(wrong.body.result).equal(true);
      should(sandbox.stats().queue.held).equal(2);
      await rest(sandbox, "event.offline.clear", { process_id: pid, auth_connector: "BxTest" });
      should(sandbox.stats().queue.total).equal(0);
    });

    it("auth_connector gives a separate queue", async () => {
      sandbox.addEvents(2, { connector: "A" });
      sandbox.addEvents(3);
      const plain = await rest(sandbox, "event.offline.get", { clear: 0 });
      should(plain.body.result.events).have.length(3);
      const a = await rest(sandbox, "event.offline.get", { clear: 0, auth_connector: "A" });
      should(a.body.result.events).have.length(2);
    });

    it("accepts PHP-style form bodies (id[]=, id[0]=)", async () => {
      sandbox.addEvents(4);
      const { pid } = await hold(4);
      const res = await restForm(sandbox, "event.offline.clear", `process_id=${pid}&id[]=1&id[]=3`);
      should(res.body.result).equal(true);
      await restForm(sandbox, "event.offline.clear", `process_id=${pid}&id[0]=4`);
      should(sandbox.records().map((r) => r.ID)).eql(["2"]);
    });
  });

  describe("event.offline.error", () => {
    it("answers the seed's example shape; marks held ERROR=0 rows, releases them, deletes other copies", async () => {
      const deal = () => ({ FIELDS: { ID: "9" } });
      sandbox.addEvents(1, { data: deal });
      sandbox.addEvents(1);
      const taken = await rest(sandbox, "event.offline.get", { clear: 0 });
      const pid = taken.body.result.process_id;
      const messageId = taken.body.result.events[0].MESSAGE_ID;
      sandbox.addEvents(1, { data: deal }); // a new change while held: a second, waiting copy
      should(sandbox.records()).have.length(3);
      const res = await rest(sandbox, "event.offline.error", { process_id: pid, message_id: [messageId] });
      should(res.status).equal(200);
      should(res.body.result).equal(true);
      for (const key of TIME_KEYS) should(res.body.time).have.property(key);
      const records = sandbox.records();
      should(records.map((r) => [r.ID, r.PROCESS_ID, r.ERROR])).eql([
        ["1", null, "1"],
        ["2", pid, "0"],
      ]);
      const errors = await rest(sandbox, "event.offline.get", { clear: 0, error: 1 });
      should(errors.body.result.events.map((e: { ID: string }) => e.ID)).eql(["1"]);
      const none = await rest(sandbox, "event.offline.get", { clear: 0 });
      should(none.body.result.events).have.length(0);
    });

    it("cannot mark an error record again: it stays held by the replay's process until cleared", async () => {
      sandbox.addEvents(1);
      const taken = await rest(sandbox, "event.offline.get", { clear: 0 });
      const messageId = taken.body.result.events[0].MESSAGE_ID;
      await rest(sandbox, "event.offline.error", { process_id: taken.body.result.process_id, message_id: [messageId] });
      const replay = await rest(sandbox, "event.offline.get", { clear: 0, error: 1 });
      const replayPid = replay.body.result.process_id;
      await rest(sandbox, "event.offline.error", { process_id: replayPid, message_id: [messageId] });
      should(sandbox.records()[0]).match({ PROCESS_ID: replayPid, ERROR: "1" });
      await rest(sandbox, "event.offline.clear", { process_id: replayPid, message_id: [messageId] });
      should(sandbox.records()).have.length(0);
    });

    it("requires process_id and an array message_id; an empty array changes nothing", async () => {
      const noPid = await rest(sandbox, "event.offline.error", { message_id: ["x"] });
      should(noPid.body.error).equal("ERROR_ARGUMENT");
      const notArray = await rest(sandbox, "event.offline.error", { process_id: "p", message_id: "x" });
      should(notArray.status).equal(400);
      should(notArray.body.error_description).equal("Value must be array of MESSAGE_ID values");
      sandbox.addEvents(1);
      const empty = await rest(sandbox, "event.offline.error", { process_id: "p", message_id: [] });
      should(empty.body.result).equal(true);
      should(sandbox.stats().queue.unprocessed).equal(1);
    });
  });

  describe("event.offline.list", () => {
    it("is read-only, pages by 50 with total/next, shows PROCESS_ID and ERROR, filters on them", async () => {
      sandbox.addEvents(120);
      const taken = await rest(sandbox, "event.offline.get", { clear: 0, limit: 3 });
      const pid = taken.body.result.process_id;
      const page1 = await rest(sandbox, "event.offline.list", {});
      should(page1.body.total).equal(120);
      should(page1.body.next).equal(50);
      should(page1.body.result).have.length(50);
      should(Object.keys(page1.body.result[0])).eql([...EVENT_KEYS, "PROCESS_ID", "ERROR"]);
      should(page1.body.result[0]).match({ ID: "1", PROCESS_ID: pid, ERROR: "0" });
      should(page1.body.result[3]).match({ ID: "4", PROCESS_ID: "" });
      const page3 = await rest(sandbox, "event.offline.list", { start: 100 });
      should(page3.body.result).have.length(20);
      should(page3.body).not.have.property("next");
      const mine = await rest(sandbox, "event.offline.list", { filter: { "=PROCESS_ID": pid }, order: { ID: "DESC" } });
      should(mine.body.total).equal(3);
      should(mine.body.result.map((r: { ID: string }) => r.ID)).eql(["3", "2", "1"]);
      const errors = await rest(sandbox, "event.offline.list", { filter: { ERROR: 1 } });
      should(errors.body.total).equal(0);
      should(sandbox.stats().queue.total).equal(120);
    });
  });
});
