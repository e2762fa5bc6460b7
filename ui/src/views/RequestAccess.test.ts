import { render, screen, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { activeGrant, analyst, grant, loader } from "../test/fixtures";
import RequestAccess from "./RequestAccess.svelte";

const invoke = vi.hoisted(() => vi.fn());
vi.mock("@tauri-apps/api/core", () => ({ invoke }));

let answers: Record<string, (args?: Record<string, unknown>) => unknown>;

beforeEach(() => {
  answers = { roles: () => [analyst, loader] };
  invoke.mockReset();
  invoke.mockImplementation(async (command: string, args?: Record<string, unknown>) => {
    const answer = answers[command];
    if (!answer) throw new Error(`unexpected command ${command}`);
    return answer(args);
  });
});

function requests() {
  return invoke.mock.calls.filter(([c]) => c === "request_access");
}

describe("RequestAccess", () => {
  it("shows each role's description, maximum, auto-approval and approvers", async () => {
    render(RequestAccess);
    const picker = await screen.findByTestId("request-role");
    expect(within(picker).getAllByRole("option").map((o) => o.textContent)).toEqual(["ANALYST", "LOADER"]);
    const details = screen.getByTestId("role-details");
    expect(details).toHaveTextContent("Read access to the sales marts");
    expect(screen.getByTestId("role-max")).toHaveTextContent("8h");
    expect(screen.getByTestId("role-approval")).toHaveTextContent("Approved at once up to 1h; longer needs 1 approval from managers");

    await userEvent.selectOptions(picker, "LOADER");
    expect(details).toHaveTextContent("Writes to the raw schemas");
    expect(screen.getByTestId("role-max")).toHaveTextContent("2h");
    expect(screen.getByTestId("role-approval")).toHaveTextContent("Needs 2 approvals from data-leads, managers");
    expect(details).toHaveTextContent("Not allowed");
  });

  it("names each role's Snowflake account when the roles are in several", async () => {
    answers.roles = () => [analyst, { ...loader, account: "acme-dev" }];
    render(RequestAccess);
    const picker = await screen.findByTestId("request-role");
    expect(within(picker).getAllByRole("option").map((o) => o.textContent)).toEqual([
      "ANALYST (acme-prod)",
      "LOADER (acme-dev)",
    ]);
  });

  it("refuses an empty form inline and sends nothing", async () => {
    render(RequestAccess);
    await userEvent.click(await screen.findByTestId("request-submit"));
    expect(screen.getByTestId("request-duration-error")).toHaveTextContent("Enter how long you need it");
    expect(screen.getByTestId("request-reason-error")).toHaveTextContent("A reason is required");
    expect(screen.getByTestId("request-duration")).toHaveAttribute("aria-invalid", "true");
    expect(screen.getByTestId("request-duration")).toHaveFocus();
    expect(requests()).toHaveLength(0);
  });

  it("checks the duration grammar and the role's maximum", async () => {
    render(RequestAccess);
    const duration = await screen.findByTestId("request-duration");

    await userEvent.type(duration, "90 minutes");
    await userEvent.tab();
    expect(screen.getByTestId("request-duration-error")).toHaveTextContent('"90 minutes" is not a duration; write it like 30m, 1h, 1h30m or 2d');

    await userEvent.clear(duration);
    await userEvent.type(duration, "2d");
    expect(screen.getByTestId("request-duration-error")).toHaveTextContent("longer than this role allows; ask for at most 8h");

    await userEvent.selectOptions(screen.getByTestId("request-role"), "LOADER");
    await userEvent.clear(duration);
    await userEvent.type(duration, "2h30m");
    expect(screen.getByTestId("request-duration-error")).toHaveTextContent("at most 2h");

    await userEvent.clear(duration);
    await userEvent.type(duration, "1h30m");
    expect(screen.queryByTestId("request-duration-error")).not.toBeInTheDocument();
    expect(duration).toHaveAttribute("aria-invalid", "false");
  });

  it("wants a reason of a few words", async () => {
    render(RequestAccess);
    const reason = await screen.findByTestId("request-reason");
    await userEvent.type(reason, "Q3");
    await userEvent.tab();
    expect(screen.getByTestId("request-reason-error")).toHaveTextContent("Say a little more");
    await userEvent.type(reason, " report");
    expect(screen.queryByTestId("request-reason-error")).not.toBeInTheDocument();
  });

  it("says when a duration is approved at once", async () => {
    render(RequestAccess);
    await userEvent.type(await screen.findByTestId("request-duration"), "45m");
    expect(screen.getByText("Approved at once.")).toBeInTheDocument();
  });

  it("requests access and shows the pending grant", async () => {
    answers.request_access = () => grant({ id: "g_created", role: "LOADER", requested_duration: 5400, reason: "Backfill" });
    const onnavigate = vi.fn();
    render(RequestAccess, { onnavigate });
    await userEvent.selectOptions(await screen.findByTestId("request-role"), "LOADER");
    await userEvent.type(screen.getByTestId("request-duration"), "1h30m");
    await userEvent.type(screen.getByTestId("request-reason"), "  Backfill  ");
    await userEvent.type(screen.getByTestId("request-ticket"), "OPS-12");
    await userEvent.click(screen.getByTestId("request-submit"));

    expect(invoke).toHaveBeenCalledWith("request_access", {
      role: "LOADER",
      durationSecs: 5400,
      reason: "Backfill",
      ticket: "OPS-12",
    });
    const result = await screen.findByTestId("request-result");
    expect(result).toHaveTextContent("Pending");
    expect(result).toHaveTextContent("Your request for LOADER waits for an approver");
    expect(result).toHaveTextContent("data-leads or managers");
    expect(result).toHaveTextContent("2 approvals needed");
    expect(within(result).getByTestId("request-result-id")).toHaveTextContent("g_created");
    expect(result).toHaveFocus();

    await userEvent.click(within(result).getByRole("button", { name: "See My access" }));
    expect(onnavigate).toHaveBeenCalledWith("access");
  });

  it("shows an auto-approved grant as active, and sends no ticket when none is given", async () => {
    answers.request_access = () =>
      activeGrant("g_auto", Date.now(), 1800, {
        approvals: [{ by: { kind: "policy" }, comment: null, at: new Date().toISOString() }],
      });
    render(RequestAccess);
    await userEvent.type(await screen.findByTestId("request-duration"), "30m");
    await userEvent.type(screen.getByTestId("request-reason"), "quick check");
    await userEvent.click(screen.getByTestId("request-submit"));

    expect(invoke).toHaveBeenCalledWith("request_access", { role: "ANALYST", durationSecs: 1800, reason: "quick check", ticket: null });
    const result = await screen.findByTestId("request-result");
    expect(result).toHaveTextContent("Active");
    expect(result).toHaveTextContent("You have ANALYST until");
    expect(result).toHaveTextContent("The role's policy approved it at once");
  });

  it("shows why the request was refused, and keeps what was typed", async () => {
    answers.request_access = () => {
      throw { kind: "forbidden", message: "you already hold an active grant for ANALYST (g_abc)" };
    };
    render(RequestAccess);
    await userEvent.type(await screen.findByTestId("request-duration"), "1h");
    await userEvent.type(screen.getByTestId("request-reason"), "another one");
    await userEvent.click(screen.getByTestId("request-submit"));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The request wasn't made");
    expect(alert).toHaveTextContent("you already hold an active grant for ANALYST (g_abc)");
    expect(screen.getByTestId("request-reason")).toHaveValue("another one");
    expect(screen.queryByTestId("request-result")).not.toBeInTheDocument();
  });

  it("explains when no role can be requested", async () => {
    answers.roles = () => [];
    render(RequestAccess);
    expect(await screen.findByTestId("roles-empty")).toHaveTextContent("No role can be requested yet");
    expect(screen.queryByTestId("request-submit")).not.toBeInTheDocument();
  });

  it("shows why the roles couldn't be loaded", async () => {
    answers.roles = () => {
      throw { kind: "unavailable", message: "the ledger can't be opened" };
    };
    render(RequestAccess);
    expect(await screen.findByRole("alert")).toHaveTextContent("the ledger can't be opened");
  });
});
