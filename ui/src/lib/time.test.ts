import { describe, expect, it } from "vitest";
import { formatCountdown, hostOf } from "./time";

describe("formatCountdown", () => {
  it("shows minutes and zero-padded seconds", () => {
    expect(formatCountdown(600)).toBe("10:00");
    expect(formatCountdown(65)).toBe("1:05");
    expect(formatCountdown(9)).toBe("0:09");
  });

  it("adds hours when there are any", () => {
    expect(formatCountdown(3723)).toBe("1:02:03");
  });

  it("rounds a part second up and never goes below zero", () => {
    expect(formatCountdown(0.2)).toBe("0:01");
    expect(formatCountdown(-5)).toBe("0:00");
  });
});

describe("hostOf", () => {
  it("takes the host of a URL, with its port", () => {
    expect(hostOf("https://127.0.0.1:4443/oidc")).toBe("127.0.0.1:4443");
  });

  it("keeps text that is not a URL", () => {
    expect(hostOf("not a url")).toBe("not a url");
  });
});
