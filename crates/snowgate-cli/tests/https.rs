//! The gateway over HTTPS with the real drivers: `[gateway] tls = true` with `listen_tls`, the
//! local CA trusted exactly as `snowgate trust install` (and the README) tells a user, and no
//! check turned off. The same clients without the CA fail the handshake; the leaf is renewed
//! while a tool is connected, and a new connection then succeeds with the new leaf.
//!
//! `trust install` runs against a system store relocated into the test's directory (with one
//! stand-in public root, as on a real system), never this machine's.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use snowgate_rig::clients::{run_node, run_python, spawn_python, ClientRun, PythonDriver};
use snowgate_rig::free_port;
use snowgate_rig::secret_service::KeyringState;
use support::Rig;

/// The value after `marker` on the line of `out` that holds it, up to a quote or the end.
fn setting(out: &str, marker: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{out}"));
    let rest = &line[line.find(marker).unwrap() + marker.len()..];
    rest.split(['"', ' ']).next().unwrap().to_string()
}

/// A relocated Debian system store with one stand-in public root, as `update-ca-certificates`
/// expects to find it.
fn system_prefix(dir: &Path) -> std::path::PathBuf {
    let prefix = dir.join("system");
    let share = prefix.join("usr/share/ca-certificates/rig");
    std::fs::create_dir_all(&share).unwrap();
    let other = snowgate_rig::TestCa::generate(&dir.join("other-root")).unwrap();
    std::fs::copy(&other.ca_file, share.join("stand-in-root.crt")).unwrap();
    std::fs::create_dir_all(prefix.join("etc")).unwrap();
    std::fs::write(
        prefix.join("etc/ca-certificates.conf"),
        "rig/stand-in-root.crt\n",
    )
    .unwrap();
    prefix
}

fn https_run(url: &str, scenario: &str) -> ClientRun {
    ClientRun::password(url, "anyone", "any-password", scenario)
        .role("ANALYST")
        .timeout(Duration::from_secs(90))
}

