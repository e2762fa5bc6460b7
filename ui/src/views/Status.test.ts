import { render, screen, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { BrokerStatus, BrokerUnavailable, StatusResult } from "../lib/api";
import Status from "./Status.svelte";

// The component talks to the shell only through `invoke`; replace it with a fake IPC.
const invoke = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));

const noneWaiting = { waiting: 0, others: 0, other_people: 0, refused: 0 };

const signedOut: BrokerStatus = {
  version: "0.1.0",
  sign_in: { state: "signed_out" },
  issuer: "https://idp.example.com/",
  account: "acme-prod",
  snowflake_url: "https://acme-prod.snowflakecomputing.com/",
  accounts: [{ name: "acme-prod", account: "acme-prod", snowflake_url: "https://acme-prod.snowflakecomputing.com/" }],
  gateway_listen: ["127.0.0.1:8765"],
  roles: ["ANALYST", "LOADER"],
  summary: "Signed out",
  gateway: { listen: ["127.0.0.1:8765"], state: "serving", open_sessions: 0 },
  mode: "solo",
  team_server: null,
  tool_asks: [],
};

const configError: BrokerUnavailable = {
  kind: "config",
  message:
    "reading config at /home/ana/.config/snowgate/config.toml: line 7: key `snowflake.rol`: unknown key `rol` (expected `account`, `url`, `user_claim`)",
};

const whoAlice = {
  subject: "alice",
  email: "alice@example.test",
  name: "Alice Analyst",
  groups: ["analysts", "readers"],
  issuer: "https://idp.example.com/",
  last_sign_in: "2026-01-01T10:00:00Z",
  idp_access_token_expires_at: "2026-01-01T10:05:00Z",
  snowflake_tokens: [],
  refresh_token_present: true,
  vault: "os_keyring",
};

const signedInAlice: BrokerStatus = {
  ...signedOut,
  sign_in: { state: "signed_in", subject: "alice" },
  summary: "Signed in as alice",
};

beforeEach(() => {
  invoke.mockReset();
});

const ok = (status: BrokerStatus): StatusResult => ({ ok: true, status });

