//! Team mode's checks: the server's health and caller mode, its key set, who it takes the
//! caller for (`/v1/me`), and a token it mints.

use snowgate_grants::team_api::{CallerAuth, Health, HealthStatus, Jwks};

use crate::config::TeamAuth;
use crate::identity::Identity;

use super::*;

pub(super) async fn server_checks(
    d: &mut Doctor,
    team: &crate::team::TeamClient,
    auth: TeamAuth,
    identity: &Identity,
) {
    let server = team.server().to_string();
    let health = team.public_json("/healthz").await.and_then(|h| {
        serde_json::from_value::<Health>(h)
            .map_err(|e| format!("/healthz answered something Snowgate can't read: {e}"))
    });
    match health {
        Ok(h) if h.status == HealthStatus::Ok => {
            let mode = h.caller_auth.unwrap_or(CallerAuth::AccessToken).as_str();
            let fits = mode == "both" || mode == auth.as_str();
            if fits {
                d.ok(
                    "team server health",
                    format!("{server} is up; its database answers; it takes {mode} callers"),
                );
            } else {
                d.fail(
                    "team server health",
                    format!(
                        "{server} takes {mode} callers, but this desktop sends {}",
                        auth.as_str()
                    ),
                    format!("set [team] auth = \"{mode}\" in this desktop's config"),
                );
            }
        }
        Ok(h) => d.fail(
            "team server health",
            format!(
                "{server} says it is unavailable: {}",
                h.error.map(|e| e.message).unwrap_or_default()
            ),
            "check the server's database ([database] url) and its log".into(),
        ),
        Err(e) => d.fail(
            "team server health",
            format!("{server}/healthz: {e}"),
            "check [team] server and that `snowgate serve` runs there".into(),
        ),
    }
    let jwks = team
        .public_json("/.well-known/jwks.json")
        .await
        .map(|set| serde_json::from_value::<Jwks>(set).ok());
    match jwks {
        Ok(Some(set))
            if !set.keys.is_empty()
                && set.keys.iter().all(|k| !k.kid.is_empty() && k.kty == "RSA") =>
        {
            let n = set.keys.len();
            d.ok(
                "team server JWKS",
                format!("{n} RSA key(s) with key ids at {server}/.well-known/jwks.json"),
            );
        }
        Ok(_) => d.fail(
            "team server JWKS",
            "the key set is empty or malformed".into(),
            "check [minting] key_files on the server".into(),
        ),
        Err(e) => d.fail(
            "team server JWKS",
            e,
            "check that the server serves /.well-known/jwks.json".into(),
        ),
    }
    let subject = identity.profile().map(|p| p.subject).unwrap_or_default();
    match team.me().await {
        Ok(me) if me.subject == subject => {
            let groups = if me.groups.is_empty() { "none".to_string() } else { me.groups.join(", ") };
            d.ok("team server caller auth", format!("the server takes you for {subject} ({}); groups it resolved: {groups}", auth.as_str()));
            if me.groups.is_empty() {
                // Requesting needs no group; approving and reading the audit log do.
                d.add(
                    "groups",
                    Outcome::Warn,
                    "the team server resolved no groups for you: you can request roles, but approve none and read no audit log".into(),
                    Some("if you should, have the IdP send a groups claim, or list you in a [[groups]] table of the server's config".into()),
                );
            } else {
                d.ok("groups", me.groups.join(", "));
            }
        }
        Ok(me) => d.fail(
            "team server caller auth",
            format!("the server takes you for {}, but you are signed in as {subject}", me.subject),
            "check the server's [identity] issuer".into(),
        ),
        Err(e) => d.fail(
            "team server caller auth",
            e.to_string(),
            match auth {
                TeamAuth::AccessToken => "make the IdP issue access tokens for [team] audience (the server's [identity] audience), or use auth = \"id_token\" on both sides".into(),
                TeamAuth::IdToken => "check the server's [identity] client_id (it must be this desktop's client id) and caller_auth".into(),
            },
        ),
    }
}

pub(super) async fn minted_token(
    d: &mut Doctor,
    team: &crate::team::TeamClient,
    p: &Patient<'_>,
    identity: &Identity,
) -> Option<Integration> {
    let subject = snowgate_grants::Subject::new(identity.profile()?.subject).ok()?;
    let grants = team.usable(&subject, None).await.ok()?;
    let Some(grant) = grants.first() else {
        d.add(
            "Snowflake token",
            Outcome::Skip,
            "no active grant, so the server minted no token to look at".into(),
            Some("request a role (`snowgate request ROLE ...`) and run the doctor again".into()),
        );
        return None;
    };
    let backend = p.grants.as_ref()?;
    let name = format!("Snowflake token for {}", grant.role());
    match backend.snowflake_token(identity, grant).await {
        Ok((token, _)) => {
            use secrecy::ExposeSecret as _;
            let claims = payload(token.expose_secret())?;
            let kid = header_kid(token.expose_secret());
            let aud = audiences(&claims);
            let claim = if claims.contains_key("sub") {
                "sub"
            } else {
                "email"
            };
            let user_claim = claims
                .keys()
                .find(|k| {
                    ![
                        "iss",
                        "aud",
                        "sub",
                        "scp",
                        "iat",
                        "exp",
                        "jti",
                        "snowgate_grant",
                    ]
                    .contains(&k.as_str())
                })
                .cloned()
                .unwrap_or_else(|| claim.to_string());
            let (iss, aud, attr) = judge_token(
                d,
                &name,
                &claims,
                grant.role().as_str(),
                &Expected {
                    iss: team.server(),
                    aud: aud.first().map(|s| s.as_str()),
                    user_claim: &user_claim,
                    scope_claim: Some("scp"),
                    preset: "the team server",
                    whose: "the team server",
                },
            )?;
            let jwks = format!("{}/.well-known/jwks.json", team.server());
            if let Some(k) = kid {
                key_published(d, &jwks, &k, "the team server's").await;
            }
            Some(integration(iss, jwks, aud, user_claim, attr))
        }
        Err(e) => {
            d.fail(
                &name,
                e,
                "check the server's [minting] settings and its log".into(),
            );
            None
        }
    }
}
