// Arithmetic on what the benchmark recorded: percentiles, rates, the rate-limit bucket's burst.

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function latencySummary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    samples: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : null,
  };
}

/**
 * When the client had spent the portal's burst: replays the bucket (each request adds 1, the level drains
 * `perSecond`/s) over the sampled request counts and returns the first sample where it was full.
 */
export function burstEnd(samples, bucket) {
  let level = 0;
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    level = Math.max(0, level - bucket.perSecond * dt) + (samples[i].requests - samples[i - 1].requests);
    if (level >= bucket.burst - 1) return samples[i];
  }
  return undefined;
}

/** The last sample at or before `t` (samples are in time order). */
export function sampleAt(samples, t) {
  let found = samples[0];
  for (const s of samples) {
    if (s.t > t) break;
    found = s;
  }
  return found;
}

export const round = (n, digits = 1) => (n === null || n === undefined ? null : Number(n.toFixed(digits)));

export function ratio(value, bound) {
  return bound > 0 ? value / bound : null;
}

export function mb(bytes) {
  return round(bytes / (1024 * 1024), 1);
}
