import should from "should";
import { Bitrix24Client } from "../../src/core/client/client";
import { OfflineEventsApi, parseGetResult, validateFilter, validateOrder } from "../../src/core/queue/offline-api";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { FakePortal, type SeenRequest, sendResult } from "../kit/fake-portal";

const MID = "0123456789abcdef0123456789abcdef";

function refusal(fn: () => unknown): Bitrix24Error {
  try {
    fn();
  } catch (err) {
    should(err).be.instanceOf(Bitrix24Error);
    should((err as Bitrix24Error).code).equal("INVALID_ARGUMENT");
    return err as Bitrix24Error;
  }
  throw new Error("expected INVALID_ARGUMENT");
}

describe("core/offline-api filter and order validation", () => {
  it("normalises operators, field case and bare fields", () => {
    should(validateFilter({ ">=id": 5, EVENT_NAME: "ONCRMLEADADD", "!MESSAGE_ID": MID })).eql({
      ">=ID": 5,
      "=EVENT_NAME": "ONCRMLEADADD",
      "!MESSAGE_ID": MID,
    });
    should(validateFilter('{"<TIMESTAMP_X": "2024-07-18T12:32:31+02:00"}')).eql({
      "<TIMESTAMP_X": "2024-07-18T12:32:31+02:00",
    });
    should(validateFilter(undefined)).eql({});
    should(validateFilter("  ")).eql({});
    should(validateOrder({ id: "desc", TIMESTAMP_X: "ASC" })).eql({ ID: "DESC", TIMESTAMP_X: "ASC" });
  });

  it("names the bad field, operator, key or value", () => {
    should(refusal(() => validateFilter({ "=PROCESS_ID": "x" })).message).match(
      /field "PROCESS_ID" in key "=PROCESS_ID" is not filterable; allowed: ID, TIMESTAMP_X, EVENT_NAME, MESSAGE_ID/,
    );
    should(validateFilter({ "=PROCESS_ID": "x", ERROR: 1 }, true)).eql({ "=PROCESS_ID": "x", "=ERROR": 1 });
    should(refusal(() => validateFilter({ "><ID": 5 })).message).match(/operator "><" in key "><ID" is not supported/);
    should(refusal(() => validateFilter({ "=ID": [1, 2] })).message).match(
      /value of "=ID" must be a string or a number.*arrays/,
    );
    should(refusal(() => validateFilter({ ">TIMESTAMP_X": "yesterday" })).message).match(/ISO 8601 with an offset/);
    should(refusal(() => validateFilter({ "=ID": "abc" })).message).match(/non-negative integer/);
    should(refusal(() => validateFilter({ "ID=": 1 })).message).match(/key "ID=" is not <operator><FIELD>/);
    should(refusal(() => validateFilter("{nope")).message).match(/not valid JSON/);
    should(refusal(() => validateFilter([1])).message).match(/expected an object/);
    should(refusal(() => validateFilter({ ID: 1, "=ID": 2 })).message).match(/repeats the condition =ID/);
    should(refusal(() => validateOrder({ EVENT_DATA: "ASC" })).message).match(/field "EVENT_DATA" cannot be sorted on/);
    should(refusal(() => validateOrder({ ID: "UP" })).message).match(/direction of "ID" must be "ASC" or "DESC"/);
  });
});

