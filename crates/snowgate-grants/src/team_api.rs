//! The team server's HTTP API (`snowgate serve`, `/v1/...`) as types: every request body,
//! query and answer, once, for both ends. The server deserializes requests into them and
//! serializes its answers from them; the desktop's team client sends and reads the same types.
//! `docs/openapi.yaml`'s component schemas are generated from them ([`schemas`]), and a test
//! of the server fails when the committed document is stale.
//!
//! Wire forms are the API's as documented: field names in `snake_case`, times RFC 3339 with
//! milliseconds ([`Timestamp`]), durations in whole seconds. Request bodies refuse unknown
//! fields. Request fields that a person typed (role, reason, comments) stay text here: the
//! server parses them into the grants types itself, so a bad value is a 400 naming the field
//! with the type's own sentence. Tokens travel as [`WireSecret`], which never `Debug`-prints.
//!
//! This module has no I/O. It is in this crate because both ends already depend on it and
//! the answers carry its [`Grant`], [`AuditRecord`], [`ChainHead`] and [`GrantEvent`].

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::ChainHead;
use crate::model::{GrantDuration, GrantId, RoleName};
use crate::policy::{RolePolicy, StatementRule};
use crate::timestamp::Timestamp;
use crate::{AuditRecord, Grant, GrantEvent};

/// A token on the wire (an ID token sent for exchange, a session token, a minted Snowflake
/// token). Serializes as the plain string; `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct WireSecret(String);

impl WireSecret {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> WireSecret {
        WireSecret(token.into())
    }

    /// The token, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token, moved out.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for WireSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn yes() -> bool {
    true
}

// ---- errors and health ---------------------------------------------------------------------

/// Every refusal: `{ "error": { "code": "...", "message": "..." } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorAnswer {
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable word: `bad_request`, `unauthenticated`, `caller_auth_mismatch`,
    /// `session_expired`, `id_token_too_old`, `id_token_replayed`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `policy`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
    /// One sentence a person can act on. Never holds a token.
    pub message: String,
}

/// How callers authenticate to the server: the server config's `[identity] caller_auth`, and
/// what `/healthz` says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerAuth {
    /// IdP access tokens for the server's audience.
    AccessToken,
    /// Session tokens from `POST /v1/session`.
    IdToken,
    /// Either.
    Both,
}

impl CallerAuth {
    /// Whether IdP access tokens are accepted as bearer tokens.
    pub fn accepts_access_tokens(self) -> bool {
        matches!(self, CallerAuth::AccessToken | CallerAuth::Both)
    }

    /// Whether ID tokens are exchanged for session tokens.
    pub fn exchanges_id_tokens(self) -> bool {
        matches!(self, CallerAuth::IdToken | CallerAuth::Both)
    }

    /// The setting's value: `access_token`, `id_token` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerAuth::AccessToken => "access_token",
            CallerAuth::IdToken => "id_token",
            CallerAuth::Both => "both",
        }
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok` (200) or `unavailable` (503).
    pub status: HealthStatus,
    /// How callers authenticate, when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_auth: Option<CallerAuth>,
    /// Why not, when unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// The session reaper, when `[reaper]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaper: Option<ReaperHealth>,
}

/// How the team server's session reaper is doing (`/healthz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReaperHealth {
    /// `working` (its last Snowflake call succeeded), `failing` (it did not; the server's
    /// log says why, under `reaper`) or `starting` (no call made yet).
    pub state: ReaperState,
    /// Ended grants whose sessions are still to be reaped.
    pub pending: u64,
    /// Of those, how many failed at least once.
    pub failing: u64,
}

/// The reaper's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReaperState {
    Starting,
    Working,
    Failing,
}

/// Whether the server's database answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Unavailable,
}

/// A JSON Web Key Set: `/.well-known/jwks.json` (the minting keys) and
/// `/v1/audit/checkpoint-key` (the checkpoint keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key with `kid`.
    pub fn key(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// The public half of one RSA signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Jwk {
    /// `RSA`.
    pub kty: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// `RS256`.
    pub alg: String,
    /// The key's RFC 7638 thumbprint.
    pub kid: String,
    /// The modulus, base64url.
    pub n: String,
    /// The exponent, base64url.
    pub e: String,
}

// ---- callers -------------------------------------------------------------------------------

/// The body of `POST /v1/session`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// A fresh ID token (a JWT) from the IdP.
    pub id_token: WireSecret,
}

