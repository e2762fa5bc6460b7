//! The handle table: which tool handle stands for which upstream token, under which grant.
//!
//! One table serves every connection, because drivers pool connections and send one session's
//! requests over several of them. Each session has one master handle and a short history of
//! session handles: renewal gives the tool a *new* session handle (as Snowflake gives a new
//! session token), and the previous few stay mapped to the upstream tokens they stood for, so a
//! request already in flight with an old handle reaches Snowflake with the old token and gets
//! Snowflake's own 390112, which makes the driver renew again. The master handle stays the same
//! for the session's life; if Snowflake rotates the master token, the handle is remapped.
//!
//! Invariants:
//! - a handle maps to exactly one session, and a session to exactly one grant;
//! - a session whose access ended keeps its handles (so the tool is told why) but never yields
//!   an upstream token again;
//! - a session past its grant's end is treated as ended at once, whoever notices first;
//! - a login can't bring a session back to life: an ended grant leaves a tombstone, and a
//!   sign-out moves the sign-out epoch, both checked under the same lock that registers a
//!   session. A login authorized before a revoke or sign-out and answered by Snowflake after
//!   it is refused at [`HandleTable::open`], and its upstream session is closed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use secrecy::SecretString;

use crate::authorizer::{PeerInfo, SessionPolicy};
use crate::cancel::Running;
use crate::events::{
    CloseReason, EndKind, EndReason, GatewayEvent, SessionId, SessionInfo, ToolInfo,
};
use crate::handle::{Handle, HandleKind};

/// Old session handles kept per session after renewals.
const RETAINED_SESSION_HANDLES: usize = 4;
/// How long an ended session keeps its handles, so the tool's next request learns why.
const ENDED_RETENTION: Duration = Duration::from_secs(4 * 3600);
/// Slack past Snowflake's idle master validity before an unused session is dropped.
const IDLE_SLACK: Duration = Duration::from_secs(60);
/// Master validity assumed when Snowflake's login answer does not say (Snowflake's default).
pub(crate) const DEFAULT_MASTER_VALIDITY: Duration = Duration::from_secs(4 * 3600);
/// How long an ended grant's tombstone is kept: far longer than any login can be in flight.
const TOMBSTONE_RETENTION: Duration = Duration::from_secs(4 * 3600);

/// What never changes about a session, plus its statement counter.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: SessionId,
    pub grant_id: String,
    pub role: String,
    pub login_name: String,
    /// The account it is on: its index in [`crate::GatewayConfig::accounts`].
    pub route: usize,
    /// The account's name, when the gateway serves more than one.
    pub account: Option<String>,
    /// When the grant ends; moved later by [`HandleTable::extend_grant`].
    grant_ends_at: std::sync::Mutex<SystemTime>,
    pub tool: ToolInfo,
    pub peer: PeerInfo,
    pub opened_at: SystemTime,
    pub snowflake_session_id: Option<u64>,
    pub statements: AtomicU64,
    /// The queries it may still be running upstream, cancelled at a cut.
    pub running: Running,
    /// Its own rules (agent, read-only, rate), decided at login.
    pub policy: SessionPolicy,
}

impl Session {
    /// The event that records this session leaving the table, for `reason`.
    pub(crate) fn closed_event(&self, reason: CloseReason) -> GatewayEvent {
        GatewayEvent::SessionClosed {
            session: self.id,
            grant_id: self.grant_id.clone(),
            role: self.role.clone(),
            reason,
        }
    }
}

