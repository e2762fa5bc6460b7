//! The tray's icon state and menu as plain data, decided from the broker's status and the
//! signed-in user's grants. [`crate::tray`] renders it; keeping the decisions here lets them
//! be tested without a desktop.
//!
//! The menu, top to bottom: the status line; one line per live grant of the user
//! ("ANALYST — 42 min left", "ENGINEER — waiting for approval"); "Request access…",
//! "Approvals (N)"; "Open Snowgate", "Copy connection settings"; "Sign in" or "Sign out";
//! "Quit". Lines that only inform are disabled, so the menu reads like a status panel.

use std::time::{Duration, SystemTime};

use snowgate_engine::identity::IdentityStatus;
use snowgate_engine::BrokerStatus;

use crate::broker::StartupError;

/// What the tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    /// Nobody is signed in: a grey gate.
    SignedOut,
    /// Signed in, no access granted right now: a blue gate.
    Idle,
    /// At least one grant is active: a green badge.
    Active,
    /// A request of someone else waits for this person's decision: an amber badge.
    Attention,
    /// The broker cannot run (for example, the config is invalid): a red badge.
    Error,
}

/// One of the user's grants that is not over, as the tray shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveGrant {
    /// Usable until `until`.
    Active { role: String, until: SystemTime },
    /// Waiting for approval.
    Pending { role: String },
}

/// What the tray knows besides the status: the user's live grants and how many requests of
/// others wait for the user's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantsView {
    pub live: Vec<LiveGrant>,
    pub awaiting_decision: usize,
}

/// What a menu item does when clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the line only informs.
    None,
    /// Opens the window on the request form.
    RequestAccess,
    /// Opens the window on the approvals list.
    Approvals,
    /// Opens the window.
    Open,
    /// Copies host, port, account and user to the clipboard.
    CopyConnection,
    /// Opens the window's sign-in and starts a browser sign-in.
    SignIn,
    /// Signs out at once.
    SignOut,
    /// Ends the app.
    Quit,
}

impl Action {
    /// The menu item id the action is rendered with.
    pub fn id(self) -> &'static str {
        match self {
            Action::None => "info",
            Action::RequestAccess => "request",
            Action::Approvals => "approvals",
            Action::Open => "open",
            Action::CopyConnection => "copy-connection",
            Action::SignIn => "sign-in",
            Action::SignOut => "sign-out",
            Action::Quit => "quit",
        }
    }

    /// The action for a clicked item id.
    pub fn from_id(id: &str) -> Action {
        [
            Action::RequestAccess,
            Action::Approvals,
            Action::Open,
            Action::CopyConnection,
            Action::SignIn,
            Action::SignOut,
            Action::Quit,
        ]
        .into_iter()
        .find(|a| a.id() == id)
        .unwrap_or(Action::None)
    }
}

/// One entry of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Item {
        label: String,
        enabled: bool,
        action: Action,
    },
    Separator,
}

impl Entry {
    fn item(label: impl Into<String>, enabled: bool, action: Action) -> Entry {
        Entry::Item {
            label: label.into(),
            enabled,
            action,
        }
    }

    fn info(label: impl Into<String>) -> Entry {
        Entry::item(label, false, Action::None)
    }
}

/// The whole tray: icon state and menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayModel {
    pub state: TrayState,
    pub entries: Vec<Entry>,
}

