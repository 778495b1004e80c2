import { createHook } from "node:async_hooks";
import { sep } from "node:path";
import should from "should";
import { Bitrix24Client, type ClientOptions } from "../../src/core/client/client";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { FakePortal, sendError } from "../kit/fake-portal";

/** Timers created by src/core that are still pending (async_hooks sees every setTimeout/setInterval). */
function trackCoreTimers(): { pending: () => number; stop: () => void } {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type === "Timeout") live.set(id, new Error().stack ?? "");
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  const core = `${sep}src${sep}core${sep}`;
  return {
    pending: () => [...live.values()].filter((stack) => stack.includes(core)).length,
    stop: () => hook.disable(),
  };
}

describe("core/client close()", () => {
  let portal: FakePortal;

  beforeEach(async () => {
    portal = await FakePortal.start(() => undefined);
  });

  afterEach(async () => {
    await portal.close();
  });

  function client(options: Partial<ClientOptions> = {}): Bitrix24Client {
    return new Bitrix24Client({
      portalUrl: portal.url,
      auth: { type: "webhook", webhookUrl: `${portal.url}/rest/1/s/` },
      ...options,
    });
  }

  it("rejects calls in flight, queued on the bucket and backing off with CLOSED, and leaves no timers", async () => {
    const timers = trackCoreTimers();
    let count = 0;
    portal.handler = (req, res) => {
      count += 1;
      // The first request hangs (in flight); the backoff call is refused with a 503.
      if (req.body.kind === "backoff") sendError(res, 503, "QUERY_LIMIT_EXCEEDED");
    };
    const c = client({
      // Burst 3: two requests go at once (the bucket keeps one as headroom), the rest queue.
      rateLimit: { perSecond: 0.5, burst: 3 },
      retry: { maxAttempts: 6, baseDelayMs: 10000, maxDelayMs: 10000 },
    });
    const inFlight = c.call("event.get", { kind: "hang" }).catch((e: unknown) => e);
    const backingOff = c.call("event.get", { kind: "backoff" }).catch((e: unknown) => e);
    const queued = Array.from({ length: 5 }, () => c.call("event.get").catch((e: unknown) => e));
    await new Promise((r) => setTimeout(r, 80));
    should(count).equal(2);
    // The bucket's wake-up and the backoff sleep are pending.
    should(timers.pending()).be.aboveOrEqual(2);

    c.close();
    const results = await Promise.all([inFlight, backingOff, ...queued]);
    for (const err of results) {
      should(err).be.instanceOf(Bitrix24Error);
      should((err as Bitrix24Error).code).equal("CLOSED");
    }
    // async_hooks reports destroyed timers in batches: give it a turn.
    await new Promise((r) => setTimeout(r, 20));
    should(timers.pending()).equal(0);
    timers.stop();
    const after = (await c.call("event.get").catch((e: unknown) => e)) as Bitrix24Error;
    should(after.code).equal("CLOSED");
    should(count).equal(2);
  });

  it("is idempotent", () => {
    const c = client();
    c.close();
    c.close();
  });
});
