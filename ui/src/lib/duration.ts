// Durations as people write them in Snowgate: `30m`, `2h`, `1h30m`, `2d`: whole numbers each
// followed by one of d, h, m, s, optionally separated by spaces.
//
// The grammar's home is the Rust crate `snowgate-config` (`snowgate_config::duration`), which
// the engine, the team server and the grants model share. This is the UI's one copy of it, so
// a duration box can answer as the user types. `duration.test.ts` checks `parseDuration` and
// `formatDuration` against the cases the Rust grammar is tested with
// (`crates/snowgate-config/tests/duration_cases.json`); a change to the grammar changes that
// file, and both sides' tests hold it. The one difference: the UI refuses totals past 2^53
// seconds (JavaScript's safe integers), far beyond any grant's 366 days.

const UNITS: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1 };

/** The longest any grant can be (366 days), as the engine caps it. */
export const LONGEST_SECS = 366 * 86_400;

/** Seconds in `input`, or `null` when it is not a duration in the grammar. Zero is allowed. */
export function parseDuration(input: string): number | null {
  let total = 0;
  let digits = "";
  let parts = 0;
  for (const c of input.trim()) {
    if (c >= "0" && c <= "9") {
      digits += c;
    } else if (c in UNITS) {
      if (digits === "") return null;
      total += Number(digits) * (UNITS[c] ?? 0);
      if (!Number.isSafeInteger(total)) return null;
      digits = "";
      parts += 1;
    } else if (c === " " && digits === "") {
      continue;
    } else {
      return null;
    }
  }
  if (parts === 0 || digits !== "") return null;
  return total;
}

/** Seconds in the grammar, largest units first: `1h30m`, `45s`, `2d`, `0s`. */
export function formatDuration(seconds: number): string {
  let secs = Math.max(0, Math.round(seconds));
  if (secs === 0) return "0s";
  let out = "";
  for (const [unit, size] of Object.entries(UNITS)) {
    if (secs >= size) {
      out += `${Math.floor(secs / size)}${unit}`;
      secs %= size;
    }
  }
  return out;
}

/** Why `input` is not a usable grant duration of at most `maxSecs`, or `null` if it is. */
export function durationProblem(input: string, maxSecs: number | null, maxText?: string): string | null {
  if (input.trim() === "") return "Enter how long you need it, like 30m, 1h or 1h30m.";
  const secs = parseDuration(input);
  if (secs === null) return `"${input.trim()}" is not a duration; write it like 30m, 1h, 1h30m or 2d.`;
  if (secs === 0) return "The duration must be longer than zero.";
  if (maxSecs !== null && secs > maxSecs) {
    return `That is longer than this role allows; ask for at most ${maxText ?? formatDuration(maxSecs)}.`;
  }
  if (secs > LONGEST_SECS) return `That is longer than any grant can be (at most ${formatDuration(LONGEST_SECS)}).`;
  return null;
}

/** Time left as a ticking phrase: `42m 10s`, `1h 05m 09s`, `2d 3h 04m 05s`, `9s`. */
export function formatLeft(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3_600);
  const minutes = Math.floor((s % 3_600) / 60);
  const secs = s % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (days > 0) return `${days}d ${hours}h ${pad(minutes)}m ${pad(secs)}s`;
  if (hours > 0) return `${hours}h ${pad(minutes)}m ${pad(secs)}s`;
  if (minutes > 0) return `${minutes}m ${pad(secs)}s`;
  return `${secs}s`;
}
