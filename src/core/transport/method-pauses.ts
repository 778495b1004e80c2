import { sleep } from "./backoff";

// When a 429 OPERATION_TIME_LIMIT names no reset time and no earlier answer did either: the budget is 480 s of
// server time per 10 minutes, freed bit by bit, so a minute is a fair wait before asking again.
const UNKNOWN_RESET_WAIT_MS = 60_000;

/**
 * The per-method execution-time budget (REFERENCE.md "Calling the API"): once a method's budget is spent the
 * portal answers 429 OPERATION_TIME_LIMIT until `time.operating_reset_at`, for that method only. Each method
 * gets its own gate here, so calls of the paused method wait for the reset instead of asking again and again,
 * while every other method keeps going.
 */
export class MethodPauses {
  /** method (lower case) -> epoch ms until which its calls wait. */
  private readonly until = new Map<string, number>();
  /** method (lower case) -> the last `operating_reset_at` an answer reported, epoch ms. */
  private readonly lastReset = new Map<string, number>();

  /** An answer's `time.operating_reset_at`: the best guess for when a later refusal of the method ends. */
  noteReset(method: string, resetAt: number | undefined): void {
    if (resetAt !== undefined) this.lastReset.set(method.toLowerCase(), resetAt);
  }

  /**
   * The portal refused `method` with OPERATION_TIME_LIMIT: returns until when its calls now wait. The refusal's
   * own reset time is waited for in full. Without one, the method's last reported reset (or a minute) is only
   * a guess, and a guess waits at most `guessCapMs` before the method is asked again: a window's reset can be
   * ten minutes away while part of the budget comes back sooner.
   */
  pause(method: string, resetAt: number | undefined, guessCapMs: number, now = Date.now()): number {
    const key = method.toLowerCase();
    let until: number;
    if (resetAt !== undefined && resetAt > now) until = resetAt;
    else {
      const last = this.lastReset.get(key);
      until = Math.min(last !== undefined && last > now ? last : now + UNKNOWN_RESET_WAIT_MS, now + guessCapMs);
    }
    until = Math.max(until, this.until.get(key) ?? 0);
    this.until.set(key, until);
    return until;
  }

  /** How long a call of `method` must still wait (0: it may go). */
  waitFor(method: string, now = Date.now()): number {
    const key = method.toLowerCase();
    const until = this.until.get(key);
    if (until === undefined) return 0;
    if (until <= now) {
      this.until.delete(key);
      return 0;
    }
    return until - now;
  }

  /** Waits until none of `methods` is paused (a batch waits for each method it carries). */
  async wait(methods: Iterable<string>, signal: AbortSignal, onWait: (ms: number) => void): Promise<void> {
    for (;;) {
      let longest = 0;
      for (const method of methods) longest = Math.max(longest, this.waitFor(method));
      if (longest <= 0) return;
      onWait(longest);
      await sleep(longest, signal);
    }
  }
}
