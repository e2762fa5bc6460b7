import { describe, expect, it } from "vitest";
import type { ConnectInfo } from "./api";
import { snippets } from "./snippets";

const info: ConnectInfo = {
  host: "127.0.0.1",
  port: 8765,
  account: "acme-prod",
  accounts: ["acme-prod"],
  role_accounts: {},
  user: "ALICE",
  protocol: "http",
  require_tool_secrets: false,
  roles: ["ANALYST"],
};

function text(tool: string, i: ConnectInfo = info, role = "ANALYST") {
  return snippets(i, role).find((s) => s.tool === tool)?.text ?? "";
}

describe("snippets", () => {
  it("has one for each tool", () => {
    expect(snippets(info, "ANALYST").map((s) => s.tool)).toEqual(["python", "node", "jdbc", "odbc", "dbt", "snowsql"]);
  });

  it("points every tool at the gateway over http with the account, user and role", () => {
    expect(text("python")).toContain('host="127.0.0.1"');
    expect(text("python")).toContain("port=8765");
    expect(text("python")).toContain('protocol="http"');
    expect(text("node")).toContain("accessUrl: 'http://127.0.0.1:8765'");
    expect(text("jdbc")).toContain("jdbc:snowflake://127.0.0.1:8765/?account=acme-prod&ssl=off&role=ANALYST");
    expect(text("odbc")).toContain("SSL = off");
    expect(text("dbt")).toContain("protocol: http");
    expect(text("snowsql")).toContain("rolename = ANALYST");
    for (const s of snippets(info, "ANALYST")) {
      expect(s.text, s.tool).toContain("acme-prod");
      expect(s.text, s.tool).toContain("ALICE");
    }
  });

  it("asks for the tool's secret as the password when secrets are required", () => {
    expect(text("python", { ...info, require_tool_secrets: true })).toContain('password="<tool secret>"');
    expect(text("python")).toContain('password="-"');
  });

  it("names the account of the chosen role when the port serves several", () => {
    const two: ConnectInfo = {
      ...info,
      account: "prod",
      accounts: ["prod", "dev"],
      role_accounts: { LOADER: "dev" },
      roles: ["ANALYST", "LOADER"],
    };
    expect(text("python", two, "LOADER")).toContain('account="dev"');
    expect(text("jdbc", two, "LOADER")).toContain("?account=dev&");
    expect(text("python", two, "ANALYST")).toContain('account="prod"');
  });

  it("brackets an IPv6 host in URLs", () => {
    expect(text("jdbc", { ...info, host: "::1" })).toContain("jdbc:snowflake://[::1]:8765/");
    expect(text("node", { ...info, host: "::1" })).toContain("http://[::1]:8765");
  });
});
