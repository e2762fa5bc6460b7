//! Tools that asked for a role the person holds no grant for: what the tray notifies about
//! and offers a one-click request for, and what `snowgate status --json` lists.
//!
//! [`crate::access::Access`] calls [`ToolAsks::note`] when a tool (not an agent) logs in for a
//! configured role with no usable grant. A tool retries its login, so repeated asks by the same
//! tool for the same role within [`REPEAT_WINDOW`] count as one: only the first is broadcast
//! (the tray shows the notice once); the others raise its count. Asks are kept in memory for
//! [`KEPT_FOR`], at most [`MAX_KEPT`] of them, newest first; they hold no secret (the tool's
//! client app id, its process name, the role).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

/// Asks by the same tool for the same role closer together than this raise one notice.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// How long an ask stays in the status.
pub const KEPT_FOR: Duration = Duration::from_secs(60 * 60);

/// The most asks kept.
pub const MAX_KEPT: usize = 20;

/// One tool's ask for a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct ToolAsk {
    /// The tool as the person knows it: its client app id and process name,
    /// `PythonConnector (python)`.
    pub tool: String,
    /// The configured role it asked for.
    pub role: String,
    /// When it first asked (Unix seconds).
    #[ts(type = "number")]
    pub first_at: u64,
    /// When it last asked (Unix seconds).
    #[ts(type = "number")]
    pub last_at: u64,
    /// How many logins asked.
    pub logins: u32,
    /// The duration a request for it defaults to: the role's auto-approval cap, else an hour
    /// (never more than the role's maximum).
    #[ts(type = "number")]
    pub duration_secs: u64,
    /// Whether the tray was told (a notice is raised once per tool and role within
    /// [`REPEAT_WINDOW`]; none when the policy approved the request filed for it at once).
    pub notice_raised: bool,
    /// The request Snowgate filed for it (`[gateway] wait_for_approval`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request: Option<String>,
}