async fn leaf_expiry(rig: &Rig) -> String {
    let s: Value = serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    s["gateway"]["tls"]["leaf_expires_at"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The expiry of the leaf a new TLS connection to `port` is shown, and of the RFC 3339 time
/// `at`, as Unix seconds (through `openssl s_client` and `date`).
async fn served_and_expected_expiry(port: u16, at: &str) -> (i64, i64) {
    let script = format!(
        "end=$(echo | openssl s_client -connect 127.0.0.1:{port} 2>/dev/null | openssl x509 -noout -enddate | cut -d= -f2); date -d \"$end\" +%s; date -d '{at}' +%s"
    );
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut n = text.lines().map(|l| l.trim().parse::<i64>().unwrap());
    (n.next().unwrap(), n.next().unwrap())
}

fn is_certificate_failure(r: &Value) -> bool {
    let text = r.to_string().to_lowercase();
    r["ok"] == false
        && (text.contains("certificate") || text.contains("ssl") || text.contains("tls"))
}

#[tokio::test]
async fn drivers_connect_over_https_trusting_the_local_ca_and_fail_without_it() {
    let tls_port = free_port().unwrap();
    let rig = Rig::start_with(
        KeyringState::Unlocked,
        &format!("tls = true\nlisten_tls = \"127.0.0.1:{tls_port}\"\ntls_leaf_lifetime = \"9s\""),
        "info,snowgate_engine=debug,snowgate_gateway=debug",
    )
    .await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;
    let url = format!("https://127.0.0.1:{tls_port}");

    // The CA is trusted the way `snowgate trust install` says.
    let prefix = system_prefix(rig.dir.path());
    let nss = rig.dir.path().join("nssdb");
    let nss = nss.to_str().unwrap();
    let (ok, out, err) = rig
        .run(&[
            "trust",
            "install",
            "--system-prefix",
            prefix.to_str().unwrap(),
            "--nss-db",
            nss,
        ])
        .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("System store: installed"), "{out}");
    // NSS where certutil is installed (libnss3-tools); the command says so where it is not.
    let certutil = !out.contains("certutil is not installed");
    if certutil {
        assert!(
            out.contains(&format!("NSS database: installed ({nss})")),
            "{out}"
        );
    }
    let bundle = setting(&out, "custom_root_store_path=\"");
    let requests_bundle = setting(&out, "REQUESTS_CA_BUNDLE=");
    let node_ca = setting(&out, "NODE_EXTRA_CA_CERTS=");
    assert_eq!(bundle, requests_bundle);
    let system_bundle =
        std::fs::read_to_string(prefix.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let ca_pem = std::fs::read_to_string(&node_ca).unwrap();
    assert!(
        system_bundle.contains(ca_pem.trim()),
        "CA not in the system bundle"
    );
    let (_, status, _) = rig
        .run(&[
            "trust",
            "status",
            "--system-prefix",
            prefix.to_str().unwrap(),
            "--nss-db",
            nss,
        ])
        .await;
    assert!(
        status.contains("ca-certificates.crt): installed"),
        "{status}"
    );
    if certutil {
        assert!(
            status.contains(&format!("NSS database ({nss}): installed")),
            "{status}"
        );
    }
    assert!(
        status.contains(&format!(
            "Gateway HTTPS on 127.0.0.1:{tls_port}: leaf expires"
        )),
        "{status}"
    );

    let text = rig.ok(&["status"]).await;
    assert!(
        text.contains(&format!(
            "HTTPS:     127.0.0.1:{tls_port} (CA {node_ca}; leaf expires "
        )),
        "{text}"
    );

    // connect-info points at HTTPS, and names the CA.
    let info = rig.ok(&["connect-info"]).await;
    assert!(info.contains(&format!("port:     {tls_port}")), "{info}");
    assert!(
        info.contains(&format!("https (SSL on; trust the CA {node_ca}")),
        "{info}"
    );

    let python = rig.ok(&["connect-info", "--tool", "python"]).await;
    assert!(python.contains("protocol=\"https\""), "{python}");
    assert!(
        python.contains(&format!("custom_root_store_path=\"{bundle}\"")),
        "{python}"
    );
    let node = rig.ok(&["connect-info", "--tool", "node"]).await;
    assert!(
        node.contains(&format!("NODE_EXTRA_CA_CERTS={node_ca}")),
        "{node}"
    );
    assert!(
        node.contains(&format!("https://127.0.0.1:{tls_port}")),
        "{node}"
    );

    // Connector 5.x with custom_root_store_path, 4.x with REQUESTS_CA_BUNDLE, Node with
    // NODE_EXTRA_CA_CERTS: each logs in over HTTPS and runs a query.
    let v5 = run_python(
        PythonDriver::V5,
        &https_run(&url, "smoke").arg(["--custom-root-store-path", &bundle]),
    )
    .await
    .unwrap();
    assert_eq!(v5["ok"], true, "{v5:#}\n{}", rig.log_tail());
    let v4 = run_python(
        PythonDriver::V4,
        &https_run(&url, "smoke").env("REQUESTS_CA_BUNDLE", &requests_bundle),
    )
    .await
    .unwrap();
    assert_eq!(v4["ok"], true, "{v4:#}\n{}", rig.log_tail());
    let node = run_node(&https_run(&url, "smoke").env("NODE_EXTRA_CA_CERTS", &node_ca))
        .await
        .unwrap();
    assert_eq!(node["ok"], true, "{node:#}\n{}", rig.log_tail());
    for r in [&v5, &v4] {
        let session = rig
            .sf
            .session(r["session_id"].as_u64().unwrap())
            .await
            .unwrap();
        assert_eq!(session.role, "ANALYST");
    }

    // Their statements are in the audit log, under the grant.
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let statements = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "session.statement")
        .count();
    assert!(statements >= 3, "{audit:#}");

    // Negative controls: the same clients without the CA fail the handshake.
    let v5 = run_python(
        PythonDriver::V5,
        &https_run(&url, "smoke").arg(["--login-timeout", "60"]),
    )
    .await
    .unwrap();
    assert!(is_certificate_failure(&v5), "{v5:#}");
    let v4 = run_python(
        PythonDriver::V4,
        &https_run(&url, "smoke").arg(["--login-timeout", "60"]),
    )
    .await
    .unwrap();
    assert!(is_certificate_failure(&v4), "{v4:#}");
    let node = run_node(&https_run(&url, "smoke")).await.unwrap();
    assert!(is_certificate_failure(&node), "{node:#}");

    // The plain-HTTP listener still serves next to it.
    let plain = run_python(PythonDriver::V5, &https_run(&rig.gateway_url(), "smoke"))
        .await
        .unwrap();
    assert_eq!(plain["ok"], true, "{plain:#}");

    // Rotation: a tool holds its connection while the 9 s leaf is renewed (with 3 s left);
    // afterwards its queries still run, and a new connection gets the new leaf.
    let first = leaf_expiry(&rig).await;
    let mut held = spawn_python(
        PythonDriver::V5,
        &https_run(&url, "hold")
            .arg(["--custom-root-store-path", &bundle])
            .arg(["--interval", "0.5", "--duration", "14"]),
    )
    .await
    .unwrap();
    let connected = held
        .next_line(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let mut renewed = None;
    let mut renewed_at = 0.0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = leaf_expiry(&rig).await;
        if now != first {
            renewed_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            renewed = Some(now);
            break;
        }
    }
    let renewed = renewed.expect("the leaf was not renewed within 15 s");
    assert!(renewed > first, "{renewed} <= {first}");
    let (served, expected) = served_and_expected_expiry(tls_port, &renewed).await;
    assert_eq!(
        served, expected,
        "a new connection was not shown the new leaf"
    );
    let after = run_python(
        PythonDriver::V5,
        &https_run(&url, "smoke").arg(["--custom-root-store-path", &bundle]),
    )
    .await
    .unwrap();
    assert_eq!(after["ok"], true, "{after:#}\n{}", rig.log_tail());
    let mut queries_after_renewal = 0;
    while let Some(line) = held.next_line(Duration::from_secs(20)).await.unwrap() {
        if line["event"] == "query" {
            assert_eq!(line["ok"], true, "{line:#}");
            if line["at"].as_f64().unwrap() > renewed_at {
                queries_after_renewal += 1;
            }
        }
    }
    assert!(
        queries_after_renewal > 0,
        "the held connection ran no query after the renewal"
    );

    // Uninstall takes the CA out of the relocated system store again.
    let (ok, out, err) = rig
        .run(&[
            "trust",
            "uninstall",
            "--system-prefix",
            prefix.to_str().unwrap(),
            "--nss-db",
            nss,
        ])
        .await;
    assert!(ok && out.contains("System store: removed"), "{out}\n{err}");
    if certutil {
        assert!(out.contains("NSS database: removed"), "{out}");
        let (_, status, _) = rig
            .run(&["trust", "status", "--no-system", "--nss-db", nss])
            .await;
        assert!(status.contains("): not installed"), "{status}");
    }
    let system_bundle =
        std::fs::read_to_string(prefix.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(!system_bundle.contains(ca_pem.trim()));
    assert!(!system_bundle.is_empty(), "the stand-in root is gone too");
    support::stop(broker).await;
}

/// `tls = true` without `listen_tls`: HTTPS alone, on `listen`. The status names that address
/// (the window's Status screen lists `gateway_listen`), connect-info points at it over https,
/// and the port answers a TLS handshake with a leaf of the local CA.
#[tokio::test]
async fn with_tls_alone_the_gateway_serves_https_on_listen_and_the_status_says_where() {
    let rig = Rig::start_with(KeyringState::Unlocked, "tls = true", "info").await;
    let broker = rig.broker().await;
    let addr = format!("127.0.0.1:{}", rig.port);
    let s: Value = serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(s["gateway"]["state"], "serving", "{s:#}");
    assert_eq!(s["gateway_listen"], serde_json::json!([addr]), "{s:#}");
    assert_eq!(
        s["gateway"]["tls"]["listen"],
        serde_json::json!([addr]),
        "{s:#}"
    );
    let info = rig.ok(&["connect-info", "--tool", "python"]).await;
    assert!(info.contains("protocol=\"https\""), "{info}");
    assert!(info.contains(&format!("port={}", rig.port)), "{info}");
    let ca = s["gateway"]["tls"]["ca_file"].as_str().unwrap().to_string();
    let out = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr,
            "-verify_return_error",
            "-CAfile",
            &ca,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::stop(broker).await;
}
