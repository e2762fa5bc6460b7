// The UI's only door to the broker: typed wrappers over Tauri's `invoke`. Types mirror the
// Rust side (`snowgate_engine::BrokerStatus`, `snowgate_app::broker::StartupError`); keep them
// in step when a command changes.

import { invoke } from "@tauri-apps/api/core";

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
  /** Why the OS keyring can't be used, when it can't. */
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
}

/**
 * Why the broker is not running. `config` and `data_dir` come from the shell; `internal` means
 * the call itself failed (for example, a missing permission), which is a bug in Snowgate.
 */
export interface BrokerUnavailable {
  kind: "config" | "data_dir" | "internal";
  /** The engine's own text; for config errors it names the file, line and key. */
  message: string;
}

export type StatusResult =
  | { ok: true; status: BrokerStatus }
  | { ok: false; error: BrokerUnavailable };

function isUnavailable(value: unknown): value is BrokerUnavailable {
  if (typeof value !== "object" || value === null) return false;
  const { kind, message } = value as Record<string, unknown>;
  return (kind === "config" || kind === "data_dir") && typeof message === "string";
}

async function call(command: string): Promise<StatusResult> {
  try {
    return { ok: true, status: await invoke<BrokerStatus>(command) };
  } catch (e: unknown) {
    if (isUnavailable(e)) return { ok: false, error: e };
    return { ok: false, error: { kind: "internal", message: String(e) } };
  }
}

/** The broker's status, or why the broker is not running. */
export function brokerStatus(): Promise<StatusResult> {
  return call("broker_status");
}

/** Re-reads the config file, restarts the broker from it, and returns the new status. */
export function reloadConfig(): Promise<StatusResult> {
  return call("reload_config");
}
