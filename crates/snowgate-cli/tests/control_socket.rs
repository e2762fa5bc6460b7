//! The broker's control socket, through the real `snowgate up` and `snowgate status`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[identity]
issuer = "https://idp.example.com"
client_id = "snowgate-desktop"
snowflake_audience = "https://snowflake.example.com"

[snowflake]
account = "acme-prod"

[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]
"#;

/// A broker started with `snowgate up` in a private runtime dir; killed on drop.
struct Broker {
    child: Child,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
        std::fs::create_dir(dir.path().join("runtime")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_snowgate"))
            .arg("up")
            .envs(env(dir.path()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let broker = Broker { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !broker.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "the broker made no control socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("runtime/snowgate/control.sock")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_snowgate"))
            .args(args)
            .envs(env(self.dir.path()))
            .output()
            .unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("HOME", dir.to_path_buf()),
        ("XDG_RUNTIME_DIR", dir.join("runtime")),
        ("SNOWGATE_CONFIG", dir.join("config.toml")),
        ("SNOWGATE_DATA_DIR", dir.join("data")),
    ]
}

#[test]
fn status_comes_from_the_running_broker() {
    let broker = Broker::start();
    let out = broker.run(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["account"], "acme-prod");
    assert_eq!(v["gateway_listen"][0], "127.0.0.1:8765");
    assert_eq!(v["sign_in"]["state"], "signed_out");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&broker.socket()), 0o600);
    assert_eq!(mode(broker.socket().parent().unwrap()), 0o700);
    assert_eq!(mode(&broker.dir.path().join("data")), 0o700);
}

#[test]
fn a_second_broker_for_the_same_user_is_refused() {
    let broker = Broker::start();
    let out = broker.run(&["up"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    // The first broker still answers.
    assert!(broker.run(&["status"]).status.success());
}

#[test]
fn status_without_a_broker_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .arg("status")
        .envs(env(dir.path()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Snowgate broker is running"), "{stderr}");
    assert!(stderr.contains("snowgate up"), "{stderr}");
}

#[test]
fn a_stale_socket_from_a_crash_is_replaced() {
    let broker = Broker::start();
    let socket = broker.socket();
    let dir = broker.dir.path().to_path_buf();
    let mut broker = broker;
    // SIGKILL: the broker gets no chance to remove its socket.
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    assert!(socket.exists());
    let mut again = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .arg("up")
        .envs(env(&dir))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        let out = broker.run(&["status"]);
        if out.status.success() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = again.kill();
    let _ = again.wait();
    assert!(ok, "a new broker did not take over the stale socket");
}

/// Runs the CLI as the OS user `nobody` (uid 65534), from a copy of the binary in a
/// world-readable place, since the build dir may sit under a private home.
fn run_as_nobody(socket: &Path) -> Output {
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("snowgate");
    std::fs::copy(env!("CARGO_BIN_EXE_snowgate"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .arg("status")
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("SNOWGATE_CONTROL_SOCKET", socket)
        .output()
        .unwrap()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn another_os_user_cannot_use_the_socket() {
    assert!(
        running_as_root(),
        "this test switches to the user nobody and must run as root (as CI does)"
    );
    let broker = Broker::start();
    // As laid out, the directory keeps others out.
    let out = run_as_nobody(&broker.socket());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // Even with the file permissions opened up, the broker checks the peer's uid.
    for p in [
        broker.dir.path(),
        &broker.dir.path().join("runtime"),
        broker.socket().parent().unwrap(),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(broker.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run_as_nobody(&broker.socket());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to another OS user"), "{stderr}");
    assert!(broker.run(&["status"]).status.success());
}
