// Data for component tests, shaped exactly like the engine's JSON.

import type { Actor, Grant, Role } from "../lib/api";

export const alice: Actor = { subject: "alice", email: "alice@example.test", groups: ["analysts"] };
export const bob: Actor = { subject: "bob", email: "bob@example.test", groups: ["managers"] };
export const dave: Actor = { subject: "dave", email: null, groups: ["analysts"] };

export const analyst: Role = {
  name: "ANALYST",
  account: "acme-prod",
  description: "Read access to the sales marts",
  max_duration: "8h",
  approver_groups: ["managers"],
  approvals_required: 1,
  auto_approve_up_to: "1h",
  pending_timeout: "30m",
  extensions_allowed: true,
};

export const loader: Role = {
  name: "LOADER",
  account: "acme-prod",
  description: "Writes to the raw schemas",
  max_duration: "2h",
  approver_groups: ["data-leads", "managers"],
  approvals_required: 2,
  auto_approve_up_to: null,
  pending_timeout: "1h",
  extensions_allowed: false,
};

const T0 = "2026-03-02T09:00:00.000Z";

/**
 * A grant with sensible defaults; `over` sets what the test cares about. The two fields the
 * engine works out (`awaits_decision`, `granted_secs`) follow the data unless `over` sets them,
 * so a fixture reads like the broker's answer; the rule itself is tested in Rust.
 */
export function grant(over: Partial<Grant> & { id: string }): Grant {
  const base: Omit<Grant, "awaits_decision" | "granted_secs"> = {
    role: "ANALYST",
    requester: alice,
    reason: "Q3 revenue report",
    ticket: null,
    requested_duration: 7200,
    state: "pending",
    created_at: T0,
    pending_until: "2026-03-02T09:30:00.000Z",
    decided_at: null,
    approved_at: null,
    expires_at: null,
    ended_at: null,
    ended_by: null,
    end_comment: null,
    approvals: [],
    extensions: [],
    expiry_warned_for: null,
    updated_at: T0,
    version: 1,
    ...over,
  };
  const pendingExtension = base.extensions.some((e) => e.state === "pending");
  const approvedExtra = base.extensions
    .filter((e) => e.state === "approved")
    .reduce((sum, e) => sum + e.extra, 0);
  return {
    awaits_decision: base.state === "pending" || (base.state === "active" && pendingExtension),
    granted_secs: base.requested_duration + approvedExtra,
    ...base,
  };
}

/** An active grant approved at `approvedAt` that ends `secsLeft` after `now`. */
export function activeGrant(id: string, now: number, secsLeft: number, over: Partial<Grant> = {}): Grant {
  const expires = new Date(now + secsLeft * 1000).toISOString();
  const approved = new Date(now + secsLeft * 1000 - 7200 * 1000).toISOString();
  return grant({
    id,
    state: "active",
    decided_at: approved,
    approved_at: approved,
    expires_at: expires,
    approvals: [{ by: { kind: "person", actor: bob }, comment: null, at: approved }],
    ...over,
  });
}

/** A promise the test settles when it wants to. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