/// `POST /v1/session`'s answer (201): the session token and who it names.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionAnswer {
    /// The session token (a JWT): the bearer for the other calls. A secret.
    pub token: WireSecret,
    /// `Bearer`.
    pub token_type: String,
    pub expires_at: Timestamp,
    /// Seconds the token lives.
    pub expires_in: u64,
    pub subject: String,
    pub email: Option<String>,
    /// The groups the server resolved (the token's and `[[groups]]`).
    pub groups: Vec<String>,
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerVia {
    /// An IdP access token.
    AccessToken,
    /// A session token from `POST /v1/session`.
    Session,
}

/// `GET /v1/me`: the caller as the server sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Me {
    pub subject: String,
    pub email: Option<String>,
    /// The groups the server resolved (the token's groups claim and `[[groups]]`, per
    /// `[identity] groups_from`).
    pub groups: Vec<String>,
    pub via: CallerVia,
    pub caller_auth: CallerAuth,
}

// ---- roles and grants ----------------------------------------------------------------------

/// `GET /v1/roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolesAnswer {
    pub roles: Vec<RoleInfo>,
}

/// One requestable role: its policy, and whether the caller approves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleInfo {
    pub name: RoleName,
    /// The Snowflake account the role belongs to (`[[roles]] account`); absent: the only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The longest a grant may run in total, extensions included.
    pub max_duration_secs: GrantDuration,
    #[serde(default)]
    pub approver_groups: Vec<String>,
    pub approvals_required: NonZeroU32,
    /// Grants at most this long are approved by policy.
    #[serde(default)]
    pub auto_approve_up_to_secs: Option<GrantDuration>,
    /// How long a request or extension may wait for a decision.
    pub pending_timeout_secs: GrantDuration,
    #[serde(default = "yes")]
    pub extensions_allowed: bool,
    /// Whether the caller is in one of the approver groups.
    #[serde(default)]
    pub you_can_approve: bool,
    /// Which statements the role's gateway sessions may run (`[[roles]] statements`).
    #[serde(default)]
    pub statements: StatementRule,
    /// Whether read-only sessions of the role may list a stage's files
    /// (`[[roles]] allow_list_stage`); absent means no.
    #[serde(default)]
    pub allow_list_stage: bool,
}

impl RoleInfo {
    /// `role` as the server lists it to a caller who approves it or not.
    pub fn new(role: &RolePolicy, you_can_approve: bool) -> RoleInfo {
        RoleInfo {
            name: role.name.clone(),
            account: role.account.clone(),
            description: role.description.clone(),
            max_duration_secs: role.max_duration,
            approver_groups: role.approver_groups.clone(),
            approvals_required: role.approvals_required,
            auto_approve_up_to_secs: role.auto_approve_up_to,
            pending_timeout_secs: role.pending_timeout,
            extensions_allowed: role.extensions_allowed,
            you_can_approve,
            statements: role.statements,
            allow_list_stage: role.allow_list_stage,
        }
    }

    /// The role's policy.
    pub fn policy(&self) -> RolePolicy {
        RolePolicy {
            name: self.name.clone(),
            account: self.account.clone(),
            description: self.description.clone(),
            max_duration: self.max_duration_secs,
            approver_groups: self.approver_groups.clone(),
            approvals_required: self.approvals_required,
            auto_approve_up_to: self.auto_approve_up_to_secs,
            pending_timeout: self.pending_timeout_secs,
            extensions_allowed: self.extensions_allowed,
            statements: self.statements,
            allow_list_stage: self.allow_list_stage,
        }
    }
}

/// The body of `POST /v1/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The Snowflake role, as `GET /v1/roles` names it.
    pub role: String,
    pub duration_secs: u64,
    pub reason: String,
    /// A ticket reference (`JIRA-123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// The query of `GET /v1/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsQuery {
    /// `true` (the default): the caller's own grants; `false`: also those of the roles the
    /// caller approves.
    #[serde(default = "yes")]
    pub mine: bool,
    /// Only grants in this state: `pending`, `active`, `denied`, `cancelled`, `timed_out`,
    /// `expired` or `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many (1 to 1000, default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One grant, after the operation (`POST /v1/requests`, the decisions, `GET
/// /v1/grants/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OneGrant {
    pub grant: Grant,
}

/// Grants, newest first (`GET /v1/grants`, `GET /v1/approvals`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantList {
    pub grants: Vec<Grant>,
}

/// The body of approve and revoke: an optional comment (an empty body is `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionalComment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The body of deny: the comment is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredComment {
    pub comment: String,
}

