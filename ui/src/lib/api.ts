// The UI's only door to the broker: typed wrappers over Tauri's `invoke` and `listen`. The
// broker's answers have types generated from the Rust types that build them (ts-rs, in
// `./bindings/`; `npm run bindings` writes them, and the engine's `bindings` test fails when
// they are stale). Only the shell's own shapes (`StartupError`, settings, the browser error
// added to a sign-in) are written here by hand.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

import type { AccountStatus } from "./bindings/AccountStatus";
import type { Agent } from "./bindings/Agent";
import type { AgentRemoved } from "./bindings/AgentRemoved";
import type { AuditExport } from "./bindings/AuditExport";
import type { AuditRecord } from "./bindings/AuditRecord";
import type { AuditVerification } from "./bindings/AuditVerification";
import type { ApproverLoginStart } from "./bindings/ApproverLoginStart";
import type { BrokerStatus } from "./bindings/BrokerStatus";
import type { ConfirmAsk } from "./bindings/ConfirmAsk";
import type { ConnectInfo } from "./bindings/ConnectInfo";
import type { ControlError } from "./bindings/ControlError";
import type { GrantView } from "./bindings/GrantView";
import type { IdentityStatus } from "./bindings/IdentityStatus";
import type { LoginStart as LoginStartAnswer } from "./bindings/LoginStart";
import type { LogoutAnswer } from "./bindings/LogoutAnswer";
import type { Profile } from "./bindings/Profile";
import type { RoleInfo } from "./bindings/RoleInfo";
import type { SessionEnded } from "./bindings/SessionEnded";
import type { SessionInfo } from "./bindings/SessionInfo";
import type { ToolSecretCreated } from "./bindings/ToolSecretCreated";
import type { ToolSecretInfo } from "./bindings/ToolSecretInfo";
import type { ToolSecretRevoked } from "./bindings/ToolSecretRevoked";
import type { WhoAmIAnswer } from "./bindings/WhoAmIAnswer";

export type { Actor } from "./bindings/Actor";
export type { Approval } from "./bindings/Approval";
export type { Decider } from "./bindings/Decider";
export type { Extension } from "./bindings/Extension";
export type { ExtensionState } from "./bindings/ExtensionState";
export type { GatewayStatus } from "./bindings/GatewayStatus";
export type { GrantState } from "./bindings/GrantState";
export type { TeamStatus } from "./bindings/TeamStatus";
export type { ToolAsk } from "./bindings/ToolAsk";
export type {
  ConfirmAsk,
  AuditExport,
  AuditRecord,
  BrokerStatus,
  ConnectInfo,
  Profile,
};

/** Where the user stands with the identity provider. */
export type SignIn = IdentityStatus;

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

/**
 * Calls `onAsk` when a program asks the control socket for a Snowflake token or a tool secret
 * and the tray wants the person to allow it, and `onClosed` with its id when it no longer waits
 * (its time ran out). Answer with {@link answerConfirm}.
 */
export async function onConfirm(
  onAsk: (ask: ConfirmAsk) => void,
  onClosed: (id: number) => void,
): Promise<UnlistenFn> {
  const fns = await Promise.all([
    listen<ConfirmAsk>("app://confirm", ({ payload }) => onAsk(payload)),
    listen<{ id: number }>("app://confirm-closed", ({ payload }) => onClosed(payload.id)),
  ]);
  return () => fns.forEach((f) => f());
}

/** The questions still waiting for the person's answer (asked while the window was closed). */
export async function pendingConfirms(): Promise<ConfirmAsk[]> {
  return (await command<ConfirmAsk[] | null>("confirm_pending")) ?? [];
}

/** Allows or denies a request the tray asked about. */
export function answerConfirm(id: number, allow: boolean): Promise<void> {
  return command<undefined>("confirm_answer", { id, allow }).then(() => undefined);
}

/** What the tray asked a newly opened window to show first (`src-tauri/src/window.rs`). */
export type Opening = { view: ViewId | null; signIn: boolean };

/**
 * Tells the shell the window listens for the tray's events now, and returns what the tray
 * asked for before that (a view, a browser sign-in), once. Call it after `onNavigate` and
 * `onSignInRequested` are listening, so nothing falls between the two.
 */
