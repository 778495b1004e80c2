/** Waiting in tests: a pause, and polling a condition with a deadline that names what it waited for. */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `check` may be async (a file read, say): it is awaited before each decision. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "a condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}
