import { describe, expect, it } from "vitest";
import casesText from "../../../crates/snowgate-config/tests/duration_cases.json?raw";
import { durationProblem, formatDuration, formatLeft, parseDuration } from "./duration";

// The grammar's cases, shared with the Rust grammar's tests (crates/snowgate-config).
interface Cases {
  parse: { input: string; seconds: number | null }[];
  format: { seconds: number; text: string }[];
}
const cases = JSON.parse(casesText) as Cases;

describe("parseDuration", () => {
  it("reads every shared case as the Rust grammar does", () => {
    expect(cases.parse.length).toBeGreaterThan(10);
    for (const { input, seconds } of cases.parse) {
      expect(parseDuration(input), JSON.stringify(input)).toBe(seconds);
    }
  });

  it("refuses what people might guess", () => {
    for (const bad of ["2 hrs", "2hours", "-1h", "1.5h", "h", "", "10", "1h 30", "1 h"]) {
      expect(parseDuration(bad), bad).toBeNull();
    }
  });
});

describe("formatDuration", () => {
  it("writes every shared case as the Rust grammar does, and reads it back", () => {
    for (const { seconds, text } of cases.format) {
      expect(formatDuration(seconds), String(seconds)).toBe(text);
      expect(parseDuration(text), text).toBe(seconds);
    }
  });
});

describe("durationProblem", () => {
  it("accepts a duration within the maximum", () => {
    expect(durationProblem("1h30m", 8 * 3600)).toBeNull();
    expect(durationProblem("8h", 8 * 3600)).toBeNull();
  });

  it("says what is wrong otherwise", () => {
    expect(durationProblem("", 3600)).toMatch(/how long/);
    expect(durationProblem("90 minutes", 3600)).toMatch(/not a duration/);
    expect(durationProblem("0m", 3600)).toMatch(/longer than zero/);
    expect(durationProblem("2h", 3600, "1h")).toMatch(/at most 1h/);
  });
});

describe("formatLeft", () => {
  it("ticks in seconds at every scale", () => {
    expect(formatLeft(42 * 60 + 10)).toBe("42m 10s");
    expect(formatLeft(3600 + 5 * 60 + 9)).toBe("1h 05m 09s");
    expect(formatLeft(2 * 86_400 + 3 * 3600 + 4 * 60 + 5)).toBe("2d 3h 04m 05s");
    expect(formatLeft(9.2)).toBe("10s");
    expect(formatLeft(-3)).toBe("0s");
  });
});
