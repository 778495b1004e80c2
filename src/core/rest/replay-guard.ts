import { createHash } from "node:crypto";

// Used by both kinds of signed POST the portal sends us: offline-event notifications (core/queue) and
// installations (core/auth). It lives down here in core/rest so that neither of those folders imports the other.

/**
 * Remembers notifications seen within a window so a replayed or duplicated delivery (same ts and same body)
 * triggers at most once. Memory stays bounded: entries expire, and the oldest go first past maxEntries.
 */
export class ReplayGuard {
  private readonly seenUntil = new Map<string, number>();

  constructor(
    private readonly windowMs = 60_000,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The key of a notification: its ts and a hash of the body as received. */
  static keyOf(ts: number | string | null, raw: string): string {
    return `${ts ?? ""}:${createHash("sha256").update(raw, "utf8").digest("base64")}`;
  }

  /** True when the key was seen within the window (a replay); otherwise records it and returns false. */
  isReplay(key: string): boolean {
    const now = this.now();
    this.prune(now);
    const until = this.seenUntil.get(key);
    if (until !== undefined && until > now) return true;
    this.seenUntil.set(key, now + this.windowMs);
    while (this.seenUntil.size > this.maxEntries) {
      const oldest = this.seenUntil.keys().next().value as string;
      this.seenUntil.delete(oldest);
    }
    return false;
  }

  /** Forgets a key, e.g. when its request failed for a reason that a repeat of it may not meet again. */
  forget(key: string): void {
    this.seenUntil.delete(key);
  }

  get size(): number {
    return this.seenUntil.size;
  }

  // Insertion order equals expiry order (one fixed window), so pruning stops at the first live entry.
  private prune(now: number): void {
    for (const [key, until] of this.seenUntil) {
      if (until > now) break;
      this.seenUntil.delete(key);
    }
  }
}