export async function windowOpened(): Promise<Opening> {
  const opening = await command<{ view: string | null; signIn: boolean } | null>("window_opened");
  const view = opening?.view as ViewId | null | undefined;
  return { view: view && VIEW_IDS.includes(view) ? view : null, signIn: opening?.signIn === true };
}

/**
 * Tells the shell the window painted its first frame. It logs the time since it created the
 * window, and `pageMs`: the part of it since the page's navigation started (the rest is WebKit
 * starting its processes).
 */
export function windowPainted(pageMs: number): Promise<void> {
  return command<undefined>("window_painted", { pageMs: Math.round(pageMs) }).then(() => undefined);
}

/** Calls `handler` when the tray's "Sign in" asks the window to start a browser sign-in. */
export function onSignInRequested(handler: () => void): Promise<UnlistenFn> {
  return listen("app://sign-in", () => handler());
}

// ---------------------------------------------------------------------------------------------
// Signing in and out. These reject with a `CommandError`, never anything else.

/** A failure with a sentence a person can act on (the engine's `ControlError`). */
export type CommandError = ControlError;

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

/** How a sign-in started; for the browser, why the shell could not open it, if it could not. */
export type LoginStart = LoginStartAnswer & { browser_error?: string };

/** Who is signed in and what the broker holds for them; never a token value. */
export type WhoAmI = WhoAmIAnswer;

/** What a sign-out did; `message` is the sentence to show. */
export type LogoutReport = LogoutAnswer;

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

// ---------------------------------------------------------------------------------------------
// Just-in-time access. Every call rejects with a `CommandError`.

/**
 * A grant as the broker answers it: the grant, with `awaits_decision` and `granted_secs`
 * worked out by the engine so the window never derives them again.
 */
export type Grant = GrantView;

/** A requestable role and its rules. Durations are in Snowgate's grammar (`8h`, `1h30m`). */
export type Role = RoleInfo;

/** An approver's fresh sign-in, started for one decision; the shell has opened its page. */
export type ApproverLogin = ApproverLoginStart & {
  /** Why the shell could not open a browser, if it could not. */
  browser_error?: string;
};

/** What verifying the audit log found; `ok: false` carries the first problem. */
export type AuditVerify = AuditVerification;

/** A live gateway session of a local tool. */
export type Session = SessionInfo;
export type { Agent, AgentRemoved };

export type ToolSecret = ToolSecretInfo;
export type CreatedToolSecret = ToolSecretCreated;
export type RevokedToolSecret = ToolSecretRevoked;

/** The config essentials, read-only. */
export interface Settings {
  config_path: string;
  issuer: string;
  client_id: string;
  /** The default account (the first of `accounts`). */
  snowflake_account: string;
  /** Every account behind the gateway, in config order. */
  accounts: AccountStatus[];
  gateway_listen: string[];
  /** The team server's URL; `null` in solo mode. */
  team_server: string | null;
}

/** The roles that can be requested, with their rules. */
export function roles(): Promise<Role[]> {
  return command("roles");
}

/** Asks for `role` for `durationSecs`; comes back active when auto-approved, else pending. */
export function requestAccess(
  role: string,
  durationSecs: number,
  reason: string,
  ticket: string | null,
): Promise<Grant> {
  return command("request_access", { role, durationSecs, reason, ticket });
}

/** The signed-in user's grants, or with `all` everyone's; newest first. */
export function grants(all = false): Promise<Grant[]> {
  return command("grants", { all });
}

/** Starts an approver's fresh sign-in for a decision on `grantId`; the shell opens the page. */
export function approverLoginBegin(grantId: string): Promise<ApproverLogin> {
  return command("approver_login_begin", { grantId });
}

/** Approves a request or extension once the approver's sign-in `approverLoginId` completes. */
/** `approverLoginId` is the approver's fresh sign-in in solo mode; `null` in team mode, where the
 *  signed-in user decides as themselves. */
export function approve(id: string, comment: string | null, approverLoginId: string | null): Promise<Grant> {
  return command("approve", { id, comment, approverLoginId });
}

/** Denies a request or extension (a comment is required) once the approver has signed in. */
export function deny(id: string, comment: string, approverLoginId: string | null): Promise<Grant> {
  return command("deny", { id, comment, approverLoginId });
}

