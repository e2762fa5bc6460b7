//! `snowgate connect-info`: ready-to-paste settings that point a tool at the gateway.
//!
//! The gateway speaks plain HTTP on 127.0.0.1, or HTTPS with a leaf from the local CA when
//! `[gateway] tls = true`; every snippet sets the protocol (and with HTTPS, how the tool trusts
//! the CA, the way the README's TLS section says) and names the account explicitly (drivers
//! otherwise read it from the host). The settings come
//! from the broker ([`ConnectInfo`], shared with the tray app). User and password can be
//! anything (unless tool secrets are required): the gateway replaces them with the signed-in
//! user and an OAuth token.

use anyhow::bail;
use snowgate_engine::connect_info::ConnectInfo;

/// The tools `--tool` accepts.
pub const TOOLS: &[&str] = &[
    "python",
    "node",
    "jdbc",
    "dbeaver",
    "odbc",
    "go",
    "dbt",
    "sqlalchemy",
];

/// The snippet for `tool`, or a summary of the settings when `tool` is `None`.
pub fn render(tool: Option<&str>, info: &ConnectInfo, role: &str) -> anyhow::Result<String> {
    let port = info.port;
    let account = &info.account_for(role).to_string();
    let host = info.url_host();
    let scheme = if info.is_https() { "https" } else { "http" };
    let ca = info.ca_file.clone().unwrap_or_default();
    // The public roots plus the local CA, for settings that replace a client's roots
    // (`snowgate trust install` writes it next to the CA).
    let bundle = std::path::Path::new(&ca)
        .with_file_name(crate::trust::BUNDLE_FILE)
        .display()
        .to_string();
    let ssl = if info.is_https() { "on" } else { "off" };
    let others: Vec<&str> = info
        .accounts
        .iter()
        .map(String::as_str)
        .filter(|a| a != account)
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(
            " (the default; this port also serves {}: set account to the role's account)",
            others.join(", ")
        )
    };
    let text = match tool {
        None => format!(
            "Point your tool at the Snowgate gateway:\n\
             \x20 host:     {}\n\
             \x20 port:     {port}\n\
             \x20 protocol: {}\n\
             \x20 account:  {account}{also}\n\
             \x20 user:     {} (Snowgate signs in as you)\n\
             \x20 password: {}\n\
             \x20 role:     {role} (or any role you hold a grant for)\n\
             Snippets: snowgate connect-info --tool {}\n",
            info.host,
            info.protocol_hint(),
            info.user,
            info.password_hint(),
            TOOLS.join("|")
        ),
        Some("python") if info.is_https() => format!(
            "# The bundle is written by `snowgate trust install`. Connector 5.x takes it as\n\
             # custom_root_store_path; 4.x from the environment: export REQUESTS_CA_BUNDLE={bundle}\n\
             import snowflake.connector\n\
             conn = snowflake.connector.connect(\n\
             \x20   account=\"{account}\", user=\"me\", password=\"-\",\n\
             \x20   host=\"{host}\", port={port}, protocol=\"https\",\n\
             \x20   role=\"{role}\",\n\
             \x20   custom_root_store_path=\"{bundle}\",  # connector 5.x\n\
             )\n"
        ),
        Some("python") => format!(
            "import snowflake.connector\n\
             conn = snowflake.connector.connect(\n\
             \x20   account=\"{account}\", user=\"me\", password=\"-\",\n\
             \x20   host=\"{host}\", port={port}, protocol=\"http\",\n\
             \x20   role=\"{role}\",\n\
             )\n"
        ),
        Some("node") => format!(
            "{}const snowflake = require('snowflake-sdk');\n\
             const conn = snowflake.createConnection({{\n\
             \x20 account: '{account}', username: 'me', password: '-',\n\
             \x20 accessUrl: '{scheme}://{host}:{port}',\n\
             \x20 role: '{role}',\n\
             }});\n",
            if info.is_https() {
                format!("// Run node with NODE_EXTRA_CA_CERTS={ca} in its environment.\n")
            } else {
                String::new()
            }
        ),
        Some("jdbc") | Some("dbeaver") => format!(
            "JDBC URL: jdbc:snowflake://{host}:{port}/?account={account}&ssl={ssl}&role={role}\n\
             User: me   Password: -\n\
             (DBeaver: New connection → Snowflake → URL mode; paste the URL above.)\n{}",
            if info.is_https() {
                format!("Java trusts the CA once it is in the JVM's trust store:\n\
                         \x20 keytool -importcert -noprompt -alias snowgate-local-ca -file {ca} -cacerts -storepass changeit\n\
                         (or a store of your own: -keystore FILE, then -Djavax.net.ssl.trustStore=FILE)\n")
            } else {
                String::new()
            }
        ),
        Some("odbc") => format!(
            "Driver=SnowflakeDSIIDriver;Server={host};Port={port};SSL={ssl};Account={account};Role={role};UID=me;PWD=-\n{}",
            if info.is_https() {
                format!("(The ODBC driver trusts the CAs of its CABundleFile setting, in simba.snowflake.ini or the registry: point it at {bundle}.)\n")
            } else {
                "(ODBC over plain http is reported by the community, not verified by Snowgate's tests.)\n".to_string()
            }
        ),
        Some("go") => format!(
            "dsn := \"me:-@{host}:{port}/?account={account}&protocol={scheme}&role={role}\"\n\
             db, err := sql.Open(\"snowflake\", dsn)\n{}",
            if info.is_https() {
                format!("// Go reads extra CAs from SSL_CERT_FILE / SSL_CERT_DIR, or the system store (snowgate trust install): {ca}\n")
            } else {
                String::new()
            }
        ),
        Some("sqlalchemy") => format!(
            "from sqlalchemy import create_engine\n\
             engine = create_engine(\n\
             \x20   \"snowflake://me:-@{account}/?role={role}\",\n\
             \x20   connect_args={{\"host\": \"{host}\", \"port\": {port}, \"protocol\": \"{scheme}\"{}}},\n\
             )\n",
            if info.is_https() {
                format!(", \"custom_root_store_path\": \"{bundle}\"")
            } else {
                String::new()
            }
        ),
        Some("dbt") => format!(
            "# dbt talks to Snowflake directly with a short-lived token from Snowgate:\n\
             #   snowgate exec --role {role} -- dbt run\n\
             # profiles.yml:\n\
             my_project:\n\
             \x20 target: dev\n\
             \x20 outputs:\n\
             \x20   dev:\n\
             \x20     type: snowflake\n\
             \x20     account: \"{{{{ env_var('SNOWFLAKE_ACCOUNT') }}}}\"\n\
             \x20     user: me\n\
             \x20     authenticator: oauth\n\
             \x20     token: \"{{{{ env_var('SNOWFLAKE_TOKEN') }}}}\"\n\
             \x20     role: \"{{{{ env_var('SNOWFLAKE_ROLE') }}}}\"\n\
             \x20     database: MY_DB\n\
             \x20     warehouse: MY_WH\n\
             \x20     schema: PUBLIC\n\
             # Sessions dbt opens with the token are not closed by Snowgate and can outlive the grant.\n"
        ),
        Some(other) => bail!(
            "--tool {other}: not a tool Snowgate has settings for; use one of {}",
            TOOLS.join(", ")
        ),
    };
    Ok(text)
}
