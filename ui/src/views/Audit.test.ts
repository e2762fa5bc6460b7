import { act, render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { AuditRecord } from "../lib/api";
import Audit from "./Audit.svelte";

const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let handlers: Map<string, (event: { payload: unknown }) => void>;
let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let records: AuditRecord[];

function record(seq: number, kind: string, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    seq,
    at: "2026-03-02T09:00:00.000Z",
    actor: "user:alice",
    kind,
    grant_id: null,
    role: null,
    details: {},
    prev_hash: "0".repeat(64),
    hash: "a".repeat(64),
    ...over,
  };
}

beforeEach(() => {
  handlers = new Map();
  listen.mockReset();
  listen.mockImplementation(async (name: string, handler: (event: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  });
  records = [
    record(1, "auth.sign_in", { details: { email: "alice@example.test", groups: ["analysts"] } }),
    record(2, "grant.requested", { grant_id: "g_one", role: "ANALYST", details: { reason: "Q3 report" } }),
    record(3, "grant.approved", { actor: "policy", grant_id: "g_one", role: "ANALYST" }),
    record(4, "grant.requested", { grant_id: "g_two", role: "LOADER", details: { reason: "backfill" } }),
  ];
  answers = {
    audit: () => records,
    "plugin:clipboard-manager|write_text": () => undefined,
  };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

function seqs() {
  return within(screen.getByTestId("audit-records"))
    .getAllByRole("row")
    .slice(1)
    .map((r) => r.getAttribute("data-testid"));
}

describe("Audit", () => {
  it("lists the records newest first, from the last 24 hours", async () => {
    render(Audit);
    await screen.findByTestId("audit-records");
    expect(seqs()).toEqual(["audit-4", "audit-3", "audit-2", "audit-1"]);
    const [, args] = invoke.mock.calls.find(([c]) => c === "audit") ?? [];
    const { since, limit } = args as { since: string; limit: number };
    expect(limit).toBe(1000);
    expect(Date.now() - new Date(since).getTime()).toBeGreaterThan(86_000_000);
    expect(screen.getByTestId("audit-2")).toHaveTextContent("reason: Q3 report");
    expect(screen.getByTestId("audit-3")).toHaveTextContent("policy");
  });

  it("filters by kind, grant and text", async () => {
    render(Audit);
    await screen.findByTestId("audit-records");
    await userEvent.selectOptions(screen.getByTestId("audit-filter-kind"), "grant.requested");
    expect(seqs()).toEqual(["audit-4", "audit-2"]);
    await userEvent.type(screen.getByTestId("audit-filter-grant"), "g_one");
    expect(seqs()).toEqual(["audit-2"]);
    await userEvent.selectOptions(screen.getByTestId("audit-filter-kind"), "");
    await userEvent.clear(screen.getByTestId("audit-filter-grant"));
    await userEvent.type(screen.getByTestId("audit-filter-text"), "backfill");
    expect(seqs()).toEqual(["audit-4"]);
    await userEvent.type(screen.getByTestId("audit-filter-text"), "zzz");
    expect(screen.getByTestId("audit-none-match")).toBeInTheDocument();
  });

  it("asks for all records when Since is All time", async () => {
    render(Audit);
    await screen.findByTestId("audit-records");
    await userEvent.selectOptions(screen.getByTestId("audit-filter-since"), "all");
    await waitFor(() => expect(invoke).toHaveBeenLastCalledWith("audit", { since: null, limit: 1000 }));
  });

  it("says so when there are no records", async () => {
    records = [];
    render(Audit);
    expect(await screen.findByTestId("audit-empty")).toHaveTextContent("No records in this time");
  });

  it("verifies the log and shows an intact chain", async () => {
    answers.audit_verify = () => ({ ok: true, records: 4, head: "4:abcd" });
    render(Audit);
    await userEvent.click(screen.getByTestId("audit-verify"));
    const result = await screen.findByTestId("audit-verify-result");
    expect(result).toHaveTextContent("The audit log is intact");
    expect(result).toHaveTextContent("All 4 records");
    expect(result).toHaveTextContent("4:abcd");
  });

  it("shows the problem when the chain is broken", async () => {
    answers.audit_verify = () => ({ ok: false, problem: "record 3: its hash does not match its contents" });
    render(Audit);
    await userEvent.click(screen.getByTestId("audit-verify"));
    const result = await screen.findByTestId("audit-verify-result");
    expect(result).toHaveTextContent("The audit log has been changed");
    expect(result).toHaveTextContent("record 3: its hash does not match its contents");
  });

  it("exports the log to copy or save", async () => {
    const jsonl = '{"seq":1}\n{"seq":2}\n';
    answers.audit_export = () => ({ records: 2, jsonl });
    let saves = 0;
    answers.save_text = () => (++saves === 1 ? { path: "/home/u/snowgate-audit.jsonl" } : null);
    render(Audit);
    await userEvent.click(screen.getByTestId("audit-export"));
    const result = await screen.findByTestId("audit-export-result");
    expect(result).toHaveTextContent("2 records exported");

    await userEvent.click(within(result).getByTestId("audit-export-copy"));
    expect(invoke).toHaveBeenCalledWith("plugin:clipboard-manager|write_text", { text: jsonl });
    expect(await within(result).findByTestId("audit-export-notice")).toHaveTextContent("Copied 2 records");

    await userEvent.click(within(result).getByTestId("audit-export-save"));
    const saveCall = invoke.mock.calls.find(([c]) => c === "save_text");
    expect(saveCall?.[1]).toEqual({ suggestedName: expect.stringMatching(/^snowgate-audit-\d{4}-\d{2}-\d{2}\.jsonl$/), text: jsonl });
    expect(await within(result).findByText("Saved 2 records to /home/u/snowgate-audit.jsonl.")).toBeInTheDocument();

    await userEvent.click(within(result).getByTestId("audit-export-save"));
    expect(await within(result).findByText("Not saved.")).toBeInTheDocument();
  });

  it("shows why verifying failed", async () => {
    answers.audit_verify = () => {
      throw { kind: "unavailable", message: "the audit anchor can't be read from the OS keyring" };
    };
    render(Audit);
    await userEvent.click(screen.getByTestId("audit-verify"));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Couldn't verify the audit log");
    expect(alert).toHaveTextContent("the audit anchor can't be read from the OS keyring");
  });

  it("fetches again when grants change", async () => {
    render(Audit);
    await screen.findByTestId("audit-records");
    await waitFor(() => expect(handlers.has("snowgate://changed")).toBe(true));
    records = [...records, record(5, "grant.revoked", { grant_id: "g_one" })];
    await act(() => handlers.get("snowgate://changed")?.({ payload: { what: "grants" } }));
    expect(await screen.findByTestId("audit-5")).toBeInTheDocument();
  });
});
