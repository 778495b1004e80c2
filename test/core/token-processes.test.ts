import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { OAuthPortal } from "../kit/fake-portal";

function runChild(
  env: Record<string, string>,
): Promise<{ ok: unknown; error?: string; tokens?: { refreshToken: string } }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--require", require.resolve("tsx/cjs"), join(__dirname, "fixtures", "refresh-child.ts")],
      { env: { ...process.env, ...env }, timeout: 15000 },
      (err, stdout) => {
        if (err) reject(err);
        else resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}"));
      },
    );
  });
}

describe("core/token-store across processes", () => {
  it("two processes sharing one token directory spend the refresh token once", async function () {
    this.timeout(20000);
    const dir = await fs.mkdtemp(join(tmpdir(), "b24-procs-"));
    // Every token the processes were deployed with has expired; the refresh is slow enough to overlap.
    const portal = await OAuthPortal.start({ refreshTokens: ["refresh-0"], refreshDelayMs: 150 });
    try {
      const env = { PORTAL_URL: portal.url, STORE_DIR: dir, START_AT: String(Date.now() + 2500) };
      const [a, b] = await Promise.all([runChild(env), runChild(env)]);
      should(a.ok).equal(true);
      should(b.ok).equal(true);
      should(portal.portal.tokenRequests()).have.length(1);
      should(a.tokens?.refreshToken).equal("refresh-1");
      should(b.tokens?.refreshToken).equal("refresh-1");
      // Both processes called at once: the REST requests overlapped with the single refresh.
      should(portal.portal.rest("event.get").length).be.within(3, 4);
    } finally {
      await portal.portal.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
