import type { StoredTokens } from "../../src/core/state/state-seam";

/** A token record as a store keeps it (expired, deployed with fingerprint "f"), for the store tests; `over` wins. */
export function storedTokens(
  accessToken: string,
  refreshToken: string,
  over: Partial<StoredTokens> = {},
): StoredTokens {
  return { accessToken, refreshToken, expiresAt: 1, deployedFingerprint: "f", updatedAt: 1, ...over };
}
