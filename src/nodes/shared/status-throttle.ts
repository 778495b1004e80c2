/**
 * Draws a node's status at most every `intervalMs`, the latest state always drawn last: a drain changes counts
 * thousands of times a second, and each draw costs a translation and a runtime event for numbers nobody can read
 * at that pace.
 */
export class StatusThrottle {
  private shownAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly draw: () => void,
    private readonly intervalMs = 200,
  ) {}

  /** Draws now (a waiting draw is dropped: this one shows the newer state). */
  now(): void {
    this.cancel();
    this.shownAt = Date.now();
    this.draw();
  }

  /** Draws now if the last draw is old enough, else once the interval is up (whatever the state is then). */
  soon(): void {
    if (this.timer) return;
    const wait = this.intervalMs - (Date.now() - this.shownAt);
    if (wait <= 0) {
      this.now();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.now();
    }, wait);
  }

  /** Drops a waiting draw (close, or a status set directly that must not be painted over). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
