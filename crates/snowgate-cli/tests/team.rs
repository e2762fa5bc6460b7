//! Team mode end to end: the real team server (`snowgate serve`, a subprocess on the rig's
//! PostgreSQL, trusting the rig's IdP, serving TLS from the rig CA), two real brokers
//! (`snowgate up` for alice and for bob, each with its own data dir, control socket and Secret
//! Service), the Snowflake front trusting only the server's JWKS, and the real Python
//! connector through alice's gateway.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use snowgate_rig::clients::{run_python, spawn_python, ClientRun, PythonDriver, RunningClient};
use snowgate_rig::idp::{Idp, IdpOptions, IdpProfile, CLIENT_ID};
use snowgate_rig::postgres::Postgres;
use snowgate_rig::secret_service::{KeyringState, SecretService};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use snowgate_rig::team::{self, TeamServer, TeamServerOptions};
use snowgate_rig::{free_port, TestCa};
use tokio::process::{Child, Command};

/// The `aud` the server requires of callers' IdP access tokens.
const API_AUDIENCE: &str = "https://snowgate.rig.test";
/// The `aud` of the Snowflake tokens the server mints (the front's default).
const SNOWFLAKE_AUDIENCE: &str = "https://snowflake.rig.test";

/// The `aud` of the tokens minted for the second account, `dev`.
const DEV_AUDIENCE: &str = "https://dev.snowflake.rig.test";

/// How the desktops authenticate to the team server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallerAuth {
    /// IdP access tokens for the server's audience.
    AccessToken,
    /// Fresh ID tokens exchanged for the server's session tokens; the server config has no
    /// API audience, and its approvers' group exists only in its `[[groups]]`.
    IdToken,
}

struct TeamRig {
    auth: CallerAuth,
    /// The IdP's provider profile; under any but `strict`, the server's and the desktops'
    /// configs are the ones `snowgate-rig up --team` writes for it.
    profile: IdpProfile,
    dir: tempfile::TempDir,
    ca: TestCa,
    idp: Idp,
    pg: Postgres,
    sf: Snowflake,
    /// With two accounts: `dev`'s front (`sf` is `prod`'s).
    dev: Option<Snowflake>,
    server_url: String,
    server: TeamServer,
}

impl TeamRig {
    async fn start() -> TeamRig {
        TeamRig::start_with(CallerAuth::AccessToken).await
    }

    async fn start_with(auth: CallerAuth) -> TeamRig {
        TeamRig::start_as(IdpProfile::Strict, auth, false).await
    }

    /// Two accounts: `prod` (ANALYST, approved by managers; READER, auto-approved) and `dev`
    /// (LOADER, auto-approved, minted for its own audience), each with its own front.
    async fn start_two_accounts() -> TeamRig {
        TeamRig::start_as(IdpProfile::Strict, CallerAuth::AccessToken, true).await
    }

    /// A rig whose IdP runs `profile`, with the server and desktop configs the rig writes for
    /// it (its caller auth, preset, and `[[groups]]` where the provider sends none).
    async fn start_profile(profile: IdpProfile) -> TeamRig {
        let auth = match team::caller_auth_for(profile) {
            "id_token" => CallerAuth::IdToken,
            _ => CallerAuth::AccessToken,
        };
        TeamRig::start_as(profile, auth, false).await
    }

    async fn start_as(profile: IdpProfile, auth: CallerAuth, two_accounts: bool) -> TeamRig {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
        let opts = IdpOptions {
            profile,
            snowflake_audience: API_AUDIENCE.to_string(),
            ..IdpOptions::default()
        };
        let (idp, pg) = tokio::join!(Idp::start(&ca, opts), Postgres::start());
        let (idp, pg) = (idp.unwrap(), pg.unwrap());
        let role = |approvers: &str| {
            format!(
                "[[roles]]\nname = \"ANALYST\"\ndescription = \"Analytics\"\nmax_duration = \"8h\"\napprovers = [\"{approvers}\"]\n"
            )
        };
        let options = match auth {
            _ if profile != IdpProfile::Strict => {
                let key = dir.path().join("session.key");
                team::generate_session_key(&key).await.unwrap();
                TeamServerOptions::for_idp(
                    &idp,
                    &pg.url(),
                    SNOWFLAKE_AUDIENCE,
                    &role(&idp.group_name("managers")),
                    &key,
                    &[("managers", &["bob"])],
                )
            }
            CallerAuth::AccessToken if two_accounts => TeamServerOptions {
                issuer: idp.issuer(),
                api_audience: API_AUDIENCE.to_string(),
                minting_audience: SNOWFLAKE_AUDIENCE.to_string(),
                database_url: pg.url(),
                roles: role("managers").replace(
                    "name = \"ANALYST\"\n",
                    "name = \"ANALYST\"\naccount = \"prod\"\n",
                ) + "\n[[roles]]\nname = \"READER\"\naccount = \"prod\"\nmax_duration = \"1h\"\nauto_approve_up_to = \"1h\"\n\n\
                     [[roles]]\nname = \"LOADER\"\naccount = \"dev\"\nmax_duration = \"1h\"\nauto_approve_up_to = \"1h\"\n",
                identity_extra: String::new(),
                tail: format!(
                    "\n[[snowflake]]\nname = \"prod\"\n\n[[snowflake]]\nname = \"dev\"\naudience = \"{DEV_AUDIENCE}\"\n"
                ),
                minting_extra: String::new(),
            },
            CallerAuth::AccessToken => TeamServerOptions {
                issuer: idp.issuer(),
                api_audience: API_AUDIENCE.to_string(),
                minting_audience: SNOWFLAKE_AUDIENCE.to_string(),
                database_url: pg.url(),
                roles: role("managers"),
                identity_extra: String::new(),
                tail: String::new(),
                minting_extra: String::new(),
            },
            CallerAuth::IdToken => {
                let key = dir.path().join("session.key");
                let out = Command::new("openssl")
                    .args(["rand", "-out"])
                    .arg(&key)
                    .arg("48")
                    .output()
                    .await
                    .unwrap();
                assert!(out.status.success(), "openssl rand failed");
                TeamServerOptions {
                    issuer: idp.issuer(),
                    api_audience: String::new(),
                    minting_audience: SNOWFLAKE_AUDIENCE.to_string(),
                    database_url: pg.url(),
                    roles: role("data-approvers"),
                    minting_extra: String::new(),
                    identity_extra: format!(
                        "caller_auth = \"id_token\"\nclient_id = \"{CLIENT_ID}\"\ngroups_from = \"config\"\n"
                    ),
                    tail: format!(
                        "[sessions]\nkey_files = [\"{}\"]\n\n[[groups]]\nname = \"data-approvers\"\nsubjects = [\"bob\"]\n",
                        key.display()
                    ),
                }
            }
        };
        let server = TeamServer::start(
            Path::new(env!("CARGO_BIN_EXE_snowgate")),
            dir.path(),
            &ca,
            &options,
        )
        .await
        .unwrap();
        let server_url = server.url().to_string();
        let dev = match two_accounts {
            true => Some(
                Snowflake::start(SnowflakeOptions {
                    jwks_urls: vec![server.jwks_url()],
                    issuers: vec![server_url.clone()],
                    audience: DEV_AUDIENCE.to_string(),
                    ca_file: Some(ca.ca_file.clone()),
                    ..SnowflakeOptions::default()
                })
                .await
                .unwrap(),
            ),
            false => None,
        };
        TeamRig {
            dev,
            auth,
            profile,
            sf: Snowflake::start(SnowflakeOptions {
                jwks_urls: vec![server.jwks_url()],
                issuers: vec![server_url.clone()],
                audience: SNOWFLAKE_AUDIENCE.to_string(),
                ca_file: Some(ca.ca_file.clone()),
                ..SnowflakeOptions::default()
            })
            .await
            .unwrap(),
            dir,
            ca,
            idp,
            pg,
            server_url,
            server,
        }
    }

