//! `snowgate config check` and friends, run as the real binary.

use std::path::Path;
use std::process::{Command, Output};

const GOOD: &str = r#"
[identity]
issuer = "https://idp.example.com"
client_id = "snowgate-desktop"
client_secret = "s3cr3t-value-never-printed"
snowflake_audience = "https://snowflake.example.com"

[snowflake]
account = "acme-prod"
user_claim = "email"

[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]
"#;

fn snowgate(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("running snowgate")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_describe_the_tool() {
    let home = tempfile::tempdir().unwrap();
    let out = snowgate(&["--version"], home.path());
    assert!(out.status.success());
    assert_eq!(
        text(&out).0.trim(),
        format!("snowgate {}", env!("CARGO_PKG_VERSION"))
    );
    let out = snowgate(&["--help"], home.path());
    let (stdout, _) = text(&out);
    for command in ["up", "status", "config"] {
        assert!(
            stdout.contains(&format!("  {command} ")),
            "help lacks {command}: {stdout}"
        );
    }
}

#[test]
fn check_prints_the_effective_config_with_secrets_redacted() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = snowgate(
        &["config", "check", "--config", path.to_str().unwrap()],
        home.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("listen = [\"127.0.0.1:8765\"]"), "{stdout}");
    assert!(stdout.contains("pending_timeout = \"1d\""), "{stdout}");
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(
        stdout.contains("client_secret = \"[redacted]\""),
        "{stdout}"
    );
}

#[test]
fn check_names_file_line_and_key_of_a_broken_config() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("c.toml");
    std::fs::write(
        &path,
        GOOD.replace("max_duration = \"8h\"", "max_durration = \"8h\""),
    )
    .unwrap();
    let out = snowgate(
        &["config", "check", "--config", path.to_str().unwrap()],
        home.path(),
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 14"), "{stderr}");
    assert!(stderr.contains("unknown key `max_durration`"), "{stderr}");
}

#[test]
fn config_is_found_through_the_environment_then_xdg() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("snowgate")).unwrap();
    std::fs::write(xdg.join("snowgate/config.toml"), GOOD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .args(["config", "check"])
        .env_clear()
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);

    let other = home.path().join("other.toml");
    std::fs::write(&other, GOOD.replace("acme-prod", "from-env")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .args(["config", "check"])
        .env_clear()
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .env("SNOWGATE_CONFIG", &other)
        .output()
        .unwrap();
    assert!(text(&out).0.contains("account = \"from-env\""));
}

#[test]
fn a_missing_config_says_where_it_looked_and_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = snowgate(&["config", "check"], home.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(".config/snowgate/config.toml"), "{stderr}");
    assert!(stderr.contains("--config PATH"), "{stderr}");
}

#[test]
fn json_logs_are_json_lines() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .args([
            "up",
            "--log-format",
            "json",
            "--config",
            path.to_str().unwrap(),
        ])
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string());
    }
    assert!(stderr.contains("broker started"));
    assert!(!stderr.contains("s3cr3t"));
}

/// A server config that loads, with a real RSA signing key and a session key, in `dir`.
async fn server_config(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("signing.pem");
    snowgate_rig::team::generate_signing_key(&key)
        .await
        .expect("a signing key from openssl");
    let session = dir.join("session.key");
    std::fs::write(&session, [7u8; 48]).unwrap();
    let path = dir.join("server.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://snowgate.example.com"
behind_tls_proxy = true

[database]
url = "postgres://snowgate:hunter2@db.example.com/snowgate"

[identity]
issuer = "https://accounts.example.com"
caller_auth = "id_token"
client_id = "snowgate-desktop"

[sessions]
key_files = ["{session}"]

[minting]
audience = "https://acme.snowflakecomputing.com"
key_files = ["{key}"]

[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]

[[groups]]
name = "managers"
emails = ["bob@example.com"]
"#,
            session = session.display(),
            key = key.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn serve_check_validates_a_server_config_and_its_files_without_serving() {
    let home = tempfile::tempdir().unwrap();
    let path = server_config(home.path()).await;
    let p = path.to_str().unwrap();
    let out = snowgate(&["serve", "--check", "--config", p], home.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("server.toml: OK"), "{stderr}");
    assert!(stdout.contains("callers:"), "{stdout}");
    assert!(
        stdout.contains("id_token (ID tokens of client snowgate-desktop"),
        "{stdout}"
    );
    assert!(
        stdout.contains("audit readers: managers (the default: every role's approver groups)"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    // The global flag before the command works the same.
    let out = snowgate(&["--config", p, "serve", "--check"], home.path());
    assert!(out.status.success(), "{}", text(&out).1);

    // A bad value: the file, line and key, and a failure.
    let bad = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_duration = \"8h\"", "max_duration = \"8 hours\"");
    std::fs::write(&path, bad).unwrap();
    let out = snowgate(&["serve", "--check", "--config", p], home.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("line 23"), "{stderr}");
    assert!(stderr.contains("roles.max_duration"), "{stderr}");

    // A session key that is too short is found by the check, not at the first sign-in.
    std::fs::write(home.path().join("session.key"), b"short").unwrap();
    let good = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"8 hours\"", "\"8h\"");
    std::fs::write(&path, good).unwrap();
    let out = snowgate(&["serve", "--check", "--config", p], home.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("at least 32 random bytes"), "{stderr}");
}

#[test]
fn a_missing_server_config_names_the_os_error_once_and_help_names_one_default() {
    let home = tempfile::tempdir().unwrap();
    let out = snowgate(
        &["serve", "--check", "--config", "/nonexistent/server.toml"],
        home.path(),
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/server.toml"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );

    let out = snowgate(&["serve", "--help"], home.path());
    let (stdout, _) = text(&out);
    assert!(stdout.contains("/etc/snowgate/server.toml"), "{stdout}");
    assert!(!stdout.contains("XDG_CONFIG_HOME"), "{stdout}");
    assert!(stdout.contains("--check"), "{stdout}");
}

#[test]
fn a_wait_for_approval_beyond_the_drivers_login_timeouts_is_refused_with_its_key() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("c.toml");
    let check = |wait: &str| {
        std::fs::write(
            &path,
            format!("{GOOD}\n[gateway]\nwait_for_approval = \"{wait}\"\n"),
        )
        .unwrap();
        let out = snowgate(
            &["config", "check", "--config", path.to_str().unwrap()],
            home.path(),
        );
        (out.status.success(), text(&out))
    };
    let (ok, (stdout, stderr)) = check("45s");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("wait_for_approval = \"45s\""), "{stdout}");
    let (ok, (_, stderr)) = check("2m");
    assert!(!ok);
    assert!(
        stderr.contains("key `gateway.wait_for_approval`"),
        "{stderr}"
    );
    assert!(stderr.contains("use at most 50s"), "{stderr}");
    let (ok, (_, stderr)) = check("soon");
    assert!(!ok);
    assert!(stderr.contains("gateway.wait_for_approval"), "{stderr}");
}
