//! `snowgate trust install|uninstall|status`: puts the local CA (`<data dir>/tls/ca.pem`,
//! [`snowgate_engine::local_ca`]) where tools look for CAs, takes it out again, and says where
//! it is.
//!
//! Two stores are changed: the system store on Debian-like systems (the CA copied into the
//! local certificates directory, then `update-ca-certificates`; root only) and the user's NSS
//! database (`certutil`, from libnss3-tools, for Chromium-based browsers and other NSS tools).
//! Every directory of the system store sits under one prefix (`--system-prefix`, `/` by
//! default), so tests relocate the whole store and never touch the machine's. For the tools
//! that keep their own trust (Java keystores, the Python connector, Node.js) the commands print
//! the exact settings, with the bundle `install` writes next to the CA (the public roots of the
//! system store plus the local CA, for clients that take one file instead of adding to it).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::{Args, Subcommand};
use snowgate_engine::local_ca::{LocalCa, TLS_DIR};

/// The file name of the CA in the system's local certificates directory.
const SYSTEM_FILE: &str = "snowgate-local-ca.crt";
/// The nickname of the CA in an NSS database.
const NSS_NICKNAME: &str = "Snowgate local CA";
/// The bundle of public roots plus the local CA, next to the CA.
pub const BUNDLE_FILE: &str = "ca-bundle.pem";

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Create the local CA if needed and trust it: the system store (as root) and your NSS
    /// database; prints the settings for Java, Python and Node.js
    Install(StoreArgs),
    /// Take the local CA out of the system store and your NSS database (the CA stays)
    Uninstall(StoreArgs),
    /// Say where the local CA is trusted, and when the gateway's leaf expires
    Status(StoreArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The root under which the system store's directories are (usr/local/share/ca-certificates,
    /// etc/ssl/certs, etc/ca-certificates.conf, etc/ca-certificates/update.d)
    #[arg(
        long,
        env = "SNOWGATE_TRUST_SYSTEM_PREFIX",
        default_value = "/",
        value_name = "DIR"
    )]
    system_prefix: PathBuf,
    /// The NSS database [default: $HOME/.pki/nssdb]
    #[arg(long, env = "SNOWGATE_TRUST_NSS_DB", value_name = "DIR")]
    nss_db: Option<PathBuf>,
    /// Leave the system store alone
    #[arg(long)]
    no_system: bool,
    /// Leave the NSS database alone
    #[arg(long)]
    no_nss: bool,
}

/// The system store's paths under a prefix.
struct SystemStore {
    local_dir: PathBuf,
    etc_certs: PathBuf,
    conf: PathBuf,
    certs_dir: PathBuf,
    hooks: PathBuf,
}

impl SystemStore {
    fn under(prefix: &Path) -> SystemStore {
        SystemStore {
            local_dir: prefix.join("usr/local/share/ca-certificates"),
            etc_certs: prefix.join("etc/ssl/certs"),
            conf: prefix.join("etc/ca-certificates.conf"),
            certs_dir: prefix.join("usr/share/ca-certificates"),
            hooks: prefix.join("etc/ca-certificates/update.d"),
        }
    }

    fn bundle(&self) -> PathBuf {
        self.etc_certs.join("ca-certificates.crt")
    }

    fn update(&self, fresh: bool) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.etc_certs)
            .with_context(|| format!("creating {}", self.etc_certs.display()))?;
        let mut cmd = Command::new("update-ca-certificates");
        if fresh {
            cmd.arg("--fresh");
        }
        cmd.arg("--certsconf")
            .arg(&self.conf)
            .arg("--certsdir")
            .arg(&self.certs_dir)
            .arg("--localcertsdir")
            .arg(&self.local_dir)
            .arg("--etccertsdir")
            .arg(&self.etc_certs)
            .arg("--hooksdir")
            .arg(&self.hooks);
        run_quiet(cmd, "update-ca-certificates")
    }

    /// Whether the bundle holds the CA (what tools reading the system store see).
    fn holds(&self, ca_pem: &str) -> bool {
        std::fs::read_to_string(self.bundle())
            .map(|b| b.contains(ca_pem.trim()))
            .unwrap_or(false)
    }
}

