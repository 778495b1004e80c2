/**
 * Rate-limits emissions to at most one per `minGapMs`, with a trailing emission: a trigger that arrives
 * inside the gap is never lost, it is merged into one emission at the end of the gap. The trigger node cannot
 * see whether the downstream drain is still running, so it bounds how often it asks instead; the get node
 * coalesces whatever still overlaps into one follow-up drain.
 */
export class EmitGate<T> {
  private lastEmit = Number.NEGATIVE_INFINITY;
  private pending: { item: T; merged: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly emit: (item: T, merged: number) => void,
    private readonly minGapMs: number,
    /** Which item a trailing emission carries when several wait; default: the latest. */
    private readonly merge: (waiting: T, incoming: T) => T = (_waiting, incoming) => incoming,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Emits now if the gap has passed, otherwise schedules one trailing emission that carries the merged item
   * (and how many triggers it stands for). Returns true when it emitted at once.
   */
  offer(item: T): boolean {
    if (this.closed) return false;
    const wait = this.lastEmit + this.minGapMs - this.now();
    if (wait <= 0 && !this.timer) {
      this.fire(item, 1);
      return true;
    }
    this.pending = this.pending
      ? { item: this.merge(this.pending.item, item), merged: this.pending.merged + 1 }
      : { item, merged: 1 };
    if (!this.timer) this.timer = setTimeout(() => this.flush(), Math.max(0, wait));
    return false;
  }

  /** True while a trailing emission is scheduled. */
  get waiting(): boolean {
    return this.timer !== undefined;
  }

  /** Drops the trailing emission, if any; later offers are ignored. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private flush(): void {
    this.timer = undefined;
    const pending = this.pending;
    this.pending = undefined;
    if (pending && !this.closed) this.fire(pending.item, pending.merged);
  }

  private fire(item: T, merged: number): void {
    this.lastEmit = this.now();
    this.emit(item, merged);
  }
}
