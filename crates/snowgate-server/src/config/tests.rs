//! The team server config's specification: what loads, what is refused, and how errors are
//! located.

use std::path::Path;
use std::time::Duration;

use super::*;

fn base(extra: &str) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    format!(
        r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://127.0.0.1:8443"
behind_tls_proxy = true

[database]
url = "postgres://u:hunter2@127.0.0.1/db"

[identity]
issuer = "https://127.0.0.1:9000"
audience = "https://snowgate.test"

[minting]
audience = "https://snowflake.test"
key_files = ["{dir}/Cargo.toml"]
{extra}
[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]
"#
    )
}

#[test]
fn a_complete_config_loads_with_its_policy() {
    let c = ServerConfig::parse(&base(""), Path::new("server.toml")).unwrap();
    let policy = c.policy().unwrap();
    assert_eq!(policy.roles().len(), 1);
    assert_eq!(c.minting.token_lifetime.0, Duration::from_secs(600));
    assert_eq!(c.audit_readers(), ["managers"]);
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "the database URL is redacted"
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = base("tokn_lifetime = \"5m\"\n");
    let e = ServerConfig::parse(&text, Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.toml"), "{e}");
    assert!(e.contains("line 16"), "{e}");
    assert!(e.contains("minting.tokn_lifetime"), "{e}");
    assert!(e.contains("unknown key"), "{e}");
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    let text = base("").replace("\"8h\"", "\"8 hours\"");
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("roles.max_duration"), "{e}");
    assert!(e.contains("\"2h\""), "{e}");
}

#[test]
fn tls_files_are_required_unless_behind_a_proxy() {
    let text = base("").replace("behind_tls_proxy = true\n", "");
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.tls_cert"), "{e}");
    assert!(e.contains("behind_tls_proxy"), "{e}");
}

fn id_token_base(identity: &str, tail: &str) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    base(tail).replace(
        "audience = \"https://snowgate.test\"\n",
        &format!("{identity}\n"),
    ) + &format!("\n[sessions]\nkey_files = [\"{dir}/Cargo.toml\"]\n")
}

#[test]
fn caller_auth_defaults_to_access_tokens_and_needs_an_audience() {
    let c = ServerConfig::parse(&base(""), Path::new("s.toml")).unwrap();
    assert_eq!(c.identity.caller_auth, CallerAuth::AccessToken);
    let text = base("").replace("audience = \"https://snowgate.test\"\n", "");
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity.audience"), "{e}");
    assert!(e.contains("caller_auth = \"id_token\""), "{e}");
}

