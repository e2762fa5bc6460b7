import { act, render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import ConfirmAsks from "./ConfirmAsks.svelte";
import type { ConfirmAsk } from "./api";

// A fake shell: `listen` records the handlers so a test can push the tray's events, and
// `invoke` records the answers.
const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let handlers: Map<string, (event: { payload: unknown }) => void>;

const tokenAsk: ConfirmAsk = {
  id: 7,
  method: "token",
  what: "a Snowflake token for role ANALYST",
  pid: 4242,
  process: "/usr/bin/python3",
  timeout_secs: 60,
};

async function push(name: string, payload: unknown) {
  await waitFor(() => expect(handlers.has(name)).toBe(true));
  const handler = handlers.get(name);
  if (!handler) throw new Error(`no handler for ${name}`);
  await act(() => handler({ payload }));
}

beforeEach(() => {
  handlers = new Map();
  listen.mockReset();
  listen.mockImplementation(async (name: string, handler: (event: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  });
  invoke.mockReset();
  invoke.mockResolvedValue(null);
});

describe("the tray's questions", () => {
  it("shows the questions asked while the window was closed, once each", async () => {
    invoke.mockImplementation(async (command: string) => (command === "confirm_pending" ? [tokenAsk] : null));
    render(ConfirmAsks);
    const dialog = await screen.findByRole("alertdialog");
    expect(dialog.textContent).toContain("a Snowflake token for role ANALYST");
    // The same question arriving as an event too is not shown twice.
    await push("app://confirm", tokenAsk);
    expect(screen.getAllByRole("alertdialog")).toHaveLength(1);
  });

  it("shows nothing until a request waits", () => {
    render(ConfirmAsks);
    expect(screen.queryByTestId("confirm-ask")).toBeNull();
  });

  it("names what is asked for and which process asks, and sends Allow", async () => {
    render(ConfirmAsks);
    await push("app://confirm", tokenAsk);
    const dialog = await screen.findByRole("alertdialog");
    expect(dialog.textContent).toContain("/usr/bin/python3 (process 4242)");
    expect(dialog.textContent).toContain("a Snowflake token for role ANALYST");
    expect(dialog.textContent?.replace(/\s+/g, " ")).toContain("refused in 60 seconds");
    await userEvent.click(screen.getByTestId("confirm-allow"));
    expect(invoke).toHaveBeenCalledWith("confirm_answer", { id: 7, allow: true });
    expect(screen.queryByRole("alertdialog")).toBeNull();
  });

  it("sends Deny for the question it is on, and keeps the others", async () => {
    render(ConfirmAsks);
    await push("app://confirm", tokenAsk);
    await push("app://confirm", {
      ...tokenAsk,
      id: 8,
      method: "tool_secret_create",
      what: 'a connection secret for tool "dbt"',
      process: null,
    });
    const dialogs = await screen.findAllByRole("alertdialog");
    expect(dialogs).toHaveLength(2);
    const second = dialogs[1]?.textContent ?? "";
    expect(second).toContain("process 4242");
    expect(second).not.toContain("python3");
    const deny = screen.getAllByTestId("confirm-deny")[1];
    if (!deny) throw new Error("no second Deny");
    await userEvent.click(deny);
    expect(invoke).toHaveBeenCalledWith("confirm_answer", { id: 8, allow: false });
    expect(screen.getAllByRole("alertdialog")).toHaveLength(1);
    expect(screen.getByRole("alertdialog").textContent).toContain("ANALYST");
  });

  it("takes a question down when its time runs out, and says so if answered too late", async () => {
    render(ConfirmAsks);
    await push("app://confirm", tokenAsk);
    await screen.findByRole("alertdialog");
    await push("app://confirm-closed", { id: 7 });
    expect(screen.queryByRole("alertdialog")).toBeNull();

    await push("app://confirm", { ...tokenAsk, id: 9 });
    invoke.mockRejectedValueOnce({
      kind: "bad_request",
      message: "that request no longer waits for an answer: its time ran out, and it was refused",
    });
    await userEvent.click(await screen.findByTestId("confirm-allow"));
    const problem = await screen.findByTestId("confirm-problem");
    expect(problem.textContent).toContain("its time ran out");
  });
});
