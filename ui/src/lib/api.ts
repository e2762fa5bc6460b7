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
  /** `solo`: grants on this machine, Snowflake tokens from the IdP. `team`: the team server
   *  keeps the grants, mints the tokens, and a decision is made as the signed-in user. */
  mode?: "solo" | "team";
  /** The team server's URL, in team mode. */
  team_server?: string | null;
  /** The team server's reachability and event stream, in team mode. */
  team?: TeamStatus;
  /** Things to know that are not errors (the audit anchor is in memory, the port is taken). */
  notes?: string[];
}

/** The team server's part of the status (`snowgate_engine::team::TeamStatus`). */
export interface TeamStatus {
  server: string;
  reachable: boolean;
  /** Why it can't be reached, when it can't. */
  problem?: string;
  unreachable_since?: string;
  /** `connected` while the event stream is open, else `connecting`. */
  events: string;
  /** How this desktop authenticates to the server: `access_token` or `id_token` (`[team] auth`). */
  auth?: "access_token" | "id_token";
  /** Who the server takes the signed-in user for, with the groups it resolved. */
  caller?: { subject: string; groups: string[] };
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

// ---------------------------------------------------------------------------------------------
// Just-in-time access. Types mirror `snowgate_grants::model` (serde of `Grant`) and the JSON
// the engine's `grant_ops` builds; every call rejects with a `CommandError`.

/** Where a grant is in its life (`snowgate_grants::GrantState`). */
export type GrantState =
  | "pending"
  | "active"
  | "denied"
  | "cancelled"
  | "timed_out"
  | "expired"
  | "revoked";

/** A verified person (`snowgate_grants::Actor`). */
export interface Actor {
  subject: string;
  email: string | null;
  groups: string[];
}

/** Who made an approval: a person, or the role's auto-approval policy. */
export type Decider = { kind: "person"; actor: Actor } | { kind: "policy" };

export interface Approval {
  by: Decider;
  comment: string | null;
  at: string;
}

/** Where an extension request is (`snowgate_grants::ExtensionState`). */
export type ExtensionState = "pending" | "approved" | "denied" | "timed_out" | "cancelled" | "lapsed";

/** A request to make an active grant longer. */
export interface Extension {
  requested_at: string;
  /** Seconds the grant would get on top. */
  extra: number;
  reason: string;
  pending_until: string;
  state: ExtensionState;
  approvals: Approval[];
  decided_at: string | null;
  decided_by: Actor | null;
  comment: string | null;
}

/** One request for a role and everything that happened to it (`snowgate_grants::Grant`). */
export interface Grant {
  /** `g_` and 20 characters. */
  id: string;
  role: string;
  requester: Actor;
  reason: string;
  ticket: string | null;
  /** Seconds asked for; the clock starts at approval. */
  requested_duration: number;
  state: GrantState;
  created_at: string;
  /** When a pending request times out. */
  pending_until: string;
  decided_at: string | null;
  approved_at: string | null;
  expires_at: string | null;
  ended_at: string | null;
  ended_by: Actor | null;
  end_comment: string | null;
  approvals: Approval[];
  extensions: Extension[];
  expiry_warned_for: string | null;
  updated_at: string;
  version: number;
}

/** A requestable role and its rules. Durations are in Snowgate's grammar (`8h`, `1h30m`). */
export interface Role {
  name: string;
  description: string;
  max_duration: string;
  approver_groups: string[];
  approvals_required: number;
  /** Requests up to this long are approved at once; `null`: every request needs an approver. */
  auto_approve_up_to: string | null;
  pending_timeout: string;
  extensions_allowed: boolean;
}

/** An approver's fresh sign-in, started for one decision. */
export interface ApproverLogin {
  login_id: string;
  /** The IdP's sign-in page; the shell has opened it in the system browser. */
  authorize_url: string;
  /** Why the shell could not open a browser, if it could not. */
  browser_error?: string;
}

/** One record of the hash-chained audit log, as exported (`snowgate_grants::AuditRecord`). */
export interface AuditRecord {
  seq: number;
  at: string;
  /** `user:SUBJECT`, `policy`, `clock` or `system`. */
  actor: string;
  /** A dotted kind like `grant.approved`. */
  kind: string;
  grant_id: string | null;
  role: string | null;
  details: unknown;
  prev_hash: string;
  hash: string;
}

/** What verifying the audit log found; `ok: false` carries the first problem. */
export interface AuditVerify {
  ok: boolean;
  records?: number;
  head?: string | null;
  problem?: string;
  [field: string]: unknown;
}

export interface AuditExport {
  records: number;
  jsonl: string;
}

/** A live gateway session of a local tool. */
export interface Session {
  id: string;
  /** The tool as it named itself (`PythonConnector`, `JDBC`), if it did. */
  tool: string | null;
  tool_version: string | null;
  process: string | null;
  pid: number | null;
  role: string;
  grant: string;
  login_name: string;
  since: string;
  grant_ends_at: string;
  statements: number;
}

/** How tools reach the gateway. */
export interface ConnectInfo {
  host: string;
  port: number;
  account: string;
  user: string;
  protocol: "http";
  /** Whether each tool needs its own connection secret as its password. */
  require_tool_secrets: boolean;
  roles: string[];
}

export interface ToolSecret {
  name: string;
  created_at: string;
}

export interface CreatedToolSecret {
  name: string;
  /** The secret itself; shown once, never again. */
  secret: string;
  required: boolean;
}

export interface RevokedToolSecret {
  name: string;
  revoked: boolean;
  sessions_ended: number;
}

/** The config essentials, read-only. */
export interface Settings {
  config_path: string;
  issuer: string;
  client_id: string;
  snowflake_account: string;
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

/** Ends one gateway session; the tool sees why. */
export function endSession(id: string): Promise<{ ended: boolean }> {
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
export type ViewId = "access" | "request" | "approvals" | "sessions" | "connect" | "audit" | "settings";

export const VIEW_IDS: readonly ViewId[] = [
  "access",
  "request",
  "approvals",
  "sessions",
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
