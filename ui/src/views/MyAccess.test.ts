import { act, render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Grant } from "../lib/api";
import { activeGrant, alice, analyst, bob, grant, loader } from "../test/fixtures";
import MyAccess from "./MyAccess.svelte";

const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let handlers: Map<string, (event: { payload: unknown }) => void>;
let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let mine: Grant[];

beforeEach(() => {
  handlers = new Map();
  listen.mockReset();
  listen.mockImplementation(async (name: string, handler: (event: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  });
  mine = [];
  answers = {
    grants: () => mine,
    roles: () => [analyst, loader],
  };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

afterEach(() => {
  vi.useRealTimers();
});

function calls(command: string) {
  return invoke.mock.calls.filter(([c]) => c === command);
}

describe("MyAccess", () => {
  it("says so when there is nothing, and offers to request access", async () => {
    const onnavigate = vi.fn();
    render(MyAccess, { onnavigate });
    const empty = await screen.findByTestId("active-empty");
    expect(empty).toHaveTextContent("You hold no role right now");
    expect(screen.getByTestId("pending-empty")).toBeInTheDocument();
    expect(screen.getByTestId("history-empty")).toBeInTheDocument();
    expect(invoke).toHaveBeenCalledWith("grants", { all: false });

    await userEvent.click(within(empty).getByRole("button", { name: "Request access" }));
    expect(onnavigate).toHaveBeenCalledWith("request");
  });

  it("lists active grants, pending requests and how ended grants ended", async () => {
    const now = Date.now();
    mine = [
      activeGrant("g_active", now, 3600, { ticket: "OPS-7" }),
      grant({ id: "g_pending", role: "LOADER", requested_duration: 5400 }),
      grant({ id: "g_expired", state: "expired", requested_duration: 3600, ended_at: "2026-03-01T10:00:00Z" }),
      grant({ id: "g_revoked", state: "revoked", ended_by: bob, end_comment: "project over", ended_at: "2026-03-01T10:00:00Z" }),
      grant({ id: "g_gaveup", state: "revoked", ended_by: alice, ended_at: "2026-03-01T10:00:00Z" }),
      grant({ id: "g_denied", state: "denied", ended_by: bob, end_comment: "use READONLY", ended_at: "2026-03-01T10:00:00Z" }),
      grant({ id: "g_timeout", state: "timed_out", ended_at: "2026-03-01T10:00:00Z" }),
    ];
    render(MyAccess);

    const active = await screen.findByTestId("grant-g_active");
    expect(active).toHaveTextContent("ANALYST");
    expect(active).toHaveTextContent("Q3 revenue report");
    expect(active).toHaveTextContent("OPS-7");
    expect(active).toHaveTextContent("bob@example.test");
    expect(within(active).getByTestId("countdown-g_active")).toHaveTextContent(/^\s*(1h 00m 00s|59m 5\ds) left\s*$/);
    expect(within(active).getByTestId("giveup-g_active")).toBeEnabled();
    expect(within(active).getByTestId("extend-g_active")).toBeEnabled();

    const pending = screen.getByTestId("pending-g_pending");
    expect(pending).toHaveTextContent("LOADER");
    expect(pending).toHaveTextContent("for 1h30m");
    expect(pending).toHaveTextContent("data-leads, managers · 0 of 2 approvals");
    expect(within(pending).getByTestId("cancel-g_pending")).toBeEnabled();

    expect(screen.getByTestId("history-g_expired")).toHaveTextContent("Expired after 1h");
    expect(screen.getByTestId("history-g_revoked")).toHaveTextContent("Revoked by bob@example.test: project over");
    expect(screen.getByTestId("history-g_gaveup")).toHaveTextContent("Given up");
    expect(screen.getByTestId("history-g_denied")).toHaveTextContent("Denied by bob@example.test: use READONLY");
    expect(screen.getByTestId("history-g_timeout")).toHaveTextContent("nobody decided in time");
    expect(screen.queryByTestId("grant-g_expired")).not.toBeInTheDocument();
  });

  it("names the Snowflake account of a grant that has one", async () => {
    const now = Date.now();
    mine = [
      activeGrant("g_dev", now, 3600, { account: "dev" }),
      activeGrant("g_plain", now, 3600),
      grant({ id: "g_wait", role: "LOADER", requested_duration: 5400, account: "prod" }),
    ];
    render(MyAccess);
    const dev = await screen.findByTestId("grant-g_dev");
    expect(within(dev).getByTestId("grant-account-g_dev")).toHaveTextContent("in dev");
    expect(screen.queryByTestId("grant-account-g_plain")).not.toBeInTheDocument();
    expect(screen.getByTestId("pending-account-g_wait")).toHaveTextContent("in prod");
  });

  it("counts down every second", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true, toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout", "Date"] });
    const now = Date.now();
    mine = [activeGrant("g_tick", now, 42 * 60 + 10)];
    render(MyAccess);

    const countdown = await screen.findByTestId("countdown-g_tick");
    expect(countdown).toHaveTextContent("42m 10s left");

    await act(() => vi.advanceTimersByTime(1000));
    expect(countdown).toHaveTextContent("42m 09s left");

    await act(() => vi.advanceTimersByTime(60_000));
    expect(countdown).toHaveTextContent("41m 09s left");
  });

  it("fetches again when the time is up", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true, toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout", "Date"] });
    const now = Date.now();
    mine = [activeGrant("g_end", now, 3)];
    render(MyAccess);
    const countdown = await screen.findByTestId("countdown-g_end");
    expect(countdown).toHaveTextContent("3s left");
    mine = [grant({ id: "g_end", state: "expired", ended_at: new Date(now + 3000).toISOString() })];

    await act(() => vi.advanceTimersByTime(4000));

    await waitFor(() => expect(screen.getByTestId("history-g_end")).toHaveTextContent("Expired"));
    expect(screen.queryByTestId("grant-g_end")).not.toBeInTheDocument();
  });

  it("gives up a grant and shows the rest", async () => {
    mine = [activeGrant("g_mine", Date.now(), 3600)];
    answers.revoke = () => {
      mine = [grant({ id: "g_mine", state: "revoked", ended_by: alice, ended_at: new Date().toISOString() })];
      return mine[0];
    };
    render(MyAccess);

    await userEvent.click(await screen.findByTestId("giveup-g_mine"));

    expect(invoke).toHaveBeenCalledWith("revoke", { id: "g_mine", comment: null, approverLoginId: null });
    expect(await screen.findByTestId("access-notice")).toHaveTextContent("You gave up ANALYST");
    expect(screen.getByTestId("history-g_mine")).toHaveTextContent("Given up");
    expect(screen.queryByTestId("grant-g_mine")).not.toBeInTheDocument();
  });

  it("cancels a pending request", async () => {
    mine = [grant({ id: "g_wait" })];
    answers.cancel = () => {
      mine = [grant({ id: "g_wait", state: "cancelled" })];
      return mine[0];
    };
    render(MyAccess);

    await userEvent.click(await screen.findByTestId("cancel-g_wait"));

    expect(invoke).toHaveBeenCalledWith("cancel", { id: "g_wait" });
    expect(await screen.findByTestId("access-notice")).toHaveTextContent("Your request for ANALYST was cancelled");
    expect(screen.queryByTestId("pending-g_wait")).not.toBeInTheDocument();
  });

  it("asks for an extension, refusing a bad duration, one over the maximum and a missing reason", async () => {
    // Approved for 2h of an 8h maximum: at most 6h more.
    mine = [activeGrant("g_ext", Date.now(), 3600)];
    answers.extend = () => ({
      ...mine[0],
      extensions: [
        {
          requested_at: new Date().toISOString(),
          extra: 3600,
          reason: "the report needs another hour",
          pending_until: new Date(Date.now() + 1800_000).toISOString(),
          state: "pending",
          approvals: [],
          decided_at: null,
          decided_by: null,
          comment: null,
        },
      ],
    });
    render(MyAccess);
    const row = await screen.findByTestId("grant-g_ext");
    await userEvent.click(within(row).getByTestId("extend-g_ext"));

    const by = within(row).getByLabelText("How much longer");
    const reason = within(row).getByLabelText("Why");
    await userEvent.type(by, "an hour");
    await userEvent.click(within(row).getByTestId("extend-submit-g_ext"));
    expect(row).toHaveTextContent('"an hour" is not a duration');
    expect(row).toHaveTextContent("Say why you need more time");
    expect(by).toHaveAttribute("aria-invalid", "true");

    await userEvent.clear(by);
    await userEvent.type(by, "7h");
    await userEvent.type(reason, "the report needs another hour");
    expect(row).toHaveTextContent("ask for at most 6h");
    expect(calls("extend")).toHaveLength(0);

    await userEvent.clear(by);
    await userEvent.type(by, "1h");
    await userEvent.click(within(row).getByTestId("extend-submit-g_ext"));

    expect(invoke).toHaveBeenCalledWith("extend", { id: "g_ext", bySecs: 3600, reason: "the report needs another hour" });
    expect(await screen.findByTestId("access-notice")).toHaveTextContent("Asked for 1h more on ANALYST");
  });

  it("offers no Extend when the role allows none", async () => {
    mine = [activeGrant("g_load", Date.now(), 600, { role: "LOADER" })];
    render(MyAccess);
    const row = await screen.findByTestId("grant-g_load");
    expect(within(row).queryByTestId("extend-g_load")).not.toBeInTheDocument();
    expect(row).toHaveTextContent("LOADER can't be extended");
  });

  it("shows a pending extension with a Cancel", async () => {
    mine = [
      activeGrant("g_pext", Date.now(), 600, {
        extensions: [
          {
            requested_at: new Date().toISOString(),
            extra: 1800,
            reason: "more",
            pending_until: new Date(Date.now() + 1800_000).toISOString(),
            state: "pending",
            approvals: [],
            decided_at: null,
            decided_by: null,
            comment: null,
          },
        ],
      }),
    ];
    answers.cancel = () => mine[0];
    render(MyAccess);
    const row = await screen.findByTestId("grant-g_pext");
    expect(within(row).getByTestId("extension-g_pext")).toHaveTextContent("30m more");
    expect(within(row).queryByTestId("extend-g_pext")).not.toBeInTheDocument();
    await userEvent.click(within(row).getByTestId("cancel-g_pext"));
    expect(invoke).toHaveBeenCalledWith("cancel", { id: "g_pext" });
  });

  it("shows the engine's sentence when something fails", async () => {
    answers.grants = () => {
      throw { kind: "signed_out", message: "nobody is signed in; run snowgate login" };
    };
    render(MyAccess);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Couldn't load your grants");
    expect(alert).toHaveTextContent("nobody is signed in; run snowgate login");
    expect(alert).toHaveTextContent("Sign in on the Sign in screen");
  });

  it("shows why giving up failed", async () => {
    mine = [activeGrant("g_x", Date.now(), 600)];
    answers.revoke = () => {
      throw { kind: "bad_request", message: "grant g_x already ended (expired at 2026-03-02T10:00:00Z)" };
    };
    render(MyAccess);
    await userEvent.click(await screen.findByTestId("giveup-g_x"));
    expect(await screen.findByRole("alert")).toHaveTextContent("already ended (expired at");
  });

  it("fetches again when the broker says grants changed, and not for other changes", async () => {
    render(MyAccess);
    await screen.findByTestId("active-empty");
    await waitFor(() => expect(handlers.has("snowgate://changed")).toBe(true));
    expect(calls("grants")).toHaveLength(1);

    await act(() => handlers.get("snowgate://changed")?.({ payload: { what: "sessions" } }));
    expect(calls("grants")).toHaveLength(1);

    mine = [activeGrant("g_new", Date.now(), 600)];
    await act(() => handlers.get("snowgate://changed")?.({ payload: { what: "grants" } }));
    expect(await screen.findByTestId("grant-g_new")).toBeInTheDocument();
    expect(calls("grants")).toHaveLength(2);
  });
});
