//! The rig's identity provider: npm `oidc-provider` (`tests/idp/server.mjs`) as a child process,
//! served over HTTPS with a leaf of the rig's [`TestCa`], plus headless drivers for its login,
//! consent and device pages.
//!
//! The IdP runs as it ships, configured only as a deployment must be, under one
//! [`IdpProfile`] (`tests/idp/profiles.mjs`): `strict` (oidc-provider's defaults) or the
//! documented behaviour of Entra ID, Okta, Auth0, Keycloak or Google. [`ProfileFacts`] says what
//! the profile means for the parts that trust it (token audience, scope claim, user claim).
//!
//! What every profile offers (see the header of `tests/idp/server.mjs` for all of it):
//! - one native public client, [`CLIENT_ID`], redirect URI `http://127.0.0.1:<any port>/callback`,
//!   PKCE S256 required, grant types authorization code, refresh token and device code;
//! - users `alice` (groups `analysts`), `bob` (`managers`), `carol` (both), `mallory` (none) and
//!   `dana` (analysts and 200 more), and `erin` (analysts, whose email the provider marks
//!   `email_verified: false`), named as the profile's provider names them
//!   ([`Idp::subject_of`], [`Idp::group_name`]); any password, unknown users refused;
//! - role scopes `session:role:<ROLE>` for each configured role, for the Snowflake API.
//!
//! Under `strict`, a refresh token comes only for `offline_access` with `prompt=consent` in the
//! browser flow (the rig's own [`Idp::login`] sends it when it asks for `offline_access`), and
//! used refresh tokens presented again revoke the grant.
//!
//! [`Idp::stop`] and [`Idp::restart`] keep the port, the signing keys and the provider's whole
//! state (sessions, grants, refresh tokens): the IdP mirrors its storage to a file in the rig's
//! temporary directory after every change, so even a killed IdP comes back with it.
//!
//! Why one long file: it is the rig's one handle on the IdP process (start, attach, stop and
//! restart, each provider profile's facts) and every flow tests drive through it (browser
//! sign-in pages, device codes, code exchange, refresh, revocation), so a profile's settings
//! and the behaviour tests rely on are read together.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::process::Command;
use url::Url;

use crate::paths::{repo_root, tests_dir, SETUP_HINT};
use crate::process::{free_port, require_file, RigProcess};
use crate::tls::TestCa;

/// The OAuth client id of the Snowgate desktop app at the rig's IdP.
pub const CLIENT_ID: &str = "snowgate-desktop";

/// The grant type of the device authorization grant (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Which provider's documented behaviour the IdP reproduces (`tests/idp/profiles.mjs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdpProfile {
    /// oidc-provider's defaults: RFC 8707 `resource`; `offline_access` only with
    /// `prompt=consent` in the browser flow; `scope` in JWT access tokens.
    #[default]
    Strict,
    /// Microsoft Entra ID v2.0: no `resource`; scopes prefixed with the Application ID URI;
    /// `scp`; groups as object IDs with an overage claim past 200.
    Entra,
    /// Okta custom authorization server: one audience; `scp` as a list; rotation with a grace
    /// period.
    Okta,
    /// Auth0: the `audience` parameter; namespaced groups claim; rotation with reuse detection.
    Auth0,
    /// Keycloak: audience by mapper; groups as paths; refresh tokens always, not revoked on use.
    Keycloak,
    /// Google: ID tokens only (team mode only); refresh through `access_type=offline`.
    Google,
}

impl IdpProfile {
    /// Every profile.
    pub const ALL: [IdpProfile; 6] = [
        IdpProfile::Strict,
        IdpProfile::Entra,
        IdpProfile::Okta,
        IdpProfile::Auth0,
        IdpProfile::Keycloak,
        IdpProfile::Google,
    ];

    /// The profiles whose provider mints Snowflake tokens (solo mode).
    pub const SOLO: [IdpProfile; 5] = [
        IdpProfile::Strict,
        IdpProfile::Entra,
        IdpProfile::Okta,
        IdpProfile::Auth0,
        IdpProfile::Keycloak,
    ];

    /// The profile's name, as `--profile` and `[identity] provider` (`strict` is `generic`
    /// there) spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            IdpProfile::Strict => "strict",
            IdpProfile::Entra => "entra",
            IdpProfile::Okta => "okta",
            IdpProfile::Auth0 => "auth0",
            IdpProfile::Keycloak => "keycloak",
            IdpProfile::Google => "google",
        }
    }

    /// The `[identity] provider` preset that matches this profile.
    pub fn snowgate_provider(self) -> &'static str {
        match self {
            IdpProfile::Strict => "generic",
            other => other.as_str(),
        }
    }
}

impl std::str::FromStr for IdpProfile {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        IdpProfile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                anyhow!("unknown IdP profile {s:?} (known: strict, entra, okta, auth0, keycloak, google)")
            })
    }
}

impl fmt::Display for IdpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the rig's IdP is configured.
#[derive(Debug, Clone)]
pub struct IdpOptions {
    /// Which provider the IdP behaves like.
    pub profile: IdpProfile,
    /// Lifetime of every access token (whole seconds, at least 1).
    pub access_token_ttl: Duration,
    /// The Snowflake API: its resource indicator (strict), audience (okta, auth0, keycloak) or
    /// Application ID URI (entra).
    pub snowflake_audience: String,
    /// Snowflake roles that may be asked for as `session:role:<ROLE>` scopes.
    pub roles: Vec<String>,
    /// okta: how long a rotated refresh token stays usable (Okta's default: 30 s).
    pub refresh_grace: Option<Duration>,
    /// auth0: the Snowflake API's "Allow Offline Access" (on by default).
    pub auth0_allow_offline_access: bool,
}

