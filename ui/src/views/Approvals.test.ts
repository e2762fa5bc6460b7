import { act, render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ApproverLogin, Grant } from "../lib/api";
import { activeGrant, alice, analyst, bob, dave, deferred, grant, loader } from "../test/fixtures";
import Approvals from "./Approvals.svelte";

const invoke = vi.hoisted(() => vi.fn());
const listen = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));
vi.mock("@tauri-apps/api/event", () => ({ listen }));

let handlers: Map<string, (event: { payload: unknown }) => void>;
let answers: Record<string, (args?: Record<string, unknown>) => unknown>;
let all: Grant[];

const login: ApproverLogin = {
  login_id: "al-1",
  authorize_url: "https://idp.example.com/oidc/auth?prompt=login&state=xyz",
};

const request = grant({ id: "g_req", requester: dave, role: "LOADER", requested_duration: 5400, ticket: "OPS-9", reason: "Backfill March" });

beforeEach(() => {
  handlers = new Map();
  listen.mockReset();
  listen.mockImplementation(async (name: string, handler: (event: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  });
  all = [
    request,
    activeGrant("g_other", Date.now(), 3600, { requester: dave }),
    activeGrant("g_own", Date.now(), 3600, { requester: alice }),
    grant({ id: "g_done", state: "denied", ended_by: bob }),
  ];
  answers = {
    grants: () => all,
    roles: () => [analyst, loader],
    approver_login_begin: () => login,
  };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

function calls(command: string) {
  return invoke.mock.calls.filter(([c]) => c === command);
}

describe("Approvals", () => {
  it("lists what waits for a decision, with the request and the policy", async () => {
    render(Approvals, { me: "alice" });
    const item = await screen.findByTestId("approval-g_req");
    expect(invoke).toHaveBeenCalledWith("grants", { all: true });
    expect(within(item).getByTestId("approval-requester-g_req")).toHaveTextContent("dave");
    expect(item).toHaveTextContent("LOADER");
    expect(within(item).getByTestId("approval-duration-g_req")).toHaveTextContent("1h30m, from approval");
    expect(within(item).getByTestId("approval-reason-g_req")).toHaveTextContent("Backfill March");
    expect(item).toHaveTextContent("OPS-9");
    expect(within(item).getByTestId("approval-policy-g_req")).toHaveTextContent("2 approvals from data-leads or managers · 0 so far · at most 2h");
    expect(within(item).getByTestId("approve-g_req")).toBeEnabled();
    expect(within(item).getByTestId("deny-g_req")).toBeEnabled();
    expect(within(item).getByTestId("approval-comment-g_req")).toBeInTheDocument();

    // Ended grants are not listed; other people's active grants can be revoked; one's own is not offered.
    expect(screen.queryByTestId("approval-g_done")).not.toBeInTheDocument();
    expect(within(screen.getByTestId("active-g_other")).getByTestId("revoke-g_other")).toBeEnabled();
    expect(screen.queryByTestId("active-g_own")).not.toBeInTheDocument();
  });

  it("lists a pending extension of an active grant", async () => {
    all = [
      activeGrant("g_ext", Date.now(), 600, {
        requester: dave,
        extensions: [
          {
            requested_at: new Date().toISOString(),
            extra: 3600,
            reason: "one more hour",
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
    render(Approvals, { me: "alice" });
    const item = await screen.findByTestId("approval-g_ext");
    expect(item).toHaveTextContent("Extension");
    expect(within(item).getByTestId("approval-duration-g_ext")).toHaveTextContent("1h more");
    expect(within(item).getByTestId("approval-reason-g_ext")).toHaveTextContent("one more hour");
    expect(within(item).getByRole("button", { name: "Approve extension" })).toBeEnabled();
    expect(within(item).getByTestId("revoke-g_ext")).toBeEnabled();
  });

  it("marks the user's own request", async () => {
    all = [grant({ id: "g_mine", requester: alice })];
    render(Approvals, { me: "alice" });
    expect(await screen.findByTestId("approval-g_mine")).toHaveTextContent("This is your own request");
  });

  it("says so when nothing waits", async () => {
    all = [];
    render(Approvals, { me: "alice" });
    expect(await screen.findByTestId("approvals-empty")).toHaveTextContent("Nothing waits for a decision");
    expect(screen.getByTestId("others-empty")).toBeInTheDocument();
  });

  it("approves after the approver's fresh sign-in, waiting for it with the link to copy", async () => {
    const decided = deferred<Grant>();
    answers.approve = () => decided.promise;
    render(Approvals, { me: "alice", issuer: "https://idp.example.com/oidc" });
    const item = await screen.findByTestId("approval-g_req");
    await userEvent.type(within(item).getByTestId("approval-comment-g_req"), "ok for March");
    await userEvent.click(within(item).getByTestId("approve-g_req"));

    const waiting = await screen.findByTestId("approver-waiting");
    expect(waiting).toHaveTextContent("Waiting for the approver to sign in in the browser");
    expect(waiting).toHaveTextContent("idp.example.com");
    expect(within(waiting).getByTestId("approver-url")).toHaveTextContent(login.authorize_url);
    expect(invoke).toHaveBeenCalledWith("approver_login_begin", { grantId: "g_req" });
    expect(invoke).toHaveBeenCalledWith("approve", { id: "g_req", comment: "ok for March", approverLoginId: "al-1" });
    await waitFor(() => expect(within(waiting).getByRole("heading", { level: 3 })).toHaveFocus());

    await userEvent.click(within(waiting).getByRole("button", { name: "Copy link" }));
    expect(invoke).toHaveBeenCalledWith("plugin:clipboard-manager|write_text", { text: login.authorize_url });

    all = [activeGrant("g_req", Date.now(), 5400, { requester: dave, role: "LOADER" })];
    await act(() => decided.resolve(all[0] as Grant));

    expect(await screen.findByTestId("approvals-notice")).toHaveTextContent("Approved LOADER for dave");
    expect(screen.queryByTestId("approver-waiting")).not.toBeInTheDocument();
    expect(screen.queryByTestId("approval-g_req")).not.toBeInTheDocument();
  });

  it("in team mode decides as the signed-in user, with no approver sign-in", async () => {
    const decided = deferred<Grant>();
    answers.approve = () => decided.promise;
    answers.deny = () => grant({ id: "g_other_req", state: "denied", ended_by: alice });
    render(Approvals, { me: "alice", teamMode: true });
    const item = await screen.findByTestId("approval-g_req");
    await userEvent.click(within(item).getByTestId("approve-g_req"));

    const waiting = await screen.findByTestId("approver-waiting");
    expect(waiting).toHaveTextContent("Sending your decision to the team server");
    expect(within(waiting).queryByTestId("approver-url")).not.toBeInTheDocument();
    expect(invoke).toHaveBeenCalledWith("approve", { id: "g_req", comment: null, approverLoginId: null });
    expect(calls("approver_login_begin")).toHaveLength(0);

    all = [activeGrant("g_req", Date.now(), 5400, { requester: dave, role: "LOADER" })];
    await act(() => decided.resolve(all[0] as Grant));
    expect(await screen.findByTestId("approvals-notice")).toHaveTextContent("Approved LOADER for dave");
  });

  it("refuses a denial without a comment inline, before any sign-in", async () => {
    render(Approvals, { me: "alice" });
    const item = await screen.findByTestId("approval-g_req");
    await userEvent.click(within(item).getByTestId("deny-g_req"));

    expect(within(item).getByTestId("approval-comment-error-g_req")).toHaveTextContent("Say why you deny it");
    const comment = within(item).getByTestId("approval-comment-g_req");
    expect(comment).toHaveAttribute("aria-invalid", "true");
    await waitFor(() => expect(comment).toHaveFocus());
    expect(calls("approver_login_begin")).toHaveLength(0);
    expect(calls("deny")).toHaveLength(0);
    expect(screen.queryByTestId("approver-waiting")).not.toBeInTheDocument();
  });

  it("denies with a comment once the approver signed in", async () => {
    answers.deny = () => ({ ...request, state: "denied", ended_by: bob, end_comment: "use READONLY" });
    render(Approvals, { me: "alice" });
    const item = await screen.findByTestId("approval-g_req");
    await userEvent.type(within(item).getByTestId("approval-comment-g_req"), "use READONLY");
    await userEvent.click(within(item).getByTestId("deny-g_req"));

    expect(await screen.findByTestId("approvals-notice")).toHaveTextContent("Denied LOADER for dave");
    expect(invoke).toHaveBeenCalledWith("deny", { id: "g_req", comment: "use READONLY", approverLoginId: "al-1" });
  });

  it("Cancel stops waiting, ends the approver's sign-in and ignores a late answer", async () => {
    const decided = deferred<Grant>();
    answers.approve = () => decided.promise;
    answers.login_cancel = () => undefined;
    render(Approvals, { me: "alice" });
    const item = await screen.findByTestId("approval-g_req");
    await userEvent.click(within(item).getByTestId("approve-g_req"));
    const waiting = await screen.findByTestId("approver-waiting");

    await userEvent.click(within(waiting).getByTestId("approver-cancel"));

    expect(screen.queryByTestId("approver-waiting")).not.toBeInTheDocument();
    expect(invoke).toHaveBeenCalledWith("login_cancel", { loginId: "al-1" });
    await waitFor(() => expect(within(item).getByTestId("approve-g_req")).toHaveFocus());
    await act(() => decided.reject({ kind: "bad_request", message: "the sign-in was cancelled" }));
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(within(item).getByTestId("approve-g_req")).toBeEnabled();
  });

  it("shows the link to open when no browser could be opened", async () => {
    answers.approver_login_begin = () => ({ ...login, browser_error: "Snowgate could not open a browser" });
    answers.approve = () => new Promise(() => {});
    render(Approvals, { me: "alice" });
    await userEvent.click(await screen.findByTestId("approve-g_req"));
    const waiting = await screen.findByTestId("approver-waiting");
    expect(waiting).toHaveTextContent("Snowgate could not open a browser. Open this link in a browser to sign in");
    expect(within(waiting).getByTestId("approver-url")).toHaveTextContent(login.authorize_url);
  });

  it("shows why a decision was refused", async () => {
    answers.approve = () => {
      throw { kind: "forbidden", message: "dave@example.test may not approve their own request" };
    };
    render(Approvals, { me: "alice" });
    await userEvent.click(await screen.findByTestId("approve-g_req"));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The approval didn't go through");
    expect(alert).toHaveTextContent("may not approve their own request");
    expect(screen.queryByTestId("approver-waiting")).not.toBeInTheDocument();
  });

  it("revokes another person's active grant as an approver", async () => {
    answers.revoke = () => ({ ...all[1], state: "revoked", ended_by: bob });
    render(Approvals, { me: "alice" });
    const item = await screen.findByTestId("active-g_other");
    await userEvent.type(within(item).getByTestId("approval-comment-g_other"), "project ended");
    await userEvent.click(within(item).getByTestId("revoke-g_other"));

    expect(await screen.findByTestId("approvals-notice")).toHaveTextContent("Revoked ANALYST for dave");
    expect(invoke).toHaveBeenCalledWith("approver_login_begin", { grantId: "g_other" });
    expect(invoke).toHaveBeenCalledWith("revoke", { id: "g_other", comment: "project ended", approverLoginId: "al-1" });
  });

  it("fetches again when grants change", async () => {
    all = [];
    render(Approvals, { me: "alice" });
    await screen.findByTestId("approvals-empty");
    await waitFor(() => expect(handlers.has("snowgate://changed")).toBe(true));
    all = [request];
    await act(() => handlers.get("snowgate://changed")?.({ payload: { what: "grants" } }));
    expect(await screen.findByTestId("approval-g_req")).toBeInTheDocument();
  });
});