    /// Starts `snowgate serve` again and waits until `/healthz` answers.
    async fn start_server(&mut self) {
        self.server.launch().await.unwrap();
    }

    async fn stop_server(&mut self) {
        self.server.stop().await;
    }

    /// A desktop for `user`: its own dir, config, Secret Service, gateway port and broker.
    async fn desk(&self, user: &str) -> Desk {
        self.desk_with(user, self.auth, true).await
    }

    /// A desktop that authenticates with `auth` (which may differ from the server's), waiting
    /// for the event stream only with `wait_for_events`.
    async fn desk_with(&self, user: &str, auth: CallerAuth, wait_for_events: bool) -> Desk {
        let dir = self.dir.path().join(user);
        std::fs::create_dir_all(dir.join("runtime")).unwrap();
        let keyring = SecretService::start(KeyringState::Unlocked).await.unwrap();
        let port = free_port().unwrap();
        let config = if self.profile != IdpProfile::Strict {
            team::desktop_config(
                &self.idp,
                &self.ca,
                &self.server_url,
                &self.sf.url(),
                "rigacct",
                &format!("127.0.0.1:{port}"),
            )
        } else {
            format!(
                r#"
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["openid", "profile", "email", "groups", "offline_access"]
snowflake_audience = "{SNOWFLAKE_AUDIENCE}"
extra_ca_file = "{ca}"

[snowflake]
account = "rigacct"
url = "{sf_url}"

[gateway]
listen = "127.0.0.1:{port}"

[team]
server = "{server}"
{team_auth}
"#,
                issuer = self.idp.issuer(),
                ca = self.ca.ca_file.display(),
                sf_url = self.sf.url(),
                server = self.server_url,
                team_auth = match auth {
                    CallerAuth::AccessToken => format!("audience = \"{API_AUDIENCE}\""),
                    CallerAuth::IdToken => "auth = \"id_token\"".to_string(),
                },
            )
        };
        let config = match &self.dev {
            Some(dev) => {
                let one = format!(
                    "[snowflake]\naccount = \"rigacct\"\nurl = \"{}\"\n",
                    self.sf.url()
                );
                assert!(config.contains(&one), "{config}");
                config.replace(
                    &one,
                    &format!(
                        "[[snowflake]]\nname = \"prod\"\naccount = \"rigacct\"\nurl = \"{}\"\n\n\
                         [[snowflake]]\nname = \"dev\"\naccount = \"rigdev\"\nurl = \"{}\"\n",
                        self.sf.url(),
                        dev.url()
                    ),
                )
            }
            None => config,
        };
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut desk = Desk {
            user: user.to_string(),
            dir,
            keyring,
            port,
            broker: None,
        };
        desk.start_broker().await;
        let (ok, _, err) = desk
            .with_sign_in(&self.idp, &["login", "--no-browser"])
            .await;
        assert!(ok, "{user}'s login failed: {err}\n{}", desk.log_tail());
        if !wait_for_events {
            return desk;
        }
        // Signed in, the broker opens the server's event stream.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = desk.status().await;
            if status["team"]["events"] == "connected" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{user}'s broker did not open the event stream: {status:#}\n{}",
                desk.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        desk
    }
}

/// One person's desktop: a broker of their own.
struct Desk {
    user: String,
    dir: PathBuf,
    keyring: SecretService,
    port: u16,
    broker: Option<Child>,
}

