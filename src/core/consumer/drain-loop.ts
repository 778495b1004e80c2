import type { Bitrix24Error } from "../rest/errors";
import {
  asError,
  type ConsumerFlags,
  type ConsumerPhase,
  type DrainOverrides,
  type DrainSummary,
  newTally,
  type Tally,
} from "./consumer-types";
import type { DrainRound } from "./drain-round";

/**
 * The drain loop: rounds (drain-round.ts) until the queue is empty, or one round without `drain`, or the consumer
 * pauses or closes. While a drain runs, triggers coalesce into ONE follow-up drain, which uses the overrides of the
 * latest trigger; every coalesced caller gets its summary.
 */

interface DrainRequest {
  overrides: DrainOverrides;
  promise: Promise<DrainSummary>;
  resolve: (s: DrainSummary) => void;
  reject: (e: Bitrix24Error) => void;
}

function deferredDrain(overrides: DrainOverrides): DrainRequest {
  let resolve!: (s: DrainSummary) => void;
  let reject!: (e: Bitrix24Error) => void;
  const promise = new Promise<DrainSummary>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { overrides, promise, resolve, reject };
}

export function stoppedSummary(): DrainSummary {
  return { events: 0, batches: 0, ms: 0, requests: 0, redelivered: 0, unchanged: 0, empty: false, stopped: true };
}

export interface DrainLoopHost {
  readonly flags: ConsumerFlags;
  /** A trigger came while paused: it runs on resume. */
  wantResume(): void;
  ensureStarted(tally: Tally): Promise<void>;
  setPhase(phase: ConsumerPhase): void;
  drained(summary: DrainSummary): void;
}

export class DrainLoop {
  private running: Promise<void> | undefined;
  private followUp: DrainRequest | undefined;

  constructor(
    private readonly round: DrainRound,
    private readonly s: { limit: number; drain: boolean },
    private readonly host: DrainLoopHost,
  ) {}

  /** The drain running now, for close() to wait on. */
  get inFlight(): Promise<void> | undefined {
    return this.running;
  }

  trigger(overrides: DrainOverrides): Promise<DrainSummary> {
    if (this.running) {
      if (!this.followUp) this.followUp = deferredDrain(overrides);
      else this.followUp.overrides = overrides;
      return this.followUp.promise;
    }
    const request = deferredDrain(overrides);
    this.start(request);
    return request.promise;
  }

  private start(request: DrainRequest): void {
    const run = this.run(request.overrides).then(request.resolve, (err) => request.reject(asError(err)));
    this.running = run.finally(() => {
      this.running = undefined;
      this.host.setPhase("idle");
      const next = this.followUp;
      this.followUp = undefined;
      if (next) {
        if (this.host.flags.closed || this.host.flags.paused) {
          if (this.host.flags.paused) this.host.wantResume();
          next.resolve(stoppedSummary());
        } else {
          this.start(next);
        }
      }
    });
  }

  private async run(overrides: DrainOverrides): Promise<DrainSummary> {
    const startedAt = Date.now();
    const tally = newTally();
    this.host.setPhase("fetching");
    await this.host.ensureStarted(tally);
    const limit = Math.max(1, Math.floor(overrides.limit ?? this.s.limit));
    let empty = false;
    let stopped = false;
    for (;;) {
      if (this.host.flags.closed || this.host.flags.paused) {
        stopped = true;
        break;
      }
      const round = await this.round.run(limit, overrides, tally);
      if (round === "stopped") {
        stopped = true;
        break;
      }
      if (round === "wait") continue;
      if (!round.full) {
        empty = true;
        break;
      }
      if (!this.s.drain) break;
    }
    // Events still waiting for their objects go out now, with a request that only reads (nothing more fetched).
    if (this.round.waitingForObjects) await this.round.run(limit, overrides, tally, false);
    const summary: DrainSummary = { ...tally, ms: Date.now() - startedAt, empty, stopped };
    if (empty) this.host.drained(summary);
    return summary;
  }
}
