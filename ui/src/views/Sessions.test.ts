import { act, render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Session } from "../lib/api";
import Sessions from "./Sessions.svelte";

const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let handlers: Map<string, (event: { payload: unknown }) => void>;
let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let live: Session[];

const python: Session = {
  id: "s1",
  tool: "PythonConnector",
  tool_version: "3.12.0",
  tool_secret: null,
  agent: null,
  process: "python3",
  pid: 4242,
  role: "ANALYST",
  grant: "g_aaaaaaaaaaaaaaaaaaaa",
  login_name: "ALICE",
  since: "2026-03-02T09:00:00.000Z",
  grant_ends_at: "2026-03-02T11:00:00.000Z",
  statements: 17,
};

const unknown: Session = { ...python, id: "s2", tool: null, tool_version: null, process: null, pid: null, statements: 0 };

beforeEach(() => {
  handlers = new Map();
  listen.mockReset();
  listen.mockImplementation(async (name: string, handler: (event: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  });
  live = [python, unknown];
  answers = { sessions: () => live };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

describe("Sessions", () => {
  it("lists each session with its tool, process, role, grant and statements", async () => {
    render(Sessions);
    const row = await screen.findByTestId("session-s1");
    expect(row).toHaveTextContent("PythonConnector 3.12.0");
    expect(row).toHaveTextContent("python3 (pid 4242)");
    expect(row).toHaveTextContent("ANALYST");
    expect(row).toHaveTextContent("g_aaaaaaaaaaaaaaaaaaaa");
    expect(within(row).getByTestId("statements-s1")).toHaveTextContent("17");
    expect(within(row).getByRole("button", { name: "End the session of PythonConnector 3.12.0" })).toBeEnabled();
    expect(screen.getByTestId("session-s2")).toHaveTextContent("Unknown tool");
    expect(screen.getByTestId("session-s2")).toHaveTextContent("unknown");
  });

  it("names a session by the tool secret its login presented", async () => {
    live = [{ ...python, tool_secret: "notebook" }];
    render(Sessions);
    const row = await screen.findByTestId("session-s1");
    expect(row).toHaveTextContent("notebook (PythonConnector 3.12.0)");
    expect(within(row).getByRole("button", { name: "End the session of notebook (PythonConnector 3.12.0)" })).toBeEnabled();
  });

  it("names the Snowflake account of a session when the gateway serves several", async () => {
    live = [{ ...python, account: "dev" }, unknown];
    render(Sessions);
    const row = await screen.findByTestId("session-s1");
    expect(within(row).getByTestId("session-account-s1")).toHaveTextContent("in dev");
    expect(screen.queryByTestId("session-account-s2")).not.toBeInTheDocument();
  });

  it("keeps the statement counts current while the screen is open", async () => {
    vi.useFakeTimers();
    try {
      render(Sessions);
      await vi.waitFor(() => expect(screen.getByTestId("statements-s1")).toHaveTextContent("17"));
      live = [{ ...python, statements: 42 }, unknown];
      await act(() => vi.advanceTimersByTimeAsync(3500));
      await vi.waitFor(() => expect(screen.getByTestId("statements-s1")).toHaveTextContent("42"));
    } finally {
      vi.useRealTimers();
    }
  });

  it("explains how to connect when no tool is connected", async () => {
    live = [];
    const onnavigate = vi.fn();
    render(Sessions, { gatewayAddress: "127.0.0.1:8765", onnavigate });
    const empty = await screen.findByTestId("sessions-empty");
    expect(empty).toHaveTextContent("No tool is connected");
    expect(empty).toHaveTextContent("127.0.0.1:8765");
    await userEvent.click(within(empty).getByRole("button", { name: "How to connect" }));
    expect(onnavigate).toHaveBeenCalledWith("connect");
  });

  it("ends a session and fetches the list again", async () => {
    answers.end_session = () => {
      live = [unknown];
      return { ended: true };
    };
    render(Sessions);
    await userEvent.click(await screen.findByTestId("end-session-s1"));
    expect(invoke).toHaveBeenCalledWith("end_session", { id: "s1" });
    expect(await screen.findByTestId("sessions-notice")).toHaveTextContent("Ended the session of PythonConnector 3.12.0");
    await waitFor(() => expect(screen.queryByTestId("session-s1")).not.toBeInTheDocument());
  });

  it("shows why the sessions can't be listed", async () => {
    answers.sessions = () => {
      throw { kind: "unavailable", message: "127.0.0.1:8765 is in use by another program; change [gateway].listen" };
    };
    render(Sessions);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Couldn't load the sessions");
    expect(alert).toHaveTextContent("is in use by another program");
  });

  it("fetches again when the broker says sessions changed", async () => {
    live = [];
    render(Sessions);
    await screen.findByTestId("sessions-empty");
    await waitFor(() => expect(handlers.has("snowgate://changed")).toBe(true));
    live = [python];
    await act(() => handlers.get("snowgate://changed")?.({ payload: { what: "sessions" } }));
    expect(await screen.findByTestId("session-s1")).toBeInTheDocument();
  });
});
