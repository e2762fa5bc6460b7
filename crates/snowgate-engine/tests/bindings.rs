//! The window's TypeScript types are generated from the Rust types the broker answers with
//! (ts-rs), into `ui/src/lib/bindings/`. This test generates them afresh and fails when a
//! committed file differs, is missing, or is left over, so the UI can't drift from the engine.
//! `SNOWGATE_WRITE_BINDINGS=1` writes them instead: `npm run bindings`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use snowgate_engine::broker::LoginStart;
use snowgate_engine::connect_info::ConnectInfo;
use snowgate_engine::control::answers::{
    ApproverLoginStart, AuditExport, AuditVerification, GrantView, LogoutAnswer, RoleInfo,
    SessionEnded, SessionInfo, TokenAnswer, ToolSecretCreated, ToolSecretRevoked, WhoAmIAnswer,
};
use snowgate_engine::control::{ConfirmAsk, ControlError};
use snowgate_engine::identity::Profile;
use snowgate_engine::tool_secrets::ToolSecretInfo;
use snowgate_engine::BrokerStatus;
use snowgate_grants::{AuditRecord, Grant};
use ts_rs::TS;

fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/lib/bindings")
}

/// Every type the window reads, with the types they hold.
fn export_all(dir: &Path) {
    fn one<T: TS + 'static>(dir: &Path) {
        T::export_all_to(dir).unwrap_or_else(|e| panic!("exporting {}: {e}", T::name()));
    }
    one::<BrokerStatus>(dir);
    one::<LoginStart>(dir);
    one::<Profile>(dir);
    one::<WhoAmIAnswer>(dir);
    one::<LogoutAnswer>(dir);
    one::<RoleInfo>(dir);
    one::<Grant>(dir);
    one::<GrantView>(dir);
    one::<ApproverLoginStart>(dir);
    one::<AuditRecord>(dir);
    one::<AuditVerification>(dir);
    one::<AuditExport>(dir);
    one::<SessionInfo>(dir);
    one::<SessionEnded>(dir);
    one::<ConnectInfo>(dir);
    one::<TokenAnswer>(dir);
    one::<ToolSecretInfo>(dir);
    one::<ToolSecretCreated>(dir);
    one::<ToolSecretRevoked>(dir);
    one::<ControlError>(dir);
    one::<ConfirmAsk>(dir);
    one::<snowgate_engine::agents::Agent>(dir);
    one::<snowgate_engine::control::answers::AgentRemoved>(dir);
}

fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "ts") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

#[test]
fn the_ui_bindings_are_generated_from_the_current_types() {
    let fresh = tempfile::tempdir().unwrap();
    export_all(fresh.path());
    let generated = files(fresh.path());
    assert!(
        generated.contains_key("BrokerStatus.ts") && generated.contains_key("Grant.ts"),
        "ts-rs wrote {:?}",
        generated.keys()
    );
    let dir = committed_dir();
    if std::env::var_os("SNOWGATE_WRITE_BINDINGS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for old in files(&dir).keys() {
            std::fs::remove_file(dir.join(old)).unwrap();
        }
        for (name, text) in &generated {
            std::fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    let committed = files(&dir);
    let mut problems = Vec::new();
    for (name, text) in &generated {
        match committed.get(name) {
            None => problems.push(format!("{name} is missing")),
            Some(old) if old != text => problems.push(format!("{name} is out of date")),
            Some(_) => {}
        }
    }
    for name in committed.keys().filter(|n| !generated.contains_key(*n)) {
        problems.push(format!("{name} is left over (no Rust type makes it)"));
    }
    assert!(
        problems.is_empty(),
        "ui/src/lib/bindings does not match the Rust types: {}; run `npm run bindings` and commit the result",
        problems.join(", ")
    );
}
