// The UI's only door to the broker: typed wrappers over Tauri's `invoke` and `listen`. Types
// mirror the Rust side (`snowgate_engine::BrokerStatus`, `snowgate_engine::broker::LoginStart`,
// `snowgate_engine::identity::WhoAmI`, `snowgate_engine::control::ControlError`, and the
// shell's `StartupError`); keep them in step when a command changes.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

/** Where the user stands with the identity provider (`snowgate_engine::identity::IdentityStatus`). */
export type SignIn =
  | { state: "signed_out" }
  | { state: "signing_in" }
  | { state: "signed_in"; subject: string }
  | {
      /** Signed in, but the IdP could not be reached; the broker retries with backoff. */
      state: "offline_retrying";
      subject: string;
      since: string;
      last_error: string;
      next_retry_at: string;
    };

/** A snapshot of the broker; it never holds secrets. */
export interface BrokerStatus {
  version: string;
  sign_in: SignIn;
  /** Why the OS keyring can't be used, when it can't; sign-in then needs session-only mode. */
  keyring_problem?: string;
  /** The identity provider's issuer URL. */
  issuer: string;
  /** The Snowflake account behind the gateway. */
  account: string;
  /** The Snowflake URL the gateway forwards to. */
  snowflake_url: string;
  /** Loopback addresses the gateway listens on, like `127.0.0.1:8765`. */
  gateway_listen: string[];
  /** Roles that can be requested. */
  roles: string[];
  /** One line for the tray, like "Signed out". */
  summary: string;
  /** The loopback gateway: where it listens, whether it serves, how many sessions are open. */
  gateway: GatewayStatus;
  /** Things to know that are not errors (the audit anchor is in memory, the port is taken). */
  notes?: string[];
}

/** The gateway's part of the status (`snowgate_engine::status::GatewayStatus`). */
export interface GatewayStatus {
  listen: string[];
  state: "serving" | "not_serving" | "stopped";
  /** Why it is not serving, as a sentence with the fix. */
  problem?: string;
  open_sessions: number;
}

/** Whether `signIn` holds a usable sign-in (offline still does, until its tokens expire). */
export function isSignedIn(signIn: SignIn): signIn is Extract<SignIn, { subject: string }> {
  return signIn.state === "signed_in" || signIn.state === "offline_retrying";
}

/**
 * Why the broker is not running. All kinds but `internal` come from the shell; `internal`
 * means the call itself failed (for example, a missing permission), which is a bug in Snowgate.
 */
export interface BrokerUnavailable {
  kind: "config" | "data_dir" | "already_running" | "control_socket" | "internal";
  /** A sentence to act on; for config errors it names the file, line and key. */
  message: string;
}

export type StatusResult =
  | { ok: true; status: BrokerStatus }
  | { ok: false; error: BrokerUnavailable };

const UNAVAILABLE_KINDS: readonly string[] = [
  "config",
  "data_dir",
  "already_running",
  "control_socket",
];

function isUnavailable(value: unknown): value is BrokerUnavailable {
  if (typeof value !== "object" || value === null) return false;
  const { kind, message } = value as Record<string, unknown>;
  return typeof kind === "string" && UNAVAILABLE_KINDS.includes(kind) && typeof message === "string";
}

async function statusCall(command: string): Promise<StatusResult> {
  try {
    return { ok: true, status: await invoke<BrokerStatus>(command) };
  } catch (e: unknown) {
    if (isUnavailable(e)) return { ok: false, error: e };
    return { ok: false, error: { kind: "internal", message: String(e) } };
  }
}

/** The broker's status, or why the broker is not running. */
export function brokerStatus(): Promise<StatusResult> {
  return statusCall("broker_status");
}

/** Stops the broker, re-reads the config file, starts it again and returns the new status. */
export function reloadConfig(): Promise<StatusResult> {
  return statusCall("reload_config");
}

/** The status event's payload (`src-tauri/src/follow.rs`). */
type StatusUpdate = { ok: BrokerStatus } | { error: BrokerUnavailable };