impl Default for IdpOptions {
    fn default() -> Self {
        IdpOptions {
            profile: IdpProfile::Strict,
            access_token_ttl: Duration::from_secs(300),
            snowflake_audience: "https://snowflake.rig.test".to_string(),
            roles: vec![
                "ANALYST".to_string(),
                "ENGINEER".to_string(),
                "READONLY".to_string(),
            ],
            refresh_grace: None,
            auth0_allow_offline_access: true,
        }
    }
}

impl IdpOptions {
    /// The defaults, for `profile`.
    pub fn profile(profile: IdpProfile) -> IdpOptions {
        IdpOptions {
            profile,
            ..IdpOptions::default()
        }
    }
}

/// What the running IdP's profile means for the parts that trust it (`GET /rig/profile`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProfileFacts {
    pub name: String,
    /// Whether it mints Snowflake tokens.
    pub solo: bool,
    /// `aud` of its Snowflake access tokens (EXTERNAL_OAUTH_AUDIENCE_LIST).
    pub token_audience: Option<String>,
    /// EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE: `scp` or `scope`.
    pub scope_claim: Option<String>,
    /// EXTERNAL_OAUTH_TOKEN_USER_MAPPING_CLAIM.
    pub user_claim: String,
    /// What prefixes `session:role:NAME` in requests (entra: the Application ID URI and `/`).
    pub role_scope_prefix: Option<String>,
    /// The `sub` of each rig user at this provider.
    pub subjects: std::collections::BTreeMap<String, String>,
    /// The documentation the profile follows.
    pub docs: Vec<String>,
}

/// A token endpoint response. `Debug` shows which tokens are present, never their values.
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
}

fn redacted(value: &Option<String>) -> &'static str {
    if value.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &format_args!("<redacted>"))
            .field(
                "refresh_token",
                &format_args!("{}", redacted(&self.refresh_token)),
            )
            .field("id_token", &format_args!("{}", redacted(&self.id_token)))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// An authorization request made by the rig itself (see [`Idp::authorize_request`]): the URL to
/// drive and the secrets needed to redeem its code. `Debug` hides the PKCE verifier.
#[derive(Clone)]
pub struct AuthRequest {
    /// The authorization URL (`/auth?...`).
    pub url: Url,
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    /// The resource indicator sent with the request, if any.
    pub resource: Option<String>,
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("url", &self.url.as_str())
            .field("redirect_uri", &self.redirect_uri)
            .field("state", &self.state)
            .field("nonce", &self.nonce)
            .field("code_verifier", &format_args!("<redacted>"))
            .field("resource", &self.resource)
            .finish()
    }
}

/// A device authorization response (RFC 8628). `Debug` hides the device code.
#[derive(Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &format_args!("<redacted>"))
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// The endpoints read from discovery.
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    device_authorization_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    userinfo_endpoint: String,
}

/// The rig's identity provider. Dropping it kills the IdP (when this value started it).
pub struct Idp {
    process: Option<RigProcess>,
    /// What the rig needs to start the IdP again; `None` for an [`Idp::attach`]ed one.
    owned: Option<Owned>,
    ca_file: PathBuf,
    ca_cert: reqwest::Certificate,
    port: u16,
    /// The issuer's path after the origin (`/<tenant>/v2.0` at entra), or empty.
    issuer_path: String,
    opts: IdpOptions,
    discovery: serde_json::Value,
    endpoints: Endpoints,
    facts: ProfileFacts,
}

/// The TLS files and the directory of keys and state of an IdP this rig started.
struct Owned {
    ca: TestCa,
    state_dir: tempfile::TempDir,
}

impl Endpoints {
    /// Placeholders until discovery is read.
    fn empty() -> Endpoints {
        Endpoints {
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            jwks_uri: String::new(),
            device_authorization_endpoint: String::new(),
            revocation_endpoint: String::new(),
            introspection_endpoint: String::new(),
            userinfo_endpoint: String::new(),
        }
    }
}

impl fmt::Debug for Idp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.issuer())
            .field("running", &self.process.is_some())
            .field("attached", &self.owned.is_none())
            .field("opts", &self.opts)
            .finish()
    }
}

/// How many redirects and form posts a headless login may take before the rig gives up.
const MAX_STEPS: usize = 25;
/// The password the headless drivers type (the IdP takes any).
const RIG_PASSWORD: &str = "rig-password";
/// How long one start attempt may take. A start that stalls is retried once on another port,
/// so a rare stall on a loaded machine costs one attempt rather than the test.
const START_TIMEOUT: Duration = Duration::from_secs(40);
/// Start attempts: a port taken by another process, or a stalled start, is retried.
const START_ATTEMPTS: usize = 3;