/// The tool's name from what the gateway knows: the driver's `CLIENT_APP_ID` and the peer's
/// process name, `PythonConnector (python)`; either alone when the other is unknown.
pub fn tool_label(client_app_id: Option<&str>, process_name: Option<&str>) -> String {
    let clean = |s: Option<&str>| {
        s.map(|s| {
            s.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
    };
    match (clean(client_app_id), clean(process_name)) {
        (Some(app), Some(process)) if !app.eq_ignore_ascii_case(&process) => {
            format!("{app} ({process})")
        }
        (Some(app), _) => app,
        (None, Some(process)) => process,
        (None, None) => "A tool".to_string(),
    }
}

/// The recent asks and the broadcast of new ones.
pub struct ToolAsks {
    asks: Mutex<Vec<ToolAsk>>,
    new: broadcast::Sender<ToolAsk>,
    /// Held while a waiting login looks for a pending request and files one, so that two
    /// tools logging in at once for the same role file one request.
    pub(crate) filing: tokio::sync::Mutex<()>,
}

impl Default for ToolAsks {
    fn default() -> Self {
        ToolAsks {
            asks: Mutex::new(Vec::new()),
            new: broadcast::channel(64).0,
            filing: tokio::sync::Mutex::new(()),
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ToolAsks {
    /// Notes that `tool` asked for `role` at `now`. Returns the ask when it is new (no ask by
    /// the same tool for the same role within [`REPEAT_WINDOW`]); the caller then
    /// [`ToolAsks::announce`]s it. A repeat only raises the kept ask's count.
    pub fn note(
        &self,
        tool: &str,
        role: &str,
        duration_secs: u64,
        now: SystemTime,
    ) -> Option<ToolAsk> {
        let now = unix(now);
        let mut asks = self.asks.lock().unwrap();
        asks.retain(|a| now.saturating_sub(a.last_at) < KEPT_FOR.as_secs());
        if let Some(a) = asks.iter_mut().find(|a| {
            a.tool == tool
                && a.role == role
                && now.saturating_sub(a.last_at) < REPEAT_WINDOW.as_secs()
        }) {
            a.last_at = a.last_at.max(now);
            a.logins = a.logins.saturating_add(1);
            return None;
        }
        let ask = ToolAsk {
            tool: tool.to_string(),
            role: role.to_string(),
            first_at: now,
            last_at: now,
            logins: 1,
            duration_secs,
            notice_raised: false,
            request: None,
        };
        asks.insert(0, ask.clone());
        asks.truncate(MAX_KEPT);
        Some(ask)
    }

    /// Records the request filed for the latest ask by `tool` for `role`.
    pub fn set_request(&self, tool: &str, role: &str, request: &str) {
        if let Some(a) = self
            .asks
            .lock()
            .unwrap()
            .iter_mut()
            .find(|a| a.tool == tool && a.role == role)
        {
            a.request = Some(request.to_string());
        }
    }

    /// The latest ask by `tool` for `role`, as kept.
    pub fn get(&self, tool: &str, role: &str) -> Option<ToolAsk> {
        self.asks
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.tool == tool && a.role == role)
            .cloned()
    }

    /// Sends a new ask to those listening (the tray), and marks it as told.
    pub fn announce(&self, mut ask: ToolAsk) {
        ask.notice_raised = true;
        if let Some(kept) = self
            .asks
            .lock()
            .unwrap()
            .iter_mut()
            .find(|a| a.tool == ask.tool && a.role == ask.role)
        {
            kept.notice_raised = true;
        }
        // Nobody listening (the CLI's broker) is fine: the status still lists it.
        let _ = self.new.send(ask);
    }

    /// New asks as they come.
    pub fn subscribe(&self) -> broadcast::Receiver<ToolAsk> {
        self.new.subscribe()
    }

    /// The asks of the last [`KEPT_FOR`], newest first.
    pub fn recent(&self, now: SystemTime) -> Vec<ToolAsk> {
        let now = unix(now);
        self.asks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| now.saturating_sub(a.last_at) < KEPT_FOR.as_secs())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn a_tool_is_named_by_its_driver_and_process() {
        assert_eq!(
            tool_label(Some("PythonConnector"), Some("python")),
            "PythonConnector (python)"
        );
        assert_eq!(tool_label(Some("JDBC"), None), "JDBC");
        assert_eq!(tool_label(None, Some("dbeaver")), "dbeaver");
        assert_eq!(tool_label(Some("node"), Some("node")), "node");
        assert_eq!(tool_label(Some(" \u{7}"), None), "A tool");
    }

    #[test]
    fn repeated_asks_within_the_window_are_one() {
        let asks = ToolAsks::default();
        let first = asks.note("JDBC", "ANALYST", 3600, at(0)).unwrap();
        assert_eq!(first.logins, 1);
        assert!(asks.note("JDBC", "ANALYST", 3600, at(10)).is_none());
        assert!(asks.note("JDBC", "ANALYST", 3600, at(200)).is_none());
        // Another role, another tool: each its own.
        assert!(asks.note("JDBC", "ENGINEER", 3600, at(201)).is_some());
        assert!(asks
            .note("PythonConnector (python)", "ANALYST", 3600, at(202))
            .is_some());
        let mut heard = asks.subscribe();
        asks.announce(first);
        assert!(heard.try_recv().unwrap().notice_raised);
        let kept = asks.get("JDBC", "ANALYST").unwrap();
        assert!(kept.notice_raised);
        assert_eq!((kept.logins, kept.first_at + 200), (3, kept.last_at));
        // Quiet for longer than the window: a new notice.
        let later = at(200) + REPEAT_WINDOW;
        assert!(asks.note("JDBC", "ANALYST", 3600, later).is_some());
        assert_eq!(asks.recent(later)[0].role, "ANALYST");
        assert_eq!(asks.recent(later)[0].logins, 1);
    }

    #[test]
    fn old_asks_leave_the_status_and_few_are_kept() {
        let asks = ToolAsks::default();
        for i in 0..(MAX_KEPT as u64 + 5) {
            asks.note(&format!("tool{i}"), "ANALYST", 3600, at(i));
        }
        assert_eq!(asks.recent(at(30)).len(), MAX_KEPT);
        assert_eq!(asks.recent(at(30))[0].tool, format!("tool{}", MAX_KEPT + 4));
        assert!(asks.recent(at(30) + KEPT_FOR).is_empty());
        asks.set_request("tool24", "ANALYST", "g_x");
        assert_eq!(
            asks.get("tool24", "ANALYST").unwrap().request.as_deref(),
            Some("g_x")
        );
    }
}
