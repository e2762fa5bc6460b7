//! Who may log in through the gateway, as which role: the engine's [`Authorizer`].
//!
//! At each tool login the gateway asks [`Access`]. A password that is an agent's secret
//! (`sga_...`) names the agent, whose policy narrows the rest: only its roles, never after its
//! expiry, and its read-only rule and rate go on the session ([`SessionPolicy`]). It refuses a
//! signed-out user, picks the role (the tool's `roleName`, matched case-insensitively to the configured roles, or else
//! the user's only usable grant), checks that the user holds a usable grant for it, and gets
//! a Snowflake token for it: in solo mode from the identity (through its one refresh lock), in
//! team mode minted by the team server for the grant (cached until shortly before its `exp`;
//! while the server is unreachable, grants already seen and tokens already minted keep working
//! until they end). With several `[[snowflake]]` accounts the tool's `account` picks one, and
//! only that account's roles count; the grant names the account the gateway routes to. Every
//! refusal is a sentence the person can act on; a login for a grant that just ended gets the
//! gateway's own sentence for ended access, so the tool says the same thing either way. A
//! tool's login (not an agent's) for a configured role with no usable grant is handed to
//! [`crate::approval_wait::Asker`]: the tray hears of the ask, and with `[gateway]
//! wait_for_approval` a request is filed and the login waits for its decision.

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::ExposeSecret;
use snowgate_config::local_time::hour_minute;
use snowgate_gateway::{
    AuthorizeFuture, Authorizer, EndKind, EndReason, LoginContext, LoginGrant, Refusal,
    SessionPolicy,
};
use snowgate_grants::{Grant, GrantState, RoleName, StatementRule, Subject};

use crate::agents::{Agent, AgentError, Agents};
use crate::approval_wait::Asker;
use crate::backend::GrantsBackend;
use crate::engine::Engine;
use crate::identity::{CurrentIdentity, Profile};
use crate::tool_asks::{tool_label, ToolAsks};
use crate::tool_secrets::ToolSecrets;

/// The sentence a signed-out user's tool shows.
pub const SIGNED_OUT: &str =
    "Snowgate: you are signed out. Sign in from the Snowgate tray or run `snowgate login`.";

/// The sentence a tool shows when per-tool secrets are required and its password is none.
pub const NO_TOOL_SECRET: &str = "Snowgate: this tool's connection secret is missing or revoked. Create one with `snowgate tool-secret create NAME` and use it as the password.";

/// The engine's answer to the gateway's "may this tool log in?". It reads the config, the
/// broker's current identity, the grants and the tool secrets; it holds no broker.
pub struct Access {
    engine: Arc<Engine>,
    identity: CurrentIdentity,
    grants: Result<GrantsBackend, String>,
    tool_secrets: Arc<ToolSecrets>,
    agents: Arc<Agents>,
    tool_asks: Arc<ToolAsks>,
}

impl Access {
    pub(crate) fn new(
        engine: Arc<Engine>,
        identity: CurrentIdentity,
        grants: Result<GrantsBackend, String>,
        tool_secrets: Arc<ToolSecrets>,
        agents: Arc<Agents>,
        tool_asks: Arc<ToolAsks>,
    ) -> Access {
        Access {
            engine,
            identity,
            grants,
            tool_secrets,
            agents,
            tool_asks,
        }
    }
}

impl Authorizer for Access {
    fn authorize_login(&self, login: LoginContext) -> AuthorizeFuture<'_> {
        Box::pin(self.authorize(login))
    }

    fn upstream_token_expired(&self, role: &str) {
        if let Some(identity) = self.identity.get() {
            identity.forget_snowflake_token(role);
        }
    }
}

