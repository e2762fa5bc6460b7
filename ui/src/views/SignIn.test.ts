import { act, render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { BrokerStatus, LoginStart, Profile } from "../lib/api";
import SignIn from "./SignIn.svelte";

// The component talks to the shell only through `invoke`; replace it with a fake IPC that
// answers each command from `answers`.
const invoke = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));

type Answer = (args: Record<string, unknown> | undefined) => unknown;
let answers: Record<string, Answer>;

beforeEach(() => {
  invoke.mockReset();
  answers = {
    login_cancel: () => undefined,
    "plugin:clipboard-manager|write_text": () => undefined,
  };
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

afterEach(() => {
  vi.useRealTimers();
});

/** A promise the test settles when it wants to. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const signedOut: BrokerStatus = {
  version: "0.1.0",
  sign_in: { state: "signed_out" },
  issuer: "https://idp.example.com/oidc",
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

const browserStart: LoginStart = {
  kind: "browser",
  login_id: "login-1",
  authorize_url: "https://idp.example.com/oidc/auth?client_id=snowgate&state=abc",
};

const deviceStart: LoginStart = {
  kind: "device",
  login_id: "login-2",
  user_code: "WDJB-MJHT",
  verification_uri: "https://idp.example.com/oidc/device",
  verification_uri_complete: "https://idp.example.com/oidc/device?user_code=WDJB-MJHT",
  expires_in_secs: 600,
};

const alice: Profile = {
  subject: "alice",
  email: "alice@example.test",
  name: "Alice Analyst",
  groups: ["analysts"],
  issuer: "https://idp.example.com/oidc",
  client_id: "snowgate-desktop",
  last_sign_in: "2026-01-01T10:00:00Z",
};

describe("SignIn", () => {
  it("offers the browser and a device code, and no session-only option when the keyring works", () => {
    render(SignIn, { status: signedOut });
    expect(screen.getByRole("heading", { level: 1, name: "Sign in" })).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Sign in with your browser" })).toBeEnabled();
    expect(screen.getByRole("button", { name: "Use a device code" })).toBeEnabled();
    expect(screen.getByTestId("sign-in-choices")).toHaveTextContent("idp.example.com");
    expect(screen.queryByTestId("session-only")).not.toBeInTheDocument();
    expect(screen.queryByRole("checkbox")).not.toBeInTheDocument();
  });

  it("starts a browser sign-in, shows it as pending, and reports who signed in", async () => {
    const wait = deferred<Profile>();
    answers.login_begin = () => browserStart;
    answers.login_wait = () => wait.promise;
    const onsignedin = vi.fn();
    render(SignIn, { status: signedOut, onsignedin });

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));

    const pending = await screen.findByTestId("browser-pending");
    expect(pending).toHaveTextContent("Finish signing in in your browser");
    expect(pending).toHaveTextContent("idp.example.com");
    await waitFor(() =>
      expect(within(pending).getByRole("heading", { name: "Finish signing in in your browser" })).toHaveFocus(),
    );
    expect(within(pending).getByRole("button", { name: "Cancel" })).toBeEnabled();
    expect(screen.queryByRole("button", { name: "Sign in with your browser" })).not.toBeInTheDocument();
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: false, sessionOnly: false });
    expect(invoke).toHaveBeenCalledWith("login_wait", { loginId: "login-1" });
    // The page opened in the browser; the link is not repeated when nothing went wrong.
    expect(screen.queryByTestId("authorize-url")).not.toBeInTheDocument();

    await act(() => wait.resolve(alice));

    await waitFor(() => expect(onsignedin).toHaveBeenCalledWith(alice));
    await waitFor(() => expect(screen.queryByTestId("browser-pending")).not.toBeInTheDocument());
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("Cancel abandons the sign-in and returns to the choices without an error", async () => {
    const wait = deferred<Profile>();
    answers.login_begin = () => browserStart;
    answers.login_wait = () => wait.promise;
    const onsignedin = vi.fn();
    render(SignIn, { status: signedOut, onsignedin });

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));
    await userEvent.click(await screen.findByRole("button", { name: "Cancel" }));

    expect(invoke).toHaveBeenCalledWith("login_cancel", { loginId: "login-1" });
    const again = screen.getByRole("button", { name: "Sign in with your browser" });
    expect(again).toBeEnabled();
    await waitFor(() => expect(again).toHaveFocus());
    // The shell ends the wait with an error; the screen expected it and shows none.
    await act(() => wait.reject({ kind: "bad_request", message: "the sign-in was cancelled" }));
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(onsignedin).not.toHaveBeenCalled();
  });

  it("shows the sign-in link to copy when no browser could be opened", async () => {
    answers.login_begin = () => ({ ...browserStart, browser_error: "Snowgate could not open a browser: no xdg-open" });
    answers.login_wait = () => new Promise(() => {});
    render(SignIn, { status: signedOut });

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));

    const pending = await screen.findByTestId("browser-pending");
    expect(pending).toHaveTextContent("Snowgate could not open a browser: no xdg-open");
    expect(within(pending).getByTestId("authorize-url")).toHaveTextContent(browserStart.authorize_url);
    await userEvent.click(within(pending).getByRole("button", { name: "Copy link" }));
    expect(invoke).toHaveBeenCalledWith("plugin:clipboard-manager|write_text", {
      text: browserStart.authorize_url,
    });
    expect(await within(pending).findByRole("button", { name: "Copied" })).toBeInTheDocument();
  });

  it("shows the device code large, where to enter it, a copy button and a live countdown", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true, toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout", "Date"] });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    answers.login_begin = () => deviceStart;
    answers.login_wait = () => new Promise(() => {});
    render(SignIn, { status: signedOut });

    await user.click(screen.getByRole("button", { name: "Use a device code" }));

    const pending = await screen.findByTestId("device-pending");
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: true, sessionOnly: false });
    expect(within(pending).getByTestId("user-code")).toHaveTextContent("WDJB-MJHT");
    expect(within(pending).getByTestId("user-code")).toHaveClass("user-code");
    expect(within(pending).getByTestId("verification-uri")).toHaveTextContent(
      "https://idp.example.com/oidc/device",
    );
    expect(within(pending).getByTestId("countdown")).toHaveTextContent("Code expires in 10:00");

    await act(() => vi.advanceTimersByTime(61_000));
    expect(within(pending).getByTestId("countdown")).toHaveTextContent("Code expires in 8:59");

    await user.click(within(pending).getByRole("button", { name: "Copy code" }));
    expect(invoke).toHaveBeenCalledWith("plugin:clipboard-manager|write_text", { text: "WDJB-MJHT" });
    expect(await within(pending).findByRole("button", { name: "Copied" })).toBeInTheDocument();

    await user.click(within(pending).getByRole("button", { name: "Copy link with code" }));
    expect(invoke).toHaveBeenCalledWith("plugin:clipboard-manager|write_text", {
      text: "https://idp.example.com/oidc/device?user_code=WDJB-MJHT",
    });
  });

  it("says when the device code has expired", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true, toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout", "Date"] });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    answers.login_begin = () => ({ ...deviceStart, expires_in_secs: 30 });
    answers.login_wait = () => new Promise(() => {});
    render(SignIn, { status: signedOut });

    await user.click(screen.getByRole("button", { name: "Use a device code" }));
    const countdown = await screen.findByTestId("countdown");
    expect(countdown).toHaveTextContent("0:30");

    await act(() => vi.advanceTimersByTime(31_000));
    expect(countdown).toHaveTextContent("This code has expired");
    expect(screen.getByTestId("user-code")).toHaveClass("expired");
  });

  it("shows the engine's sentence when a sign-in cannot start, and lets the person retry", async () => {
    answers.login_begin = () => {
      throw {
        kind: "unavailable",
        message: "the identity provider at https://idp.example.com/oidc can't be reached: connection refused",
      };
    };
    render(SignIn, { status: signedOut });

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Sign-in didn't work");
    expect(within(alert).getByTestId("sign-in-error-message")).toHaveTextContent(
      "the identity provider at https://idp.example.com/oidc can't be reached: connection refused",
    );
    expect(alert).toHaveTextContent("Check your network or VPN connection");
    expect(screen.getByRole("button", { name: "Sign in with your browser" })).toBeEnabled();
  });

  it("shows why a sign-in failed at the IdP and returns to the choices", async () => {
    answers.login_begin = () => deviceStart;
    answers.login_wait = () =>
      Promise.reject({ kind: "bad_request", message: "the IdP refused the sign-in: access_denied (End-User aborted interaction)" });
    render(SignIn, { status: signedOut });

    await userEvent.click(screen.getByRole("button", { name: "Use a device code" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("access_denied (End-User aborted interaction)");
    expect(screen.queryByTestId("device-pending")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Use a device code" })).toBeEnabled();
  });

  it("offers memory-only tokens when the keyring can't be used, says why, and sends the choice", async () => {
    answers.login_begin = () => browserStart;
    answers.login_wait = () => new Promise(() => {});
    render(SignIn, {
      status: {
        ...signedOut,
        keyring_problem: "the Secret Service on D-Bus is locked; unlock your keyring, or sign in with --session-only",
        summary: "Signed out; the OS keyring can't be reached",
      },
    });

    const option = screen.getByTestId("session-only");
    expect(option).toHaveTextContent("The OS keyring can't be used");
    expect(option).toHaveTextContent("the Secret Service on D-Bus is locked");
    const box = within(option).getByRole("checkbox", { name: /Keep tokens in memory only/ });
    expect(box).toBeChecked();

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: false, sessionOnly: true });
  });

  it("sends a normal sign-in when the person unticks memory-only", async () => {
    answers.login_begin = () => deviceStart;
    answers.login_wait = () => new Promise(() => {});
    render(SignIn, { status: { ...signedOut, keyring_problem: "no Secret Service" } });

    await userEvent.click(screen.getByRole("checkbox", { name: /Keep tokens in memory only/ }));
    await userEvent.click(screen.getByRole("button", { name: "Use a device code" }));
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: true, sessionOnly: false });
  });

  it("offers memory-only tokens after a sign-in failed to reach the keyring", async () => {
    const keyringDown =
      "Snowgate can't reach the OS keyring (the Secret Service on D-Bus): no Secret Service. Make sure your keyring is running and unlocked, or sign in with --session-only to keep tokens in memory until the broker stops.";
    answers.login_begin = (args) =>
      args?.sessionOnly ? browserStart : { ...browserStart, login_id: "first" };
    answers.login_wait = (args) =>
      args?.loginId === "first" ? Promise.reject({ kind: "bad_request", message: keyringDown }) : new Promise(() => {});
    render(SignIn, { status: signedOut });

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("can't reach the OS keyring");
    expect(alert).toHaveTextContent("keep tokens in memory only (below)");
    const box = within(screen.getByTestId("session-only")).getByRole("checkbox", {
      name: /Keep tokens in memory only/,
    });
    expect(box).toBeChecked();

    await userEvent.click(screen.getByRole("button", { name: "Sign in with your browser" }));
    expect(invoke).toHaveBeenLastCalledWith("login_wait", { loginId: "login-1" });
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: false, sessionOnly: true });
  });

  it("starts a browser sign-in when the tray asks for one, and says it took the request", async () => {
    answers.login_begin = () => browserStart;
    answers.login_wait = () => new Promise(() => {});
    const onbrowserrequesttaken = vi.fn();
    const view = render(SignIn, { status: signedOut, browserRequested: false, onbrowserrequesttaken });
    expect(invoke).not.toHaveBeenCalled();

    await view.rerender({ status: signedOut, browserRequested: true, onbrowserrequesttaken });

    expect(await screen.findByTestId("browser-pending")).toBeInTheDocument();
    expect(invoke).toHaveBeenCalledWith("login_begin", { device: false, sessionOnly: false });
    expect(onbrowserrequesttaken).toHaveBeenCalledTimes(1);
  });

  it("shows what the last sign-out did", () => {
    render(SignIn, { status: signedOut, notice: "Signed out; the IdP revoked the sign-in." });
    expect(screen.getByTestId("sign-in-notice")).toHaveTextContent("Signed out; the IdP revoked the sign-in.");
  });
});