/// The body of `POST /v1/grants/{id}/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// How much longer, in seconds.
    pub by_secs: u64,
    pub reason: String,
}

/// The body of cancel and of the Snowflake token: nothing (an empty body is `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /v1/grants/{id}/snowflake-token`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SnowflakeToken {
    /// The JWT. A secret; never log it.
    pub token: WireSecret,
    pub expires_at: Timestamp,
    pub role: RoleName,
    pub grant: GrantId,
}

// ---- audit ---------------------------------------------------------------------------------

/// The query of `GET /v1/audit` and `GET /v1/audit/export`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Records at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Records after this sequence number (paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Records about this grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// At most this many (1 to 1000, default 100; the export ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `GET /v1/audit`: a page of records, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
}

/// The query of `GET /v1/audit/verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// A signed checkpoint the caller kept ([`Checkpoint::checkpoint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// `GET /v1/audit/verify`: whether the chain is intact, against the checkpoints it was
/// checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    /// Whether the chain is intact and still holds every checkpoint.
    pub ok: bool,
    /// How many records it holds (when intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// The last record (when intact and not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<ChainHead>,
    /// The first bad record, or the checkpoint the log no longer holds (when not intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The checkpoint checked against (when not intact, the one the log fails).
    #[serde(default)]
    pub checkpoint: Option<CheckpointSummary>,
    /// Every checkpoint it was checked against (when intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Vec<CheckpointSummary>>,
}

/// A checkpoint as a verification names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointSummary {
    pub seq: u64,
    /// 64 lowercase hex digits.
    pub hash: String,
    pub at: Timestamp,
    /// The key that signed it (the server's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Whether the caller presented it or the server made it.
    pub from: CheckpointFrom,
}

/// Who brought a checkpoint to a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointFrom {
    Caller,
    Server,
}

/// A signed checkpoint of the audit chain's head (`GET`/`POST /v1/audit/checkpoint`, and
/// `data:` of `event: checkpoint` on the event stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    /// The compact JWS (RS256, header `typ` `snowgate-checkpoint+jwt`).
    pub checkpoint: String,
    pub seq: u64,
    /// 64 lowercase hex digits.
    pub hash: String,
    pub at: Timestamp,
    /// The key that signed it (see `GET /v1/audit/checkpoint-key`).
    pub kid: String,
}

/// The body of `POST /v1/audit/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// The desktop ledger the records come from (random, stable for that ledger; 1 to 64
    /// letters, digits, `-` or `_`). With it, every record has a `source_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// At most 100.
    pub records: Vec<ReportedRecord>,
}

/// One record a desktop reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportedRecord {
    /// The record's place in its source's outbox: growing, never reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_seq: Option<u64>,
    /// `auth.sign_in`, `auth.sign_out`, `session.opened`, `session.closed`,
    /// `session.statement`, `session.statement_answered` or `session.result_fetched`.
    pub kind: String,
    /// RFC 3339.
    pub at: String,
    /// Ignored: the caller is the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The kind's own fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// `POST /v1/audit/records`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportAnswer {
    /// Records appended now.
    pub appended: u64,
    /// Records the log already had: acknowledged, not appended.
    pub duplicates: u64,
    /// The `seq` of the last record appended, if any was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

// ---- events --------------------------------------------------------------------------------

/// The query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The same as the `Last-Event-ID` header, for clients that cannot set headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
}

/// `data:` of one grant event on `GET /v1/events`: the grant event, the server's event id
/// (also the SSE `id:`), and whether the grant waits for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventData {
    pub id: i64,
    pub awaiting_decision: bool,
    #[serde(flatten)]
    pub event: GrantEvent,
}

