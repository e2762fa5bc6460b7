import { describe, expect, it } from "vitest";
import { durationProblem, formatDuration, formatLeft, parseDuration } from "./duration";

describe("parseDuration", () => {
  it("reads the documented forms", () => {
    expect(parseDuration("30m")).toBe(1800);
    expect(parseDuration("1h")).toBe(3600);
    expect(parseDuration("1h30m")).toBe(5400);
    expect(parseDuration("2d")).toBe(172_800);
    expect(parseDuration("1d 12h")).toBe(129_600);
    expect(parseDuration(" 45s ")).toBe(45);
  });

  it("refuses what people might guess", () => {
    for (const bad of ["2 hrs", "2hours", "-1h", "1.5h", "h", "", "10", "1h 30", "1 h"]) {
      expect(parseDuration(bad), bad).toBeNull();
    }
  });
});

describe("formatDuration", () => {
  it("writes the grammar back, largest units first", () => {
    expect(formatDuration(5400)).toBe("1h30m");
    expect(formatDuration(129_600)).toBe("1d12h");
    expect(formatDuration(45)).toBe("45s");
    expect(formatDuration(0)).toBe("0s");
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
