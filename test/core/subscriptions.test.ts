import should from "should";
import { handlerUrl, parseEventList, planBindings } from "../../src/core/queue/subscriptions";
import { Bitrix24Error } from "../../src/core/rest/errors";
import type { EventBinding } from "../../src/core/rest/types";

describe("subscriptions", () => {
  it("parses the event list: trims, upper-cases, dedupes, rejects non-names and ONOFFLINEEVENT", () => {
    should(parseEventList(" ONCRMDEALUPDATE, ontaskadd;ONCRMDEALUPDATE  x-y ONOFFLINEEVENT")).eql({
      events: ["ONCRMDEALUPDATE", "ONTASKADD"],
      rejected: ["x-y", "ONOFFLINEEVENT"],
    });
    should(parseEventList("")).eql({ events: [], rejected: [] });
    should(parseEventList(undefined)).eql({ events: [], rejected: [] });
  });

  it("builds the handler from public URL, httpNodeRoot and path without doubled slashes", () => {
    should(handlerUrl("https://nr.example.com/", "/", "/b24/offline")).equal("https://nr.example.com/b24/offline");
    should(handlerUrl("https://nr.example.com", "/api/", "b24")).equal("https://nr.example.com/api/b24");
    should(handlerUrl("https://nr.example.com/base", "api", "/b24")).equal("https://nr.example.com/base/api/b24");
    should(handlerUrl("http://127.0.0.1:1880", undefined, "/x")).equal("http://127.0.0.1:1880/x");
    should.throws(() => handlerUrl("not a url", "/", "/x"), Bitrix24Error);
    should.throws(() => handlerUrl("ftp://host", "/", "/x"), /http/);
  });

  it("plans only the missing bindings", () => {
    const existing: EventBinding[] = [
      { event: "ONCRMDEALUPDATE", connector_id: "", offline: 1 },
      { event: "ONTASKADD", connector_id: "other", offline: 1 },
      { event: "ONCRMCONTACTADD", handler: "https://x.example.com/h", offline: 0 },
      { event: "ONOFFLINEEVENT", handler: "https://old.example.com/h", offline: 0 },
    ];
    const plan = planBindings(existing, {
      offlineEvents: ["ONCRMDEALUPDATE", "ONTASKADD", "ONCRMCONTACTADD"],
      handler: "https://nr.example.com/b24",
      minTimeout: 1,
    });
    should(plan).eql([
      { event: "ONTASKADD", event_type: "offline" },
      { event: "ONCRMCONTACTADD", event_type: "offline" },
      { event: "ONOFFLINEEVENT", handler: "https://nr.example.com/b24", options: { minTimeout: 1 } },
    ]);
  });

  it("matches the connector and the push handler exactly, and plans nothing when all is bound", () => {
    const existing: EventBinding[] = [
      { event: "ontaskadd", connector_id: "crm1", offline: 1 },
      { event: "ONOFFLINEEVENT", handler: "https://nr.example.com/b24", offline: 0 },
    ];
    should(
      planBindings(existing, {
        offlineEvents: ["ONTASKADD"],
        authConnector: "crm1",
        handler: "https://nr.example.com/b24",
      }),
    ).eql([]);
    should(planBindings(existing, { offlineEvents: ["ONTASKADD"] })).eql([
      { event: "ONTASKADD", event_type: "offline" },
    ]);
    should(planBindings(existing, { offlineEvents: ["ONTASKADD"], authConnector: "crm2" })).eql([
      { event: "ONTASKADD", event_type: "offline", auth_connector: "crm2" },
    ]);
  });
});