impl Access {
    async fn authorize(&self, login: LoginContext) -> Result<LoginGrant, Refusal> {
        // First, so that a local process without a tool's or an agent's secret learns nothing
        // else. An agent's secret stands for a tool secret too.
        let is_agent = login
            .tool_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().starts_with(crate::agents::PREFIX));
        let (tool_secret_name, agent) = if is_agent {
            (None, Some(check_agent(&self.agents, &login).await?))
        } else if self.engine.config().gateway.tool_secrets_required() {
            (
                Some(check_tool_secret(&self.tool_secrets, &login).await?),
                None,
            )
        } else {
            (None, None)
        };
        let identity = self
            .identity
            .get()
            .ok_or_else(|| Refusal::login(SIGNED_OUT))?;
        let grants = self.grants.clone().map_err(Refusal::role_not_granted)?;
        let mut grant =
            match authorize(&self.engine, &identity, &grants, &login, agent.as_ref()).await {
                Ok(grant) => grant,
                // A tool (never an agent, which requests through `snowgate mcp`) asked for a
                // configured role the person holds no grant for.
                Err(Refused::NoGrant { role, refusal }) if agent.is_none() => {
                    let asker = Asker {
                        engine: &self.engine,
                        grants: &grants,
                        asks: &self.tool_asks,
                        // With tool secrets, the secret's name is the tool the person
                        // knows ("dbeaver"); the driver goes beside it.
                        tool: match &tool_secret_name {
                            Some(name) => {
                                tool_label(Some(name.as_str()), login.client_app_id.as_deref())
                            }
                            None => tool_label(
                                login.client_app_id.as_deref(),
                                login.peer.process_name.as_deref(),
                            ),
                        },
                        role,
                    };
                    asker.ask(&identity, refusal).await?;
                    authorize(&self.engine, &identity, &grants, &login, None)
                        .await
                        .map_err(Refused::into_refusal)?
                }
                Err(refused) => return Err(refused.into_refusal()),
            };
        grant.tool_secret_name = tool_secret_name;
        grant.policy = session_policy(agent.as_ref(), role_rule(&grants, &grant.role));
        grant.policy.list_stage = role_lists_stages(&grants, &grant.role);
        Ok(grant)
    }
}

/// The role's `[[roles]] statements` rule as a sentence when it asks for read-only. A role the
/// policy does not list (team mode before the server's roles were read) is held to read-only:
/// its rule is not known, so the stricter one applies.
fn role_rule(grants: &GrantsBackend, role: &str) -> Option<String> {
    let policy = grants.policy();
    let known = RoleName::new(role)
        .ok()
        .and_then(|name| policy.role(&name).ok().map(|r| r.statements));
    match known {
        Some(StatementRule::Any) => None,
        Some(StatementRule::ReadOnly) => Some(format!(
            "role {role} allows only read-only statements ([[roles]] statements = \"read_only\")"
        )),
        None => Some(format!(
            "role {role}'s statement policy is not known yet (the team server's roles were not read), so only read-only statements run"
        )),
    }
}

/// Whether the role's read-only sessions may `LIST @stage` (`[[roles]] allow_list_stage`); a
/// role the policy does not list may not.
fn role_lists_stages(grants: &GrantsBackend, role: &str) -> bool {
    let policy = grants.policy();
    RoleName::new(role)
        .ok()
        .and_then(|name| policy.role(&name).ok().map(|r| r.allow_list_stage))
        .unwrap_or(false)
}

/// The session's own rules: the agent's name, read-only (the agent's rule first, then the
/// role's) and rate.
fn session_policy(agent: Option<&Agent>, role_rule: Option<String>) -> SessionPolicy {
    let Some(agent) = agent else {
        return SessionPolicy {
            read_only: role_rule,
            ..SessionPolicy::default()
        };
    };
    SessionPolicy {
        agent: Some(agent.name.clone()),
        read_only: agent
            .policy
            .read_only
            .then(|| format!("agent {} is read-only", agent.name))
            .or(role_rule),
        statements_per_minute: agent.policy.statements_per_minute,
        list_stage: false,
    }
}