/// Decides the tray for a status (or the reason the broker is not running), the user's
/// grants, and the time now.
pub fn model(
    status: &Result<BrokerStatus, StartupError>,
    grants: &GrantsView,
    now: SystemTime,
) -> TrayModel {
    let signed_in = matches!(
        status,
        Ok(BrokerStatus {
            sign_in: IdentityStatus::SignedIn { .. } | IdentityStatus::OfflineRetrying { .. },
            ..
        })
    );
    let running = status.is_ok();
    let grants = if signed_in {
        grants.clone()
    } else {
        GrantsView::default()
    };
    let active = grants
        .live
        .iter()
        .any(|g| matches!(g, LiveGrant::Active { until, .. } if *until > now));
    let state = match status {
        Err(_) => TrayState::Error,
        Ok(_) if !signed_in => TrayState::SignedOut,
        Ok(_) if grants.awaiting_decision > 0 => TrayState::Attention,
        Ok(_) if active => TrayState::Active,
        Ok(_) => TrayState::Idle,
    };

    let mut entries = vec![Entry::info(status_line(status)), Entry::Separator];
    let grant_lines: Vec<Entry> = grants
        .live
        .iter()
        .filter_map(|g| grant_line(g, now))
        .map(Entry::info)
        .collect();
    if !grant_lines.is_empty() {
        entries.extend(grant_lines);
        entries.push(Entry::Separator);
    }
    entries.push(Entry::item(
        "Request access…",
        signed_in,
        Action::RequestAccess,
    ));
    entries.push(Entry::item(
        format!("Approvals ({})", grants.awaiting_decision),
        signed_in,
        Action::Approvals,
    ));
    entries.push(Entry::Separator);
    entries.push(Entry::item("Open Snowgate", true, Action::Open));
    entries.push(Entry::item(
        "Copy connection settings",
        running,
        Action::CopyConnection,
    ));
    entries.push(Entry::Separator);
    entries.push(match (running, signed_in) {
        (false, _) => Entry::item("Sign in", false, Action::SignIn),
        (true, false) => Entry::item("Sign in", true, Action::SignIn),
        (true, true) => Entry::item("Sign out", true, Action::SignOut),
    });
    entries.push(Entry::item("Quit", true, Action::Quit));
    TrayModel { state, entries }
}

/// The menu's first line: the engine's summary, or a pointer to the window for the details.
pub fn status_line(status: &Result<BrokerStatus, StartupError>) -> String {
    match status {
        Ok(status) => status.summary.clone(),
        Err(StartupError::Config { .. }) => "Config error: open Snowgate for details".into(),
        Err(StartupError::DataDir { .. }) | Err(StartupError::ControlSocket { .. }) => {
            "Cannot start: open Snowgate for details".into()
        }
        Err(StartupError::AlreadyRunning { .. }) => {
            "Another Snowgate broker is running (snowgate up?)".into()
        }
    }
}

/// "ANALYST — 42 min left", "ENGINEER — waiting for approval"; nothing for a grant whose end
/// has passed (its expiry event is on its way).
fn grant_line(grant: &LiveGrant, now: SystemTime) -> Option<String> {
    match grant {
        LiveGrant::Active { role, until } => {
            let left = until.duration_since(now).ok().filter(|d| !d.is_zero())?;
            Some(format!("{role} — {}", time_left(left)))
        }
        LiveGrant::Pending { role } => Some(format!("{role} — waiting for approval")),
    }
}

/// The time a grant has left, in whole minutes rounded up, so the line never says less than
/// there is: "42 min left", "2 h 5 min left", "3 h left".
pub fn time_left(left: Duration) -> String {
    let minutes = left.as_secs().div_ceil(60).max(1);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min left"),
        (h, 0) => format!("{h} h left"),
        (h, m) => format!("{h} h {m} min left"),
    }
}