impl Session {
    /// When the session's grant ends.
    pub fn grant_ends_at(&self) -> SystemTime {
        *self.grant_ends_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn info(&self, ended: Option<EndReason>) -> SessionInfo {
        SessionInfo {
            id: self.id,
            tool: self.tool.clone(),
            peer: self.peer.clone(),
            role: self.role.clone(),
            account: self.account.clone(),
            grant_id: self.grant_id.clone(),
            login_name: self.login_name.clone(),
            snowflake_session_id: self.snowflake_session_id,
            opened_at: self.opened_at,
            grant_ends_at: self.grant_ends_at(),
            statements: self.statements.load(Ordering::Relaxed),
            ended,
        }
    }

    /// The end a session has by the clock alone: its grant ran out.
    fn expired_by(&self, now: SystemTime) -> Option<EndReason> {
        let ends_at = self.grant_ends_at();
        (now >= ends_at).then(|| EndReason::new(EndKind::Expired, ends_at))
    }
}

/// A session about to be registered, from a successful upstream login.
pub(crate) struct NewSession {
    pub grant_id: String,
    pub role: String,
    pub login_name: String,
    pub route: usize,
    pub account: Option<String>,
    pub grant_ends_at: SystemTime,
    pub tool: ToolInfo,
    pub peer: PeerInfo,
    pub snowflake_session_id: Option<u64>,
    pub upstream_session: SecretString,
    pub upstream_master: SecretString,
    pub master_validity: Duration,
    pub policy: SessionPolicy,
}

struct Slot {
    session: Arc<Session>,
    /// Newest last.
    session_handles: VecDeque<Handle>,
    master_handle: Handle,
    upstream_session: SecretString,
    upstream_master: SecretString,
    ended: Option<EndReason>,
    ended_seen: Option<Instant>,
    last_used: Instant,
    master_validity: Duration,
}

struct SessionHandleEntry {
    id: SessionId,
    upstream: SecretString,
}

#[derive(Default)]
struct Tables {
    slots: HashMap<SessionId, Slot>,
    by_session_handle: HashMap<Handle, SessionHandleEntry>,
    by_master_handle: HashMap<Handle, SessionId>,
    /// Grants that ended, and when the tombstone was laid.
    ended_grants: HashMap<String, (EndReason, Instant)>,
    /// Moved by every sign-out; a login remembers it before it is authorized.
    sign_out_epoch: u64,
    /// Why the latest sign-out ended access.
    last_sign_out: Option<EndReason>,
}

/// A handle that resolved to a live session.
pub(crate) struct Resolved {
    pub session: Arc<Session>,
    /// The upstream token this handle stands for.
    pub upstream: SecretString,
}

/// Why a handle did not resolve to a live session.
pub(crate) enum Unresolved {
    Unknown,
    Ended { role: String, reason: EndReason },
}

/// The tokens needed to renew a session upstream.
pub(crate) struct RenewalTokens {
    pub session: Arc<Session>,
    pub upstream_master: SecretString,
    /// The upstream token the tool's `oldSessionToken` stood for.
    pub upstream_old_session: Option<SecretString>,
}

/// An upstream session to close: its tokens and what to tell about it.
pub(crate) struct ToClose {
    pub session: Arc<Session>,
    pub upstream_session: SecretString,
    pub upstream_master: SecretString,
}

/// A session [`HandleTable::open`] refused to register: its access ended while its login was
/// in flight. It was never in the table; its upstream session must be closed.
pub(crate) struct LateLogin {
    pub to_close: ToClose,
    pub reason: EndReason,
}

/// What [`HandleTable::sweep`] found.
#[derive(Default)]
pub(crate) struct Sweep {
    /// Sessions whose grant just ran out: close them upstream.
    pub expired: Vec<(ToClose, EndReason)>,
    /// Sessions dropped from the table, and why.
    pub dropped: Vec<(Arc<Session>, CloseReason)>,
}

/// The shared table. All methods take the lock briefly and never across an await.
pub(crate) struct HandleTable {
    tables: Mutex<Tables>,
    next_id: AtomicU64,
}

impl HandleTable {
    pub fn new() -> HandleTable {
        HandleTable {
            tables: Mutex::new(Tables::default()),
            next_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves consistent maps (every update is a few inserts),
        // so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sign-out epoch now. A login reads it before it is authorized and hands it to
    /// [`HandleTable::open`].
    pub fn sign_out_epoch(&self) -> u64 {
        self.lock().sign_out_epoch
    }

    /// Registers a session and returns it with its first session handle and its master handle,
    /// unless its access ended while its login was in flight: its grant ended (a tombstone),
    /// ran out, or the user signed out since `epoch` was read. Then nothing is registered and
    /// the session comes back to be closed.
    pub fn open(
        &self,
        new: NewSession,
        epoch: u64,
    ) -> Result<(Arc<Session>, Handle, Handle), LateLogin> {
        let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let session = Arc::new(Session {
            id,
            grant_id: new.grant_id,
            role: new.role,
            login_name: new.login_name,
            route: new.route,
            account: new.account,
            grant_ends_at: std::sync::Mutex::new(new.grant_ends_at),
            tool: new.tool,
            peer: new.peer,
            opened_at: SystemTime::now(),
            snowflake_session_id: new.snowflake_session_id,
            statements: AtomicU64::new(0),
            running: Running::default(),
            policy: new.policy,
        });
        let mut t = self.lock();
        let ended = t
            .ended_grants
            .get(&session.grant_id)
            .map(|(reason, _)| *reason)
            .or_else(|| {
                (t.sign_out_epoch != epoch)
                    .then_some(t.last_sign_out)
                    .flatten()
            })
            .or_else(|| session.expired_by(SystemTime::now()));
        if let Some(reason) = ended {
            return Err(LateLogin {
                to_close: ToClose {
                    session,
                    upstream_session: new.upstream_session,
                    upstream_master: new.upstream_master,
                },
                reason,
            });
        }
        let session_handle = Handle::generate(HandleKind::Session);
        let master_handle = Handle::generate(HandleKind::Master);
        t.by_session_handle.insert(
            session_handle.clone(),
            SessionHandleEntry {
                id,
                upstream: new.upstream_session.clone(),
            },
        );
        t.by_master_handle.insert(master_handle.clone(), id);
        t.slots.insert(
            id,
            Slot {
                session: session.clone(),
                session_handles: VecDeque::from([session_handle.clone()]),
                master_handle: master_handle.clone(),
                upstream_session: new.upstream_session,
                upstream_master: new.upstream_master,
                ended: None,
                ended_seen: None,
                last_used: Instant::now(),
                master_validity: new.master_validity,
            },
        );
        Ok((session, session_handle, master_handle))
    }

    /// Resolves a session handle for a request.
    pub fn resolve_session(&self, handle: &Handle) -> Result<Resolved, Unresolved> {
        let now = SystemTime::now();
        let mut t = self.lock();
        let Some(entry) = t.by_session_handle.get(handle) else {
            return Err(Unresolved::Unknown);
        };
        let (id, upstream) = (entry.id, entry.upstream.clone());
        let Some(slot) = t.slots.get_mut(&id) else {
            return Err(Unresolved::Unknown);
        };
        if let Some(reason) = slot.ended.or_else(|| slot.session.expired_by(now)) {
            return Err(Unresolved::Ended {
                role: slot.session.role.clone(),
                reason,
            });
        }
        slot.last_used = Instant::now();
        Ok(Resolved {
            session: slot.session.clone(),
            upstream,
        })
    }

    /// Resolves the master handle and the `oldSessionToken` of a renewal.
    pub fn renewal_tokens(
        &self,
        master: &Handle,
        old_session: Option<&Handle>,
    ) -> Result<RenewalTokens, RenewalRefused> {
        let now = SystemTime::now();
        let mut t = self.lock();
        let Some(id) = t.by_master_handle.get(master).copied() else {
            return Err(RenewalRefused::UnknownMaster);
        };
        let old_upstream = match old_session {
            None => None,
            Some(old) => match t.by_session_handle.get(old) {
                Some(e) if e.id == id => Some(e.upstream.clone()),
                _ => return Err(RenewalRefused::ForeignOldSession),
            },
        };
        let Some(slot) = t.slots.get_mut(&id) else {
            return Err(RenewalRefused::UnknownMaster);
        };
        if let Some(reason) = slot.ended.or_else(|| slot.session.expired_by(now)) {
            return Err(RenewalRefused::Ended {
                role: slot.session.role.clone(),
                reason,
            });
        }
        slot.last_used = Instant::now();
        Ok(RenewalTokens {
            session: slot.session.clone(),
            upstream_master: slot.upstream_master.clone(),
            upstream_old_session: old_upstream,
        })
    }

    /// Records a renewal: a new session handle for the new upstream session token, and the
    /// master token remapped if Snowflake rotated it. `None` if the session left the table or
    /// ended meanwhile.
    pub fn renewed(
        &self,
        id: SessionId,
        upstream_session: SecretString,
        upstream_master: Option<SecretString>,
        master_validity: Option<Duration>,
    ) -> Option<Handle> {
        let handle = Handle::generate(HandleKind::Session);
        let mut t = self.lock();
        let t = &mut *t;
        let slot = t.slots.get_mut(&id)?;
        if slot.ended.is_some() {
            return None;
        }
        slot.upstream_session = upstream_session.clone();
        if let Some(m) = upstream_master {
            slot.upstream_master = m;
        }
        if let Some(v) = master_validity {
            slot.master_validity = v;
        }
        slot.session_handles.push_back(handle.clone());
        while slot.session_handles.len() > RETAINED_SESSION_HANDLES {
            if let Some(old) = slot.session_handles.pop_front() {
                t.by_session_handle.remove(&old);
            }
        }
        t.by_session_handle.insert(
            handle.clone(),
            SessionHandleEntry {
                id,
                upstream: upstream_session,
            },
        );
        Some(handle)
    }

    /// The session a handle (session or master) belongs to, whatever its state.
    pub fn session_of(&self, handle: &Handle) -> Option<(Arc<Session>, Option<EndReason>)> {
        let t = self.lock();
        let id = match t.by_session_handle.get(handle) {
            Some(e) => e.id,
            None => *t.by_master_handle.get(handle)?,
        };
        let slot = t.slots.get(&id)?;
        Some((slot.session.clone(), slot.ended))
    }

    /// Removes a session and all its handles. Returns it if it was there.
    pub fn remove(&self, id: SessionId) -> Option<Arc<Session>> {
        let mut t = self.lock();
        remove_slot(&mut t, id).map(|s| s.session)
    }

    /// Marks every open session of `grant_id` ended and returns their upstream tokens. The
    /// grant's tombstone refuses any session of it whose login is still in flight.
    pub fn end_grant(&self, grant_id: &str, reason: EndReason) -> Vec<ToClose> {
        let mut t = self.lock();
        t.ended_grants
            .entry(grant_id.to_string())
            .or_insert((reason, Instant::now()));
        t.slots
            .values_mut()
            .filter(|s| s.ended.is_none() && s.session.grant_id == grant_id)
            .map(|slot| mark_ended(slot, reason))
            .collect()
    }

    /// Marks every open session ended (the user signed out) and moves the sign-out epoch, so
    /// that a login in flight is refused when Snowflake answers it. Returns the sessions'
    /// upstream tokens.
    pub fn end_all(&self, reason: EndReason) -> Vec<ToClose> {
        let mut t = self.lock();
        t.sign_out_epoch += 1;
        t.last_sign_out = Some(reason);
        t.slots
            .values_mut()
            .filter(|s| s.ended.is_none())
            .map(|slot| mark_ended(slot, reason))
            .collect()
    }

    /// Moves the end of every open session of `grant_id` to `ends_at` (an extension was
    /// approved). Returns how many sessions carry on.
    pub fn extend_grant(&self, grant_id: &str, ends_at: SystemTime) -> usize {
        let t = self.lock();
        let mut n = 0;
        for slot in t.slots.values() {
            if slot.ended.is_none() && slot.session.grant_id == grant_id {
                *slot
                    .session
                    .grant_ends_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = ends_at;
                n += 1;
            }
        }
        n
    }

    /// Marks one open session ended and returns its upstream tokens.
    pub fn end_session(&self, id: SessionId, reason: EndReason) -> Option<ToClose> {
        let mut t = self.lock();
        let slot = t.slots.get_mut(&id)?;
        if slot.ended.is_some() {
            return None;
        }
        Some(mark_ended(slot, reason))
    }

    /// Removes every session; returns the open ones' upstream tokens (shutdown closes them).
    pub fn drain(&self) -> Vec<ToClose> {
        let mut t = self.lock();
        let slots: Vec<Slot> = t.slots.drain().map(|(_, s)| s).collect();
        t.by_session_handle.clear();
        t.by_master_handle.clear();
        slots
            .into_iter()
            .filter(|s| s.ended.is_none())
            .map(|s| ToClose {
                session: s.session,
                upstream_session: s.upstream_session,
                upstream_master: s.upstream_master,
            })
            .collect()
    }

    /// Ends sessions whose grant ran out and drops sessions that are long ended or idle past
    /// Snowflake's master validity.
    pub fn sweep(&self, now: SystemTime, instant: Instant) -> Sweep {
        let mut t = self.lock();
        t.ended_grants
            .retain(|_, (_, laid)| instant.saturating_duration_since(*laid) <= TOMBSTONE_RETENTION);
        let mut sweep = Sweep::default();
        let mut drop_ids = Vec::new();
        for (id, slot) in t.slots.iter_mut() {
            match slot.ended {
                None => {
                    if let Some(reason) = slot.session.expired_by(now) {
                        sweep.expired.push((mark_ended(slot, reason), reason));
                        continue;
                    }
                    if instant.duration_since(slot.last_used) > slot.master_validity + IDLE_SLACK {
                        drop_ids.push((*id, CloseReason::UpstreamGone));
                    }
                }
                Some(reason) => {
                    if slot
                        .ended_seen
                        .is_some_and(|at| instant.duration_since(at) > ENDED_RETENTION)
                    {
                        drop_ids.push((*id, CloseReason::Ended(reason)));
                    }
                }
            }
        }
        for (id, reason) in drop_ids {
            if let Some(slot) = remove_slot(&mut t, id) {
                // Ended sessions already told the engine they closed.
                if !matches!(reason, CloseReason::Ended(_)) {
                    sweep.dropped.push((slot.session, reason));
                }
            }
        }
        sweep
    }

    /// Every session in the table, ended ones included, oldest first.
    pub fn snapshot(&self) -> Vec<SessionInfo> {
        let now = SystemTime::now();
        let t = self.lock();
        let mut v: Vec<SessionInfo> = t
            .slots
            .values()
            .map(|s| {
                s.session
                    .info(s.ended.or_else(|| s.session.expired_by(now)))
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// One session as the tray shows it.
    pub fn info(&self, id: SessionId) -> Option<SessionInfo> {
        let now = SystemTime::now();
        let t = self.lock();
        let s = t.slots.get(&id)?;
        Some(
            s.session
                .info(s.ended.or_else(|| s.session.expired_by(now))),
        )
    }

    /// Number of sessions in the table.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

/// Why a renewal was refused before reaching Snowflake.
pub(crate) enum RenewalRefused {
    UnknownMaster,
    ForeignOldSession,
    Ended { role: String, reason: EndReason },
}

fn mark_ended(slot: &mut Slot, reason: EndReason) -> ToClose {
    slot.ended = Some(reason);
    slot.ended_seen = Some(Instant::now());
    ToClose {
        session: slot.session.clone(),
        upstream_session: slot.upstream_session.clone(),
        upstream_master: slot.upstream_master.clone(),
    }
}

fn remove_slot(t: &mut Tables, id: SessionId) -> Option<Slot> {
    let slot = t.slots.remove(&id)?;
    for h in &slot.session_handles {
        t.by_session_handle.remove(h);
    }
    t.by_master_handle.remove(&slot.master_handle);
    Some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn new_session(grant: &str, ends_in: Duration) -> NewSession {
        NewSession {
            policy: SessionPolicy::default(),
            grant_id: grant.into(),
            role: "ANALYST".into(),
            login_name: "alice".into(),
            route: 0,
            account: None,
            grant_ends_at: SystemTime::now() + ends_in,
            tool: ToolInfo::default(),
            peer: PeerInfo {
                addr: "127.0.0.1:1".parse().unwrap(),
                uid: Some(1000),
                pid: None,
                process_name: None,
            },
            snowflake_session_id: Some(7),
            upstream_session: SecretString::from("up-st-1"),
            upstream_master: SecretString::from("up-mt-1"),
            master_validity: Duration::from_secs(3600),
        }
    }

    fn open(table: &HandleTable, new: NewSession) -> (Arc<Session>, Handle, Handle) {
        let epoch = table.sign_out_epoch();
        table.open(new, epoch).ok().expect("registered")
    }

    #[test]
    fn a_login_in_flight_across_a_revoke_is_not_registered() {
        let table = HandleTable::new();
        let epoch = table.sign_out_epoch();
        // The grant ends while the login waits for Snowflake; it had no session yet.
        let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
        assert!(table.end_grant("g1", reason).is_empty());
        let late = table
            .open(new_session("g1", Duration::from_secs(600)), epoch)
            .expect_err("refused");
        assert_eq!(late.reason, reason);
        assert_eq!(late.to_close.upstream_session.expose_secret(), "up-st-1");
        assert_eq!(table.len(), 0);
        // Another grant's login is not affected.
        assert!(table
            .open(new_session("g2", Duration::from_secs(600)), epoch)
            .is_ok());
    }

    #[test]
    fn a_login_in_flight_across_a_sign_out_is_not_registered() {
        let table = HandleTable::new();
        open(&table, new_session("g1", Duration::from_secs(600)));
        let before = table.sign_out_epoch();
        let reason = EndReason::new(EndKind::SignedOut, SystemTime::now());
        assert_eq!(table.end_all(reason).len(), 1);
        let late = table
            .open(new_session("g2", Duration::from_secs(600)), before)
            .expect_err("refused");
        assert_eq!(late.reason, reason);
        // A login that started after the sign-out (after signing in again) is registered.
        let after = table.sign_out_epoch();
        assert!(table
            .open(new_session("g2", Duration::from_secs(600)), after)
            .is_ok());
    }

    #[test]
    fn a_login_answered_after_its_grant_ran_out_is_not_registered() {
        let table = HandleTable::new();
        let epoch = table.sign_out_epoch();
        let late = table
            .open(new_session("g1", Duration::from_millis(0)), epoch)
            .expect_err("refused");
        assert_eq!(late.reason.kind, EndKind::Expired);
    }

    #[test]
    fn a_cut_takes_the_running_queries_and_lets_no_new_one_through() {
        use crate::cancel::{Abort, CutStarted};
        let table = HandleTable::new();
        let (s, _, _) = open(&table, new_session("g1", Duration::from_secs(600)));
        let answered = Running::request(&s, Some("r-1"), "select 1").unwrap();
        let _running = Running::request(&s, Some("r-2"), "select system$wait(60)").unwrap();
        assert!(Running::request(&s, None, "select 2").unwrap().is_none());
        drop(answered);
        s.running.detached("01-async");
        let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
        let cut = table.end_grant("g1", reason);
        assert_eq!(
            cut[0].session.running.take(),
            vec![
                Abort::Request {
                    request_id: "r-2".into(),
                    sql: "select system$wait(60)".into()
                },
                Abort::Query {
                    query_id: "01-async".into()
                },
            ]
        );
        assert!(matches!(
            Running::request(&s, Some("r-3"), "select 3"),
            Err(CutStarted)
        ));
    }

    #[test]
    fn tombstones_are_dropped_long_after_their_grant_ended() {
        let table = HandleTable::new();
        let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
        table.end_grant("g1", reason);
        table.sweep(SystemTime::now(), Instant::now());
        assert_eq!(table.lock().ended_grants.len(), 1);
        table.sweep(
            SystemTime::now(),
            Instant::now() + TOMBSTONE_RETENTION + Duration::from_secs(1),
        );
        assert!(table.lock().ended_grants.is_empty());
    }

    #[test]
    fn renewal_issues_a_new_handle_and_old_ones_keep_their_old_token() {
        let table = HandleTable::new();
        let (s, st1, mt) = open(&table, new_session("g1", Duration::from_secs(600)));
        let r = table.resolve_session(&st1).ok().unwrap();
        assert_eq!(r.upstream.expose_secret(), "up-st-1");
        let tokens = table.renewal_tokens(&mt, Some(&st1)).ok().unwrap();
        assert_eq!(tokens.upstream_master.expose_secret(), "up-mt-1");
        assert_eq!(
            tokens.upstream_old_session.unwrap().expose_secret(),
            "up-st-1"
        );
        let st2 = table
            .renewed(s.id, SecretString::from("up-st-2"), None, None)
            .unwrap();
        assert_ne!(st1, st2);
        let r = table.resolve_session(&st2).ok().unwrap();
        assert_eq!(r.upstream.expose_secret(), "up-st-2");
        // The old handle still reaches the old token: Snowflake answers it with 390112.
        let r = table.resolve_session(&st1).ok().unwrap();
        assert_eq!(r.upstream.expose_secret(), "up-st-1");
        // Only a few old handles are kept.
        for i in 3..10 {
            table
                .renewed(s.id, SecretString::from(format!("up-st-{i}")), None, None)
                .unwrap();
        }
        assert!(matches!(
            table.resolve_session(&st1),
            Err(Unresolved::Unknown)
        ));
    }

    #[test]
    fn a_renewal_with_another_sessions_old_token_is_refused() {
        let table = HandleTable::new();
        let (_, st_a, _) = open(&table, new_session("g1", Duration::from_secs(600)));
        let (_, _, mt_b) = open(&table, new_session("g1", Duration::from_secs(600)));
        assert!(matches!(
            table.renewal_tokens(&mt_b, Some(&st_a)),
            Err(RenewalRefused::ForeignOldSession)
        ));
    }

    #[test]
    fn an_extended_grant_is_swept_at_its_new_end_not_the_old_one() {
        let table = HandleTable::new();
        open(&table, new_session("g1", Duration::from_secs(2)));
        open(&table, new_session("g2", Duration::from_secs(2)));
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(table.extend_grant("g1", later), 1);
        let sweep = table.sweep(SystemTime::now() + Duration::from_secs(5), Instant::now());
        let ended: Vec<&str> = sweep
            .expired
            .iter()
            .map(|(s, _)| s.session.grant_id.as_str())
            .collect();
        assert_eq!(ended, vec!["g2"]);
        let info = table.snapshot();
        let g1 = info.iter().find(|s| s.grant_id == "g1").unwrap();
        assert_eq!(g1.grant_ends_at, later);
        assert!(g1.ended.is_none());
    }

    #[test]
    fn ending_a_grant_ends_only_its_sessions_and_keeps_their_handles() {
        let table = HandleTable::new();
        let (_, st1, mt1) = open(&table, new_session("g1", Duration::from_secs(600)));
        let (_, st2, _) = open(&table, new_session("g2", Duration::from_secs(600)));
        let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
        let closed = table.end_grant("g1", reason);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].upstream_session.expose_secret(), "up-st-1");
        assert!(matches!(
            table.resolve_session(&st1),
            Err(Unresolved::Ended { reason: r, .. }) if r == reason
        ));
        assert!(matches!(
            table.renewal_tokens(&mt1, None),
            Err(RenewalRefused::Ended { .. })
        ));
        assert!(table.resolve_session(&st2).is_ok());
        // Ending it again finds nothing more to close.
        assert!(table.end_grant("g1", reason).is_empty());
    }

    #[test]
    fn a_session_past_its_grant_is_ended_by_the_clock() {
        let table = HandleTable::new();
        let (_, st, _) = open(&table, new_session("g1", Duration::from_secs(600)));
        // The grant's end moves into the past (as if its time had run out).
        table.extend_grant("g1", SystemTime::now() - Duration::from_secs(1));
        assert!(matches!(
            table.resolve_session(&st),
            Err(Unresolved::Ended { reason, .. }) if reason.kind == EndKind::Expired
        ));
        let sweep = table.sweep(SystemTime::now(), Instant::now());
        assert_eq!(sweep.expired.len(), 1);
        // Once marked, it is not closed twice.
        assert!(table
            .sweep(SystemTime::now(), Instant::now())
            .expired
            .is_empty());
    }

    #[test]
    fn removing_a_session_forgets_all_its_handles() {
        let table = HandleTable::new();
        let (s, st, mt) = open(&table, new_session("g1", Duration::from_secs(600)));
        assert!(table.remove(s.id).is_some());
        assert!(matches!(
            table.resolve_session(&st),
            Err(Unresolved::Unknown)
        ));
        assert!(matches!(
            table.renewal_tokens(&mt, None),
            Err(RenewalRefused::UnknownMaster)
        ));
        assert_eq!(table.len(), 0);
    }
}
