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
