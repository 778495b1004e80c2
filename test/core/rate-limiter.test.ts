import { performance } from "node:perf_hooks";
import should from "should";
import { Bitrix24Client, type RequestInfo } from "../../src/core/client/client";
import { LeakyBucket, sharedBucket } from "../../src/core/transport/rate-limiter";
import { LeakyBucket as PortalBucket } from "../../src/sandbox/limits/leaky-bucket";
import { FakePortal, sendResult } from "../kit/fake-portal";

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
    // One request of the burst is kept as headroom.
    should(worstExcessInOrder(admitted, perSecond, burst - 1)).be.belowOrEqual(1e-6);
    should(order).eql(Array.from({ length: 500 }, (_, i) => i));
    // And it does not dawdle: (500 - 19) / 400 s = 1.2 s.
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

  it("penalize() fills the bucket: the next request waits until the headroom is back (two drain steps)", async () => {
    const bucket = new LeakyBucket({ perSecond: 50, burst: 5 });
    should(await bucket.acquire()).equal(0);
    bucket.penalize();
    should(bucket.wouldWait()).be.within(35, 41);
    const waited = await bucket.acquire();
    should(waited).be.within(35, 60);
  });

  // The portal counts a request when it arrives, we count it when it leaves: the bench saw one 503 per drain
  // right after the burst. Admission times come from our bucket (real clock); arrivals are admission + a modelled
  // network delay, replayed through the sandbox's bucket (the portal's rules) on a virtual clock.
  async function portalRefusals(
    settings: { perSecond: number; burst: number },
    requests: number,
    delayMs: (index: number) => number,
  ): Promise<{ refused: number; admitted: number[] }> {
    const bucket = new LeakyBucket(settings);
    const admitted: number[] = [];
    await Promise.all(
      Array.from({ length: requests }, (_, i) => {
        // The reading before acquire() is at or before the true admission: arrivals are early, never late.
        const before = performance.now();
        return bucket.acquire().then((waited) => {
          admitted[i] = before + waited;
        });
      }),
    );
    const arrivals = admitted.map((t, i) => t + delayMs(i)).sort((a, b) => a - b);
    let now = arrivals[0];
    const portal = new PortalBucket(settings.burst, settings.perSecond, () => now);
    let refused = 0;
    for (const t of arrivals) {
      now = t;
      if (!portal.tryTake()) refused += 1;
    }
    return { refused, admitted };
  }

  it("no 503 when the burst's requests reach the portal later than the next ones (burst, then steady)", async () => {
    const settings = { perSecond: 20, burst: 5 };
    // The burst queues behind connection set-up and a busy portal (30 ms); later requests find it idle (1 ms).
    // 29 ms less delay than a step (50 ms): what one request of headroom absorbs; a bucket run to the full
    // burst lets the portal see the 6th request 21 ms after the 5th arrived, before it drained one.
    const { refused, admitted } = await portalRefusals(settings, 30, (i) => (i < settings.burst ? 30 : 1));
    should(refused).equal(0);
    // And the steady phase is not slowed: 30 - 4 requests after the burst at 20/s take 1.3 s.
    const span = Math.max(...admitted) - Math.min(...admitted);
    should(span).be.within(1250, 1500);
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