/** Calls `handler` with every status the shell publishes (sign-in, sign-out, offline, reload). */
export function onBrokerStatus(handler: (result: StatusResult) => void): Promise<UnlistenFn> {
  return listen<StatusUpdate>("broker://status", ({ payload }) => {
    handler("ok" in payload ? { ok: true, status: payload.ok } : { ok: false, error: payload.error });
  });
}

/** Calls `handler` when the tray's "Sign in" asks the window to start a browser sign-in. */
export function onSignInRequested(handler: () => void): Promise<UnlistenFn> {
  return listen("app://sign-in", () => handler());
}

// ---------------------------------------------------------------------------------------------
// Signing in and out. These reject with a `CommandError`, never anything else.

/** A failure with a sentence a person can act on (`snowgate_engine::control::ControlError`). */
export interface CommandError {
  kind: "bad_request" | "forbidden" | "signed_out" | "unavailable" | "internal";
  message: string;
}

/** Any rejection as a `CommandError`: the engine's own, or `internal` with the text. */
export function asCommandError(e: unknown): CommandError {
  if (typeof e === "object" && e !== null) {
    const { kind, message } = e as Record<string, unknown>;
    if (typeof kind === "string" && typeof message === "string") {
      return { kind: kind as CommandError["kind"], message };
    }
  }
  return { kind: "internal", message: String(e) };
}

async function command<T>(name: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(name, args);
  } catch (e: unknown) {
    throw asCommandError(e);
  }
}

/** How a sign-in started. */
export type LoginStart =
  | {
      kind: "browser";
      login_id: string;
      /** The IdP's sign-in page; the shell has opened it in the system browser. */
      authorize_url: string;
      /** Why the shell could not open a browser, if it could not. */
      browser_error?: string;
    }
  | {
      kind: "device";
      login_id: string;
      /** The code the person types at `verification_uri`. */
      user_code: string;
      verification_uri: string;
      /** A link that carries the code already, if the IdP offers one. */
      verification_uri_complete: string | null;
      expires_in_secs: number;
    };

/** Who signed in, as the IdP said (`snowgate_engine::identity::Profile`). */
export interface Profile {
  subject: string;
  email?: string | null;
  name?: string | null;
  groups: string[];
  issuer: string;
  last_sign_in: string;
}

/** Who is signed in and what the broker holds for them; never a token value. */
export interface WhoAmI {
  subject: string;
  email: string | null;
  name: string | null;
  groups: string[];
  issuer: string;
  last_sign_in: string;
  idp_access_token_expires_at: string | null;
  snowflake_tokens: { role: string; expires_at: string }[];
  refresh_token_present: boolean;
  /** Where the refresh token is kept. */
  vault: "os_keyring" | "session_only";
}

/** What a sign-out did; `message` is the sentence to show. */
export interface LogoutReport {
  was_signed_in: boolean;
  revoked: boolean;
  message: string;
}

/**
 * Starts a sign-in: through the browser (the shell opens the page), or with `device`, a code
 * to confirm on any device. `sessionOnly` keeps tokens in memory instead of the OS keyring.
 */
export function loginBegin(device: boolean, sessionOnly: boolean): Promise<LoginStart> {
  return command("login_begin", { device, sessionOnly });
}

/** Waits until the sign-in `loginId` finishes, and returns who signed in. */
export function loginWait(loginId: string): Promise<Profile> {
  return command("login_wait", { loginId });
}

/** Abandons the sign-in `loginId`; its `loginWait` rejects. */
export function loginCancel(loginId: string): Promise<void> {
  return command("login_cancel", { loginId });
}

/** Signs out: revokes the sign-in at the IdP and deletes it from the OS keyring. */
export function logout(): Promise<LogoutReport> {
  return command("logout");
}

/** Who is signed in. */
export function whoami(): Promise<WhoAmI> {
  return command("whoami");
}

/** Puts `text` on the clipboard (the device code, a link). */
export function copyText(text: string): Promise<void> {
  return command("plugin:clipboard-manager|write_text", { text });
}