impl Idp {
    /// Starts the IdP on a free port with a leaf of `ca`, and reads its discovery document.
    pub async fn start(ca: &TestCa, opts: IdpOptions) -> Result<Idp> {
        let script = server_script();
        require_file(&script, SETUP_HINT)?;
        require_file(
            &repo_root().join("node_modules/oidc-provider/package.json"),
            "npm package oidc-provider is not installed; run `npm install` at the repository root",
        )?;
        if opts.access_token_ttl < Duration::from_secs(1) {
            bail!(
                "IdpOptions.access_token_ttl must be at least 1 s, got {:?}",
                opts.access_token_ttl
            );
        }
        if opts.roles.is_empty() {
            bail!("IdpOptions.roles is empty; the IdP needs at least one Snowflake role");
        }
        let ca_cert = ca
            .reqwest_root()
            .with_context(|| format!("reading the rig CA {}", ca.ca_file.display()))?;
        let mut state_dir = tempfile::Builder::new()
            .prefix("snowgate-rig-idp-")
            .tempdir()
            .context("creating the IdP's state directory")?;

        let mut last_error = None;
        for _attempt in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut idp = Idp {
                process: None,
                owned: Some(Owned {
                    ca: ca.clone(),
                    state_dir,
                }),
                ca_file: ca.ca_file.clone(),
                ca_cert: ca_cert.clone(),
                port,
                issuer_path: String::new(),
                opts: opts.clone(),
                discovery: serde_json::Value::Null,
                endpoints: Endpoints::empty(),
                facts: ProfileFacts::default(),
            };
            match idp.spawn().await {
                Ok(()) => return Ok(idp),
                Err(e) => {
                    // Another process may have taken the free port first, or the start
                    // stalled: try another port.
                    let text = format!("{e:#}");
                    let retry = text.contains("EADDRINUSE") || text.contains("did not print");
                    if retry {
                        eprintln!("the rig's IdP did not start, trying again: {text}");
                    }
                    state_dir = idp.into_state_dir();
                    if !retry {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("the rig's IdP did not start")))
    }

    fn into_state_dir(mut self) -> tempfile::TempDir {
        self.process = None;
        self.owned.take().expect("an IdP the rig started").state_dir
    }

    /// A handle on an IdP that another process started (e.g. `snowgate-rig up`), at `issuer`
    /// (`https://127.0.0.1:PORT[/path]`), trusting `ca_file`. It drives logins like any other; it
    /// cannot [`Idp::stop`] or [`Idp::restart`] that IdP, and its [`Idp::options`] are the
    /// defaults, not necessarily the running IdP's.
    pub async fn attach(issuer: &str, ca_file: &Path) -> Result<Idp> {
        let url =
            Url::parse(issuer).with_context(|| format!("the issuer {issuer:?} is not a URL"))?;
        let port = match (url.scheme(), url.host_str(), url.port()) {
            ("https", Some("127.0.0.1"), Some(port)) => port,
            _ => bail!("the rig's IdP issuer looks like https://127.0.0.1:PORT, got {issuer:?}"),
        };
        let pem = std::fs::read(ca_file)
            .with_context(|| format!("reading the rig CA {}", ca_file.display()))?;
        let ca_cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", ca_file.display()))?;
        let mut idp = Idp {
            process: None,
            owned: None,
            ca_file: ca_file.to_path_buf(),
            ca_cert,
            port,
            issuer_path: url.path().trim_end_matches('/').to_string(),
            opts: IdpOptions::default(),
            discovery: serde_json::Value::Null,
            endpoints: Endpoints::empty(),
            facts: ProfileFacts::default(),
        };
        idp.load_discovery().await?;
        idp.opts.profile = idp.facts.name.parse()?;
        Ok(idp)
    }

    /// Starts the server process on `self.port` and loads discovery.
    async fn spawn(&mut self) -> Result<()> {
        let Some(owned) = &self.owned else {
            bail!("this IdP was attached to, not started by this rig; it cannot be started here");
        };
        let state_dir = owned.state_dir.path();
        let ttl = self.opts.access_token_ttl;
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let mut cmd = Command::new("node");
        cmd.current_dir(tests_dir())
            .arg(server_script())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--cert")
            .arg(&owned.ca.cert_file)
            .arg("--key")
            .arg(&owned.ca.key_file)
            .arg("--access-ttl")
            .arg(ttl_secs.to_string())
            .arg("--audience")
            .arg(&self.opts.snowflake_audience)
            .arg("--roles")
            .arg(self.opts.roles.join(","))
            .arg("--profile")
            .arg(self.opts.profile.as_str())
            .arg("--keys-file")
            .arg(state_dir.join("keys.json"))
            .arg("--state-file")
            .arg(state_dir.join("state.json"));
        if let Some(grace) = self.opts.refresh_grace {
            cmd.arg("--refresh-grace").arg(grace.as_secs().to_string());
        }
        if !self.opts.auth0_allow_offline_access {
            cmd.arg("--auth0-no-offline-access");
        }
        let (process, ready) =
            RigProcess::spawn("identity provider", cmd, "IDP READY", START_TIMEOUT)
                .await
                .map_err(|e| {
                    let not_found = e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                    });
                    if not_found {
                        e.context("is Node.js (`node`) on PATH?")
                    } else {
                        e
                    }
                })?;
        let origin = format!("https://127.0.0.1:{}", self.port);
        let announced = ready
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .unwrap_or_default();
        let Some(path) = announced.strip_prefix(&origin) else {
            bail!("the rig's IdP announced {ready:?}, expected it at {origin}");
        };
        self.issuer_path = path.trim_end_matches('/').to_string();
        self.process = Some(process);
        self.load_discovery().await
    }

    /// Reads the discovery document and the endpoints in it.
    async fn load_discovery(&mut self) -> Result<()> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let discovery: serde_json::Value = async {
            let resp = self.http_client().get(&url).send().await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("HTTP {status}");
            }
            Ok(resp.json().await?)
        }
        .await
        .with_context(|| {
            format!(
                "reading the IdP's discovery document {url}\n{}",
                self.recent_output()
            )
        })?;
        self.endpoints = serde_json::from_value(discovery.clone())
            .context("the IdP's discovery document lacks an endpoint the rig needs")?;
        self.discovery = discovery;
        let url = Url::parse(&format!("{}/rig/profile", self.issuer()))?;
        let resp = self.send(self.http_client().get(url.clone()), &url).await?;
        self.facts = resp
            .json()
            .await
            .context("reading the rig IdP's /rig/profile")?;
        Ok(())
    }

    /// What the IdP's profile means for the parts that trust it.
    pub fn profile_facts(&self) -> &ProfileFacts {
        &self.facts
    }

    /// The profile the IdP runs.
    pub fn profile(&self) -> IdpProfile {
        self.opts.profile
    }

    /// The `sub` of rig user `user` at this IdP's provider.
    pub fn subject_of(&self, user: &str) -> String {
        self.facts
            .subjects
            .get(user)
            .cloned()
            .unwrap_or_else(|| user.to_string())
    }

    /// How this IdP's provider names rig group `group` (`analysts`, `managers`): as is, as a
    /// path (`/managers`, keycloak) or as an object ID (entra).
    pub fn group_name(&self, group: &str) -> String {
        match self.opts.profile {
            IdpProfile::Keycloak => format!("/{group}"),
            IdpProfile::Entra => guid("group", group),
            _ => group.to_string(),
        }
    }

    /// The `[identity]` lines that select this IdP's provider preset in a Snowgate config
    /// (`provider`, and the groups claim where the provider has no standard one).
    pub fn snowgate_identity_lines(&self) -> String {
        let mut lines = format!("provider = \"{}\"\n", self.opts.profile.snowgate_provider());
        if self.opts.profile == IdpProfile::Auth0 {
            lines.push_str("groups_claim = \"https://example.com/groups\"\n");
        }
        lines
    }

    /// The `aud` of the Snowflake access tokens this IdP issues.
    pub fn token_audience(&self) -> String {
        self.facts
            .token_audience
            .clone()
            .unwrap_or_else(|| self.opts.snowflake_audience.clone())
    }

    /// `https://127.0.0.1:PORT`, plus the profile's issuer path (entra: `/<tenant>/v2.0`, okta:
    /// `/oauth2/default`, keycloak: `/realms/acme`).
    pub fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}{}", self.port, self.issuer_path)
    }

    /// The port the IdP listens on (the same across [`Idp::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options the IdP was started with.
    pub fn options(&self) -> &IdpOptions {
        &self.opts
    }

    /// The JWKS URL from discovery.
    pub fn jwks_uri(&self) -> String {
        self.endpoints.jwks_uri.clone()
    }

    /// The token endpoint from discovery.
    pub fn token_endpoint(&self) -> String {
        self.endpoints.token_endpoint.clone()
    }

    /// The whole discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> &serde_json::Value {
        &self.discovery
    }

    /// The CA that signed the IdP's TLS leaf: what Snowgate must trust.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The last lines the IdP printed (errors are logged as `IDP ERROR ...`).
    pub fn recent_output(&self) -> String {
        match &self.process {
            Some(p) => p.recent_output(),
            None if self.owned.is_none() => "  | (the IdP runs in another process)".to_string(),
            None => "  | (the IdP is stopped)".to_string(),
        }
    }

    /// A new HTTP client that trusts the rig CA, follows no redirects, and has its own cookie
    /// store (so each call starts a fresh browser session).
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(self.ca_cert.clone())
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("building the rig's HTTP client")
    }

    /// Drives the login and consent pages of `authorize_url` (made by someone else, e.g. the
    /// broker) as `user`, in a fresh browser session, and returns the final redirect to the
    /// client's redirect URI (`...?code=&state=&iss=`) without following it. An authorization
    /// error redirect (`?error=...`) is returned as well; it is the client's to handle. An
    /// unknown user, an error page of the IdP or a redirect loop is an `Err`.
    pub async fn complete_login(&self, authorize_url: &str, user: &str) -> Result<Url> {
        let url = Url::parse(authorize_url)
            .with_context(|| format!("the authorize URL {authorize_url:?} is not a URL"))?;
        let client = self.http_client();
        let mark = self.mark();
        let resp = self.send(client.get(url.clone()), &url).await?;
        match self.drive(&client, resp, user, mark).await? {
            Outcome::Redirect(url) => Ok(url),
            Outcome::Page(page) => bail!(
                "signing in {user:?} at the rig's IdP ended on a page instead of a redirect to the client: {}",
                page_text(&page)
            ),
        }
    }

    /// Like [`Idp::complete_login`], then GETs the final redirect (e.g. the broker's loopback
    /// callback) and returns that response's status and body. When the callback sends the
    /// browser back to the IdP (a client asking again, e.g. with `prompt=consent`), the rig
    /// goes on there in the same browser session, as a browser would.
    pub async fn complete_login_and_follow(
        &self,
        authorize_url: &str,
        user: &str,
    ) -> Result<(u16, String)> {
        let followed = self.follow_sign_in(authorize_url, user).await?;
        Ok((followed.status, followed.body))
    }

    /// [`Idp::complete_login_and_follow`], also returning every authorization request the
    /// browser was sent to (the first one, and each the client sent it back with).
    pub async fn follow_sign_in(&self, authorize_url: &str, user: &str) -> Result<FollowedSignIn> {
        let client = self.http_client();
        let mut next = Url::parse(authorize_url)
            .with_context(|| format!("the authorize URL {authorize_url:?} is not a URL"))?;
        if !self.is_issuer(&next) {
            // A local start page (Snowgate opens one rather than the request itself): follow
            // its redirect to the IdP, as a browser does.
            let shown = without_query(&next);
            let resp = client
                .get(next.clone())
                .send()
                .await
                .with_context(|| format!("opening the start page {shown}"))?;
            next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| Url::parse(l).ok())
                .filter(|l| self.is_issuer(l))
                .with_context(|| {
                    format!(
                        "the start page {shown} answered {} without sending the browser to the IdP",
                        resp.status()
                    )
                })?;
        }
        let mut requests = Vec::new();
        for _ in 0..4 {
            requests.push(next.clone());
            let mark = self.mark();
            let resp = self.send(client.get(next.clone()), &next).await?;
            let redirect = match self.drive(&client, resp, user, mark).await? {
                Outcome::Redirect(url) => url,
                Outcome::Page(page) => bail!(
                    "signing in {user:?} at the rig's IdP ended on a page instead of a redirect to the client: {}",
                    page_text(&page)
                ),
            };
            let shown = without_query(&redirect);
            let resp = client
                .get(redirect)
                .send()
                .await
                .with_context(|| format!("following the IdP's redirect to {shown}"))?;
            let status = resp.status();
            let back = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| Url::parse(l).ok())
                .filter(|l| self.is_issuer(l));
            match back {
                Some(url) if status.is_redirection() => next = url,
                _ => {
                    let body = resp
                        .text()
                        .await
                        .with_context(|| format!("reading the answer of {shown}"))?;
                    return Ok(FollowedSignIn {
                        status: status.as_u16(),
                        body,
                        requests,
                    });
                }
            }
        }
        bail!("the client sent {user:?} back to the IdP more than 3 times")
    }

    /// Completes the user side of the device flow for `user_code` as `user`: the verification
    /// page, the confirmation, login and consent.
    pub async fn complete_device(&self, user_code: &str, user: &str) -> Result<()> {
        let client = self.http_client();
        let verify = Url::parse(&format!("{}/device", self.issuer()))?;
        let mark = self.mark();
        let resp = self.send(client.get(verify.clone()), &verify).await?;
        let status = resp.status();
        let page = resp.text().await?;
        if !status.is_success() {
            bail!(
                "the IdP's device page answered HTTP {status}: {}",
                page_text(&page)
            );
        }
        let xsrf = capture(&page, r#"name="xsrf" value="([^"]+)""#).ok_or_else(|| {
            anyhow!(
                "the IdP's device page has no xsrf field: {}",
                page_text(&page)
            )
        })?;
        let form = [
            ("xsrf", xsrf.as_str()),
            ("user_code", user_code),
            ("confirm", "yes"),
        ];
        let resp = self
            .send(client.post(verify.clone()).form(&form), &verify)
            .await?;
        match self.drive(&client, resp, user, mark).await? {
            Outcome::Page(page) if page.contains(r#"data-page="device-success""#) => Ok(()),
            Outcome::Page(page) => bail!(
                "the device sign-in of {user:?} with code {user_code:?} did not succeed: {}",
                page_error(&page)
            ),
            Outcome::Redirect(url) => bail!(
                "the device sign-in of {user:?} ended in a redirect to {} instead of the success page",
                without_query(&url)
            ),
        }
    }

    /// Builds an authorization-code request with PKCE (S256), a random state and nonce, and the
    /// loopback redirect URI, asking for `scopes` and, if given, the resource indicator.
    pub fn authorize_request(
        &self,
        scopes: &[&str],
        resource: Option<&str>,
    ) -> Result<AuthRequest> {
        let code_verifier = random_token(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let state = random_token(16);
        let nonce = random_token(16);
        let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port()?);
        let mut url = Url::parse(&self.endpoints.authorization_endpoint)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", CLIENT_ID)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("scope", &scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(resource) = resource {
                q.append_pair("resource", resource);
            }
            // OpenID Connect Core §11: offline_access needs the consent prompt.
            if scopes.contains(&"offline_access") {
                q.append_pair("prompt", "consent");
            }
        }
        Ok(AuthRequest {
            url,
            redirect_uri,
            state,
            nonce,
            code_verifier,
            resource: resource.map(str::to_string),
        })
    }

    /// Redeems the code in `redirect` (the result of [`Idp::complete_login`] for `req`). Checks
    /// state and iss, and that the ID token (if any) carries the request's nonce. `resource` is
    /// sent to the token endpoint: with the Snowflake audience the access token is its JWT.
    pub async fn exchange_code(
        &self,
        req: &AuthRequest,
        redirect: &Url,
        resource: Option<&str>,
    ) -> Result<TokenSet> {
        let params: std::collections::HashMap<String, String> =
            redirect.query_pairs().into_owned().collect();
        if let Some(error) = params.get("error") {
            bail!(
                "the IdP refused the authorization: {error}: {}",
                params
                    .get("error_description")
                    .map(String::as_str)
                    .unwrap_or("(no description)")
            );
        }
        if params.get("state") != Some(&req.state) {
            bail!("the IdP's redirect carries the wrong state (or none)");
        }
        if params.get("iss") != Some(&self.issuer()) {
            bail!(
                "the IdP's redirect carries iss {:?}, expected {}",
                params.get("iss"),
                self.issuer()
            );
        }
        let code = params
            .get("code")
            .ok_or_else(|| anyhow!("the IdP's redirect carries no code"))?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", req.redirect_uri.as_str()),
            ("code_verifier", req.code_verifier.as_str()),
            ("client_id", CLIENT_ID),
        ];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let tokens = self.token_request(&form, "code exchange").await?;
        if let Some(id_token) = &tokens.id_token {
            let claims = jwt_payload(id_token).context("decoding the ID token")?;
            if claims.get("nonce").and_then(|n| n.as_str()) != Some(req.nonce.as_str()) {
                bail!("the ID token's nonce does not match the request's");
            }
        }
        Ok(tokens)
    }

    /// A whole authorization-code + PKCE login as `user` done by the rig itself. `scopes` e.g.
    /// `["openid", "offline_access", "groups", "session:role:ANALYST"]`. `resource` goes to both
    /// the authorization and the token request.
    pub async fn login(
        &self,
        user: &str,
        scopes: &[&str],
        resource: Option<&str>,
    ) -> Result<TokenSet> {
        let req = self.authorize_request(scopes, resource)?;
        let redirect = self.complete_login(req.url.as_str(), user).await?;
        self.exchange_code(&req, &redirect, resource).await
    }

    /// A refresh grant, optionally narrowed to `scope` and aimed at `resource`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenSet> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        self.token_request(&form, "refresh").await
    }

    /// Starts a device authorization (RFC 8628) for `scopes` and, if given, the resource.
    pub async fn device_authorize(
        &self,
        scopes: &[&str],
        resource: Option<&str>,
    ) -> Result<DeviceAuthorization> {
        let scope = scopes.join(" ");
        let mut form = vec![("client_id", CLIENT_ID), ("scope", scope.as_str())];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let endpoint = Url::parse(&self.endpoints.device_authorization_endpoint)?;
        let mark = self.mark();
        let resp = self
            .send(
                self.http_client().post(endpoint.clone()).form(&form),
                &endpoint,
            )
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!(
                "the IdP refused the device authorization (HTTP {status}): {}{}",
                oauth_error(&body),
                self.error_log(mark).await
            );
        }
        serde_json::from_str(&body).context("reading the IdP's device authorization response")
    }

    /// Polls the token endpoint for `device` until the user side is done, it fails, or
    /// `timeout` passes. Polls every 100 ms (the rig's IdP does not enforce the interval).
    pub async fn poll_device(
        &self,
        device: &DeviceAuthorization,
        resource: Option<&str>,
        timeout: Duration,
    ) -> Result<TokenSet> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut form = vec![
                ("grant_type", DEVICE_CODE_GRANT),
                ("device_code", device.device_code.as_str()),
                ("client_id", CLIENT_ID),
            ];
            if let Some(resource) = resource {
                form.push(("resource", resource));
            }
            let mark = self.mark();
            match self.token_request_raw(&form).await? {
                Ok(tokens) => return Ok(tokens),
                Err((error, _)) if error == "authorization_pending" || error == "slow_down" => {}
                Err((error, description)) => bail!(
                    "the IdP refused the device code grant: {error}: {description}{}",
                    self.error_log(mark).await
                ),
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the device sign-in was not completed within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A whole device-flow login as `user`: device authorization, the user side, and polling.
    pub async fn device_login(
        &self,
        user: &str,
        scopes: &[&str],
        resource: Option<&str>,
    ) -> Result<TokenSet> {
        let device = self.device_authorize(scopes, resource).await?;
        self.complete_device(&device.user_code, user).await?;
        self.poll_device(&device, resource, Duration::from_secs(10))
            .await
    }

    /// Revokes a token (RFC 7009). Revoking a refresh token revokes its whole grant.
    pub async fn revoke(&self, token: &str) -> Result<()> {
        let endpoint = Url::parse(&self.endpoints.revocation_endpoint)?;
        let mark = self.mark();
        let form = [("token", token), ("client_id", CLIENT_ID)];
        let resp = self
            .send(
                self.http_client().post(endpoint.clone()).form(&form),
                &endpoint,
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!(
                "the IdP refused the revocation (HTTP {status}): {}{}",
                oauth_error(&body),
                self.error_log(mark).await
            );
        }
        Ok(())
    }

    /// Calls userinfo with an (opaque) access token and returns the claims.
    pub async fn userinfo(&self, access_token: &str) -> Result<serde_json::Value> {
        let endpoint = Url::parse(&self.endpoints.userinfo_endpoint)?;
        let resp = self
            .send(
                self.http_client()
                    .get(endpoint.clone())
                    .bearer_auth(access_token),
                &endpoint,
            )
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!(
                "the IdP's userinfo answered HTTP {status}: {}",
                oauth_error(&body)
            );
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Introspects a token (RFC 7662) as the desktop client; `{"active": false}` for dead ones.
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value> {
        let endpoint = Url::parse(&self.endpoints.introspection_endpoint)?;
        let form = [("token", token), ("client_id", CLIENT_ID)];
        let resp = self
            .send(
                self.http_client().post(endpoint.clone()).form(&form),
                &endpoint,
            )
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!(
                "the IdP's introspection answered HTTP {status}: {}",
                oauth_error(&body)
            );
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// The IdP's JWKS (public keys; the current signing key first).
    pub async fn jwks(&self) -> Result<serde_json::Value> {
        let endpoint = Url::parse(&self.endpoints.jwks_uri)?;
        let resp = self
            .send(self.http_client().get(endpoint.clone()), &endpoint)
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!("the IdP's JWKS answered HTTP {status}");
        }
        Ok(resp.json().await?)
    }

    /// The kid of the current signing key.
    pub async fn current_kid(&self) -> Result<String> {
        let url = Url::parse(&format!("{}/rig/keys", self.issuer()))?;
        let resp = self.send(self.http_client().get(url.clone()), &url).await?;
        let body: serde_json::Value = resp.json().await?;
        body["kid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the IdP's /rig/keys gave no kid: {body}"))
    }

    /// Adds a new signing key and makes it current; the old keys stay in the JWKS.
    pub async fn rotate_keys(&self) -> Result<()> {
        let url = Url::parse(&format!("{}/rig/rotate-keys", self.issuer()))?;
        let mark = self.mark();
        let resp = self
            .send(self.http_client().post(url.clone()), &url)
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!(
                "the IdP refused to rotate its keys (HTTP {status}): {body}{}",
                self.error_log(mark).await
            );
        }
        Ok(())
    }

    /// Stops the IdP (for outage tests): SIGTERM, then the process group is killed. The port,
    /// the keys and the provider's state stay for [`Idp::restart`]. Stopping a stopped IdP does
    /// nothing.
    pub async fn stop(&mut self) -> Result<()> {
        if self.owned.is_none() {
            bail!(
                "this IdP was attached to, not started by this rig; stop it where it was started"
            );
        }
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(process.pid(), libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process.stop().await;
        Ok(())
    }

    /// Starts the IdP again on the same port, with the same signing keys (including rotated
    /// ones) and the same state: sessions, grants and refresh tokens survive, so a refresh token
    /// issued before the stop still works after it. A running IdP is stopped first.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let mut last = None;
        // The port was ours a moment ago; give the kernel a moment if it is still held.
        for _ in 0..10 {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                Err(e) if format!("{e:#}").contains("EADDRINUSE") => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.context("restarting the rig's IdP")),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow!("unknown error"))
            .context(format!("restarting the rig's IdP on port {}", self.port)))
    }

    // -----------------------------------------------------------------------------------------

    async fn send(&self, req: reqwest::RequestBuilder, url: &Url) -> Result<reqwest::Response> {
        req.send().await.with_context(|| {
            format!(
                "calling the rig's IdP at {} (is it running?)\n{}",
                without_query(url),
                self.recent_output()
            )
        })
    }

    /// POSTs a token request; Ok(Err((error, description))) for an OAuth error answer.
    async fn token_request_raw(
        &self,
        form: &[(&str, &str)],
    ) -> Result<std::result::Result<TokenSet, (String, String)>> {
        let endpoint = Url::parse(&self.endpoints.token_endpoint)?;
        let mark = self.mark();
        let resp = self
            .send(
                self.http_client().post(endpoint.clone()).form(form),
                &endpoint,
            )
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if status.is_success() {
            let tokens: TokenSet = serde_json::from_str(&body).map_err(|e| {
                anyhow!("the IdP's token response is not what the rig expects: {e}")
            })?;
            return Ok(Ok(tokens));
        }
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let error = value["error"].as_str().unwrap_or("").to_string();
        if error.is_empty() {
            bail!(
                "the IdP's token endpoint answered HTTP {status} without an OAuth error: {}{}",
                truncate(&body, 300),
                self.error_log(mark).await
            );
        }
        let description = value["error_description"]
            .as_str()
            .unwrap_or("(no description)")
            .to_string();
        Ok(Err((error, description)))
    }

    async fn token_request(&self, form: &[(&str, &str)], what: &str) -> Result<TokenSet> {
        let mark = self.mark();
        match self.token_request_raw(form).await? {
            Ok(tokens) => Ok(tokens),
            Err((error, description)) => bail!(
                "the IdP refused the {what}: {error}: {description}{}",
                self.error_log(mark).await
            ),
        }
    }

    /// How many output lines of the IdP the rig holds now (see [`Idp::error_log`]).
    fn mark(&self) -> usize {
        self.process
            .as_ref()
            .map(|p| p.recent_output().lines().count())
            .unwrap_or(0)
    }

    /// The `IDP ERROR` lines the IdP printed since `mark` (they carry the reasons its OAuth
    /// answers hide), or the last one when the rig's output buffer is full.
    async fn error_log(&self, mark: usize) -> String {
        let Some(process) = &self.process else {
            return String::new();
        };
        // The IdP writes its log before it answers; give the rig's reader a moment to catch up.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let output = process.recent_output();
        let all: Vec<&str> = output.lines().collect();
        let fresh = if mark < all.len() && all.len() < crate::process::KEPT_LINES {
            &all[mark..]
        } else {
            &all[all.len().saturating_sub(1)..]
        };
        let lines: Vec<&str> = fresh
            .iter()
            .copied()
            .filter(|l| l.contains("IDP ERROR") || l.contains("IDP login refused"))
            .collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!("\nthe IdP logged:\n{}", lines.join("\n"))
        }
    }

    fn is_issuer(&self, url: &Url) -> bool {
        url.scheme() == "https"
            && url.host_str() == Some("127.0.0.1")
            && url.port_or_known_default() == Some(self.port)
    }

    /// Follows the IdP's redirects and fills its login and consent forms until the flow leaves
    /// the IdP (a redirect elsewhere) or ends on a page of the IdP that is not a form.
    async fn drive(
        &self,
        client: &reqwest::Client,
        mut resp: reqwest::Response,
        user: &str,
        mark: usize,
    ) -> Result<Outcome> {
        for _ in 0..MAX_STEPS {
            let status = resp.status();
            let url = resp.url().clone();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        anyhow!(
                            "the IdP answered {status} without a Location at {}",
                            without_query(&url)
                        )
                    })?;
                let next = url
                    .join(location)
                    .with_context(|| format!("the IdP redirected to a bad URL {location:?}"))?;
                if !self.is_issuer(&next) {
                    return Ok(Outcome::Redirect(next));
                }
                resp = self.send(client.get(next.clone()), &next).await?;
                continue;
            }
            let body = resp.text().await?;
            let prompt = capture(&body, r#"data-prompt="(\w+)""#);
            let uid = capture(&body, r#"data-uid="([^"]+)""#);
            if !status.is_success() {
                if status.as_u16() == 401 && prompt.as_deref() == Some("login") {
                    bail!("the IdP refused to sign in {user:?}: {}", page_error(&body),);
                }
                bail!(
                    "the IdP answered HTTP {status} at {}: {}{}",
                    without_query(&url),
                    page_error(&body),
                    self.error_log(mark).await
                );
            }
            let (Some(prompt), Some(uid)) = (prompt, uid) else {
                return Ok(Outcome::Page(body));
            };
            let action = Url::parse(&format!("{}/interaction/{uid}", self.issuer()))?;
            let form: Vec<(&str, &str)> = match prompt.as_str() {
                "login" => vec![
                    ("prompt", "login"),
                    ("login", user),
                    ("password", RIG_PASSWORD),
                ],
                "consent" => vec![("prompt", "consent")],
                other => bail!("the IdP shows a {other:?} prompt the rig cannot fill"),
            };
            resp = self
                .send(client.post(action.clone()).form(&form), &action)
                .await?;
        }
        bail!("signing in {user:?} at the rig's IdP took more than {MAX_STEPS} steps (a redirect loop?)")
    }
}

