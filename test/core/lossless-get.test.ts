import { createServer } from "node:net";
import should from "should";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { isLossyGet } from "../../src/core/transport/delivery-safety";
import { fakePortalPerTest, webhookClientsPerTest } from "../kit/clients";
import { type FakePortal, sendError, sendResult } from "../kit/fake-portal";
import { rejection } from "../kit/rejection";

const EVENTS = { process_id: null, events: [{ ID: "1", EVENT_NAME: "ONCRMLEADADD", MESSAGE_ID: "a".repeat(32) }] };

describe("core/client never blindly retries a clear=1 event.offline.get", () => {
  let portal: FakePortal;
  const client = webhookClientsPerTest(() => portal.url, { maxAttempts: 4 });
  fakePortalPerTest(
    (p) => {
      portal = p;
    },
    (_req, res) => sendResult(res, EVENTS),
  );

  /** Drops the connection without answering on the first `drops` requests, then answers. */
  function dropFirst(drops: number): void {
    portal.handler = (_req, res, raw) => {
      if (drops-- > 0) raw.socket.destroy();
      else sendResult(res, EVENTS);
    };
  }

  it("classifies gets: clear missing or 1 deletes, only an explicit 0 keeps", () => {
    should(isLossyGet("event.offline.get", {})).be.true();
    should(isLossyGet("event.offline.get", { clear: 1 })).be.true();
    should(isLossyGet("event.offline.get", { clear: false })).be.true();
    should(isLossyGet("event.offline.get", { clear: 0 })).be.false();
    should(isLossyGet("event.offline.get", { CLEAR: "0" })).be.false();
    should(isLossyGet("event.offline.list", {})).be.false();
  });

  it("a dropped connection after sending a clear=1 get is EVENTS_MAY_BE_LOST, sent exactly once", async () => {
    dropFirst(1);
    const err = await rejection(client().call("event.offline.get", { limit: 10 }));
    should(err.code).equal("EVENTS_MAY_BE_LOST");
    should(err.retryable).be.false();
    should(err.description).match(/clear=1/);
    should((err.cause as Bitrix24Error).code).equal("NETWORK_ERROR");
    should(portal.requests).have.length(1);
  });

  it("the same drop on a clear=0 get is retried", async () => {
    dropFirst(1);
    const answer = await client().call<typeof EVENTS>("event.offline.get", { clear: 0, limit: 10 });
    should(answer.result.events).have.length(1);
    should(portal.requests).have.length(2);
  });

  it("a 500 or a timeout on a clear=1 get may have run it: EVENTS_MAY_BE_LOST", async () => {
    portal.handler = (_req, res) => sendError(res, 500, "INTERNAL_SERVER_ERROR");
    should((await rejection(client().call("event.offline.get", { clear: 1 }))).code).equal("EVENTS_MAY_BE_LOST");
    should(portal.requests).have.length(1);

    portal.handler = () => undefined;
    const err = await rejection(client({ timeoutMs: 60 }).call("event.offline.get"));
    should(err.code).equal("EVENTS_MAY_BE_LOST");
    should((err.cause as Bitrix24Error).code).equal("TIMEOUT");
    should(portal.requests).have.length(2);
  });

  it("a 503 QUERY_LIMIT_EXCEEDED (refused before running) is retried even for clear=1", async () => {
    let refusals = 2;
    portal.handler = (_req, res) => {
      if (refusals-- > 0) sendError(res, 503, "QUERY_LIMIT_EXCEEDED");
      else sendResult(res, EVENTS);
    };
    const answer = await client().call<typeof EVENTS>("event.offline.get");
    should(answer.result.events).have.length(1);
    should(portal.requests).have.length(3);
  });

  it("a refused connection (nothing sent) is retried even for clear=1", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, "127.0.0.1", () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => resolve(p));
      });
    });
    const c = client({
      portalUrl: `http://127.0.0.1:${port}`,
      auth: { type: "webhook", webhookUrl: `http://127.0.0.1:${port}/rest/1/x/` },
      retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
    });
    let retries = 0;
    c.on("retry", () => {
      retries += 1;
    });
    const err = await rejection(c.call("event.offline.get"));
    should(err.code).equal("NETWORK_ERROR");
    should(retries).equal(2);
  });

  it("a batch carrying a clear=1 get is not resent after a drop; one with only clear=0 gets is", async () => {
    dropFirst(1);
    const err = await rejection(
      client().batch({
        ack: { method: "event.offline.clear", params: { process_id: "p", id: [1] } },
        next: { method: "event.offline.get", params: { limit: 5 } },
      }),
    );
    should(err.code).equal("EVENTS_MAY_BE_LOST");
    should(portal.requests).have.length(1);

    portal.requests.length = 0;
    portal.handler = (_req, res, raw) => {
      if (portal.requests.length === 1) raw.socket.destroy();
      else sendResult(res, { result: { next: EVENTS }, result_error: [], result_total: [], result_next: [] });
    };
    const outcome = await client().batch({ next: { method: "event.offline.get", params: { clear: 0 } } });
    should(outcome.result.next).eql(EVENTS);
    should(portal.requests).have.length(2);
  });

  it("a clear=1 get travels on a fresh connection, other calls reuse kept-alive ones", async () => {
    const c = client();
    await c.call("event.offline.get", { clear: 0 });
    await c.call("event.offline.get", { clear: 1 });
    should(portal.requests[0].headers.connection).equal("keep-alive");
    should(portal.requests[1].headers.connection).equal("close");
  });
});
