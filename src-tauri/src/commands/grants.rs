//! Just-in-time access: the roles, a request, the grants, and the approver's decisions.
//!
//! Each command builds the engine's control [`Request`] and forwards it, so the window gets
//! exactly what `snowgate roles`, `request`, `grants`, `approve`, `deny`, `revoke`, `extend`
//! and `cancel` get. An approver proves who they are with a fresh sign-in at the IdP: the
//! window calls [`approver_login_begin`], the shell opens the page in the system browser (as
//! for the user's own sign-in), and the decision command then waits for that sign-in and
//! decides as the person who signed in there. Cancel in the window (`login_cancel` with the
//! approver's sign-in id) ends that wait and abandons the sign-in, so a late sign-in decides
//! nothing.

use serde::Serialize;
use serde_json::Value;
use snowgate_engine::control::answers::ApproverLoginStart;
use snowgate_engine::control::{ControlError, Request};
use tauri::State;

use super::identity::open_browser;
use super::sign_ins::SignInsUnderWay;
use super::{forward, forward_as};
use crate::broker::BrokerHost;

/// The requestable roles and their rules (name, description, max_duration, approver_groups,
/// approvals_required, auto_approve_up_to, pending_timeout, extensions_allowed).
#[tauri::command]
pub async fn roles(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::Roles).await
}

/// Asks for `role` for `duration_secs` as the signed-in user; returns the grant (active at
/// once when the role's auto-approval covers it, else pending).
#[tauri::command]
pub async fn request_access(
    host: State<'_, BrokerHost>,
    role: String,
    duration_secs: u64,
    reason: String,
    ticket: Option<String>,
) -> Result<Value, ControlError> {
    let ticket = ticket.filter(|t| !t.trim().is_empty());
    forward(
        &host,
        Request::RequestAccess {
            role,
            duration_secs,
            reason,
            ticket,
        },
    )
    .await
}

/// The signed-in user's grants, or everyone's with `all`, newest first.
#[tauri::command]
pub async fn grants(host: State<'_, BrokerHost>, all: bool) -> Result<Value, ControlError> {
    forward(&host, Request::Grants { all }).await
}

/// The approver's sign-in as the window receives it: the engine's `{ login_id, authorize_url }`,
/// plus why the browser could not be opened, if it could not.
#[derive(Debug, Serialize)]
pub struct ApproverLoginStarted {
    login_id: String,
    authorize_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    browser_error: Option<String>,
}

/// Starts an approver's fresh sign-in (`prompt=login`) and opens it in the system browser,
/// honouring `$BROWSER`. With `grant_id`, the grant is checked first, so an unknown or ended
/// grant is refused before anyone signs in.
#[tauri::command]
pub async fn approver_login_begin(
    host: State<'_, BrokerHost>,
    grant_id: Option<String>,
) -> Result<ApproverLoginStarted, ControlError> {
    let started: ApproverLoginStart =
        forward_as(&host, Request::ApproverLoginBegin { grant_id }).await?;
    let authorize_url = started.authorize_url;
    Ok(ApproverLoginStarted {
        login_id: started.login_id,
        browser_error: open_browser(&authorize_url),
        authorize_url,
    })
}

/// Approves a request or an extension: in solo mode as the approver who signed in with
/// `approver_login_id` (ending with a `cancelled` error when `login_cancel` is called for that
/// sign-in); in team mode (`None`) as the signed-in user, and the team server applies the policy.
#[tauri::command]
pub async fn approve(
    host: State<'_, BrokerHost>,
    under_way: State<'_, SignInsUnderWay>,
    id: String,
    comment: Option<String>,
    approver_login_id: Option<String>,
) -> Result<Value, ControlError> {
    let login_id = approver_login_id.clone();
    let request = Request::Approve {
        id,
        comment,
        approver_login_id,
    };
    decide(&host, &under_way, login_id, request).await
}

/// Denies a request or an extension (a comment is required), as [`approve`] decides.
#[tauri::command]
pub async fn deny(
    host: State<'_, BrokerHost>,
    under_way: State<'_, SignInsUnderWay>,
    id: String,
    comment: String,
    approver_login_id: Option<String>,
) -> Result<Value, ControlError> {
    let login_id = approver_login_id.clone();
    let request = Request::Deny {
        id,
        comment,
        approver_login_id,
    };
    decide(&host, &under_way, login_id, request).await
}

/// Revokes an active grant: as an approver with `approver_login_id` (cancellable like
/// [`approve`]), or without it as the signed-in user (their own grant in solo mode; any grant
/// the team server lets them revoke in team mode).
#[tauri::command]
pub async fn revoke(
    host: State<'_, BrokerHost>,
    under_way: State<'_, SignInsUnderWay>,
    id: String,
    comment: Option<String>,
    approver_login_id: Option<String>,
) -> Result<Value, ControlError> {
    let login_id = approver_login_id.clone();
    let request = Request::Revoke {
        id,
        comment,
        approver_login_id,
    };
    decide(&host, &under_way, login_id, request).await
}

/// Forwards a decision; one made through an approver's sign-in can be cancelled with it.
async fn decide(
    host: &BrokerHost,
    under_way: &SignInsUnderWay,
    login_id: Option<String>,
    request: Request,
) -> Result<Value, ControlError> {
    match login_id {
        Some(login_id) => {
            under_way
                .until_cancelled(&login_id, forward(host, request))
                .await
        }
        None => forward(host, request).await,
    }
}

/// Asks for `by_secs` more on an active grant (a new decision under the same policy).
#[tauri::command]
pub async fn extend(
    host: State<'_, BrokerHost>,
    id: String,
    by_secs: u64,
    reason: String,
) -> Result<Value, ControlError> {
    forward(
        &host,
        Request::Extend {
            id,
            by_secs,
            reason,
        },
    )
    .await
}

/// Withdraws a pending request or extension.
#[tauri::command]
pub async fn cancel(host: State<'_, BrokerHost>, id: String) -> Result<Value, ControlError> {
    forward(&host, Request::Cancel { id }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approver_sign_in_has_the_fields_the_window_reads() {
        let started = ApproverLoginStarted {
            login_id: "abc".into(),
            authorize_url: "https://idp.example.com/auth?prompt=login".into(),
            browser_error: None,
        };
        assert_eq!(
            serde_json::to_value(started).unwrap(),
            serde_json::json!({
                "login_id": "abc",
                "authorize_url": "https://idp.example.com/auth?prompt=login",
            })
        );
    }
}