/// What a browser saw in a whole sign-in ([`Idp::follow_sign_in`]).
#[derive(Debug)]
pub struct FollowedSignIn {
    /// The final page's status (the client's callback page).
    pub status: u16,
    /// The final page's body.
    pub body: String,
    /// The authorization requests the browser was sent to, in order.
    pub requests: Vec<Url>,
}

enum Outcome {
    Redirect(Url),
    Page(String),
}

/// `tests/idp/server.mjs`.
pub fn server_script() -> PathBuf {
    tests_dir().join("idp/server.mjs")
}

/// Decodes the header of a JWT (no signature check).
pub fn jwt_header(token: &str) -> Result<serde_json::Value> {
    jwt_part(token, 0)
}

/// Decodes the payload of a JWT (no signature check).
pub fn jwt_payload(token: &str) -> Result<serde_json::Value> {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, index: usize) -> Result<serde_json::Value> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        bail!(
            "not a signed JWT (it has {} dot-separated parts, a JWS has 3)",
            parts.len()
        );
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(parts[index])
        .context("a JWT part is not base64url")?;
    serde_json::from_slice(&bytes).context("a JWT part is not JSON")
}

/// The GUID `tests/idp/profiles.mjs` gives a name (Entra's object IDs): SHA-256 of
/// `kind:name`, laid out 8-4-4-4-12 with the version and variant digits set.
pub fn guid(kind: &str, name: &str) -> String {
    let h: String = Sha256::digest(format!("{kind}:{name}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn capture(text: &str, pattern: &str) -> Option<String> {
    regex::Regex::new(pattern)
        .expect("a valid regex")
        .captures(text)
        .map(|c| c[1].to_string())
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `<p class="error">` text of an IdP page, or the page's text.
fn page_error(body: &str) -> String {
    let errors: Vec<String> = regex::Regex::new(r#"(?s)<p class="(?:error|detail)">(.*?)</p>"#)
        .expect("a valid regex")
        .captures_iter(body)
        .map(|c| html_unescape(&c[1]))
        .collect();
    if errors.is_empty() {
        page_text(body)
    } else {
        errors.join(" ")
    }
}

/// A page's text without tags, shortened, for messages.
fn page_text(body: &str) -> String {
    let text = regex::Regex::new(r"(?s)<style.*?</style>|<[^>]*>")
        .expect("a valid regex")
        .replace_all(body, " ");
    let text = html_unescape(&text);
    truncate(&text.split_whitespace().collect::<Vec<_>>().join(" "), 400)
}

fn oauth_error(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v["error"].is_string() => format!(
            "{}: {}",
            v["error"].as_str().unwrap_or_default(),
            v["error_description"]
                .as_str()
                .unwrap_or("(no description)")
        ),
        _ => truncate(body, 300),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

/// A URL for messages: no query (it may hold a code) and no fragment.
fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}
