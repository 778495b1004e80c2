import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import should from "should";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { FileTokenStore, fingerprint, type StoredTokens, tokenStoreKey } from "../../src/core/state/token-store";
import { tempDirPerTest } from "../kit/temp-dir";

const TOKENS: StoredTokens = {
  accessToken: "a1",
  refreshToken: "r1",
  expiresAt: 1,
  deployedFingerprint: fingerprint("r0"),
  updatedAt: 2,
};

describe("core/token-store FileTokenStore", () => {
  let dir: string;
  tempDirPerTest("b24-store-", (d) => {
    dir = d;
  });

  it("saves one 0600 file per key atomically (no temp files left) and loads it back", async () => {
    const store = new FileTokenStore(join(dir, "nested"));
    const key = tokenStoreKey("example.bitrix24.com", "local.abc");
    should(await store.load(key)).be.undefined();
    await store.save(key, TOKENS);
    should(await store.load(key)).eql(TOKENS);
    await store.save(key, { ...TOKENS, refreshToken: "r2" });
    should((await store.load(key))?.refreshToken).equal("r2");
    const files = await fs.readdir(join(dir, "nested"));
    should(files).eql([`${key}.tokens.json`]);
    should((await fs.stat(join(dir, "nested", files[0]))).mode & 0o777).equal(0o600);
  });

  it("keys are file-name safe and differ per host and client id", () => {
    const a = tokenStoreKey("Example.bitrix24.com:8443", "local.1");
    should(a).match(/^example\.bitrix24\.com_8443-[0-9a-f]{16}$/);
    should(tokenStoreKey("example.bitrix24.com:8443", "local.2")).not.equal(a);
    should(() => new FileTokenStore(dir).fileFor("../escape")).throw(Bitrix24Error);
  });

  it("treats a garbled file as absent (the deployed credentials then win)", async () => {
    const store = new FileTokenStore(dir);
    await fs.writeFile(store.fileFor("k"), "{not json");
    should(await store.load("k")).be.undefined();
  });

  it("withLock serialises holders in this process, across store instances", async () => {
    const one = new FileTokenStore(dir);
    const two = new FileTokenStore(dir);
    let inside = 0;
    let most = 0;
    const work = async () => {
      inside += 1;
      most = Math.max(most, inside);
      await new Promise((r) => setTimeout(r, 5));
      inside -= 1;
    };
    await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? one : two).withLock("k", work)));
    should(most).equal(1);
    should(await fs.readdir(dir)).be.empty();
  });

  it("waits for a lock held by another process, and takes over one whose holder died", async () => {
    const store = new FileTokenStore(dir, { pollMs: 5 });
    const lockFile = `${store.fileFor("k")}.lock`;
    // Held by a live process elsewhere: we wait until it is released.
    await fs.writeFile(lockFile, JSON.stringify({ pid: process.ppid, host: "another-host", token: "x" }));
    const release = setTimeout(() => fs.rm(lockFile, { force: true }), 60);
    const started = Date.now();
    await store.withLock("k", async () => undefined);
    should(Date.now() - started).be.aboveOrEqual(50);
    clearTimeout(release);

    // Left by a dead process on this host: taken over at once.
    const dead = spawn(process.execPath, ["-e", ""]);
    const deadPid = await new Promise<number>((resolve) => dead.on("exit", () => resolve(dead.pid!)));
    await fs.writeFile(lockFile, JSON.stringify({ pid: deadPid, host: hostname(), token: "y" }));
    const t = Date.now();
    should(await store.withLock("k", async () => "ran")).equal("ran");
    should(Date.now() - t).be.below(1000);
  });

  it("takes over a stale lock and gives up on a live one after lockTimeoutMs", async () => {
    const store = new FileTokenStore(dir, { pollMs: 5, staleLockMs: 10000, lockTimeoutMs: 60 });
    const lockFile = `${store.fileFor("k")}.lock`;
    await fs.writeFile(lockFile, JSON.stringify({ pid: 1, host: "elsewhere", token: "z" }));
    const err = (await store.withLock("k", async () => undefined).catch((e: unknown) => e)) as Bitrix24Error;
    should(err.code).equal("TOKEN_STORE_ERROR");
    should(err.description).match(/locked by another process/);

    const old = new Date(Date.now() - 20000);
    await fs.utimes(lockFile, old, old);
    should(await store.withLock("k", async () => "ran")).equal("ran");
    await should(fs.stat(lockFile)).be.rejected();
  });
});