/// The agent whose secret the login presented as its password; refuses a secret that is no
/// agent's, or an agent that expired. The secret is never logged.
async fn check_agent(agents: &Agents, login: &LoginContext) -> Result<Agent, Refusal> {
    let presented = login
        .tool_secret
        .as_ref()
        .ok_or_else(|| Refusal::login(NO_TOOL_SECRET))?;
    match agents.authenticate(presented, SystemTime::now()).await {
        Ok(agent) => {
            tracing::debug!(agent = %agent.name, "an agent logged in with its secret");
            Ok(agent)
        }
        Err(e @ (AgentError::UnknownSecret | AgentError::Expired { .. })) => {
            tracing::info!(peer = %login.peer.addr, "refused an agent login: {e}");
            Err(Refusal::login(e.to_string()))
        }
        Err(e) => Err(Refusal::login(format!(
            "Snowgate: this agent's secret could not be checked: {e}"
        ))),
    }
}

/// Why [`authorize`] refused: no usable grant for a configured role (which a tool's login may
/// ask for, or wait for), or anything else.
enum Refused {
    NoGrant { role: String, refusal: Refusal },
    Other(Refusal),
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused::Other(refusal)
    }
}

impl Refused {
    fn into_refusal(self) -> Refusal {
        match self {
            Refused::NoGrant { refusal, .. } | Refused::Other(refusal) => refusal,
        }
    }
}

async fn authorize(
    engine: &Engine,
    identity: &crate::identity::Identity,
    grants: &GrantsBackend,
    login: &LoginContext,
    agent: Option<&Agent>,
) -> Result<LoginGrant, Refused> {
    let profile = identity
        .profile()
        .ok_or_else(|| Refusal::login(SIGNED_OUT))?;
    let subject =
        Subject::new(profile.subject.clone()).map_err(|e| Refusal::login(e.to_string()))?;
    let usable = grants.usable(&subject, None).await.map_err(|e| {
        Refusal::role_not_granted(format!("Snowgate could not read its grants: {e}"))
    })?;

    let config = engine.config();
    let account = login_account(config, login.account.as_deref())?;
    let mut role_names = crate::grant_ops::role_names(config, Some(grants));
    // Team mode: a role of a usable grant is requestable even if the roles were not read yet.
    for g in &usable {
        if !role_names.iter().any(|r| r == g.role().as_str()) {
            role_names.push(g.role().as_str().to_string());
        }
    }
    // One account's roles and grants: a role of another account is refused, naming its account.
    let others: Vec<(String, String)> = role_names
        .iter()
        .filter_map(|r| {
            let of = role_account(config, grants, r);
            (!of.eq_ignore_ascii_case(account.name())).then(|| (r.clone(), of))
        })
        .collect();
    role_names.retain(|r| !others.iter().any(|(o, _)| o == r));
    // A grant's own account counts first (it was the role's when requested).
    let usable: Vec<Grant> = usable
        .into_iter()
        .filter(|g| match g.account() {
            Some(of) => config
                .role_account(Some(of))
                .eq_ignore_ascii_case(account.name()),
            None => role_names.iter().any(|r| r == g.role().as_str()),
        })
        .collect();
    // An agent never gets more than its roles allow, whatever the user holds.
    let usable: Vec<Grant> = match agent {
        Some(a) => usable
            .into_iter()
            .filter(|g| a.allows_role(g.role().as_str()))
            .collect(),
        None => usable,
    };
    let grant = match login.requested_role.as_deref().filter(|r| !r.is_empty()) {
        Some(asked) => {
            let asked = asked.trim_matches('"');
            if let Some(a) = agent.filter(|a| !a.allows_role(asked)) {
                return Err(Refusal::role_not_granted(format!(
                    "Snowgate: agent {} may not use role {asked}; its roles are {}. Change it with `snowgate agent remove {}` and `snowgate agent add {} --roles ...`.",
                    a.name,
                    a.policy.roles.as_deref().unwrap_or_default().join(", "),
                    a.name,
                    a.name
                ))
                .into());
            }
            if let Some((role, of)) = others.iter().find(|(r, _)| r.eq_ignore_ascii_case(asked)) {
                return Err(Refusal::role_not_granted(
                    if config.snowflake.by_name(Some(of)).is_some() {
                        format!(
                            "Snowgate: role {role} belongs to Snowflake account {of}, not {}; set account={of} in your tool to use it.",
                            account.name()
                        )
                    } else {
                        format!(
                            "Snowgate: role {role} belongs to Snowflake account {of}, which this Snowgate's config does not list (accounts: {}); add it as a [[snowflake]] entry with name = \"{of}\".",
                            config.snowflake.names()
                        )
                    },
                )
                .into());
            }
            let Some(role) = role_names
                .iter()
                .find(|r| r.eq_ignore_ascii_case(asked))
                .cloned()
            else {
                return Err(Refusal::role_not_granted(format!(
                    "Snowgate: role {asked} is not one Snowgate grants (roles: {}). {}",
                    role_names.join(", "),
                    active_phrase(&usable)
                ))
                .into());
            };
            match usable.iter().find(|g| g.role().as_str() == role) {
                Some(g) => g.clone(),
                None => {
                    let refusal = no_grant_for(grants, &subject, &role, &usable).await;
                    return Err(Refused::NoGrant { role, refusal });
                }
            }
        }
        None => match usable.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(Refusal::role_not_granted("Snowgate: you have no active access to a Snowflake role. Request it with \
                     `snowgate request ROLE --duration 1h --reason \"...\"` or from the Snowgate tray."
                        .to_string(),
                ).into())
            }
            several => {
                return Err(Refusal::role_not_granted(format!(
                    "Snowgate: you have access to {}; set role=... in your tool to pick one.",
                    grant_list(several)
                ))
                .into())
            }
        },
    };

    let login_name = login_name(&profile, account.user_claim())?;
    let role = grant.role().as_str().to_string();
    let (token, _) = grants
        .snowflake_token(identity, &grant)
        .await
        .map_err(|e| {
            Refusal::login(format!(
                "Snowgate could not get a Snowflake token for role {role}: {e}"
            ))
        })?;
    let grant_ends_at = grant
        .expires_at()
        .map(|t| t.to_system_time())
        .unwrap_or_else(SystemTime::now);
    Ok(LoginGrant {
        role,
        account: Some(account.name().to_string()),
        grant_id: grant.id().as_str().to_string(),
        login_name,
        upstream_token: token,
        grant_ends_at,
        tool_secret_name: None,
        policy: SessionPolicy::default(),
    })
}