fn run_quiet(mut cmd: Command, name: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn certutil_present() -> bool {
    Command::new("certutil")
        .arg("-H")
        .output()
        .map(|_| true)
        .unwrap_or(false)
}

fn nss_db(args: &StoreArgs) -> Option<PathBuf> {
    args.nss_db
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pki/nssdb")))
}

fn nss_holds(db: &Path) -> bool {
    db.exists()
        && Command::new("certutil")
            .arg("-L")
            .arg("-d")
            .arg(format!("sql:{}", db.display()))
            .arg("-n")
            .arg(NSS_NICKNAME)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// Runs a `trust` command for the data dir `data_dir`.
pub fn run(command: TrustCommand, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let ca_dir = data_dir.join(TLS_DIR);
    match command {
        TrustCommand::Install(args) => install(&args, &ca_dir),
        TrustCommand::Uninstall(args) => uninstall(&args, &ca_dir),
        TrustCommand::Status(args) => status(&args, &ca_dir),
    }
}

fn install(args: &StoreArgs, ca_dir: &Path) -> anyhow::Result<ExitCode> {
    let ca = LocalCa::open_or_create(ca_dir)?;
    let ca_file = ca.cert_path();
    println!("Local CA: {} ({})", ca_file.display(), ca.common_name());
    println!("It can vouch only for localhost, 127.0.0.1 and ::1 (X.509 name constraints).");
    let mut failed = false;
    if !args.no_system {
        let store = SystemStore::under(&args.system_prefix);
        if !is_root() {
            println!(
                "System store: skipped (needs root). As root, run:\n  cp {} {}\n  update-ca-certificates",
                ca_file.display(),
                store.local_dir.join(SYSTEM_FILE).display()
            );
        } else {
            let result = std::fs::create_dir_all(&store.local_dir)
                .with_context(|| format!("creating {}", store.local_dir.display()))
                .and_then(|_| {
                    std::fs::write(store.local_dir.join(SYSTEM_FILE), ca.cert_pem())
                        .with_context(|| format!("writing {}", store.local_dir.display()))
                })
                .and_then(|_| store.update(false));
            match result {
                Ok(()) => println!("System store: installed ({})", store.bundle().display()),
                Err(e) => {
                    failed = true;
                    println!("System store: failed: {e:#}");
                }
            }
        }
    }
    if !args.no_nss {
        failed |= !install_nss(args, &ca_file);
    }
    let bundle = write_bundle(&ca, ca_dir, &args.system_prefix)?;
    print_tool_settings(&ca_file, &bundle);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn install_nss(args: &StoreArgs, ca_file: &Path) -> bool {
    let Some(db) = nss_db(args) else {
        println!("NSS database: skipped (HOME is not set; give --nss-db)");
        return true;
    };
    if !certutil_present() {
        println!("NSS database: skipped (certutil is not installed; on Debian: apt install libnss3-tools)");
        return true;
    }
    let result = (|| -> anyhow::Result<()> {
        if !db.join("cert9.db").exists() {
            std::fs::create_dir_all(&db).with_context(|| format!("creating {}", db.display()))?;
            let mut init = Command::new("certutil");
            init.arg("-N")
                .arg("-d")
                .arg(format!("sql:{}", db.display()))
                .arg("--empty-password");
            run_quiet(init, "certutil -N")?;
        }
        let mut add = Command::new("certutil");
        add.arg("-A")
            .arg("-d")
            .arg(format!("sql:{}", db.display()))
            .arg("-t")
            .arg("C,,")
            .arg("-n")
            .arg(NSS_NICKNAME)
            .arg("-i")
            .arg(ca_file);
        run_quiet(add, "certutil -A")
    })();
    match result {
        Ok(()) => {
            println!("NSS database: installed ({})", db.display());
            true
        }
        Err(e) => {
            println!("NSS database: failed: {e:#}");
            false
        }
    }
}

/// Writes the system store's public roots (if it has them) plus the local CA into one file,
/// for clients whose setting replaces their roots instead of adding to them.
fn write_bundle(ca: &LocalCa, ca_dir: &Path, prefix: &Path) -> anyhow::Result<PathBuf> {
    let mut text = std::fs::read_to_string(SystemStore::under(prefix).bundle())
        .or_else(|_| std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt"))
        .unwrap_or_default();
    if !text.contains(ca.cert_pem().trim()) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(ca.cert_pem());
    }
    let path = ca_dir.join(BUNDLE_FILE);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn print_tool_settings(ca_file: &Path, bundle: &Path) {
    let ca = ca_file.display();
    let bundle = bundle.display();
    println!(
        "\nTools with a trust store of their own:\n\
         \x20 Python connector 5.x: connect(..., protocol=\"https\", custom_root_store_path=\"{bundle}\")\n\
         \x20 Python connector 4.x: export REQUESTS_CA_BUNDLE={bundle}\n\
         \x20 Node.js (snowflake-sdk): export NODE_EXTRA_CA_CERTS={ca}\n\
         \x20 Java (JDBC, DBeaver): keytool -importcert -noprompt -alias snowgate-local-ca -file {ca} -keystore ~/.snowgate/truststore.p12 -storetype PKCS12 -storepass changeit\n\
         \x20   then run Java with -Djavax.net.ssl.trustStore=$HOME/.snowgate/truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit\n\
         \x20   (or, as root, into the JDK's own store: keytool -importcert -noprompt -alias snowgate-local-ca -file {ca} -cacerts -storepass changeit)\n\
         \x20 ODBC: CABundleFile={bundle} in simba.snowflake.ini"
    );
}

fn uninstall(args: &StoreArgs, ca_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    if !args.no_system {
        let store = SystemStore::under(&args.system_prefix);
        let file = store.local_dir.join(SYSTEM_FILE);
        if !file.exists() {
            println!("System store: not installed ({} is absent)", file.display());
        } else if !is_root() {
            println!(
                "System store: skipped (needs root). As root, run:\n  rm {}\n  update-ca-certificates --fresh",
                file.display()
            );
        } else {
            let result = std::fs::remove_file(&file)
                .with_context(|| format!("removing {}", file.display()))
                .and_then(|_| store.update(true))
                .and_then(|_| {
                    match store.holds(
                        &std::fs::read_to_string(
                            ca_dir.join(snowgate_engine::local_ca::CA_CERT_FILE),
                        )
                        .unwrap_or_default(),
                    ) {
                        true => anyhow::bail!(
                            "{} still holds the CA after update-ca-certificates --fresh",
                            store.bundle().display()
                        ),
                        false => Ok(()),
                    }
                });
            match result {
                Ok(()) => println!("System store: removed"),
                Err(e) => {
                    failed = true;
                    println!("System store: failed: {e:#}");
                }
            }
        }
    }
    if !args.no_nss {
        match nss_db(args) {
            Some(db) if certutil_present() && nss_holds(&db) => {
                let mut del = Command::new("certutil");
                del.arg("-D")
                    .arg("-d")
                    .arg(format!("sql:{}", db.display()))
                    .arg("-n")
                    .arg(NSS_NICKNAME);
                match run_quiet(del, "certutil -D") {
                    Ok(()) => println!("NSS database: removed ({})", db.display()),
                    Err(e) => {
                        failed = true;
                        println!("NSS database: failed: {e:#}");
                    }
                }
            }
            Some(db) if certutil_present() => {
                println!("NSS database: not installed ({})", db.display())
            }
            _ => println!("NSS database: skipped (certutil is not installed, or no database)"),
        }
    }
    let bundle = ca_dir.join(BUNDLE_FILE);
    if bundle.exists() {
        std::fs::remove_file(&bundle).with_context(|| format!("removing {}", bundle.display()))?;
    }
    println!(
        "The CA stays in {} (delete the directory to retire it).",
        ca_dir.display()
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn status(args: &StoreArgs, ca_dir: &Path) -> anyhow::Result<ExitCode> {
    let Some(ca) = LocalCa::open_existing(ca_dir)? else {
        println!(
            "No local CA yet ({} is absent): `snowgate trust install` or [gateway] tls = true creates it.",
            ca_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "Local CA: {} ({})",
        ca.cert_path().display(),
        ca.common_name()
    );
    if !args.no_system {
        let store = SystemStore::under(&args.system_prefix);
        println!(
            "System store ({}): {}",
            store.bundle().display(),
            if store.holds(ca.cert_pem()) {
                "installed"
            } else {
                "not installed"
            }
        );
    }
    if !args.no_nss {
        match nss_db(args) {
            Some(db) if certutil_present() => println!(
                "NSS database ({}): {}",
                db.display(),
                if nss_holds(&db) {
                    "installed"
                } else {
                    "not installed"
                }
            ),
            _ => println!("NSS database: unknown (certutil is not installed)"),
        }
    }
    let bundle = ca_dir.join(BUNDLE_FILE);
    if bundle.exists() {
        println!("Bundle for Python and ODBC: {}", bundle.display());
    }
    Ok(ExitCode::SUCCESS)
}
