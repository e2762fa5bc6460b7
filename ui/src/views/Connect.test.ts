import { render, screen, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ConnectInfo, ToolSecret } from "../lib/api";
import Connect from "./Connect.svelte";

const invoke = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));

let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let secrets: ToolSecret[];

const info: ConnectInfo = {
  host: "127.0.0.1",
  port: 8765,
  account: "acme-prod",
  accounts: ["acme-prod"],
  role_accounts: {},
  user: "ALICE",
  protocol: "http",
  require_tool_secrets: false,
  roles: ["ANALYST", "LOADER"],
};

beforeEach(() => {
  secrets = [];
  answers = {
    connect_info: () => info,
    tool_secret_list: () => secrets,
    "plugin:clipboard-manager|write_text": () => undefined,
  };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

describe("Connect", () => {
  it("shows a snippet per tool built from the connection settings, each with Copy", async () => {
    render(Connect);
    for (const tool of ["python", "node", "jdbc", "odbc", "dbt", "snowsql"]) {
      const snippet = await screen.findByTestId(`snippet-${tool}`);
      expect(snippet, tool).toHaveTextContent("acme-prod");
      expect(screen.getByTestId(`copy-${tool}`)).toBeEnabled();
    }
    expect(screen.getByTestId("snippet-jdbc")).toHaveTextContent("jdbc:snowflake://127.0.0.1:8765/?account=acme-prod&ssl=off&role=ANALYST");
    expect(screen.getByTestId("connect-settings")).toHaveTextContent("ALICE");

    await userEvent.click(screen.getByTestId("copy-python"));
    const [, args] = invoke.mock.calls.find(([c]) => c === "plugin:clipboard-manager|write_text") ?? [];
    expect((args as { text: string }).text).toContain('host="127.0.0.1"');
    expect(await screen.findByTestId("copy-python")).toHaveTextContent("Copied");
  });

  it("builds the snippets for the role picked", async () => {
    render(Connect);
    await userEvent.selectOptions(await screen.findByTestId("connect-role"), "LOADER");
    expect(screen.getByTestId("snippet-snowsql")).toHaveTextContent("rolename = LOADER");
  });

  it("shows and uses the account of the role picked when the port serves several", async () => {
    answers.connect_info = () => ({
      ...info,
      account: "prod",
      accounts: ["prod", "dev"],
      role_accounts: { LOADER: "dev" },
    });
    render(Connect);
    expect(await screen.findByTestId("connect-account")).toHaveTextContent("prod");
    await userEvent.selectOptions(screen.getByTestId("connect-role"), "LOADER");
    expect(screen.getByTestId("connect-account")).toHaveTextContent("dev");
    expect(screen.getByTestId("snippet-python")).toHaveTextContent('account="dev"');
  });

  it("creates a tool secret and shows it once, with a warning and Copy", async () => {
    answers.tool_secret_create = (args) => {
      secrets = [{ name: String(args?.name), created_at: "2026-03-02T09:00:00Z" }];
      return { name: args?.name, secret: "sg_s3cr3t", required: false };
    };
    render(Connect);
    expect(await screen.findByTestId("secrets-empty")).toBeInTheDocument();

    await userEvent.click(screen.getByTestId("secret-create"));
    expect(screen.getByText("Name the tool, like dbeaver or notebook.")).toBeInTheDocument();
    expect(invoke.mock.calls.some(([c]) => c === "tool_secret_create")).toBe(false);

    await userEvent.type(screen.getByTestId("secret-name"), "dbeaver");
    await userEvent.click(screen.getByTestId("secret-create"));

    expect(invoke).toHaveBeenCalledWith("tool_secret_create", { name: "dbeaver", rotate: false });
    const shown = await screen.findByTestId("secret-created");
    expect(within(shown).getByTestId("secret-value")).toHaveTextContent("sg_s3cr3t");
    expect(shown).toHaveTextContent("Shown only once");
    await userEvent.click(within(shown).getByTestId("secret-copy"));
    expect(invoke).toHaveBeenCalledWith("plugin:clipboard-manager|write_text", { text: "sg_s3cr3t" });
    expect(screen.getByTestId("secret-dbeaver")).toBeInTheDocument();
  });

  it("revokes a tool secret and says how many sessions it ended", async () => {
    secrets = [{ name: "notebook", created_at: "2026-03-02T09:00:00Z" }];
    answers.tool_secret_revoke = () => {
      secrets = [];
      return { name: "notebook", revoked: true, sessions_ended: 2 };
    };
    render(Connect);
    await userEvent.click(await screen.findByTestId("secret-revoke-notebook"));
    expect(invoke).toHaveBeenCalledWith("tool_secret_revoke", { name: "notebook" });
    expect(await screen.findByTestId("connect-notice")).toHaveTextContent("ended 2 sessions");
    expect(screen.getByTestId("secrets-empty")).toBeInTheDocument();
  });

  it("asks for the tool's secret as the password when secrets are required", async () => {
    answers.connect_info = () => ({ ...info, require_tool_secrets: true });
    render(Connect);
    expect(await screen.findByTestId("snippet-python")).toHaveTextContent('password="<tool secret>"');
    expect(screen.getByText("Required")).toBeInTheDocument();
  });

  it("shows why the settings can't be loaded", async () => {
    answers.connect_info = () => {
      throw { kind: "unavailable", message: "the broker is not running" };
    };
    render(Connect);
    expect(await screen.findByRole("alert")).toHaveTextContent("the broker is not running");
    expect(screen.queryByTestId("snippet-python")).not.toBeInTheDocument();
  });
});