/// The JSON Schema of every type of the API, by name, with references between them as
/// `#/components/schemas/NAME`: what `docs/openapi.yaml`'s `components.schemas` holds.
pub fn schemas() -> BTreeMap<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    macro_rules! each {
        ($($t:ty),* $(,)?) => { $( let _ = generator.subschema_for::<$t>(); )* };
    }
    each!(
        ErrorAnswer,
        Health,
        Jwks,
        SessionRequest,
        SessionAnswer,
        Me,
        RolesAnswer,
        NewRequest,
        GrantsQuery,
        OneGrant,
        GrantList,
        OptionalComment,
        RequiredComment,
        ExtendRequest,
        Empty,
        SnowflakeToken,
        AuditParams,
        AuditPage,
        VerifyParams,
        Verification,
        Checkpoint,
        ReportBody,
        ReportAnswer,
        EventsQuery,
        EventData,
    );
    generator.take_definitions(true).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wire_secret_is_the_plain_string_on_the_wire_and_never_debug_printed() {
        let s = SessionRequest {
            id_token: WireSecret::new("eyJ.secret.sig"),
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({ "id_token": "eyJ.secret.sig" })
        );
        assert!(!format!("{s:?}").contains("secret"), "{s:?}");
    }

    #[test]
    fn a_role_goes_to_the_wire_and_back_to_the_same_policy() {
        let answer = json!({ "roles": [
            { "name": "ANALYST", "description": "Analytics", "max_duration_secs": 28800,
              "approver_groups": ["managers"], "approvals_required": 1,
              "auto_approve_up_to_secs": null, "pending_timeout_secs": 86400,
              "extensions_allowed": true, "you_can_approve": false, "statements": "any",
              "allow_list_stage": false },
            { "name": "READONLY", "max_duration_secs": 3600, "approver_groups": ["managers"],
              "approvals_required": 2, "auto_approve_up_to_secs": 3600,
              "pending_timeout_secs": 600, "extensions_allowed": false,
              "statements": "read_only", "allow_list_stage": true }
        ]});
        let roles: RolesAnswer = serde_json::from_value(answer.clone()).unwrap();
        let ro = roles.roles[1].policy();
        assert_eq!(ro.name.as_str(), "READONLY");
        assert_eq!(ro.approvals_required.get(), 2);
        assert_eq!(ro.auto_approve_up_to.unwrap().as_secs(), 3600);
        assert!(!ro.extensions_allowed);
        assert_eq!(ro.statements, StatementRule::ReadOnly);
        assert!(ro.allow_list_stage);
        assert!(!roles.roles[0].policy().allow_list_stage);
        // A server that does not send `statements` means "any".
        let older: RoleInfo = serde_json::from_value(json!({
            "name": "X", "max_duration_secs": 60, "approvals_required": 1,
            "pending_timeout_secs": 60
        }))
        .unwrap();
        assert_eq!(older.policy().statements, StatementRule::Any);
        let back = RoleInfo::new(&roles.roles[0].policy(), false);
        assert_eq!(serde_json::to_value(&back).unwrap(), answer["roles"][0]);
        let err = serde_json::from_value::<RolesAnswer>(json!({ "roles": [{ "name": "X" }] }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_duration_secs"), "{err}");
        let err = serde_json::from_value::<RoleInfo>(json!({
            "name": "X", "max_duration_secs": 0, "approvals_required": 1,
            "pending_timeout_secs": 60
        }))
        .unwrap_err();
        assert!(err.to_string().contains("duration"), "{err}");
    }

    #[test]
    fn request_bodies_refuse_unknown_fields_and_leave_out_what_is_not_given() {
        let bad = serde_json::from_value::<NewRequest>(json!({
            "role": "R", "duration_secs": 60, "reason": "x", "urgent": true
        }));
        assert!(bad.unwrap_err().to_string().contains("urgent"));
        let body = NewRequest {
            role: "R".into(),
            duration_secs: 60,
            reason: "x".into(),
            ticket: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({ "role": "R", "duration_secs": 60, "reason": "x" })
        );
        assert_eq!(
            serde_json::to_value(OptionalComment::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn event_data_is_the_grant_event_with_the_id_and_awaiting_decision_beside_it() {
        let data = json!({
            "id": 42, "awaiting_decision": false, "grant": "g_aaaaaaaaaaaaaaaaaaaa",
            "role": "ANALYST", "requester": "alice", "at": "2026-01-31T14:05:00.000Z",
            "cause": { "kind": "clock" }, "event": "extended",
            "from": "2026-01-31T15:00:00.000Z", "to": "2026-01-31T16:00:00.000Z"
        });
        let read: EventData = serde_json::from_value(data.clone()).unwrap();
        assert_eq!(read.id, 42);
        assert_eq!(read.event.kind.name(), "extended");
        assert_eq!(serde_json::to_value(&read).unwrap(), data);
    }

    #[test]
    fn every_schema_reference_names_a_schema_of_the_set() {
        let all = schemas();
        for name in [
            "Grant",
            "EventData",
            "AuditRecord",
            "ChainHead",
            "ErrorAnswer",
        ] {
            assert!(all.contains_key(name), "no schema {name}: {:?}", all.keys());
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        all.values().for_each(|s| refs(s, &mut found));
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside the components: {r}"));
            assert!(all.contains_key(name), "{r} names no schema");
        }
    }
}
