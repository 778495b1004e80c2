import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

/**
 * Optional encryption of the token columns (README, "Several instances"): with a secret (the flow's credential
 * secret, the same on every instance that runs the flow), tokens and the installation are stored as AES-256-GCM
 * ciphertext, so a database role that can read the tables still cannot use them. Without one they are stored as
 * they are, readable by the database's own roles that can read the schema (which is what the README says).
 */
export interface Sealer {
  readonly encrypts: boolean;
  seal(plain: string): string;
  open(stored: string): string;
}

const PREFIX = "enc1:";

export const PLAIN: Sealer = {
  encrypts: false,
  seal: (plain) => plain,
  open: (stored) => {
    if (stored.startsWith(PREFIX)) {
      throw new Error("the tokens are encrypted: turn on encryption with the same credential secret as the others");
    }
    return stored;
  },
};

export function aesSealer(secret: string): Sealer {
  const key = createHash("sha256").update(`bitrix24-offline-events tokens\n${secret}`).digest();
  return {
    encrypts: true,
    seal(plain: string): string {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
      return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
    },
    open(stored: string): string {
      // Rows written before encryption was turned on stay readable; the next save encrypts them.
      if (!stored.startsWith(PREFIX)) return stored;
      const raw = Buffer.from(stored.slice(PREFIX.length), "base64");
      const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      try {
        return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
      } catch {
        throw new Error("the tokens were encrypted with another credential secret");
      }
    },
  };
}
