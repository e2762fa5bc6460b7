import { act, render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import App from "./App.svelte";
import type { BrokerStatus } from "./lib/api";

// A fake shell: `invoke` answers commands, `listen` records the window's event handlers so a
// test can push the events the shell sends.
const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let handlers: Map<string, (event: { payload: unknown }) => void>;
let status: BrokerStatus;

const signedOut: BrokerStatus = {
  version: "0.1.0",
  sign_in: { state: "signed_out" },
  issuer: "https://idp.example.com/",
  account: "acme-prod",
  snowflake_url: "https://acme-prod.snowflakecomputing.com/",
  gateway_listen: ["127.0.0.1:8765"],
  roles: ["ANALYST"],
  summary: "Signed out",
  gateway: { listen: ["127.0.0.1:8765"], state: "serving", open_sessions: 0 },
};

const signedIn: BrokerStatus = {
  ...signedOut,
  sign_in: { state: "signed_in", subject: "alice" },
  summary: "Signed in as alice",
};

beforeEach(() => {
  handlers = new Map();
  status = signedOut;
  listen.mockReset();
  listen.mockImplementation(async (name: string, handler: (event: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  });
  invoke.mockReset();
  invoke.mockImplementation(async (command: string) => {
    switch (command) {
      case "broker_status":
        return status;
      case "whoami":
        return { subject: "alice", email: null, name: null, groups: ["analysts"], vault: "os_keyring" };
      case "login_begin":
        return { kind: "browser", login_id: "l1", authorize_url: "https://idp.example.com/auth" };
      case "login_wait":
        return new Promise(() => {});
      default:
        throw new Error(`unexpected command ${command}`);
    }
  });
});

function visibleScreen() {
  return screen.getByRole("heading", { level: 1 }).textContent;
}

function navLabels() {
  return screen.getAllByRole("button").filter((b) => b.classList.contains("nav-item")).map((b) => b.textContent?.trim());
}

describe("App", () => {
  it("opens on the Sign in screen while nobody is signed in", async () => {
    render(App);
    expect(await screen.findByRole("button", { name: "Sign in with your browser" })).toBeVisible();
    expect(visibleScreen()).toBe("Sign in");
    expect(navLabels()).toEqual(["Sign in", "Status"]);
  });

  it("opens on Status when someone is signed in, without a Sign in screen", async () => {
    status = signedIn;
    render(App);
    expect(await screen.findByText("Signed in as")).toBeVisible();
    expect(visibleScreen()).toBe("Status");
    expect(navLabels()).toEqual(["Status"]);
  });

  it("moves to Status when the shell says the user signed in, and back when signed out", async () => {
    render(App);
    await screen.findByRole("button", { name: "Sign in with your browser" });

    await act(() => handlers.get("broker://status")?.({ payload: { ok: signedIn } }));
    await waitFor(() => expect(visibleScreen()).toBe("Status"));
    expect(screen.getByTestId("sign-in")).toHaveTextContent("Signed in as alice");
    expect(navLabels()).toEqual(["Status"]);

    await act(() => handlers.get("broker://status")?.({ payload: { ok: signedOut } }));
    await waitFor(() => expect(visibleScreen()).toBe("Sign in"));
  });

  it("shows a startup problem the shell pushes", async () => {
    render(App);
    await screen.findByRole("button", { name: "Sign in with your browser" });
    await act(() =>
      handlers.get("broker://status")?.({
        payload: { error: { kind: "already_running", message: "A Snowgate broker is already running" } },
      }),
    );
    expect(await screen.findByRole("alert")).toHaveTextContent("Another Snowgate broker is running");
    expect(navLabels()).toEqual(["Status"]);
  });

  it("starts a browser sign-in when the tray's Sign in asks for one", async () => {
    render(App);
    await screen.findByRole("button", { name: "Sign in with your browser" });
    await userEvent.click(screen.getByRole("button", { name: "Status" }));
    expect(visibleScreen()).toBe("Status");

    await act(() => handlers.get("app://sign-in")?.({ payload: null }));

    expect(await screen.findByTestId("browser-pending")).toBeVisible();
    expect(visibleScreen()).toBe("Sign in");
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: false, sessionOnly: false });
  });

  it("starts no second sign-in when the Sign in screen comes back after a sign-out", async () => {
    render(App);
    await screen.findByRole("button", { name: "Sign in with your browser" });
    await act(() => handlers.get("app://sign-in")?.({ payload: null }));
    await screen.findByTestId("browser-pending");
    await act(() => handlers.get("broker://status")?.({ payload: { ok: signedIn } }));
    await waitFor(() => expect(visibleScreen()).toBe("Status"));

    await act(() => handlers.get("broker://status")?.({ payload: { ok: signedOut } }));

    expect(await screen.findByRole("button", { name: "Sign in with your browser" })).toBeVisible();
    expect(invoke.mock.calls.filter(([command]) => command === "login_begin")).toHaveLength(1);
  });
});
