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
// What the tray asked a newly created window to show (`window_opened`).
let opening: { view: string | null; signIn: boolean };

const noneWaiting = { waiting: 0, others: 0, other_people: 0, refused: 0 };

const signedOut: BrokerStatus = {
  version: "0.1.0",
  sign_in: { state: "signed_out" },
  issuer: "https://idp.example.com/",
  account: "acme-prod",
  snowflake_url: "https://acme-prod.snowflakecomputing.com/",
  accounts: [{ name: "acme-prod", account: "acme-prod", snowflake_url: "https://acme-prod.snowflakecomputing.com/" }],
  gateway_listen: ["127.0.0.1:8765"],
  roles: ["ANALYST"],
  summary: "Signed out",
  gateway: { listen: ["127.0.0.1:8765"], state: "serving", open_sessions: 0 },
  mode: "solo",
  team_server: null,
  tool_asks: [],
};

const signedIn: BrokerStatus = {
  ...signedOut,
  sign_in: { state: "signed_in", subject: "alice" },
  summary: "Signed in as alice",
};

beforeEach(() => {
  handlers = new Map();
  status = signedOut;
  opening = { view: null, signIn: false };
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
      case "window_opened": {
        const o = opening;
        opening = { view: null, signIn: false };
        return o;
      }
      case "window_painted":
        return null;
      case "confirm_pending":
        return [];
      case "roles":
        return [];
      default:
        throw new Error(`unexpected command ${command}`);
    }
  });
});

function visibleScreen() {
  return screen.getByRole("heading", { level: 1 }).textContent;
}

const ACCESS = ["My access", "Request access", "Approvals", "Sessions", "Agents", "Connect", "Audit"];

function navLabels() {
  return screen.getAllByRole("button").filter((b) => b.classList.contains("nav-item")).map((b) => b.textContent?.trim());
}

