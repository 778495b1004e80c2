import { performance } from "node:perf_hooks";
import should from "should";
import { Bitrix24Client, type RequestInfo } from "../../src/core/client";
import { LeakyBucket, sharedBucket } from "../../src/core/rate-limiter";
import { FakePortal, sendResult } from "./fixtures/fake-portal";

/** Largest number of starts inside any window [t_i, t_j] minus what the bucket allows for that window. */
function worstExcess(starts: number[], perSecond: number, burst: number): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let worst = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i; j < sorted.length; j++) {
      const count = j - i + 1;
      const allowed = burst + (perSecond * (sorted[j] - sorted[i])) / 1000;
      worst = Math.max(worst, count - allowed);
    }
  }
  return worst;
}

/** Same, for admissions known to happen in index order, each somewhere in [earliest, latest]. */
function worstExcessInOrder(admitted: Array<[number, number]>, perSecond: number, burst: number): number {
  let worst = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < admitted.length; i++) {
    for (let j = i; j < admitted.length; j++) {
      const span = Math.max(0, admitted[j][1] - admitted[i][0]);
      worst = Math.max(worst, j - i + 1 - (burst + (perSecond * span) / 1000));
    }
  }
  return worst;
}

describe("core/rate-limiter", () => {
  it("500 queued acquisitions never exceed burst + rate * t, in arrival order", async () => {
    const perSecond = 400;
    const burst = 20;
    const bucket = new LeakyBucket({ perSecond, burst });
    // Admission time = call time + time waited (measured inside the bucket, free of callback lag). The call
    // time is bracketed by clock reads before and after acquire(), so a pause between them cannot fake a burst.
    const admitted: Array<[number, number]> = [];
    const order: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 500 }, (_, i) => {
        const before = performance.now();
        const promise = bucket.acquire();
        const after = performance.now();
        return promise.then((waited) => {
          admitted[i] = [before + waited, after + waited];
          order.push(i);
        });
      }),
    );
    const elapsed = performance.now() - t0;
    should(worstExcessInOrder(admitted, perSecond, burst)).be.belowOrEqual(1e-6);
    should(order).eql(Array.from({ length: 500 }, (_, i) => i));
    // And it does not dawdle: (500 - 20) / 400 s = 1.2 s.
    should(elapsed).be.within(1100, 2000);
    should(bucket.waiting).equal(0);
  });

  it("sends 60 concurrent HTTP calls of one client within the limit", async () => {
    const portal = await FakePortal.start((_req, res) => sendResult(res, true));
    const perSecond = 50;
    const burst = 5;
    const client = new Bitrix24Client({
      portalUrl: portal.url,
      auth: { type: "webhook", webhookUrl: `${portal.url}/rest/1/s/` },
      rateLimit: { perSecond, burst },
    });
    let rateLimited = 0;
    client.on("rate-limited", () => {
      rateLimited += 1;
    });
    const sentAt: number[] = [];
    client.on("request", (info: RequestInfo) => sentAt.push(performance.now() - info.ms));
    try {
      await Promise.all(Array.from({ length: 60 }, () => client.call("event.get")));
      should(portal.requests).have.length(60);
      should(sentAt).have.length(60);
      // Requests let go in one tick leave one after another (axios set-up): allow 10 ms of that lag.
      should(worstExcess(sentAt, perSecond, burst)).be.belowOrEqual((perSecond * 10) / 1000);
      should(rateLimited).be.above(40);
    } finally {
      client.close();
      await portal.close();
    }
  });

  it("penalize() makes the next request wait one drain step", async () => {
    const bucket = new LeakyBucket({ perSecond: 50, burst: 5 });
    should(await bucket.acquire()).equal(0);
    bucket.penalize();
    should(bucket.wouldWait()).be.within(15, 21);
    const waited = await bucket.acquire();
    should(waited).be.within(15, 40);
  });

  it("an aborted waiter leaves the queue without using a slot", async () => {
    const bucket = new LeakyBucket({ perSecond: 20, burst: 1 });
    await bucket.acquire();
    const controller = new AbortController();
    const doomed = bucket.acquire(controller.signal);
    const next = bucket.acquire();
    should(bucket.waiting).equal(2);
    controller.abort(new Error("gone"));
    await should(doomed).be.rejectedWith("gone");
    should(bucket.waiting).equal(1);
    // The survivor gets the first free slot (~50 ms), not the second (~100 ms).
    should(await next).be.below(80);
  });

  it("one shared bucket per key; later settings re-configure it", () => {
    const a = sharedBucket("portal.example\napp.1", { perSecond: 2, burst: 50 });
    const b = sharedBucket("portal.example\napp.1", { perSecond: 5, burst: 250 });
    const other = sharedBucket("portal.example\napp.2", { perSecond: 2, burst: 50 });
    should(a).equal(b);
    should(a).not.equal(other);
    should(a.settings).eql({ perSecond: 5, burst: 250 });
    should(() => new LeakyBucket({ perSecond: 0, burst: 1 })).throw(/rate limit/);
  });
});
