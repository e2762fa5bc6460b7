import { render, screen } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Settings as SettingsData } from "../lib/api";
import Settings from "./Settings.svelte";

const invoke = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));

let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let autostart: boolean;

const config: SettingsData = {
  config_path: "/home/u/.config/snowgate/config.toml",
  issuer: "https://idp.example.com/oidc",
  client_id: "snowgate-desktop",
  snowflake_account: "acme-prod",
  accounts: [{ name: "acme-prod", account: "acme-prod", snowflake_url: "https://acme-prod.snowflakecomputing.com" }],
  gateway_listen: ["127.0.0.1:8765"],
  team_server: null,
};

beforeEach(() => {
  autostart = false;
  answers = {
    settings: () => config,
    autostart_get: () => autostart,
    autostart_set: (args) => (autostart = Boolean(args?.enabled)),
  };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

describe("Settings", () => {
  it("shows the config essentials read-only, and how to change them", async () => {
    render(Settings);
    expect(await screen.findByTestId("settings-issuer")).toHaveTextContent("https://idp.example.com/oidc");
    expect(screen.getByTestId("settings-client-id")).toHaveTextContent("snowgate-desktop");
    expect(screen.getByTestId("settings-account")).toHaveTextContent("acme-prod");
    expect(screen.getByTestId("settings-listen")).toHaveTextContent("127.0.0.1:8765");
    expect(screen.getByTestId("settings-team-server")).toHaveTextContent("solo mode");
    expect(screen.getByTestId("settings-config-path")).toHaveTextContent(config.config_path);
    expect(screen.getByTestId("settings-config")).toHaveTextContent("snowgate config path");
    expect(screen.queryByRole("textbox")).not.toBeInTheDocument();
  });

  it("lists every account behind the gateway, the default first, when there are several", async () => {
    answers.settings = () => ({
      ...config,
      snowflake_account: "prod",
      accounts: [
        { name: "prod", account: "acme-prod", snowflake_url: "https://acme-prod.snowflakecomputing.com" },
        { name: "dev", account: "acme-dev", snowflake_url: "https://acme-dev.snowflakecomputing.com" },
      ],
    });
    render(Settings);
    const prod = await screen.findByTestId("settings-account-prod");
    expect(prod).toHaveTextContent("prod (acme-prod), the default");
    expect(prod).toHaveTextContent("https://acme-prod.snowflakecomputing.com");
    const dev = screen.getByTestId("settings-account-dev");
    expect(dev).toHaveTextContent("dev (acme-dev)");
    expect(dev).not.toHaveTextContent("default");
    expect(dev).toHaveTextContent("https://acme-dev.snowflakecomputing.com");
    expect(screen.queryByTestId("settings-account")).not.toBeInTheDocument();
  });

  it("names the team server when there is one", async () => {
    answers.settings = () => ({ ...config, team_server: "https://snowgate.example.com" });
    render(Settings);
    expect(await screen.findByTestId("settings-team-server")).toHaveTextContent("the team server at https://snowgate.example.com");
  });

  it("turns start at login on and off", async () => {
    render(Settings);
    const toggle = await screen.findByRole("switch", { name: "Start Snowgate at login" });
    await vi.waitFor(() => expect(toggle).toBeEnabled());
    expect(toggle).not.toBeChecked();

    await userEvent.click(toggle);
    expect(invoke).toHaveBeenCalledWith("autostart_set", { enabled: true });
    await vi.waitFor(() => expect(toggle).toBeChecked());

    await userEvent.click(screen.getByTestId("autostart-toggle"));
    expect(invoke).toHaveBeenLastCalledWith("autostart_set", { enabled: false });
    await vi.waitFor(() => expect(toggle).not.toBeChecked());
  });

  it("shows why start at login couldn't change, and the state in effect", async () => {
    answers.autostart_set = () => {
      throw { kind: "internal", message: "could not write ~/.config/autostart/snowgate.desktop: permission denied" };
    };
    render(Settings);
    const toggle = await screen.findByTestId("autostart-toggle");
    await vi.waitFor(() => expect(toggle).toBeEnabled());
    await userEvent.click(toggle);
    expect(await screen.findByRole("alert")).toHaveTextContent("permission denied");
    await vi.waitFor(() => expect(toggle).not.toBeChecked());
  });

  it("shows why the settings can't be loaded", async () => {
    answers.settings = () => {
      throw { kind: "unavailable", message: "the broker is not running" };
    };
    render(Settings);
    expect(await screen.findByRole("alert")).toHaveTextContent("Couldn't load the settings");
  });
});
