import { EXTENDED_MODE_FEATURE, extendedModeError } from "../queue/extended-mode";
import type { Bitrix24Error } from "../rest/errors";
import type { ConsumerApi, ConsumerMode, Tally } from "./consumer-types";

/**
 * The consumer's start-up, run once before its first fetch (and again after a start that failed, e.g. on the
 * network): in ack mode, the portal's extended mode (feature.get), then what dead consumers of the queue held
 * (takeover.ts). And the answer to a portal without extended mode, whenever it shows (feature.get, or a get's
 * license error): fall back to auto mode when the user allowed at-most-once, else refuse ack mode for good.
 * Apart from offline-consumer.ts because it is a gate of its own, with its own memory (started, refused).
 */

export interface StartUpHooks {
  mode(): ConsumerMode;
  /** The user allowed at-most-once delivery when the portal cannot hold records (auto mode instead). */
  allowAtMostOnce: boolean;
  /** Switch the consumer to auto mode (only called in ack mode). */
  fallBack(): void;
  /** What dead consumers of the queue held (journals, orphans). */
  takeover(tally: Tally): Promise<void>;
}

export class StartUp {
  private started: Promise<void> | undefined;
  /** Set once the portal refused ack mode for good; every later trigger is refused with a fresh error. */
  private refusal: { cause?: Bitrix24Error } | undefined;

  constructor(
    private readonly api: ConsumerApi,
    private readonly hooks: StartUpHooks,
  ) {}

  ensure(tally: Tally): Promise<void> {
    // A fresh error each time: callers that report a failure once per error object still see every refusal.
    if (this.refusal) return Promise.reject(extendedModeError(this.refusal.cause));
    if (!this.started) {
      this.started = this.start(tally).catch((err) => {
        this.started = undefined; // a failed start (network) is tried again by the next trigger
        throw err;
      });
    }
    return this.started;
  }

  /** Fails the start (ack mode refused) or switches to auto mode when the user allowed at-most-once. */
  extendedModeMissing(cause?: Bitrix24Error): void {
    if (this.hooks.allowAtMostOnce) {
      if (this.hooks.mode() === "ack") this.hooks.fallBack();
      return;
    }
    this.refusal = { cause };
    throw extendedModeError(cause);
  }

  /** Ack mode only: the portal's extended mode, then what dead consumers held (journals, orphans). */
  private async start(tally: Tally): Promise<void> {
    if (this.hooks.mode() !== "ack") return;
    let extended: boolean | undefined;
    try {
      extended = await this.api.feature(EXTENDED_MODE_FEATURE);
      tally.requests++;
    } catch {
      // Not conclusive (old portal, no feature.get): the license error of the first get tells.
    }
    if (extended === false) {
      this.extendedModeMissing();
      if (this.hooks.mode() !== "ack") return;
    }
    await this.hooks.takeover(tally);
  }
}
