//! `snowgate completions SHELL` and `snowgate man DIR`: hidden commands that `scripts/package`
//! runs at build time to write the shell completions (clap_complete) and the man pages
//! (clap_mangen) from the same clap command that parses `snowgate`'s arguments, so neither can
//! drift from the real options.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Writes the completion script for `shell` to stdout.
pub fn completions(
    mut cmd: clap::Command,
    shell: clap_complete::Shell,
) -> anyhow::Result<ExitCode> {
    let name = cmd.get_name().to_string();
    // Generated in memory first: clap_complete panics on a failed write, and a closed stdout is
    // an error to report, not a crash.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `snowgate.1` and one page per visible subcommand (`snowgate-up.1`, ...) into `dir`,
/// which must exist, and prints the paths written.
pub fn man(cmd: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory; create it first (the man pages are written into it)",
            dir.display()
        );
    }
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))?;
    let mut written: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    written.sort();
    for page in written {
        println!("{}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("snowgate")
            .version("1.2.3")
            .about("test")
            .subcommand(clap::Command::new("up").about("run it"))
            .subcommand(clap::Command::new("completions").hide(true))
    }

    #[test]
    fn man_writes_one_page_per_visible_command_and_none_for_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        man(command(), dir.path()).unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        assert_eq!(pages, ["snowgate-up.1", "snowgate.1"]);
        let up = std::fs::read_to_string(dir.path().join("snowgate-up.1")).unwrap();
        assert!(up.contains("run it"), "{up}");
    }

    #[test]
    fn man_refuses_a_missing_directory_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = man(command(), &missing).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("not a directory"),
            "{err}"
        );
    }
}
