//! A thin [`Authorizer`] over the rig's real IdP, standing in for the engine in tests (and in
//! the benchmark): grants are a list set by the test, and upstream tokens are real Snowflake
//! External OAuth tokens from a refresh grant at the rig's IdP, aimed at the Snowflake audience
//! and narrowed to `session:role:ROLE`.
//!
//! Like the engine, it picks the requested role or the user's only active grant, refuses with
//! 390189 otherwise, refuses ended grants with the gateway's sentence, and serialises refreshes
//! behind one lock (each refresh rotates the refresh token).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use snowgate_gateway::{
    AuthorizeFuture, Authorizer, EndReason, LoginContext, LoginGrant, PeerInfo, Refusal,
};
use snowgate_rig::idp::Idp;

/// A grant as the test sets it.
#[derive(Debug, Clone)]
pub struct TestGrant {
    pub id: String,
    pub role: String,
    pub ends_at: SystemTime,
    pub ended: Option<EndReason>,
}

/// What a login asked, as the authorizer saw it (no secret values).
#[derive(Debug, Clone)]
pub struct SeenLogin {
    pub requested_role: Option<String>,
    pub login_name: Option<String>,
    pub client_app_id: Option<String>,
    pub tool_secret: Option<String>,
    pub peer: PeerInfo,
}

pub struct RigAuthorizer {
    idp: Arc<Idp>,
    user: String,
    refresh_token: tokio::sync::Mutex<String>,
    pub grants: Mutex<Vec<TestGrant>>,
    pub seen: Mutex<Vec<SeenLogin>>,
    /// When set, the tool's password must equal it.
    pub tool_secret: Mutex<Option<String>>,
}

impl RigAuthorizer {
    /// Signs `user` in at the IdP once, asking for every role scope it will need.
    pub async fn sign_in(idp: Arc<Idp>, user: &str) -> anyhow::Result<Arc<RigAuthorizer>> {
        let scopes = [
            "openid",
            "offline_access",
            "session:role:ANALYST",
            "session:role:ENGINEER",
            "session:role:READONLY",
        ];
        // RFC 8707: the role scopes belong to the Snowflake resource, so the sign-in names it.
        let audience = idp.options().snowflake_audience.clone();
        let login = idp.login(user, &scopes, Some(&audience)).await?;
        let rt = login
            .refresh_token
            .ok_or_else(|| anyhow::anyhow!("the IdP gave no refresh token"))?;
        Ok(Arc::new(RigAuthorizer {
            idp,
            user: user.to_string(),
            refresh_token: tokio::sync::Mutex::new(rt),
            grants: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            tool_secret: Mutex::new(None),
        }))
    }

    /// Adds an active grant for `role` lasting `for_`.
    pub fn grant(&self, id: &str, role: &str, for_: Duration) {
        self.grants.lock().unwrap().push(TestGrant {
            id: id.to_string(),
            role: role.to_string(),
            ends_at: SystemTime::now() + for_,
            ended: None,
        });
    }

    /// Marks a grant ended (the engine would, before calling `Gateway::end_grant`).
    pub fn end(&self, id: &str, reason: EndReason) {
        for g in self.grants.lock().unwrap().iter_mut() {
            if g.id == id {
                g.ended = Some(reason);
            }
        }
    }

    /// A Snowflake token for `role`, the way Snowgate gets one.
    pub async fn upstream_token(&self, role: &str) -> anyhow::Result<String> {
        let mut rt = self.refresh_token.lock().await;
        let audience = self.idp.options().snowflake_audience.clone();
        let tokens = self
            .idp
            .refresh(&rt, Some(&format!("session:role:{role}")), Some(&audience))
            .await?;
        if let Some(new) = tokens.refresh_token.clone() {
            *rt = new;
        }
        Ok(tokens.access_token)
    }

    fn pick(&self, requested: Option<&str>) -> Result<TestGrant, Refusal> {
        let now = SystemTime::now();
        let grants = self.grants.lock().unwrap().clone();
        let active: Vec<&TestGrant> = grants
            .iter()
            .filter(|g| g.ended.is_none() && g.ends_at > now)
            .collect();
        match requested {
            Some(role) => {
                let role = role.to_ascii_uppercase();
                if let Some(g) = active.iter().find(|g| g.role == role) {
                    return Ok((*g).clone());
                }
                if let Some(g) = grants.iter().rev().find(|g| g.role == role) {
                    if let Some(reason) = g.ended {
                        return Err(Refusal::new(390189, reason.sentence(&g.role)));
                    }
                }
                Err(Refusal::new(
                    390189,
                    format!("Snowgate: you have no active grant for role {role}. Request access from the Snowgate tray."),
                ))
            }
            None => match active.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(Refusal::new(
                    390189,
                    "Snowgate: you have no active grant. Request access from the Snowgate tray.",
                )),
                several => Err(Refusal::new(
                    390189,
                    format!(
                        "Snowgate: you have several active grants ({}); set the role in the connection to pick one.",
                        several.iter().map(|g| g.role.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )),
            },
        }
    }
}

impl Authorizer for RigAuthorizer {
    fn authorize_login(&self, login: LoginContext) -> AuthorizeFuture<'_> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(SeenLogin {
                requested_role: login.requested_role.clone(),
                login_name: login.login_name.clone(),
                client_app_id: login.client_app_id.clone(),
                tool_secret: login
                    .tool_secret
                    .as_ref()
                    .map(|s| s.expose_secret().to_string()),
                peer: login.peer.clone(),
            });
            let required = self.tool_secret.lock().unwrap().clone();
            if let Some(required) = required {
                let given = login
                    .tool_secret
                    .as_ref()
                    .map(|s| s.expose_secret().to_string());
                if given.as_deref() != Some(required.as_str()) {
                    return Err(Refusal::new(
                        390100,
                        "Snowgate: this tool's connection secret is wrong. Copy it again from the Snowgate tray.",
                    ));
                }
            }
            let grant = self.pick(login.requested_role.as_deref())?;
            let token = self.upstream_token(&grant.role).await.map_err(|e| {
                Refusal::new(390303, format!("Snowgate could not get a token: {e}"))
            })?;
            Ok(LoginGrant {
                role: grant.role,
                account: None,
                grant_id: grant.id,
                login_name: self.user.clone(),
                upstream_token: SecretString::from(token),
                grant_ends_at: grant.ends_at,
                tool_secret_name: None,
                policy: Default::default(),
            })
        })
    }
}
