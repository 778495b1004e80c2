import { randomBytes } from "node:crypto";

/**
 * OAuth state of the emulated application: access tokens with a lifetime, single-use refresh tokens that
 * rotate, and one-time authorization codes. Expired access tokens are remembered so a call with one is told
 * `expired_token` (which a client answers with a refresh) rather than `invalid_token`.
 */

export type AccessCheck = "ok" | "expired" | "unknown";

export interface IssuedTokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

// A real authorization code is valid for about 30 seconds.
const CODE_TTL_MS = 30_000;

export function randomToken(bytes = 16): string {
  return randomBytes(bytes).toString("hex");
}

export class TokenStore {
  private readonly access = new Map<string, number>();
  private readonly refresh = new Set<string>();
  private readonly codes = new Map<string, number>();
  /** Refresh tokens spent, and refresh tokens refused (spent before, or never issued): invalid_grant answers. */
  readonly counts = { refreshes: 0, invalidGrant: 0 };

  constructor(
    private ttlSec: number,
    private readonly now: () => number = Date.now,
  ) {}

  setTtl(ttlSec: number): void {
    this.ttlSec = ttlSec;
  }

  /** Registers a known pair (the generated or configured start credentials). */
  adopt(accessToken: string, refreshToken: string): void {
    this.access.set(accessToken, this.now() + this.ttlSec * 1000);
    this.refresh.add(refreshToken);
  }

  issue(): IssuedTokens {
    const accessToken = randomToken();
    const refreshToken = randomToken();
    this.adopt(accessToken, refreshToken);
    return { accessToken, refreshToken, expiresIn: this.ttlSec };
  }

  checkAccess(token: string): AccessCheck {
    const expiresAt = this.access.get(token);
    if (expiresAt === undefined) return "unknown";
    return this.now() >= expiresAt ? "expired" : "ok";
  }

  /** Spends a refresh token: true once, then never again (rotation). */
  spendRefresh(token: string): boolean {
    const spent = this.refresh.delete(token);
    if (spent) this.counts.refreshes++;
    else this.counts.invalidGrant++;
    return spent;
  }

  newCode(): string {
    const code = randomToken();
    this.codes.set(code, this.now() + CODE_TTL_MS);
    return code;
  }

  spendCode(code: string): boolean {
    const expiresAt = this.codes.get(code);
    this.codes.delete(code);
    return expiresAt !== undefined && this.now() < expiresAt;
  }

  expireAll(): void {
    const t = this.now();
    for (const token of this.access.keys()) this.access.set(token, t);
  }

  revokeRefresh(): void {
    this.refresh.clear();
  }

  secondsLeft(token: string): number {
    const expiresAt = this.access.get(token);
    return expiresAt === undefined ? 0 : Math.max(0, Math.round((expiresAt - this.now()) / 1000));
  }
}
