//! Where the rig finds its parts: the repository's `tests/` tree, node_modules, and the Python
//! virtual environments that `scripts/setup` creates under `.rig/`.

use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the rig crate lives at crates/snowgate-rig in the repository")
}

/// `tests/` at the repository's root.
pub fn tests_dir() -> PathBuf {
    repo_root().join("tests")
}

/// The virtual environment holding fakesnow and snowflake-connector-python 4.x.
pub fn fakesnow_venv() -> PathBuf {
    repo_root().join(".rig/venv-fakesnow")
}

/// The virtual environment holding snowflake-connector-python 5.x.
pub fn client_venv() -> PathBuf {
    repo_root().join(".rig/venv-client")
}

/// The virtual environment holding the official MCP Python SDK (`mcp`), for
/// `tests/clients/mcp_client.py`.
pub fn mcp_venv() -> PathBuf {
    repo_root().join(".rig/venv-mcp")
}

/// What to tell a person when a part is not installed.
pub const SETUP_HINT: &str = "run `scripts/setup` (or the README's test command) first";
