// How grants read to people: who, what state, how a grant ended. Pure, so views and tests share it.

import type { Actor, Extension, Grant } from "./api";
import { formatDuration } from "./duration";
import { formatTimeOfDay } from "./time";

/** A person as shown: their email when known, else their subject. */
export function actorName(actor: Actor | null | undefined): string {
  if (!actor) return "someone";
  return actor.email ?? actor.subject;
}

/** The extension of `grant` that waits for a decision, if any. */
export function pendingExtension(grant: Grant): Extension | null {
  return grant.extensions.find((e) => e.state === "pending") ?? null;
}

/** Milliseconds since the epoch for an RFC 3339 time, or `null`. */
export function millis(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = new Date(iso).getTime();
  return Number.isNaN(t) ? null : t;
}

/** A moment with its date when it is not today: `14:05:09` or `3 Mar, 14:05`. */
export function formatMoment(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  if (date.toDateString() === new Date(now).toDateString()) return formatTimeOfDay(iso);
  return date.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** One sentence on how an ended grant ended, like "Revoked by bob@example.test: project over". */
export function howItEnded(grant: Grant): string {
  const by = grant.ended_by;
  const comment = grant.end_comment ? `: ${grant.end_comment}` : "";
  switch (grant.state) {
    case "expired":
      return `Expired after ${formatDuration(grant.granted_secs)}`;
    case "revoked":
      if (by && by.subject === grant.requester.subject) return `Given up${comment}`;
      return `Revoked by ${actorName(by)}${comment}`;
    case "denied":
      return `Denied by ${actorName(by)}${comment}`;
    case "cancelled":
      return "Cancelled before a decision";
    case "timed_out":
      return "Timed out: nobody decided in time";
    case "pending":
      return "Waiting for approval";
    case "active":
      return "Active";
  }
}

/** The short label for a state. */
export const stateLabel: Record<Grant["state"], string> = {
  pending: "Pending",
  active: "Active",
  denied: "Denied",
  cancelled: "Cancelled",
  timed_out: "Timed out",
  expired: "Expired",
  revoked: "Revoked",
};
