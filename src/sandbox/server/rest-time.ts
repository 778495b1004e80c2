import type { RestTime as ClientRestTime } from "../../core/rest/types";
/** The `time` block of every REST answer, as the seeds show it: the client's RestTime, `operating` always there. */
export type RestTime = ClientRestTime & { operating: number };

function isoSeconds(ms: number): string {
  const date = new Date(ms);
  const offsetMin = -date.getTimezoneOffset();
  const local = new Date(ms + offsetMin * 60_000);
  const sign = offsetMin >= 0 ? "+" : "-";
  const abs = Math.abs(offsetMin);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${local.toISOString().slice(0, 19)}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** PHP's date('c') for a unix-seconds value: the server's offset, second precision. */
export function isoFromSeconds(sec: number): string {
  return isoSeconds(sec * 1000);
}

export function restTime(startMs: number, finishMs: number, operating: number, operatingResetAt?: number): RestTime {
  const time: RestTime = {
    start: startMs / 1000,
    finish: finishMs / 1000,
    duration: (finishMs - startMs) / 1000,
    processing: (finishMs - startMs) / 1000,
    date_start: isoSeconds(startMs),
    date_finish: isoSeconds(finishMs),
    operating,
  };
  if (operatingResetAt !== undefined) time.operating_reset_at = operatingResetAt;
  return time;
}