/** Ends an active grant early as the approver who signed in with `approverLoginId`. */
export function revokeAs(id: string, comment: string | null, approverLoginId: string | null): Promise<Grant> {
  return command("revoke", { id, comment, approverLoginId });
}

/** Gives up the signed-in user's own grant. */
export function revokeOwn(id: string, comment: string | null = null): Promise<Grant> {
  return command("revoke", { id, comment, approverLoginId: null });
}

/** Asks for `bySecs` more on an active grant: a new decision under the same policy. */
export function extend(id: string, bySecs: number, reason: string): Promise<Grant> {
  return command("extend", { id, bySecs, reason });
}

/** Withdraws a pending request, or the pending extension of an active grant. */
export function cancel(id: string): Promise<Grant> {
  return command("cancel", { id });
}

/** Audit records since `since` (RFC 3339), at most `limit`. */
export function audit(since: string | null, limit: number | null): Promise<AuditRecord[]> {
  return command("audit", { since, limit });
}

/** Checks the whole audit chain against its anchor. */
export function auditVerify(): Promise<AuditVerify> {
  return command("audit_verify");
}

/** The whole audit log as JSON Lines. */
export function auditExport(): Promise<AuditExport> {
  return command("audit_export");
}

/** Asks where to save `text` and saves it; `null` when the person cancelled. */
export function saveText(suggestedName: string, text: string): Promise<{ path: string } | null> {
  return command("save_text", { suggestedName, text });
}

/** The gateway's live sessions. */
export function sessions(): Promise<Session[]> {
  return command("sessions");
}

/** The AI agents with their own identities (`snowgate agent add`); never a secret. */
export async function agentList(): Promise<Agent[]> {
  return (await command<Agent[] | null>("agent_list")) ?? [];
}

/** Removes an agent: its secret stops working and its sessions end. */
export function agentRemove(name: string): Promise<AgentRemoved> {
  return command("agent_remove", { name });
}

/** Ends one gateway session; the tool sees why. */
export function endSession(id: string): Promise<SessionEnded> {
  return command("end_session", { id });
}

/** Where and how tools reach the gateway. */
export function connectInfo(): Promise<ConnectInfo> {
  return command("connect_info");
}

/** The tools that have a connection secret. */
export function toolSecretList(): Promise<ToolSecret[]> {
  return command("tool_secret_list");
}

/** Makes a connection secret for `name` (`rotate` replaces an existing one); shown once. */
export function toolSecretCreate(name: string, rotate = false): Promise<CreatedToolSecret> {
  return command("tool_secret_create", { name, rotate });
}

/** Revokes the secret of `name`, which ends the sessions opened with it. */
export function toolSecretRevoke(name: string): Promise<RevokedToolSecret> {
  return command("tool_secret_revoke", { name });
}

/** The config essentials. */
export function settings(): Promise<Settings> {
  return command("settings");
}

/** Whether Snowgate starts at login. */
export function autostartGet(): Promise<boolean> {
  return command("autostart_get");
}

/** Turns starting at login on or off; returns the state now in effect. */
export function autostartSet(enabled: boolean): Promise<boolean> {
  return command("autostart_set", { enabled });
}

/** What changed in the broker, so screens can fetch it again. */
export type ChangedWhat = "grants" | "sessions" | "identity";

/** Calls `handler` each time the broker says grants, sessions or the sign-in changed. */
export function onChanged(handler: (what: ChangedWhat) => void): Promise<UnlistenFn> {
  return listen<{ what: ChangedWhat }>("snowgate://changed", ({ payload }) => handler(payload.what));
}

/** The screens the tray menu can open. */
export type ViewId = "access" | "request" | "approvals" | "sessions" | "agents" | "connect" | "audit" | "settings";

export const VIEW_IDS: readonly ViewId[] = [
  "access",
  "request",
  "approvals",
  "sessions",
  "agents",
  "connect",
  "audit",
  "settings",
];

/** Calls `handler` when the tray menu asks the window to show a screen. */
export function onNavigate(handler: (view: ViewId) => void): Promise<UnlistenFn> {
  return listen<{ view: string }>("app://navigate", ({ payload }) => {
    const view = payload?.view as ViewId;
    if (VIEW_IDS.includes(view)) handler(view);
  });
}
