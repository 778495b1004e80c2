/**
 * The portal's request limiter: a leaky bucket per application. Each request adds 1, the level drains
 * `perSecond` per second continuously, and a request that would lift the level above `burst` is refused
 * (and, being refused, adds nothing).
 */
export class LeakyBucket {
  private level = 0;
  private updatedAt: number;

  constructor(
    private burst: number,
    private perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    this.updatedAt = now();
  }

  /** True when the request fits and was counted; false when the portal would answer QUERY_LIMIT_EXCEEDED. */
  tryTake(): boolean {
    this.drain();
    if (this.level + 1 > this.burst) return false;
    this.level += 1;
    return true;
  }

  configure(burst: number, perSecond: number): void {
    this.drain();
    this.burst = burst;
    this.perSecond = perSecond;
  }

  current(): number {
    this.drain();
    return this.level;
  }

  empty(): void {
    this.level = 0;
    this.updatedAt = this.now();
  }

  private drain(): void {
    const t = this.now();
    this.level = Math.max(0, this.level - ((t - this.updatedAt) / 1000) * this.perSecond);
    this.updatedAt = t;
  }
}
