/**
 * Counts per wall-clock second over a fixed window (15 minutes by default): the sidebar's live chart. A ring of
 * plain numbers, so adding is O(1) and a drain of thousands of events per second costs an index and an add.
 */
export class PerSecondSeries {
  private readonly counts: Float64Array;
  /** Epoch second of the newest slot written (0: nothing yet). */
  private newest = 0;

  constructor(readonly seconds = 900) {
    this.counts = new Float64Array(seconds);
  }

  add(value: number, nowMs = Date.now()): void {
    const second = Math.floor(nowMs / 1000);
    this.advance(second);
    this.counts[second % this.seconds] += value;
  }

  /**
   * The counts of the seconds from `fromSecond` (clamped to the window) up to and including the second of
   * `nowMs`, oldest first. Seconds nobody wrote count 0.
   */
  since(fromSecond: number, nowMs = Date.now()): { start: number; values: number[] } {
    const now = Math.floor(nowMs / 1000);
    this.advance(now);
    const start = Math.max(fromSecond, now - this.seconds + 1);
    const values: number[] = [];
    for (let s = start; s <= now; s++) values.push(this.counts[s % this.seconds]);
    return { start, values };
  }

  /** Zeroes the slots between the newest written second and `second`: they passed without a count. */
  private advance(second: number): void {
    if (second <= this.newest) return;
    const gap = Math.min(this.seconds, second - this.newest);
    for (let i = 1; i <= gap; i++) this.counts[(this.newest + i) % this.seconds] = 0;
    // a first write (newest 0) is a gap as wide as the window: everything zeroed, as it was anyway
    this.newest = second;
  }
}
