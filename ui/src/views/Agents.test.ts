import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Agent, AuditRecord, Session } from "../lib/api";
import Agents from "./Agents.svelte";

const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let agents: Agent[];

const claude: Agent = {
  name: "claude",
  created_at: "2026-03-01T09:00:00Z",
  policy: {
    roles: ["ANALYST"],
    read_only: true,
    max_rows: 500,
    max_bytes: null,
    statements_per_minute: 30,
    expires_at: null,
  },
};

const nightly: Agent = {
  name: "nightly",
  created_at: "2026-03-01T09:00:00Z",
  policy: {
    roles: null,
    read_only: false,
    max_rows: null,
    max_bytes: null,
    statements_per_minute: null,
    expires_at: "2020-01-01T00:00:00Z",
  },
};

const session: Session = {
  id: "s1",
  tool: "JavaScript",
  tool_version: "2.0",
  tool_secret: "claude",
  agent: "claude",
  process: "snowgate",
  pid: 42,
  role: "ANALYST",
  grant: "g_aaaaaaaaaaaaaaaaaaaa",
  login_name: "ALICE",
  since: "2026-03-02T09:00:00.000Z",
  grant_ends_at: "2026-03-02T11:00:00.000Z",
  statements: 2,
};

function record(seq: number, kind: string, details: Record<string, unknown>): AuditRecord {
  return {
    seq,
    at: "2026-03-02T09:01:00.000Z",
    actor: "user:alice",
    kind,
    grant_id: "g_aaaaaaaaaaaaaaaaaaaa",
    role: "ANALYST",
    details,
    prev_hash: "",
    hash: "",
  };
}

const records: AuditRecord[] = [
  record(1, "session.statement", { agent: "claude", text: "select count(*) from orders" }),
  record(2, "session.statement", { text: "select 1 -- a person's own tool" }),
  record(3, "session.statement_refused", { agent: "claude", text: "drop table orders", rule: "read_only" }),
  record(4, "session.statement", { agent: "claude", statement_sha256: "abcdef0123456789abcdef" }),
];

beforeEach(() => {
  listen.mockReset();
  listen.mockImplementation(async () => () => {});
  agents = [claude, nightly];
  answers = {
    agent_list: () => agents,
    sessions: () => [session],
    audit: () => records,
    agent_remove: (args) => {
      agents = agents.filter((a) => a.name !== args?.name);
      return { name: args?.name, removed: true, sessions_ended: 1 };
    },
  };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

describe("Agents", () => {
  it("shows each agent's limits, whether it is connected, and what it ran, newest first", async () => {
    render(Agents);
    const card = await screen.findByTestId("agent-claude");
    expect(card).toHaveTextContent("Roles: ANALYST");
    expect(card).toHaveTextContent("Read-only statements");
    expect(card).toHaveTextContent("At most 500 rows a result");
    expect(card).toHaveTextContent("At most 30 statements a minute");
    expect(within(card).getByTestId("agent-claude-state")).toHaveTextContent("Connected (1)");
    const ran = within(card).getByTestId("agent-claude-ran");
    const items = within(ran).getAllByRole("listitem").map((li) => li.textContent ?? "");
    expect(items).toHaveLength(3);
    expect(items[0]).toContain("statement abcdef012345… (text not kept)");
    expect(items[1]).toContain("Refused:");
    expect(items[1]).toContain("drop table orders");
    expect(items[2]).toContain("select count(*) from orders");
    // A person's own statement is not an agent's.
    expect(ran).not.toHaveTextContent("a person's own tool");

    const other = screen.getByTestId("agent-nightly");
    expect(within(other).getByTestId("agent-nightly-state")).toHaveTextContent("Expired");
    expect(other).toHaveTextContent("Roles: any role you hold");
    expect(within(other).getByTestId("agent-nightly-none")).toBeVisible();
  });

  it("removes an agent and says its sessions ended", async () => {
    render(Agents);
    await userEvent.click(await screen.findByTestId("agent-claude-remove"));
    expect(invoke).toHaveBeenCalledWith("agent_remove", { name: "claude" });
    expect(await screen.findByTestId("agents-notice")).toHaveTextContent(
      "Removed claude: its secret no longer works, and 1 of its sessions ended.",
    );
    await waitFor(() => expect(screen.queryByTestId("agent-claude")).toBeNull());
  });

  it("tells how to add the first agent", async () => {
    agents = [];
    render(Agents);
    expect(await screen.findByTestId("agents-empty")).toHaveTextContent("snowgate agent add NAME --read-only");
  });
});
