import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh directory for each test (`take` gets it), removed with everything in it after the test. */
export function tempDirPerTest(prefix: string, take: (dir: string) => void): void {
  let dir: string | undefined;
  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), prefix));
    take(dir);
  });
  afterEach(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    dir = undefined;
  });
}