#[test]
fn id_token_mode_needs_a_client_id_and_session_keys_but_no_audience() {
    let good = id_token_base(
        "caller_auth = \"id_token\"\nclient_id = \"snowgate-desktop\"",
        "",
    );
    let c = ServerConfig::parse(&good, Path::new("s.toml")).unwrap();
    assert!(c.identity.audience.is_none());
    assert_eq!(c.sessions.unwrap().lifetime.0, Duration::from_secs(900));
    assert_eq!(c.identity.id_token_max_age.0, Duration::from_secs(300));

    let no_client = id_token_base("caller_auth = \"id_token\"", "");
    let e = ServerConfig::parse(&no_client, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity.client_id"), "{e}");

    let no_sessions = good.split("\n[sessions]").next().unwrap().to_string();
    let e = ServerConfig::parse(&no_sessions, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[sessions]"), "{e}");
    assert!(e.contains("openssl rand"), "{e}");
}

#[test]
fn an_api_audience_equal_to_the_client_id_is_refused() {
    let text = id_token_base(
        "caller_auth = \"both\"\nclient_id = \"snowgate-desktop\"\naudience = \"snowgate-desktop\"",
        "",
    );
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ID tokens"), "{e}");
}

#[test]
fn groups_tables_are_checked_with_their_line() {
    let groups = "\n[[groups]]\nname = \"managers\"\nsubjects = [\"bob\"]\n\n[[groups]]\nname = \"managers\"\nemails = [\"carol@example.com\"]\n";
    let text = base("") + groups;
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups[1]"), "{e}");
    assert!(e.contains("defined twice"), "{e}");
    assert!(
        e.contains(&format!("line {}", text.lines().count() - 2)),
        "{e}"
    );
    let text = base("") + "\n[[groups]]\nname = \"x\"\n";
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no members"), "{e}");
    let text = base("").replace("[identity]\n", "[identity]\ngroups_from = \"token\"\n")
        + "\n[[groups]]\nname = \"x\"\nsubjects = [\"a\"]\n";
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity.groups_from"), "{e}");
}

#[test]
fn a_role_nobody_can_approve_is_refused() {
    let text = base("").replace("approvers = [\"managers\"]\n", "");
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("roles[0]"), "{e}");
    assert!(e.contains("could ever be approved"), "{e}");
}

#[test]
fn plain_http_is_allowed_for_the_same_loopback_hosts_as_on_the_desktop() {
    for issuer in [
        "http://127.0.0.1:9000",
        "http://127.0.0.2:9000",
        "http://[::1]:9000",
        "http://localhost:9000",
    ] {
        let text = base("").replace("https://127.0.0.1:9000", issuer);
        assert!(
            ServerConfig::parse(&text, Path::new("s.toml")).is_ok(),
            "{issuer}"
        );
    }
    for issuer in [
        "http://10.0.0.1:9000",
        "http://[::ffff:127.0.0.1]:9000",
        "http://localhost.example.com",
    ] {
        let text = base("").replace("https://127.0.0.1:9000", issuer);
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `identity.issuer`"), "{e}");
        assert!(e.contains("must be an https:// URL"), "{e}");
    }
}

#[test]
fn clock_skew_is_read_as_on_the_desktop() {
    let text = base("").replace("[identity]\n", "[identity]\nclock_skew = \"0s\"\n");
    let c = ServerConfig::parse(&text, Path::new("s.toml")).unwrap();
    assert_eq!(c.identity.clock_skew.0, Duration::ZERO);
    let text = base("").replace("[identity]\n", "[identity]\nclock_skew = \"10m\"\n");
    let e = ServerConfig::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity.clock_skew"), "{e}");
    assert!(e.contains("at most 5m"), "{e}");
}

#[test]
fn checkpoints_are_made_every_minute_by_default_and_the_interval_is_bounded() {
    let c = ServerConfig::parse(&base(""), Path::new("server.toml")).unwrap();
    assert_eq!(c.audit.checkpoint_every.0, Duration::from_secs(60));
    assert!(c.audit.checkpoint_key_files.is_empty());
    let text = base("\n[audit]\ncheckpoint_every = \"2h\"\n");
    let e = ServerConfig::parse(&text, Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("audit.checkpoint_every"), "{e}");
    assert!(e.contains("between 1s and 1h"), "{e}");
    let text = base("\n[audit]\ncheckpoint_key_files = [\"/nonexistent/checkpoint.pem\"]\n");
    let e = ServerConfig::parse(&text, Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkpoint_key_files"), "{e}");
}

#[test]
fn a_checkpoint_is_also_made_every_thousand_records_by_default_and_the_count_must_be_positive() {
    let c = ServerConfig::parse(&base(""), Path::new("server.toml")).unwrap();
    assert_eq!(c.audit.checkpoint_every_records.0, 1000);
    let text = base("\n[audit]\ncheckpoint_every_records = 50\n");
    let c = ServerConfig::parse(&text, Path::new("server.toml")).unwrap();
    assert_eq!(c.audit.checkpoint_every_records.0, 50);
    let text = base("\n[audit]\ncheckpoint_every_records = 0\n");
    let e = ServerConfig::parse(&text, Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkpoint_every_records"), "{e}");
    assert!(e.contains("above 0"), "{e}");
}

fn with_reaper(table: &str) -> String {
    format!("{}\n{table}", base(""))
}

#[test]
fn a_reaper_table_loads_and_names_its_account() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = with_reaper(&format!(
        "[reaper]\naccount_url = \"https://acme.prod-1.snowflakecomputing.com\"\nuser = \"SNOWGATE_REAPER\"\nprivate_key_file = \"{dir}/Cargo.toml\"\nrole = \"SNOWGATE_REAPER\"\n"
    ));
    let c = ServerConfig::parse(&text, Path::new("server.toml")).unwrap();
    let r = c.reaper.expect("the reaper is configured");
    assert_eq!(r.account_name().as_deref(), Some("ACME"));
    assert_eq!(r.poll_interval.0, Duration::from_secs(5));
    assert!(ServerConfig::parse(&base(""), Path::new("server.toml"))
        .unwrap()
        .reaper
        .is_none());
}

#[test]
fn a_reaper_outside_snowflakecomputing_needs_its_account_and_sane_names() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let table = |extra: &str| {
        with_reaper(&format!(
            "[reaper]\naccount_url = \"http://127.0.0.1:9999\"\nuser = \"SNOWGATE_REAPER\"\nprivate_key_file = \"{dir}/Cargo.toml\"\nrole = \"SNOWGATE_REAPER\"\n{extra}"
        ))
    };
    let e = ServerConfig::parse(&table(""), Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reaper.account"), "{e}");
    let ok =
        ServerConfig::parse(&table("account = \"org.acct\"\n"), Path::new("server.toml")).unwrap();
    assert_eq!(
        ok.reaper.unwrap().account_name().as_deref(),
        Some("ORG-ACCT")
    );
    let e = ServerConfig::parse(
        &table("account = \"x\"\npoll_interval = \"10m\"\n"),
        Path::new("server.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("reaper.poll_interval"), "{e}");
    let e = ServerConfig::parse(
        &table("account = \"x\"\nwarehouse = \"\"\n"),
        Path::new("server.toml"),
    );
    assert!(e.is_err());
    let quoted = with_reaper(&format!(
        "[reaper]\naccount_url = \"http://127.0.0.1:9999\"\naccount = \"x\"\nuser = \"a'b\"\nprivate_key_file = \"{dir}/Cargo.toml\"\nrole = \"R\"\n"
    ));
    let e = ServerConfig::parse(&quoted, Path::new("server.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reaper.user"), "{e}");
}