/// The account a login goes to: with one account, that one whatever the tool names (as before
/// accounts had names); with several, the one whose name (or else identifier) the tool gave as
/// its `account`, matched case-insensitively. A tool that names none gets the first.
fn login_account<'a>(
    config: &'a crate::config::Config,
    asked: Option<&str>,
) -> Result<&'a crate::config::SnowflakeConfig, Refusal> {
    let accounts = &config.snowflake;
    let asked = asked
        .map(|a| a.trim().trim_matches('"'))
        .filter(|a| !a.is_empty());
    match asked {
        Some(asked) if accounts.several() => accounts
            .by_name(Some(asked))
            .or_else(|| {
                accounts
                    .iter()
                    .find(|a| a.account.as_str().eq_ignore_ascii_case(asked))
            })
            .ok_or_else(|| {
                Refusal::login(format!(
                    "Snowgate: account {asked} is not one this gateway serves; set account to one of: {}.",
                    accounts.names()
                ))
            }),
        _ => Ok(accounts.default_account()),
    }
}

/// The name of the account a role belongs to, by the policy in force (team mode: the server's).
fn role_account(config: &crate::config::Config, grants: &GrantsBackend, role: &str) -> String {
    let policy = grants.policy();
    let configured = RoleName::new(role)
        .ok()
        .and_then(|name| policy.role(&name).ok().and_then(|r| r.account.clone()));
    config.role_account(configured.as_deref()).to_string()
}