/// When the menu's countdowns next change: at the next whole minute of the soonest end, and
/// at least once a minute.
pub fn next_refresh(grants: &GrantsView, now: SystemTime) -> Duration {
    const MINUTE: Duration = Duration::from_secs(60);
    grants
        .live
        .iter()
        .filter_map(|g| match g {
            LiveGrant::Active { until, .. } => until.duration_since(now).ok(),
            LiveGrant::Pending { .. } => None,
        })
        .map(|left| {
            let into_minute = Duration::from_secs(left.as_secs() % 60)
                + Duration::from_nanos(u64::from(left.subsec_nanos()));
            if into_minute.is_zero() {
                MINUTE
            } else {
                into_minute
            }
        })
        .min()
        .unwrap_or(MINUTE)
        .min(MINUTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(sign_in: IdentityStatus, summary: &str) -> BrokerStatus {
        BrokerStatus {
            version: "0.1.0".into(),
            sign_in,
            keyring_problem: None,
            issuer: "https://idp.example.com/".into(),
            account: "acme".into(),
            snowflake_url: "https://acme.snowflakecomputing.com/".into(),
            accounts: Vec::new(),
            gateway_listen: vec!["127.0.0.1:8765".into()],
            roles: vec!["ANALYST".into()],
            summary: summary.into(),
            gateway: Default::default(),
            mode: "solo".into(),
            team_server: None,
            team: None,
            notes: Vec::new(),
            tool_asks: Vec::new(),
        }
    }

    fn signed_in() -> Result<BrokerStatus, StartupError> {
        Ok(status(
            IdentityStatus::SignedIn {
                subject: "alice".into(),
            },
            "Signed in as alice",
        ))
    }

    fn signed_out() -> Result<BrokerStatus, StartupError> {
        Ok(status(IdentityStatus::SignedOut, "Signed out"))
    }

    fn labels(m: &TrayModel) -> String {
        m.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Item { label, .. } => Some(label.as_str()),
                Entry::Separator => None,
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    fn item<'a>(m: &'a TrayModel, label: &str) -> (&'a str, bool, Action) {
        m.entries
            .iter()
            .find_map(|e| match e {
                Entry::Item {
                    label: l,
                    enabled,
                    action,
                } if l.starts_with(label) => Some((l.as_str(), *enabled, *action)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {label:?} in {m:#?}"))
    }

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    #[test]
    fn signed_out_shows_the_grey_gate_and_offers_sign_in() {
        let m = model(&signed_out(), &GrantsView::default(), at(0));
        assert_eq!(m.state, TrayState::SignedOut);
        assert_eq!(
            labels(&m),
            "Signed out|Request access…|Approvals (0)|Open Snowgate|Copy connection settings|Sign in|Quit"
        );
        assert!(!item(&m, "Request access").1);
        assert!(!item(&m, "Approvals").1);
        assert_eq!(item(&m, "Sign in").2, Action::SignIn);
        assert!(item(&m, "Copy connection settings").1);
    }

    #[test]
    fn signed_in_without_grants_is_idle() {
        let m = model(&signed_in(), &GrantsView::default(), at(0));
        assert_eq!(m.state, TrayState::Idle);
        assert_eq!(
            labels(&m),
            "Signed in as alice|Request access…|Approvals (0)|Open Snowgate|Copy connection settings|Sign out|Quit"
        );
        assert_eq!(item(&m, "Request access").2, Action::RequestAccess);
        assert!(item(&m, "Request access").1);
        assert_eq!(item(&m, "Sign out").2, Action::SignOut);
    }

    #[test]
    fn an_active_grant_turns_the_icon_green_and_counts_down() {
        let grants = GrantsView {
            live: vec![
                LiveGrant::Active {
                    role: "ANALYST".into(),
                    until: at(42 * 60 - 30),
                },
                LiveGrant::Pending {
                    role: "ENGINEER".into(),
                },
            ],
            awaiting_decision: 0,
        };
        let m = model(&signed_in(), &grants, at(0));
        assert_eq!(m.state, TrayState::Active);
        let (label, enabled, action) = item(&m, "ANALYST");
        assert_eq!(label, "ANALYST — 42 min left");
        assert!(!enabled);
        assert_eq!(action, Action::None);
        assert_eq!(item(&m, "ENGINEER").0, "ENGINEER — waiting for approval");
        // A minute later the line follows.
        let m = model(&signed_in(), &grants, at(60));
        assert_eq!(item(&m, "ANALYST").0, "ANALYST — 41 min left");
    }

    #[test]
    fn a_grant_past_its_end_is_no_longer_shown_as_active() {
        let grants = GrantsView {
            live: vec![LiveGrant::Active {
                role: "ANALYST".into(),
                until: at(10),
            }],
            awaiting_decision: 0,
        };
        let m = model(&signed_in(), &grants, at(11));
        assert_eq!(m.state, TrayState::Idle);
        assert!(!labels(&m).contains("ANALYST"));
    }

    #[test]
    fn a_request_waiting_for_my_decision_asks_for_attention_first() {
        let grants = GrantsView {
            live: vec![LiveGrant::Active {
                role: "ANALYST".into(),
                until: at(3600),
            }],
            awaiting_decision: 2,
        };
        let m = model(&signed_in(), &grants, at(0));
        assert_eq!(m.state, TrayState::Attention);
        let (label, enabled, action) = item(&m, "Approvals");
        assert_eq!(label, "Approvals (2)");
        assert!(enabled);
        assert_eq!(action, Action::Approvals);
    }

    #[test]
    fn grants_are_not_shown_once_signed_out() {
        let grants = GrantsView {
            live: vec![LiveGrant::Active {
                role: "ANALYST".into(),
                until: at(3600),
            }],
            awaiting_decision: 1,
        };
        let m = model(&signed_out(), &grants, at(0));
        assert_eq!(m.state, TrayState::SignedOut);
        assert!(!labels(&m).contains("ANALYST"));
        assert_eq!(item(&m, "Approvals").0, "Approvals (0)");
    }

    #[test]
    fn a_broker_that_cannot_run_shows_the_error_and_greys_out_what_needs_it() {
        let broken = Err(StartupError::Config {
            message: "line 3".into(),
        });
        let m = model(&broken, &GrantsView::default(), at(0));
        assert_eq!(m.state, TrayState::Error);
        assert_eq!(
            item(&m, "Config error").0,
            "Config error: open Snowgate for details"
        );
        assert!(!item(&m, "Sign in").1);
        assert!(!item(&m, "Copy connection settings").1);
        assert!(item(&m, "Open Snowgate").1);
        let other = Err(StartupError::AlreadyRunning {
            message: "stop it".into(),
        });
        assert_eq!(
            status_line(&other),
            "Another Snowgate broker is running (snowgate up?)"
        );
    }

    #[test]
    fn offline_with_tokens_still_counts_as_signed_in() {
        let offline = Ok(status(
            IdentityStatus::OfflineRetrying {
                subject: "alice".into(),
                since: chrono::Utc::now(),
                last_error: "connection refused".into(),
                next_retry_at: chrono::Utc::now(),
            },
            "Signed in as alice; the IdP is unreachable",
        ));
        let m = model(&offline, &GrantsView::default(), at(0));
        assert_eq!(m.state, TrayState::Idle);
        assert_eq!(item(&m, "Sign out").2, Action::SignOut);
        let m = model(
            &Ok(status(IdentityStatus::SigningIn, "Signing in")),
            &GrantsView::default(),
            at(0),
        );
        assert_eq!(m.state, TrayState::SignedOut);
    }

    #[test]
    fn time_left_rounds_up_to_whole_minutes() {
        assert_eq!(time_left(Duration::from_secs(42 * 60)), "42 min left");
        assert_eq!(time_left(Duration::from_secs(5)), "1 min left");
        assert_eq!(time_left(Duration::from_secs(3600)), "1 h left");
        assert_eq!(
            time_left(Duration::from_secs(2 * 3600 + 4 * 60 + 1)),
            "2 h 5 min left"
        );
    }

    #[test]
    fn the_menu_refreshes_when_a_countdown_changes_and_at_least_each_minute() {
        let none = GrantsView::default();
        assert_eq!(next_refresh(&none, at(0)), Duration::from_secs(60));
        let grants = GrantsView {
            live: vec![LiveGrant::Active {
                role: "ANALYST".into(),
                until: at(42 * 60 - 30),
            }],
            awaiting_decision: 0,
        };
        assert_eq!(next_refresh(&grants, at(0)), Duration::from_secs(30));
    }

    #[test]
    fn item_ids_round_trip() {
        for a in [
            Action::RequestAccess,
            Action::Approvals,
            Action::Open,
            Action::CopyConnection,
            Action::SignIn,
            Action::SignOut,
            Action::Quit,
        ] {
            assert_eq!(Action::from_id(a.id()), a);
        }
        assert_eq!(Action::from_id("status"), Action::None);
    }
}