impl Desk {
    fn snowgate(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_snowgate"));
        let p = |s: &str| self.dir.join(s).display().to_string();
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.keyring.env())
            .env("XDG_RUNTIME_DIR", p("runtime"))
            .env("SNOWGATE_CONFIG", p("config.toml"))
            .env("SNOWGATE_DATA_DIR", p("data"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn start_broker(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child = self
            .snowgate(&["up"])
            .env("RUST_LOG", "info,snowgate_engine=debug")
            .stderr(log)
            .spawn()
            .unwrap();
        self.broker = Some(child);
        for _ in 0..400 {
            if self.run(&["status"]).await.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{}'s broker did not open its control socket\n{}",
            self.user,
            self.log_tail()
        );
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.snowgate(args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(
            ok,
            "{}: snowgate {args:?} failed: {err}\n{}",
            self.user,
            self.log_tail()
        );
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args).await).unwrap()
    }

    async fn status(&self) -> Value {
        self.json(&["status", "--json"]).await
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs a command that prints a sign-in URL first; the rig's browser signs this user in.
    async fn with_sign_in(&self, idp: &Idp, args: &[&str]) -> (bool, String, String) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = self
            .snowgate(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("the command printed no URL")
            .unwrap();
        if let Some(url) = line {
            if let Err(e) = idp.complete_login_and_follow(url.trim(), &self.user).await {
                panic!("signing {} in at the IdP: {e:#}", self.user);
            }
        }
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.success(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `snowgate request ANALYST` as this user; the grant id.
    async fn request(&self, duration: &str) -> String {
        self.ok(&[
            "request",
            "ANALYST",
            "--duration",
            duration,
            "--reason",
            "quarterly revenue report",
        ])
        .await
        .trim()
        .to_string()
    }

    fn python(&self, scenario: &str) -> ClientRun {
        ClientRun::password(
            &format!("http://127.0.0.1:{}", self.port),
            "anyone",
            "any-password",
            scenario,
        )
        .timeout(Duration::from_secs(60))
    }

    /// A Python connector holding a session as ANALYST through this gateway, querying every
    /// 0.2 s; the front's session id.
    async fn hold(&self, secs: u32) -> (RunningClient, u64) {
        let run = self.python("hold").role("ANALYST").arg([
            "--interval",
            "0.2",
            "--duration",
            &secs.to_string(),
        ]);
        let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
        let wait = Duration::from_secs(20);
        let connected = client.next_line(wait).await.unwrap().unwrap();
        assert_eq!(
            connected["event"],
            "connected",
            "{connected:#}\n{}",
            self.log_tail()
        );
        let session = connected["session_id"].as_u64().unwrap();
        let first = client.next_line(wait).await.unwrap().unwrap();
        assert_eq!(first["ok"], true, "{first:#}");
        (client, session)
    }

    async fn stop(&mut self) {
        if let Some(mut b) = self.broker.take() {
            let _ = b.kill().await;
            let _ = b.wait().await;
        }
    }
}

/// Polls `desk`'s status until its last event from the server is `event` for `grant`.
async fn wait_for_event(desk: &Desk, event: &str, grant: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let status = desk.status().await;
        let last = &status["team"]["last_event"];
        if last["event"] == event && last["grant"] == grant {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{}'s broker did not receive `{event}` for {grant} over the event stream: {status:#}\n{}",
            desk.user,
            desk.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next refused line of a holding client.
async fn next_refusal(client: &mut RunningClient) -> Value {
    loop {
        let line = client
            .next_line(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("the tool ended before it was refused");
        if line["ok"] == false {
            return line;
        }
    }
}

/// Alice requests, bob's broker hears it over the event stream and bob approves with his own
/// sign-in; alice's connector gets a session whose token the server minted.
async fn approved_grant(rig: &TeamRig, alice: &Desk, bob: &Desk) -> String {
    let id = alice.request("1h").await;
    assert!(id.starts_with("g_"), "{id}");
    // Bob's broker got the request as an event (no call of bob's to the server made it so).
    wait_for_event(bob, "requested", &id, Duration::from_secs(10)).await;
    let (ok, _, err) = bob.run(&["approve", &id, "--comment", "ok for Q3"]).await;
    assert!(ok, "bob's approval failed: {err}\n{}", bob.log_tail());
    // Alice's broker hears of the activation over its own stream.
    wait_for_event(alice, "activated", &id, Duration::from_secs(10)).await;
    let _ = rig;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_the_approver_over_sse_and_is_approved_from_his_own_machine() {
    let rig = TeamRig::start().await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));

    let status = alice.status().await;
    assert_eq!(status["mode"], "team", "{status:#}");
    assert_eq!(status["team_server"], rig.server_url.as_str());
    // The desktop config has no [[roles]]: the roles are the server's.
    let roles = alice.json(&["roles", "--json"]).await;
    assert_eq!(roles[0]["name"], "ANALYST", "{roles:#}");
    assert_eq!(roles[0]["approver_groups"][0], "managers");

    // Before a grant, the gateway refuses.
    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    let (_, msg) = support::py_error(&r);
    assert!(msg.contains("no active access"), "{msg}");

    let id = alice.request("1h").await;
    let bob_status = wait_for_event(&bob, "requested", &id, Duration::from_secs(10)).await;
    assert_eq!(bob_status["team"]["events"], "connected", "{bob_status:#}");
    let waiting = bob.json(&["grants", "--all", "--json"]).await;
    assert!(
        waiting
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == id.as_str() && g["state"] == "pending"),
        "{waiting:#}"
    );
    // No browser: the command finishes on its own, with bob's own sign-in.
    let t0 = Instant::now();
    let (ok, out, err) = bob.run(&["approve", &id, "--comment", "ok for Q3"]).await;
    assert!(ok, "{err}\n{}", bob.log_tail());
    assert!(
        !out.contains("http"),
        "an approver sign-in URL was printed: {out}"
    );
    println!("bob's approval took {:?}", t0.elapsed());
    wait_for_event(&alice, "activated", &id, Duration::from_secs(10)).await;

    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    let sessions = rig.sf.sessions().await.unwrap();
    let s = sessions.last().unwrap();
    assert_eq!(s.login_name, "alice");
    assert_eq!(s.role, "ANALYST");
    // The token came from the team server, not the IdP.
    assert_eq!(s.token_iss.as_deref(), Some(rig.server_url.as_str()));
    let tag = format!("snowgate:grant={id}");
    assert_eq!(s.query_tag.as_deref(), Some(tag.as_str()), "{s:#?}");

    // Alice's gateway session and its statements reach the server's audit log, as alice;
    // bob (an approver, so an audit reader) sees them with `snowgate audit` in team mode.
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let records = bob.json(&["audit", "--json"]).await;
        let kinds: Vec<&str> = records
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["grant_id"] == id.as_str())
            .filter_map(|r| r["kind"].as_str())
            .collect();
        if kinds.contains(&"session.opened") && kinds.contains(&"session.closed") {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "alice's session did not reach the server's audit log: {kinds:?}\n{}",
            alice.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let of_session: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["grant_id"] == id.as_str())
        .filter(|r| {
            r["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("session."))
        })
        .collect();
    assert!(
        of_session.iter().all(|r| r["actor"] == "user:alice"),
        "{of_session:#?}"
    );
    assert!(
        of_session.iter().any(|r| r["kind"] == "session.statement"),
        "{of_session:#?}"
    );
    let verified = bob.ok(&["audit", "verify"]).await;
    assert!(verified.contains("is intact"), "{verified}");
    // The export is the server's whole log as JSON Lines, alice's session records among them.
    let export = bob.ok(&["audit", "export", "--format", "jsonl"]).await;
    let exported: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("each exported line is JSON"))
        .collect();
    assert!(
        exported.len() >= records.as_array().unwrap().len(),
        "{export}"
    );
    assert!(
        exported
            .iter()
            .any(|r| r["grant_id"] == id.as_str() && r["kind"] == "session.statement"),
        "{export}"
    );

    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_mode_works_when_the_idp_gives_only_id_tokens_and_no_groups_the_server_uses() {
    let mut rig = TeamRig::start_with(CallerAuth::IdToken).await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));

    // Bob's broker exchanged an ID token; the server resolved his groups from its
    // [[groups]] (the IdP's own groups claim is ignored with groups_from = "config").
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = bob.status().await;
        if status["team"]["caller"]["subject"] == "bob" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bob's status never showed the server's view of him: {status:#}\n{}",
            bob.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["team"]["auth"], "id_token", "{status:#}");
    assert_eq!(
        status["team"]["caller"]["groups"],
        serde_json::json!(["data-approvers"]),
        "{status:#}"
    );
    let who = bob.ok(&["whoami"]).await;
    assert!(
        who.contains("Groups at the team server: data-approvers"),
        "{who}"
    );
    let text = bob.ok(&["status"]).await;
    assert!(text.contains("groups: data-approvers"), "{text}");

    // The whole flow: request, approval over SSE by a [[groups]] approver, a Snowflake login
    // with the token the server minted, trusted by the front through the server's JWKS only.
    let id = approved_grant(&rig, &alice, &bob).await;
    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    let sessions = rig.sf.sessions().await.unwrap();
    let s = sessions.last().unwrap();
    assert_eq!(s.login_name, "alice");
    assert_eq!(s.role, "ANALYST");
    assert_eq!(s.token_iss.as_deref(), Some(rig.server_url.as_str()));
    let tag = format!("snowgate:grant={id}");
    assert_eq!(s.query_tag.as_deref(), Some(tag.as_str()), "{s:#?}");

    // `snowgate doctor` in team mode: the server's health, keys and caller auth, the token it
    // minted for alice's grant, and a login through her gateway.
    let (ok, out, err) = alice.run(&["doctor", "--json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert!(ok, "{report:#}\n{}", alice.log_tail());
    let outcome = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["outcome"].clone())
            .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
    };
    for name in [
        "team server health",
        "team server JWKS",
        "team server caller auth",
        "Snowflake token for ANALYST",
        "Snowflake login through the gateway as ANALYST",
    ] {
        assert_eq!(outcome(name), "ok", "{name}: {report:#}");
    }
    // Alice is in no group at the server: worth knowing, not a failure.
    assert_eq!(outcome("groups"), "warn", "{report:#}");
    assert_eq!(report["integration"]["issuer"], rig.server_url.as_str());
    assert_eq!(
        report["integration"]["audience_list"],
        serde_json::json!([SNOWFLAKE_AUDIENCE])
    );

    // Alice is no approver at the server: her decision is refused there.
    let id2 = alice.request("30m").await;
    let (ok, _, err) = alice.run(&["approve", &id2, "--comment", "self"]).await;
    assert!(!ok, "alice approved her own request");
    assert!(!err.is_empty());

    // The server's log shows sessions, not raw ID tokens as bearers.
    let log = std::fs::read_to_string(rig.server.log_file()).unwrap();
    assert!(
        log.contains("exchanged an ID token for a session"),
        "{}",
        rig.server.log_tail(20)
    );

    // The server comes back with a new session key: every session it signed before is
    // refused, and the desktops exchange a fresh ID token on their own.
    rig.stop_server().await;
    let out = Command::new("openssl")
        .args(["rand", "-out"])
        .arg(rig.dir.path().join("session.key"))
        .arg("48")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    rig.start_server().await;
    // Several calls refused together (with the event stream reconnecting too) exchange again
    // without discarding each other's new session, and the IdP's same-second ID tokens are
    // not sent twice.
    let (a, b, c) = tokio::join!(
        alice.json(&["grants", "--json"]),
        alice.json(&["grants", "--json"]),
        alice.json(&["grants", "--json"]),
    );
    for grants in [a, b, c] {
        assert!(
            grants
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["id"] == id.as_str()),
            "{grants:#}"
        );
    }
    let exchanges = |log: &str| log.matches("exchanged an ID token for a session").count();
    let before = exchanges(&log);
    let after = exchanges(&std::fs::read_to_string(rig.server.log_file()).unwrap());
    assert!(after > before, "no new exchange after the key change");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_mode_works_end_to_end_with_the_google_profile_and_the_configs_the_rig_writes() {
    // The IdP acts as Google does: ID tokens only, no groups, refresh tokens through
    // access_type=offline, and it refuses `resource`, `offline_access`, `groups` and role
    // scopes. The server and desktop configs are the ones `snowgate-rig up --profile google
    // --team` writes: provider = "google", [team] auth = "id_token", caller_auth = "id_token"
    // and the approvers' group in [[groups]], by verified email.
    let rig = TeamRig::start_profile(IdpProfile::Google).await;
    assert_eq!(rig.auth, CallerAuth::IdToken);
    let desk_config = team::desktop_config(
        &rig.idp,
        &rig.ca,
        &rig.server_url,
        &rig.sf.url(),
        "rigacct",
        "127.0.0.1:1",
    );
    assert!(
        desk_config.contains("provider = \"google\""),
        "{desk_config}"
    );
    assert!(desk_config.contains("auth = \"id_token\""), "{desk_config}");
    let server_config = std::fs::read_to_string(rig.server.config_file()).unwrap();
    assert!(
        server_config.contains("caller_auth = \"id_token\"")
            && server_config
                .contains("[[groups]]\nname = \"managers\"\nemails = [\"bob@example.test\"]"),
        "{server_config}"
    );
    let (ok, _, err) = serve_check(&rig).await;
    assert!(
        ok,
        "snowgate serve --check refused the rig's server config: {err}"
    );

    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    // Bob is an approver through the server's [[groups]]: Google sent no groups.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = bob.status().await;
        if status["team"]["caller"]["groups"] == serde_json::json!(["managers"]) {
            assert_eq!(status["team"]["auth"], "id_token", "{status:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's status never showed the server's groups for him: {status:#}\n{}",
            bob.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alice requests, bob approves from his machine, alice's Python connector queries through
    // her gateway with the token the server minted; the front trusts only the server's JWKS.
    let id = approved_grant(&rig, &alice, &bob).await;
    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    let sessions = rig.sf.sessions().await.unwrap();
    let s = sessions.last().unwrap();
    assert_eq!(s.login_name, "alice@example.test", "{s:#?}");
    assert_eq!(s.role, "ANALYST");
    assert_eq!(s.token_iss.as_deref(), Some(rig.server_url.as_str()));
    let tag = format!("snowgate:grant={id}");
    assert_eq!(s.query_tag.as_deref(), Some(tag.as_str()), "{s:#?}");

    // Nothing Google refuses was asked of the IdP: no `resource`, no audience, no scope beyond
    // openid, profile and email (the profile logs every refusal), and the server saw ID-token
    // exchanges, not IdP access tokens.
    let idp_log = rig.idp.recent_output();
    assert!(
        !idp_log.contains("IDP ERROR"),
        "the IdP refused a request:\n{idp_log}"
    );
    let log = std::fs::read_to_string(rig.server.log_file()).unwrap();
    assert!(
        log.contains("exchanged an ID token for a session"),
        "{}",
        rig.server.log_tail(20)
    );
    alice.stop().await;
    bob.stop().await;
}

/// `snowgate serve --check` on the rig's server config: (success, stdout, stderr).
async fn serve_check(rig: &TeamRig) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .arg("--config")
        .arg(rig.server.config_file())
        .args(["serve", "--check"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_sending_access_tokens_to_an_id_token_server_is_told_which_setting_to_change() {
    let rig = TeamRig::start_with(CallerAuth::IdToken).await;
    let mut alice = rig.desk_with("alice", CallerAuth::AccessToken, false).await;
    let (ok, _, err) = alice.run(&["roles"]).await;
    assert!(!ok, "the server took an access token it was told not to");
    assert!(err.contains("[team] auth = \"id_token\""), "{err}");
    let (ok, out, _) = alice.run(&["doctor", "--json"]).await;
    assert!(!ok, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let health = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "team server health")
        .unwrap();
    assert_eq!(health["outcome"], "fail", "{report:#}");
    assert_eq!(
        health["fix"],
        "set [team] auth = \"id_token\" in this desktop's config"
    );
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_by_the_approver_cuts_the_session_within_five_seconds() {
    let rig = TeamRig::start().await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    let id = approved_grant(&rig, &alice, &bob).await;
    let (mut client, sf_session) = alice.hold(60).await;

    let t0 = Instant::now();
    bob.ok(&["revoke", &id, "--comment", "project ended"]).await;
    let deadline = t0 + Duration::from_secs(5);
    let closed = loop {
        if !rig.sf.session(sf_session).await.unwrap().open {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "alice's session is still open 5 s after bob's revocation\n{}",
            alice.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = closed - t0;
    println!("team revocation → session closed at the front: {took:?} (bob's CLI, server, SSE, alice's gateway)");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let refused = next_refusal(&mut client).await;
    let msg = refused["error"]["msg"].as_str().unwrap_or("");
    assert!(msg.contains("(revoked)"), "{refused:#}");
    client.kill();
    // A new login is refused too.
    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    let (_, msg) = support::py_error(&r);
    assert!(
        msg.contains("(revoked)") || msg.contains("no active access"),
        "{msg}"
    );

    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_approves_their_own_request_and_outsiders_decide_nothing() {
    let rig = TeamRig::start().await;
    let (mut alice, mut mallory) = tokio::join!(rig.desk("alice"), rig.desk("mallory"));
    let id = alice.request("1h").await;

    let (ok, _, err) = alice.run(&["approve", &id]).await;
    println!("alice's own approval is refused with: {}", err.trim());
    assert!(!ok, "alice approved her own request");
    assert!(err.contains("your own request"), "{err}");

    let (ok, _, err) = mallory.run(&["approve", &id]).await;
    println!("mallory's approval is refused with: {}", err.trim());
    assert!(!ok, "mallory approved");
    // She may not see alice's grant, so she learns nothing of it.
    assert!(
        err.contains("no grant") && err.contains("you can act on"),
        "{err}"
    );
    assert!(!err.contains("ANALYST"), "{err}");
    let (ok, _, err) = mallory.run(&["deny", &id, "--comment", "no"]).await;
    assert!(!ok, "mallory denied");
    assert!(!err.trim().is_empty());
    let (ok, _, err) = mallory.run(&["revoke", &id, "--comment", "no"]).await;
    assert!(!ok, "mallory revoked");
    assert!(!err.trim().is_empty());
    // Nothing changed: the request still waits.
    let g = alice.json(&["grants", "--json"]).await;
    assert_eq!(g[0]["id"], id.as_str(), "{g:#}");
    assert_eq!(g[0]["state"], "pending", "{g:#}");

    alice.stop().await;
    mallory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_server_active_grants_keep_working_and_new_requests_fail_clearly() {
    let mut rig = TeamRig::start().await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    approved_grant(&rig, &alice, &bob).await;
    let (mut client, sf_session) = alice.hold(60).await;

    rig.stop_server().await;
    // The held session goes on querying.
    for _ in 0..5 {
        let line = client
            .next_line(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the tool ended");
        assert_eq!(line["ok"], true, "{line:#}\n{}", alice.log_tail());
    }
    assert!(rig.sf.session(sf_session).await.unwrap().open);
    // A new login uses the token minted before.
    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());

    // The status says so.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = alice.status().await;
        let note = status["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .find(|n| n.starts_with("team server unreachable"))
            .map(str::to_string);
        if status["team"]["reachable"] == false {
            let note = note.unwrap_or_else(|| panic!("no note: {status:#}"));
            assert!(note.contains(&rig.server_url), "{note}");
            break;
        }
        assert!(Instant::now() < deadline, "still reachable: {status:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = alice.ok(&["status"]).await;
    assert!(text.contains("team server unreachable"), "{text}");

    // A new request fails at once, naming the server and the cause; nothing is queued.
    let (ok, _, err) = alice
        .run(&[
            "request",
            "ANALYST",
            "--duration",
            "1h",
            "--reason",
            "more numbers",
        ])
        .await;
    assert!(!ok, "a request succeeded without the server");
    assert!(err.contains(&rig.server_url), "{err}");
    assert!(err.contains("can't be reached"), "{err}");

    // The server comes back: events flow again and requests work.
    rig.start_server().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = alice.status().await;
        if status["team"]["reachable"] == true && status["team"]["events"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {status:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = alice.request("30m").await;
    wait_for_event(&bob, "requested", &id, Duration::from_secs(10)).await;
    client.kill();

    alice.stop().await;
    bob.stop().await;
}

/// Asserts that each of `waiting` (records `who`'s desktop reported) is in the server's log
/// exactly once, in the order given; `reader` reads the log.
async fn assert_each_once_in_order(reader: &Desk, who: &str, waiting: &[(String, Value)]) {
    let records = reader.json(&["audit", "--json"]).await;
    let from_them: Vec<(String, Value)> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == format!("user:{who}") && r["details"]["source"] == "desktop")
        .map(|r| {
            let mut d = r["details"].clone();
            d.as_object_mut().unwrap().remove("source");
            (r["kind"].as_str().unwrap().to_string(), d)
        })
        .collect();
    let mut last = None;
    for w in waiting {
        let at: Vec<usize> = from_them
            .iter()
            .enumerate()
            .filter(|(_, r)| *r == w)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            at.len(),
            1,
            "{w:?} is in the server's log {} times",
            at.len()
        );
        assert!(last < Some(at[0]), "{w:?} arrived out of order");
        last = Some(at[0]);
    }
}

/// Waits until `desk`'s outbox has nothing left for the team server.
async fn wait_for_empty_outbox(desk: &Desk, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = desk.status().await;
        if status["team"]["audit"]["waiting"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not empty: {status:#}\n{}",
            desk.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The records in a stopped desk's outbox, oldest first: (kind, details).
async fn outbox_of(desk: &Desk) -> Vec<(String, Value)> {
    let ledger = desk.dir.join("data").join("ledger.sqlite3");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sqlite3,sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             print(json.dumps([[k, d] for k, d in c.execute('SELECT kind, details FROM outbox ORDER BY id')]))",
        ])
        .arg(&ledger)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|(k, d)| (k, serde_json::from_str(&d).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_outlive_an_outage_and_a_restart_and_arrive_once_in_order() {
    let mut rig = TeamRig::start().await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    approved_grant(&rig, &alice, &bob).await;
    let (mut client, _) = alice.hold(60).await;

    // The server goes away while statements run; more sessions come and go.
    rig.stop_server().await;
    for _ in 0..2 {
        let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
            .await
            .unwrap();
        assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    }
    for _ in 0..5 {
        let line = client.next_line(Duration::from_secs(10)).await.unwrap();
        assert_eq!(line.unwrap()["ok"], true);
    }
    let status = alice.status().await;
    assert!(
        status["team"]["audit"]["waiting"].as_u64().unwrap_or(0) > 0,
        "{status:#}"
    );
    let text = alice.ok(&["status"]).await;
    assert!(text.contains("wait for the team server"), "{text}");

    // The broker dies (kill -9) and starts again; the records still wait, on disk.
    alice.stop().await;
    client.kill();
    let waiting = outbox_of(&alice).await;
    let statements = waiting
        .iter()
        .filter(|(k, _)| k == "session.statement")
        .count();
    assert!(statements >= 7, "{waiting:#?}");
    alice.start_broker().await;
    let status = alice.status().await;
    assert_eq!(
        status["team"]["audit"]["waiting"].as_u64(),
        Some(waiting.len() as u64),
        "{status:#}"
    );

    // The server comes back: the outbox empties, and the server's log has each record once,
    // in the order the desktop wrote them.
    rig.start_server().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = alice.status().await;
        if status["team"]["audit"]["waiting"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not empty: {status:#}\n{}",
            alice.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_each_once_in_order(&bob, "alice", &waiting).await;
    let verified = bob.ok(&["audit", "verify"]).await;
    assert!(verified.contains("is intact"), "{verified}");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_server_took_before_the_broker_removed_it_is_sent_again_and_lands_once() {
    let mut rig = TeamRig::start().await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    approved_grant(&rig, &alice, &bob).await;

    // A first query mints the Snowflake token while the server is up; then statements run
    // while the server is away, and their records wait in the outbox. Then the broker is
    // killed (-9).
    let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    wait_for_empty_outbox(&alice, Duration::from_secs(30)).await;
    rig.stop_server().await;
    for _ in 0..2 {
        let r = run_python(PythonDriver::V5, &alice.python("smoke").role("ANALYST"))
            .await
            .unwrap();
        assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    }
    alice.stop().await;
    let waiting = outbox_of(&alice).await;
    assert!(waiting.len() >= 6, "{waiting:#?}");

    // The server comes back and takes the first records of the outbox, sent as the broker
    // sends them (its source id, the records' ids, the engine's report body), but nothing
    // removes them from the outbox: as if the broker died after the server committed the
    // batch and before its answer arrived.
    rig.start_server().await;
    let ledger =
        snowgate_grants::SqliteLedger::open(&alice.dir.join("data").join("ledger.sqlite3"))
            .await
            .unwrap();
    let outbox = ledger.outbox();
    let batch = outbox.peek(4).await.unwrap();
    let body = snowgate_engine::team::audit::report_body(&outbox.source().await.unwrap(), &batch);
    ledger.close().await;
    let token = rig
        .idp
        .login("alice", &["openid", "email", "groups"], Some(API_AUDIENCE))
        .await
        .unwrap()
        .access_token;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&rig.ca.ca_file).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .no_proxy()
        .build()
        .unwrap();
    let taken: Value = http
        .post(format!("{}/v1/audit/records", rig.server_url))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(taken["appended"], 4, "{taken:#}");
    assert_eq!(outbox_of(&alice).await.len(), waiting.len());

    // The broker starts again and sends its whole outbox, that batch included: the server
    // acknowledges what it has and appends the rest.
    alice.start_broker().await;
    wait_for_empty_outbox(&alice, Duration::from_secs(60)).await;
    assert!(outbox_of(&alice).await.is_empty());
    assert_each_once_in_order(&bob, "alice", &waiting).await;
    let verified = bob.ok(&["audit", "verify"]).await;
    assert!(verified.contains("is intact"), "{verified}");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_persons_records_wait_on_the_desktop_until_that_person_signs_in_again() {
    let mut rig = TeamRig::start().await;
    let (mut desk, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    approved_grant(&rig, &desk, &bob).await;

    // Alice's statements run while the server is away (with the token minted before), and she
    // signs out before their records went.
    let r = run_python(PythonDriver::V5, &desk.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", desk.log_tail());
    wait_for_empty_outbox(&desk, Duration::from_secs(30)).await;
    rig.stop_server().await;
    let r = run_python(PythonDriver::V5, &desk.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", desk.log_tail());
    desk.ok(&["logout"]).await;
    rig.start_server().await;

    // Bob signs in on her desktop. His records go; hers are not sent as his, and wait.
    desk.user = "bob".into();
    let (ok, _, err) = desk
        .with_sign_in(&rig.idp, &["login", "--no-browser"])
        .await;
    assert!(ok, "bob's login failed: {err}\n{}", desk.log_tail());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = desk.status().await;
        let audit = &status["team"]["audit"];
        if audit["others"].as_u64().unwrap_or(0) > 0 && audit["waiting"] == audit["others"] {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bob's records did not go, or alice's were not kept apart: {status:#}\n{}",
            desk.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["team"]["audit"]["other_people"], 1, "{status:#}");
    let text = desk.ok(&["status"]).await;
    assert!(text.contains("of another person who signed out"), "{text}");
    assert!(text.contains("when that person signs in again"), "{text}");
    let waiting: Vec<(String, Value)> = outbox_of(&desk).await;
    assert!(
        waiting.iter().any(|(k, _)| k == "session.statement"),
        "{waiting:#?}"
    );
    let log = bob.json(&["audit", "--json"]).await;
    let statements_as_bob = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "user:bob" && r["kind"] == "session.statement")
        .count();
    assert_eq!(
        statements_as_bob, 0,
        "alice's statements were sent as bob's: {log:#}"
    );

    // Bob signs out and alice signs in again: her records go, each once and in order.
    desk.ok(&["logout"]).await;
    desk.user = "alice".into();
    let (ok, _, err) = desk
        .with_sign_in(&rig.idp, &["login", "--no-browser"])
        .await;
    assert!(ok, "alice's login failed: {err}\n{}", desk.log_tail());
    // Hers go now; bob's sign-out, left on this desktop, waits for him in turn.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = desk.status().await;
        let audit = &status["team"]["audit"];
        if audit["waiting"] == 1 && audit["others"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's records did not go: {status:#}\n{}",
            desk.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = outbox_of(&desk).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].0, "auth.sign_out", "{left:#?}");
    assert_each_once_in_order(&bob, "alice", &waiting).await;
    desk.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_a_desktop_kept_proves_records_cut_off_the_servers_log() {
    let mut rig = TeamRig::start().await;
    let mut alice = rig.desk("alice").await;
    let mut bob = rig.desk("bob").await;
    approved_grant(&rig, &alice, &bob).await;
    // Bob (an audit reader) verifies: his desktop keeps the server's signed checkpoint.
    let verified = bob.ok(&["audit", "verify"]).await;
    assert!(verified.contains("is intact"), "{verified}");
    let kept: Value = serde_json::from_slice(
        &std::fs::read(bob.dir.join("data").join("audit-checkpoint.json")).unwrap_or_else(|e| {
            panic!("bob's desktop kept no checkpoint: {e}\n{}", bob.log_tail())
        }),
    )
    .unwrap();
    let seq = kept["seq"].as_i64().unwrap();
    assert!(seq >= 3, "{kept:#}");
    // The server announced it on every event stream: alice's desktop (not an audit reader)
    // kept it too.
    let alice_file = alice.dir.join("data").join("audit-checkpoint.json");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let theirs: Option<Value> = std::fs::read(&alice_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if theirs.as_ref().is_some_and(|t| t["seq"] == kept["seq"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's desktop did not keep the announced checkpoint: {theirs:?}\n{}",
            alice.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Someone with the database's owner rights cuts the last two records off and moves the
    // head back; the server restarts, so it holds no checkpoint of its own.
    rig.stop_server().await;
    let pool = sqlx::PgPool::connect(&rig.pg.url()).await.unwrap();
    for sql in [
        "ALTER TABLE audit DISABLE TRIGGER USER",
        "DELETE FROM audit WHERE seq > (SELECT max(seq) - 2 FROM audit)",
        "UPDATE chain_head SET seq = (SELECT max(seq) FROM audit), hash = (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    rig.start_server().await;

    let (ok, out, err) = bob.run(&["audit", "verify"]).await;
    assert!(!ok, "the cut log was reported intact: {out}{err}");
    assert!(
        out.contains("NOT intact") && out.contains("cut off"),
        "{out}{err}"
    );

    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tools_login_waits_for_the_request_it_filed_until_bob_approves_over_sse() {
    let rig = TeamRig::start().await;
    let (mut alice, mut bob) = tokio::join!(rig.desk("alice"), rig.desk("bob"));
    // Alice's gateway waits for approval: her broker restarts with the setting (still signed in).
    alice.stop().await;
    let config = alice.dir.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("listen = \"127.0.0.1:{}\"", alice.port),
        &format!(
            "listen = \"127.0.0.1:{}\"\nwait_for_approval = \"45s\"",
            alice.port
        ),
    );
    assert!(text.contains("wait_for_approval"), "{text}");
    std::fs::write(&config, text).unwrap();
    alice.start_broker().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while alice.status().await["team"]["events"] != "connected" {
        assert!(Instant::now() < deadline, "{}", alice.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let run = alice
        .python("query")
        .role("ANALYST")
        .arg(["--sql", "select 1"]);
    let waiting = tokio::spawn(async move { run_python(PythonDriver::V5, &run).await.unwrap() });
    // The request reaches the server as alice's, with the tool's reason, and bob hears of it.
    let id = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mine = alice.json(&["grants", "--json"]).await;
            if let Some(g) = mine
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["state"] == "pending")
            {
                let reason = g["reason"].as_str().unwrap();
                assert!(
                    reason.starts_with("requested by PythonConnector (")
                        && reason.ends_with(") at login"),
                    "{reason}"
                );
                break g["id"].as_str().unwrap().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no request filed\n{}",
                alice.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for_event(&bob, "requested", &id, Duration::from_secs(10)).await;
    assert!(!waiting.is_finished(), "the login did not wait");
    let (ok, _, err) = bob.run(&["approve", &id, "--comment", "go ahead"]).await;
    assert!(ok, "{err}\n{}", bob.log_tail());
    let r = waiting.await.unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    let s = rig.sf.sessions().await.unwrap();
    let s = s.last().unwrap();
    assert_eq!(
        (s.login_name.as_str(), s.role.as_str()),
        ("alice", "ANALYST")
    );
    let tag = format!("snowgate:grant={id}");
    assert_eq!(s.query_tag.as_deref(), Some(tag.as_str()), "{s:#?}");
    let asks = alice.status().await["tool_asks"].clone();
    assert_eq!(asks[0]["request"], id.as_str(), "{asks:#}");

    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_team_mode_one_port_serves_two_accounts_with_tokens_minted_for_each() {
    let rig = TeamRig::start_two_accounts().await;
    let dev = rig.dev.as_ref().expect("the rig has dev's front");
    let alice = rig.desk("alice").await;

    // The roles are the server's, each with its account.
    let roles = alice.json(&["roles", "--json"]).await;
    let account_of = |name: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["account"].clone())
    };
    assert_eq!(account_of("LOADER"), Some(Value::from("dev")), "{roles:#}");
    assert_eq!(account_of("READER"), Some(Value::from("prod")), "{roles:#}");

    for role in ["LOADER", "READER"] {
        alice
            .ok(&[
                "request",
                role,
                "--duration",
                "10m",
                "--reason",
                "month-end load",
            ])
            .await;
    }
    let grants = alice.json(&["grants", "--json"]).await;
    let loader = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == "LOADER")
        .cloned()
        .expect("the LOADER grant");
    assert_eq!(loader["account"], "dev", "{grants:#}");

    // dev: its own front, with a token minted for dev's audience.
    let r = run_python(
        PythonDriver::V5,
        &alice.python("smoke").account("dev").role("LOADER"),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    let at_dev = dev.login_attempts().await.unwrap();
    assert_eq!(at_dev.len(), 1, "{at_dev:#?}");
    assert!(at_dev[0].success, "{at_dev:#?}");
    assert_eq!(at_dev[0].account_name.as_deref(), Some("rigdev"));
    let session = dev.session(at_dev[0].session_id.unwrap()).await.unwrap();
    assert_eq!(session.role, "LOADER");
    assert_eq!(session.login_name, "alice");
    assert!(rig.sf.login_attempts().await.unwrap().is_empty());

    // prod: the other front, with [minting]'s audience.
    let r = run_python(
        PythonDriver::V5,
        &alice.python("smoke").account("prod").role("READER"),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", alice.log_tail());
    let at_prod = rig.sf.login_attempts().await.unwrap();
    assert_eq!(at_prod.len(), 1, "{at_prod:#?}");
    assert!(at_prod[0].success, "{at_prod:#?}");
    assert_eq!(at_prod[0].account_name.as_deref(), Some("rigacct"));
    assert_eq!(dev.login_attempts().await.unwrap().len(), 1);

    // dev's role through prod is refused, naming its account.
    let r = run_python(
        PythonDriver::V5,
        &alice.python("smoke").account("prod").role("LOADER"),
    )
    .await
    .unwrap();
    let (_, msg) = support::py_error(&r);
    assert!(
        msg.contains("role LOADER belongs to Snowflake account dev, not prod"),
        "{msg}"
    );
}
