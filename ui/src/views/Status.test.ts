import { render, screen, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { BrokerStatus } from "../lib/api";
import Status from "./Status.svelte";

// The component talks to the shell only through `invoke`; replace it with a fake IPC.
const invoke = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));

const signedOut: BrokerStatus = {
  version: "0.1.0",
  sign_in: { state: "signed_out" },
  issuer: "https://idp.example.com/",
  account: "acme-prod",
  snowflake_url: "https://acme-prod.snowflakecomputing.com/",
  gateway_listen: ["127.0.0.1:8765"],
  roles: ["ANALYST", "LOADER"],
  summary: "Signed out",
};

const configError = {
  kind: "config",
  message:
    "reading config at /home/ana/.config/snowgate/config.toml: line 7: key `snowflake.rol`: unknown key `rol` (expected `account`, `url`, `user_claim`)",
};

beforeEach(() => {
  invoke.mockReset();
});

describe("Status", () => {
  it("asks the shell for broker_status when it opens", async () => {
    invoke.mockResolvedValue(signedOut);
    render(Status);
    await screen.findByTestId("account");
    expect(invoke).toHaveBeenCalledWith("broker_status");
  });

  it("renders a signed-out status with issuer, account, gateway and roles", async () => {
    invoke.mockResolvedValue(signedOut);
    render(Status);

    expect(await screen.findByTestId("account")).toHaveTextContent("acme-prod");
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
  });

  it("names the signed-in subject", async () => {
    invoke.mockResolvedValue({
      ...signedOut,
      sign_in: { state: "signed_in", subject: "ana@example.com" },
      summary: "Signed in as ana@example.com",
    });
    render(Status);
    expect(await screen.findByTestId("sign-in")).toHaveTextContent("Signed in as ana@example.com");
  });

  it("says when the IdP is offline and the broker keeps retrying", async () => {
    invoke.mockResolvedValue({
      ...signedOut,
      sign_in: {
        state: "offline_retrying",
        subject: "ana@example.com",
        since: "2026-01-01T10:00:00Z",
        last_error: "connection refused",
        next_retry_at: "2026-01-01T10:01:00Z",
      },
    });
    render(Status);
    const signIn = await screen.findByTestId("sign-in");
    expect(signIn).toHaveTextContent("Offline");
    expect(signIn).toHaveTextContent("ana@example.com");
    expect(signIn).toHaveTextContent("connection refused");
  });

  it("shows why the OS keyring can't be used", async () => {
    invoke.mockResolvedValue({
      ...signedOut,
      keyring_problem: "no Secret Service on the session bus",
    });
    render(Status);
    expect(await screen.findByTestId("keyring-problem")).toHaveTextContent(
      "no Secret Service on the session bus",
    );
  });

  it("says so when no roles are configured", async () => {
    invoke.mockResolvedValue({ ...signedOut, roles: [] });
    render(Status);
    await screen.findByTestId("account");
    expect(screen.queryByTestId("roles")).not.toBeInTheDocument();
    expect(screen.getByText(/No roles are configured yet/)).toBeInTheDocument();
  });

  it("renders the config error text and what to do", async () => {
    invoke.mockRejectedValue(configError);
    render(Status);

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Snowgate can't use its config");
    expect(within(alert).getByTestId("problem-message")).toHaveTextContent(configError.message);
    expect(alert).toHaveTextContent("fix the line and key it points to");
    expect(within(alert).getByRole("button", { name: "Try again" })).toBeEnabled();
    expect(screen.queryByTestId("account")).not.toBeInTheDocument();
  });

  it("re-reads the config on Try again and shows the status once it is fixed", async () => {
    invoke.mockRejectedValueOnce(configError).mockResolvedValueOnce(signedOut);
    render(Status);

    await userEvent.click(await screen.findByRole("button", { name: "Try again" }));

    expect(await screen.findByTestId("account")).toHaveTextContent("acme-prod");
    expect(invoke).toHaveBeenLastCalledWith("reload_config");
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("shows a failed call that is not a broker error as an internal problem", async () => {
    invoke.mockRejectedValue("command broker_status not allowed by ACL");
    render(Status);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Something went wrong inside Snowgate");
    expect(alert).toHaveTextContent("not allowed by ACL");
  });
});