describe("core/offline-api wrappers", () => {
  let portal: FakePortal;
  let client: Bitrix24Client;
  let api: OfflineEventsApi;
  let answer: (req: SeenRequest) => { result: unknown; extra?: Record<string, unknown> };

  beforeEach(async () => {
    answer = () => ({ result: true });
    portal = await FakePortal.start((req, res) => {
      const a = answer(req);
      sendResult(res, a.result, a.extra);
    });
    client = new Bitrix24Client({
      portalUrl: portal.url,
      auth: { type: "webhook", webhookUrl: `${portal.url}/rest/1/s/` },
      rateLimit: false,
      retry: { maxAttempts: 1 },
    });
    api = new OfflineEventsApi(client);
  });

  afterEach(async () => {
    client.close();
    await portal.close();
  });

  it("get sends the seed's parameter names and parses process_id/events", async () => {
    answer = () => ({
      result: { process_id: "p".repeat(32), events: [{ ID: "7", EVENT_NAME: "ONCRMLEADADD", MESSAGE_ID: MID }] },
    });
    const params = {
      filter: { ">=ID": 5 },
      order: { ID: "ASC" as const },
      limit: 10,
      clear: 0 as const,
      error: 0 as const,
      auth_connector: "conn",
    };
    const sent = structuredClone(params); // what must reach the portal, whatever get() does with its argument
    const got = await api.get(params);
    should(got.process_id).equal("p".repeat(32));
    should(got.events[0].ID).equal("7");
    should(portal.requests[0].restMethod).equal("event.offline.get");
    should(portal.requests[0].body).eql(sent);
    should(parseGetResult({ process_id: null, events: [] })).eql({ process_id: null, events: [] });
    should(() => parseGetResult({ events: {} })).throw(/events is not a list/);
  });

  it("get refuses bad limit/flags before any HTTP", () => {
    should(refusal(() => api.getCommand({ limit: 0 })).message).match(/limit must be a positive integer/);
    should(refusal(() => api.getCommand({ clear: 2 as 0 })).message).match(/clear must be 0 or 1/);
    should(refusal(() => api.getCommand({ process_id: " " })).message).match(/process_id is required/);
    should(portal.requests).be.empty();
  });

  it("clear refuses empty lists and id together with message_id, without HTTP", async () => {
    for (const bad of [
      { process_id: "p", id: [] },
      { process_id: "p", message_id: [] },
      { process_id: "p", id: [1], message_id: [MID] },
      { process_id: "", id: [1] },
      { process_id: "p", id: [0] },
      { process_id: "p", message_id: ["short"] },
    ]) {
      const err = (await api.clear(bad).catch((e: unknown) => e)) as Bitrix24Error;
      should(err.code).equal("INVALID_ARGUMENT");
    }
    should(refusal(() => api.clearCommand({ process_id: "p", id: [] })).message).match(/clear every record/);
    should(refusal(() => api.clearCommand({ process_id: "p", id: [1], message_id: [MID] })).message).match(
      /never both/,
    );
    should(portal.requests).be.empty();
  });

  it("clear and error send ids as the seeds name them (deduplicated) and return the boolean result", async () => {
    should(
      await api.clear({ process_id: "p1", id: [3, "3" as unknown as number, 4], auth_connector: "conn" }),
    ).be.true();
    should(await api.error({ process_id: "p1", message_id: [MID, MID] })).be.true();
    should(await api.clear({ process_id: "p1" })).be.true();
    should(portal.requests.map((r) => [r.restMethod, r.body])).eql([
      ["event.offline.clear", { process_id: "p1", id: [3, 4], auth_connector: "conn" }],
      ["event.offline.error", { process_id: "p1", message_id: [MID] }],
      ["event.offline.clear", { process_id: "p1" }],
    ]);
    should(refusal(() => api.errorCommand({ process_id: "p1", message_id: [] })).message).match(/non-empty/);
  });

  it("list and listAll page through `next` with start = (page - 1) * 50", async () => {
    const all = Array.from({ length: 120 }, (_, i) => ({ ID: String(i + 1), PROCESS_ID: null, ERROR: "0" }));
    answer = (req) => {
      const start = Number(req.body.start ?? 0);
      const page = all.slice(start, start + 50);
      const extra: Record<string, unknown> = { total: all.length };
      if (start + 50 < all.length) extra.next = start + 50;
      return { result: page, extra };
    };
    const first = await api.list({ filter: { "=ERROR": 0 } });
    should(first.records).have.length(50);
    should(first.total).equal(120);
    should(first.next).equal(50);
    should(portal.requests[0].body).eql({ filter: { "=ERROR": 0 } });
    const records = await api.listAll({});
    should(records.map((r) => r.ID)).eql(all.map((r) => r.ID));
    should(portal.requests.slice(1).map((r) => r.body.start)).eql([0, 50, 100]);
  });

  it("bind, unbind, bindings and feature", async () => {
    answer = (req) => {
      switch (req.restMethod) {
        case "event.unbind":
          return { result: { count: 2 } };
        case "event.get":
          return {
            result: [
              { event: "ONCRMLEADADD", connector_id: "", offline: 1 },
              { event: "ONOFFLINEEVENT", handler: "https://h.example/x", auth_type: 0, offline: 0 },
            ],
          };
        case "feature.get":
          return { result: { value: req.body.CODE === "rest_offline_extended" ? "Y" : "N" } };
        default:
          return { result: true };
      }
    };
    should(await api.bind({ event: "ONCRMLEADADD", event_type: "offline" })).be.true();
    should(await api.unbind({ event: "ONCRMLEADADD", event_type: "offline" })).equal(2);
    const bindings = await api.bindings();
    should(bindings).eql([
      { event: "ONCRMLEADADD", connector_id: "", offline: 1 },
      { event: "ONOFFLINEEVENT", handler: "https://h.example/x", auth_type: "0", offline: 0 },
    ]);
    should(await api.feature("rest_offline_extended")).be.true();
    should(await api.feature("rest_auth_connector")).be.false();
    should(portal.requests[0].body).eql({ event: "ONCRMLEADADD", event_type: "offline" });
    should(portal.requests.at(-1)!.body).eql({ CODE: "rest_auth_connector" });
    const err = (await api.bind({ event: "ONOFFLINEEVENT" }).catch((e: unknown) => e)) as Bitrix24Error;
    should(err.description).match(/handler \(a URL\) is required unless event_type is offline/);
  });

  it("feature() counts an on-premise portal without a feature check as available", async () => {
    answer = () => ({ result: { value: "en_selfhosted" } });
    should(await api.feature("rest_offline_extended")).be.true();
  });

  it("feature() answers of an unknown shape are 'not known' (undefined), not 'no'", async () => {
    for (const result of [{ value: "maybe" }, { other: "Y" }, [], null, "", { value: { nested: true } }]) {
      answer = () => ({ result });
      should(await api.feature("rest_offline_extended")).be.undefined();
    }
    for (const [result, expected] of [
      [{ value: "N" }, false],
      [{ value: "n" }, false],
      [false, false],
      [{ value: "Y" }, true],
      [true, true],
    ] as const) {
      answer = () => ({ result });
      should(await api.feature("rest_offline_extended")).equal(expected);
    }
  });
});