describe("App", () => {
  it("turns a tool's ask into a request form with the role and default duration filled in", async () => {
    const roles = [
      { name: "ANALYST", description: "", max_duration: "8h", approver_groups: ["managers"], approvals_required: 1, auto_approve_up_to: "1h", pending_timeout: "30m", extensions_allowed: true },
      { name: "ENGINEER", description: "", max_duration: "2h", approver_groups: ["managers"], approvals_required: 1, auto_approve_up_to: null, pending_timeout: "30m", extensions_allowed: false },
    ];
    const base = invoke.getMockImplementation();
    invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) =>
      command === "roles" ? roles : base?.(command, args),
    );
    const ask = (role: string, over: Record<string, unknown> = {}) => ({
      tool: "PythonConnector (python)",
      role,
      first_at: 1,
      last_at: 2,
      logins: 3,
      duration_secs: 5400,
      notice_raised: true,
      ...over,
    });
    status = { ...signedIn, tool_asks: [ask("ENGINEER"), ask("ANALYST", { logins: 1, request: "g_filed" })] };
    render(App);
    const asks = await screen.findAllByTestId("tool-ask");
    expect(asks.map((a) => a.textContent?.replace(/\s+/g, " ").trim())).toEqual([
      "PythonConnector (python) asked for ENGINEER (3 logins) Request",
      "PythonConnector (python) asked for ANALYST Requested as g_filed",
    ]);
    // Only the ask without a request offers one.
    expect(screen.getAllByTestId("tool-ask-request")).toHaveLength(1);
    await userEvent.click(screen.getByTestId("tool-ask-request"));
    expect(visibleScreen()).toBe("Request access");
    const role = (await screen.findByTestId("request-role")) as HTMLSelectElement;
    await waitFor(() => expect(role.value).toBe("ENGINEER"));
    expect(screen.getByTestId("request-duration")).toHaveValue("1h30m");
    // The reason is the person's to give: empty, and where the typing goes.
    expect(screen.getByTestId("request-reason")).toHaveValue("");
    await waitFor(() => expect(screen.getByTestId("request-reason")).toHaveFocus());

    // From the sidebar the form starts empty again.
    await userEvent.click(screen.getByTestId("nav-status"));
    await userEvent.click(screen.getByTestId("nav-request"));
    await screen.findByTestId("request-role");
    expect(screen.getByTestId("request-duration")).toHaveValue("");
  });

  it("opens on the Sign in screen while nobody is signed in", async () => {
    render(App);
    expect(await screen.findByRole("button", { name: "Sign in with your browser" })).toBeVisible();
    expect(visibleScreen()).toBe("Sign in");
    expect(navLabels()).toEqual(["Sign in", ...ACCESS, "Status", "Settings"]);
    expect(screen.getByTestId("nav-sign-in")).toHaveAttribute("aria-current", "page");
  });

  it("in team mode reads the status again, so the team server's state stays current", async () => {
    vi.useFakeTimers();
    try {
      const team = (events: string): BrokerStatus => ({
        ...signedIn,
        mode: "team",
        team_server: "https://snowgate.example.com",
        team: { server: "https://snowgate.example.com", reachable: true, events, auth: "access_token", audit: noneWaiting },
      });
      status = team("connecting");
      render(App);
      await vi.waitFor(() => expect(screen.getByTestId("team-state")).toHaveTextContent("live updates connecting"));
      status = team("connected");
      await vi.advanceTimersByTimeAsync(3500);
      await vi.waitFor(() => expect(screen.getByTestId("team-state")).toHaveTextContent("live updates on"));
    } finally {
      vi.useRealTimers();
    }
  });

  it("in solo mode does not poll the status", async () => {
    vi.useFakeTimers();
    try {
      status = signedIn;
      render(App);
      await vi.waitFor(() => expect(screen.getByText("Signed in as")).toBeVisible());
      const before = invoke.mock.calls.filter(([c]) => c === "broker_status").length;
      await vi.advanceTimersByTimeAsync(10_000);
      expect(invoke.mock.calls.filter(([c]) => c === "broker_status").length).toBe(before);
    } finally {
      vi.useRealTimers();
    }
  });

  it("opens on Status when someone is signed in, without a Sign in screen", async () => {
    status = signedIn;
    render(App);
    expect(await screen.findByText("Signed in as")).toBeVisible();
    expect(visibleScreen()).toBe("Status");
    expect(navLabels()).toEqual([...ACCESS, "Status", "Settings"]);
  });

  it("moves to Status when the shell says the user signed in, and back when signed out", async () => {
    render(App);
    await screen.findByRole("button", { name: "Sign in with your browser" });

    await act(() => handlers.get("broker://status")?.({ payload: { ok: signedIn } }));
    await waitFor(() => expect(visibleScreen()).toBe("Status"));
    expect(screen.getByTestId("sign-in")).toHaveTextContent("Signed in as alice");
    expect(navLabels()).toEqual([...ACCESS, "Status", "Settings"]);

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

  it("opens a screen from the sidebar and marks it as the current one", async () => {
    status = signedIn;
    invoke.mockImplementation(async (command: string) => {
      if (command === "broker_status") return status;
      if (command === "whoami") return { subject: "alice", email: null, name: null, groups: [], vault: "os_keyring" };
      if (command === "sessions") return [];
      throw new Error(`unexpected command ${command}`);
    });
    render(App);
    await screen.findByText("Signed in as");

    await userEvent.click(screen.getByTestId("nav-sessions"));

    expect(visibleScreen()).toBe("Sessions");
    expect(screen.getByTestId("nav-sessions")).toHaveAttribute("aria-current", "page");
    expect(screen.getByTestId("nav-status")).not.toHaveAttribute("aria-current");
    expect(await screen.findByTestId("sessions-empty")).toBeVisible();
  });

  it("moves through the sidebar with the arrow keys, Home and End, and opens with Enter", async () => {
    status = signedIn;
    invoke.mockImplementation(async (command: string) => {
      if (command === "broker_status") return status;
      if (command === "whoami") return { subject: "alice", email: null, name: null, groups: [], vault: "os_keyring" };
      if (command === "settings")
        return {
          config_path: "/home/u/.config/snowgate/config.toml",
          issuer: "https://idp.example.com/",
          client_id: "snowgate",
          snowflake_account: "acme-prod",
          accounts: [{ name: "acme-prod", account: "acme-prod", snowflake_url: "https://acme-prod.snowflakecomputing.com" }],
          gateway_listen: ["127.0.0.1:8765"],
          team_server: null,
        };
      if (command === "autostart_get") return false;
      throw new Error(`unexpected command ${command}`);
    });
    render(App);
    await screen.findByText("Signed in as");
    const user = userEvent.setup();

    screen.getByTestId("nav-access").focus();
    await user.keyboard("{ArrowDown}");
    expect(screen.getByTestId("nav-request")).toHaveFocus();
    await user.keyboard("{ArrowUp}{ArrowUp}");
    expect(screen.getByTestId("nav-settings")).toHaveFocus();
    await user.keyboard("{Home}");
    expect(screen.getByTestId("nav-access")).toHaveFocus();
    await user.keyboard("{End}");
    expect(screen.getByTestId("nav-settings")).toHaveFocus();
    await user.keyboard("{Enter}");

    expect(visibleScreen()).toBe("Settings");
    expect(screen.getByTestId("nav-settings")).toHaveAttribute("aria-current", "page");
    expect(await screen.findByTestId("settings-account")).toHaveTextContent("acme-prod");
  });

  it("switches to the screen the tray menu asks for", async () => {
    status = signedIn;
    invoke.mockImplementation(async (command: string) => {
      if (command === "broker_status") return status;
      if (command === "whoami") return { subject: "alice", email: null, name: null, groups: [], vault: "os_keyring" };
      if (command === "roles") return [];
      throw new Error(`unexpected command ${command}`);
    });
    render(App);
    await screen.findByText("Signed in as");

    await act(() => handlers.get("app://navigate")?.({ payload: { view: "request" } }));

    await waitFor(() => expect(visibleScreen()).toBe("Request access"));
    expect(screen.getByTestId("nav-request")).toHaveAttribute("aria-current", "page");
    expect(await screen.findByTestId("roles-empty")).toBeVisible();

    // Something the window does not know is ignored.
    await act(() => handlers.get("app://navigate")?.({ payload: { view: "nowhere" } }));
    expect(visibleScreen()).toBe("Request access");
  });

  it("opens on the screen the tray asked for while the window was closed, after listening", async () => {
    status = signedIn;
    opening = { view: "request", signIn: false };
    render(App);
    await waitFor(() => expect(visibleScreen()).toBe("Request access"));
    // Asked only once the window listens for the tray's events, so nothing falls between.
    const calls = invoke.mock.calls.map((c) => c[0]);
    expect(calls.indexOf("window_opened")).toBeGreaterThan(-1);
    expect(listen.mock.calls.map((c) => c[0])).toEqual(
      expect.arrayContaining(["app://navigate", "app://sign-in", "broker://status"]),
    );
    await waitFor(() => expect(calls.concat(invoke.mock.calls.map((c) => c[0]))).toContain("window_painted"));
  });

  it("starts the browser sign-in the tray asked for while the window was closed", async () => {
    opening = { view: null, signIn: true };
    render(App);
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("login_begin", expect.anything()));
    expect(invoke.mock.calls.filter((c) => c[0] === "login_begin")).toHaveLength(1);
  });

  it("lists only Status while the broker is not running, even when asked for another screen", async () => {
    status = signedIn;
    render(App);
    await screen.findByText("Signed in as");
    await act(() =>
      handlers.get("broker://status")?.({
        payload: { error: { kind: "config", message: "config.toml: line 3: key `x`: unknown key" } },
      }),
    );
    await act(() => handlers.get("app://navigate")?.({ payload: { view: "audit" } }));
    expect(navLabels()).toEqual(["Status"]);
    expect(visibleScreen()).toBe("Status");
  });
});