describe("Status", () => {
  it("renders a signed-out status with issuer, account, gateway and roles", () => {
    render(Status, { result: ok(signedOut) });

    expect(screen.getByTestId("account")).toHaveTextContent("acme-prod");
    expect(screen.getByRole("heading", { level: 1, name: "Status" })).toBeInTheDocument();
    expect(screen.getByTestId("sign-in")).toHaveTextContent("Signed out");
    expect(screen.getByTestId("issuer")).toHaveTextContent("https://idp.example.com/");
    expect(screen.getByTestId("snowflake-url")).toHaveTextContent(
      "https://acme-prod.snowflakecomputing.com/",
    );
    expect(screen.getByTestId("gateway")).toHaveTextContent("127.0.0.1:8765");
    const roles = within(screen.getByTestId("roles")).getAllByRole("listitem");
    expect(roles.map((li) => li.textContent)).toEqual(["ANALYST", "LOADER"]);
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(screen.queryByTestId("keyring-problem")).not.toBeInTheDocument();
    expect(screen.queryByTestId("sign-out")).not.toBeInTheDocument();
    expect(invoke).not.toHaveBeenCalled();
  });

  it("in team mode shows the team server and whether it can be reached", async () => {
    const team = (reachable: boolean): BrokerStatus => ({
      ...signedOut,
      mode: "team",
      team_server: "https://snowgate.example.com",
      team: reachable
        ? { server: "https://snowgate.example.com", reachable, events: "connected", auth: "access_token", audit: noneWaiting }
        : {
            server: "https://snowgate.example.com",
            reachable,
            events: "connecting",
            problem: "connection refused",
            auth: "access_token",
            audit: noneWaiting,
          },
    });
    const { rerender } = render(Status, { result: ok(team(true)) });
    expect(screen.getByTestId("team-server")).toHaveTextContent("https://snowgate.example.com");
    expect(screen.getByTestId("team-state")).toHaveTextContent("Reachable; live updates on");
    await rerender({ result: ok(team(false)) });
    expect(screen.getByTestId("team-state")).toHaveTextContent("Unreachable: connection refused");
  });

  it("shows no team server in solo mode", () => {
    render(Status, { result: ok({ ...signedOut, mode: "solo", team_server: null }) });
    expect(screen.queryByTestId("team-server")).not.toBeInTheDocument();
  });

  it("offers to sign in while signed out", async () => {
    const onsignin = vi.fn();
    render(Status, { result: ok(signedOut), onsignin });
    await userEvent.click(within(screen.getByTestId("sign-in")).getByRole("button", { name: "Sign in" }));
    expect(onsignin).toHaveBeenCalled();
  });

  it("shows who is signed in, with email and groups, and a Sign out button", async () => {
    invoke.mockResolvedValue(whoAlice);
    render(Status, { result: ok(signedInAlice) });

    const card = screen.getByTestId("sign-in");
    expect(card).toHaveTextContent("Signed in as alice");
    expect(await within(card).findByTestId("who-name")).toHaveTextContent("Alice Analyst");
    expect(card).toHaveTextContent("alice@example.test");
    const groups = within(within(card).getByTestId("groups")).getAllByRole("listitem");
    expect(groups.map((li) => li.textContent)).toEqual(["analysts", "readers"]);
    expect(card).toHaveTextContent("OS keyring");
    expect(within(card).getByRole("button", { name: "Sign out" })).toBeEnabled();
    expect(invoke).toHaveBeenCalledWith("whoami", undefined);
    expect(screen.queryByTestId("offline")).not.toBeInTheDocument();
  });

  it("signs out and passes on what the sign-out did", async () => {
    invoke.mockImplementation(async (command: string) =>
      command === "whoami"
        ? whoAlice
        : { was_signed_in: true, revoked: true, message: "Signed out; the IdP revoked the sign-in." },
    );
    const onsignedout = vi.fn();
    render(Status, { result: ok(signedInAlice), onsignedout });

    await userEvent.click(screen.getByRole("button", { name: "Sign out" }));

    expect(invoke).toHaveBeenCalledWith("logout", undefined);
    expect(onsignedout).toHaveBeenCalledWith("Signed out; the IdP revoked the sign-in.");
  });

  it("shows why a sign-out failed", async () => {
    invoke.mockImplementation(async (command: string) => {
      if (command === "whoami") return whoAlice;
      throw { kind: "unavailable", message: "could not remove the refresh token from the OS keyring" };
    });
    const onsignedout = vi.fn();
    render(Status, { result: ok(signedInAlice), onsignedout });

    await userEvent.click(screen.getByRole("button", { name: "Sign out" }));

    expect(await screen.findByRole("alert")).toHaveTextContent(
      "could not remove the refresh token from the OS keyring",
    );
    expect(onsignedout).not.toHaveBeenCalled();
  });

  it("shows an amber banner with the last error while the IdP can't be reached", async () => {
    invoke.mockResolvedValue(whoAlice);
    render(Status, {
      result: ok({
        ...signedOut,
        sign_in: {
          state: "offline_retrying",
          subject: "alice",
          since: "2026-01-01T10:00:00Z",
          last_error: "connection refused",
          next_retry_at: "2026-01-01T10:01:00Z",
        },
      }),
    });
    const banner = screen.getByTestId("offline");
    expect(banner).toHaveTextContent("The identity provider can't be reached; retrying");
    expect(banner).toHaveTextContent("Last error: connection refused");
    const card = screen.getByTestId("sign-in");
    expect(card).toHaveTextContent("Offline");
    expect(card).toHaveTextContent("Signed in as alice");
    expect(within(card).getByRole("button", { name: "Sign out" })).toBeInTheDocument();
  });

  it("shows why the OS keyring can't be used", () => {
    render(Status, {
      result: ok({ ...signedOut, keyring_problem: "no Secret Service on the session bus" }),
    });
    expect(screen.getByTestId("keyring-problem")).toHaveTextContent(
      "no Secret Service on the session bus",
    );
  });

  it("lists what the broker wants the person to know", () => {
    render(Status, {
      result: ok({ ...signedOut, notes: ["gateway: 127.0.0.1:8765 is in use by another program; change [gateway].listen"] }),
    });
    expect(screen.getByTestId("notes")).toHaveTextContent("127.0.0.1:8765 is in use by another program");
  });

  it("says so when no roles are configured", () => {
    render(Status, { result: ok({ ...signedOut, roles: [] }) });
    expect(screen.queryByTestId("roles")).not.toBeInTheDocument();
    expect(screen.getByText(/No roles are configured yet/)).toBeInTheDocument();
  });

  it("renders the config error text and what to do", () => {
    render(Status, { result: { ok: false, error: configError } });

    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("Snowgate can't use its config");
    expect(within(alert).getByTestId("problem-message")).toHaveTextContent(configError.message);
    expect(alert).toHaveTextContent("fix the line and key it points to");
    expect(within(alert).getByRole("button", { name: "Try again" })).toBeEnabled();
    expect(screen.queryByTestId("account")).not.toBeInTheDocument();
  });

  it("says another broker is running and how to stop it", () => {
    render(Status, {
      result: {
        ok: false,
        error: {
          kind: "already_running",
          message:
            "A Snowgate broker is already running for this user (snowgate up?); stop it, then choose Try again.",
        },
      },
    });
    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("Another Snowgate broker is running");
    expect(alert).toHaveTextContent("(snowgate up?); stop it, then choose Try again");
    expect(alert).toHaveTextContent("press Ctrl-C in the terminal where snowgate up runs");
    expect(within(alert).getByRole("button", { name: "Try again" })).toBeEnabled();
  });

  it("restarts the broker on Try again and passes on the new status", async () => {
    invoke.mockResolvedValueOnce(signedOut);
    const onresult = vi.fn();
    render(Status, { result: { ok: false, error: configError }, onresult });

    await userEvent.click(screen.getByRole("button", { name: "Try again" }));

    expect(invoke).toHaveBeenLastCalledWith("reload_config");
    expect(onresult).toHaveBeenCalledWith({ ok: true, status: signedOut });
  });

  it("shows a problem that is not the broker's as an internal one", () => {
    render(Status, {
      result: { ok: false, error: { kind: "internal", message: "command broker_status not allowed by ACL" } },
    });
    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("Something went wrong inside Snowgate");
    expect(alert).toHaveTextContent("not allowed by ACL");
  });
});
