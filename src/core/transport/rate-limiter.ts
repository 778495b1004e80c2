import { performance } from "node:perf_hooks";
import { Bitrix24Error } from "../rest/errors";

export interface BucketSettings {
  /** How fast the portal's counter drains (requests per second). */
  perSecond: number;
  /** How high the counter may go before the portal answers 503 QUERY_LIMIT_EXCEEDED. */
  burst: number;
}

/**
 * What a client draws its requests from: this process's LeakyBucket, or a bucket shared by several instances
 * (the PostgreSQL store's, DESIGN.md "Scale-out" (2)).
 */
export interface RateGate {
  /** Waits for a slot and takes it; resolves with the milliseconds waited, rejects with the signal's reason. */
  acquire(signal?: AbortSignal): Promise<number>;
  /** How long (ms) a request arriving now would wait, as far as this process knows. */
  wouldWait(): number;
  /** The portal answered 503 QUERY_LIMIT_EXCEEDED: its bucket is full. */
  penalize(): void;
  /** Requests in the bucket now, as far as this process knows (the operations view shows it). */
  readonly fill: number;
  readonly settings: BucketSettings;
  /** Requests of this process waiting for a slot right now. */
  readonly waiting: number;
}

interface Waiter {
  enqueuedAt: number;
  resolve: (waitedMs: number) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

// Floating-point drain arithmetic must not make a request wait for a rounding error.
const EPSILON = 1e-9;

/**
 * Requests of the burst we never use. Our copy of the bucket drains by the time requests leave this process;
 * the portal's drains by the time they arrive there. When a request reaches the portal sooner after its
 * predecessor than it left after it (the first requests of a burst queue behind connection set-up and a busy
 * portal, the next one finds an idle socket), the portal has drained less than we think, and a bucket run at
 * exactly `burst` gets a 503 at the end of the burst (the benchmark saw one per drain). One request of headroom
 * absorbs such jitter up to 1 / perSecond seconds (500 ms at 2/s) and costs nothing once the burst is spent:
 * the steady rate stays `perSecond`. A burst of 1 has no request to spare.
 */
const HEADROOM = 1;

/**
 * A client-side copy of the portal's leaky bucket: every request adds 1, the level drains `perSecond` per
 * second, and a request goes out only while the level stays within `burst - 1` (see HEADROOM) — so over any
 * window of t seconds at most `burst - 1 + perSecond * t` requests leave, one fewer than the portal tolerates.
 * Waiters are served strictly first come, first served; an aborted waiter leaves the queue without using a slot
 * (a redeployed config node must not inherit the reservations of the one it replaced).
 */
export class LeakyBucket implements RateGate {
  private perSecond = 1;
  private burst = 1;
  /** The highest level we let a request lift the bucket to: `burst` less the headroom. */
  private capacity = 1;
  private level = 0;
  private updatedAt = performance.now();
  private readonly queue: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(o: BucketSettings) {
    this.configure(o);
  }

  get settings(): BucketSettings {
    return { perSecond: this.perSecond, burst: this.burst };
  }

  /** Changes the rate and burst; queued requests are re-timed under the new settings. */
  configure(o: BucketSettings): void {
    if (!(Number.isFinite(o.perSecond) && o.perSecond > 0) || !(Number.isFinite(o.burst) && o.burst >= 1)) {
      throw new Bitrix24Error({
        code: "INVALID_CONFIG",
        description: `rate limit must be a positive number of requests per second and a burst of at least 1 (got ${o.perSecond}/s, burst ${o.burst})`,
      });
    }
    this.drain();
    this.perSecond = o.perSecond;
    this.burst = Math.floor(o.burst);
    this.capacity = this.burst > HEADROOM ? this.burst - HEADROOM : this.burst;
    this.pump();
  }

  /** How long (ms) a request arriving now would wait: for status displays ("rate-limited"). */
  wouldWait(): number {
    this.drain();
    const excess = this.level + this.queue.length + 1 - this.capacity;
    return excess > EPSILON ? Math.ceil((excess / this.perSecond) * 1000) : 0;
  }

  /** Waits for a slot and takes it; resolves with the milliseconds waited (fractional), rejects with the signal's reason. */
  acquire(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.drain();
    if (this.queue.length === 0 && this.level + 1 <= this.capacity + EPSILON) {
      this.level += 1;
      return Promise.resolve(0);
    }
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = { enqueuedAt: performance.now(), resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const index = this.queue.indexOf(waiter);
          if (index >= 0) this.queue.splice(index, 1);
          reject(signal.reason);
          this.schedule();
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
      this.schedule();
    });
  }

  /**
   * After the portal answered 503 QUERY_LIMIT_EXCEEDED its bucket is full, whatever our copy believed. The
   * level mirrors the portal's (full = `burst`), so the headroom is restored before the next request leaves.
   */
  penalize(): void {
    this.drain();
    this.level = Math.max(this.level, this.burst);
    this.schedule();
  }

  /** Requests in the bucket now (drained to this moment): what an operations view shows as its fill. */
  get fill(): number {
    this.drain();
    return this.level;
  }

  /** Requests waiting for a slot right now. */
  get waiting(): number {
    return this.queue.length;
  }

  private drain(): void {
    const now = performance.now();
    this.level = Math.max(0, this.level - ((now - this.updatedAt) / 1000) * this.perSecond);
    this.updatedAt = now;
  }

  private pump(): void {
    this.drain();
    while (this.queue.length > 0 && this.level + 1 <= this.capacity + EPSILON) {
      const waiter = this.queue.shift()!;
      this.level += 1;
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener("abort", waiter.onAbort);
      waiter.resolve(performance.now() - waiter.enqueuedAt);
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0) return;
    const excess = this.level + 1 - this.capacity;
    const ms = Math.max(1, Math.ceil((excess / this.perSecond) * 1000));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, ms);
  }
}

const sharedBuckets = new Map<string, LeakyBucket>();

/**
 * The one bucket of a portal + application in this process. The portal counts per application per portal, so
 * every config node (and every redeployed copy of one) for that pair must draw from the same bucket; a later
 * call with other settings re-configures it (the newest deploy wins).
 */
export function sharedBucket(key: string, o: BucketSettings): LeakyBucket {
  const existing = sharedBuckets.get(key);
  if (existing) {
    const current = existing.settings;
    if (current.perSecond !== o.perSecond || current.burst !== Math.floor(o.burst)) existing.configure(o);
    return existing;
  }
  const bucket = new LeakyBucket(o);
  sharedBuckets.set(key, bucket);
  return bucket;
}