/// The name of the tool whose stored secret the login presented as its password; refuses a
/// login whose password is no stored tool secret. The secret is never logged.
async fn check_tool_secret(secrets: &ToolSecrets, login: &LoginContext) -> Result<String, Refusal> {
    let Some(presented) = login.tool_secret.as_ref() else {
        tracing::info!(peer = %login.peer.addr, "refused a tool login without a connection secret");
        return Err(Refusal::login(NO_TOOL_SECRET));
    };
    match secrets.verify(presented).await {
        Ok(Some(tool)) => {
            tracing::debug!(tool = %tool, "a tool logged in with its connection secret");
            Ok(tool)
        }
        Ok(None) => {
            tracing::info!(peer = %login.peer.addr, "refused a tool login with an unknown or revoked connection secret");
            Err(Refusal::login(NO_TOOL_SECRET))
        }
        Err(e) => Err(Refusal::login(format!(
            "Snowgate: this tool's connection secret could not be checked: {e}"
        ))),
    }
}

/// The refusal for a role the user holds no usable grant for: the ended-access sentence if
/// their latest grant for it expired or was revoked, else how to request it.
async fn no_grant_for(
    grants: &GrantsBackend,
    subject: &Subject,
    role: &str,
    usable: &[Grant],
) -> Refusal {
    let mine = grants.mine_for_refusal(subject).await;
    {
        if let Some(latest) = mine
            .iter()
            .filter(|g| g.role().as_str() == role && g.approved_at().is_some())
            .max_by_key(|g| g.updated_at())
        {
            let kind = match latest.state() {
                GrantState::Expired => Some(EndKind::Expired),
                GrantState::Revoked => Some(EndKind::Revoked),
                _ => None,
            };
            if let (Some(kind), Some(at)) = (kind, latest.ended_at()) {
                return Refusal::role_not_granted(
                    EndReason::new(kind, at.to_system_time()).sentence(role),
                );
            }
        }
    }
    Refusal::role_not_granted(format!(
        "Snowgate: you have no active access to role {role}. Request it with \
             `snowgate request {role} --duration 1h --reason \"...\"` or from the Snowgate tray.{}",
        match usable {
            [] => String::new(),
            some => format!(" You have access to {}.", grant_list(some)),
        }
    ))
}

fn active_phrase(usable: &[Grant]) -> String {
    match usable {
        [] => "You have no active access; request it with `snowgate request ROLE --duration 1h --reason \"...\"`.".into(),
        some => format!("You have access to {}.", grant_list(some)),
    }
}

/// "ANALYST (until 14:05) and ENGINEER (until 16:00)".
pub(crate) fn grant_list(grants: &[Grant]) -> String {
    let items: Vec<String> = grants
        .iter()
        .map(|g| match g.expires_at() {
            Some(t) => format!("{} (until {})", g.role(), hour_minute(t.to_system_time())),
            None => g.role().to_string(),
        })
        .collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The profile's value of `claim`: `sub`, `email`, `name`, or the configured user claim,
/// which sign-in keeps in the profile (`Some(None)` when the sign-in had no such claim).
pub(crate) fn profile_claim(profile: &Profile, claim: &str) -> Option<Option<String>> {
    match claim {
        "sub" => Some(Some(profile.subject.clone())),
        "email" => Some(profile.email.clone()),
        "name" => Some(profile.name.clone()),
        other => Some(profile.claims.get(other).cloned()),
    }
}

/// The Snowflake login name: the profile's value of `[snowflake].user_claim`.
fn login_name(profile: &Profile, claim: &str) -> Result<String, Refusal> {
    let value = match profile_claim(profile, claim) {
        Some(value) => value,
        None => {
            return Err(Refusal::login(format!(
                "Snowgate: [snowflake].user_claim = {claim:?} is not a claim Snowgate can read \
                     from your sign-in; use \"sub\" or \"email\" in the config."
            )))
        }
    };
    value.ok_or_else(|| {
        Refusal::login(format!(
            "Snowgate: your sign-in has no {claim:?} claim, which [snowflake].user_claim \
                 names as your Snowflake login name; ask your IdP admin to release it."
        ))
    })
}
