//! Where Snowgate reads its config and keeps its data.
//!
//! Config: `--config PATH`, else `$SNOWGATE_CONFIG`, else `$XDG_CONFIG_HOME/snowgate/config.toml`
//! (`~/.config/...` when XDG_CONFIG_HOME is unset). Data: `--data-dir`, else
//! `$SNOWGATE_DATA_DIR`, else `$XDG_DATA_HOME/snowgate` (`~/.local/share/...`).

use std::path::PathBuf;

/// A path together with how it was chosen, for messages like "no config at X (from $SNOWGATE_CONFIG)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub how_found: String,
}

/// The process environment as far as path resolution needs it; injectable for tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

fn xdg_dir(env: &dyn Env, var: &str, fallback: &str) -> Result<(PathBuf, String), String> {
    if let Some(dir) = env.var(var) {
        return Ok((PathBuf::from(dir), format!("${var}")));
    }
    match env.var("HOME") {
        Some(home) => Ok((
            PathBuf::from(home).join(fallback),
            format!("$HOME/{fallback}"),
        )),
        None => Err(format!(
            "neither ${var} nor $HOME is set; pass the path explicitly"
        )),
    }
}

/// Resolves the config file's path.
pub fn config_file(explicit: Option<PathBuf>, env: &dyn Env) -> Result<Located, String> {
    if let Some(path) = explicit {
        return Ok(Located {
            path,
            how_found: "from --config".into(),
        });
    }
    if let Some(path) = env.var("SNOWGATE_CONFIG") {
        return Ok(Located {
            path: PathBuf::from(path),
            how_found: "from $SNOWGATE_CONFIG".into(),
        });
    }
    let (dir, how) = xdg_dir(env, "XDG_CONFIG_HOME", ".config")?;
    Ok(Located {
        path: dir.join("snowgate/config.toml"),
        how_found: format!("the default under {how}"),
    })
}

/// Resolves the data directory.
pub fn data_dir(explicit: Option<PathBuf>, env: &dyn Env) -> Result<Located, String> {
    if let Some(path) = explicit {
        return Ok(Located {
            path,
            how_found: "from --data-dir".into(),
        });
    }
    if let Some(path) = env.var("SNOWGATE_DATA_DIR") {
        return Ok(Located {
            path: PathBuf::from(path),
            how_found: "from $SNOWGATE_DATA_DIR".into(),
        });
    }
    let (dir, how) = xdg_dir(env, "XDG_DATA_HOME", ".local/share")?;
    Ok(Located {
        path: dir.join("snowgate"),
        how_found: format!("the default under {how}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, &'static str>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    #[test]
    fn flag_beats_env_beats_xdg_beats_home() {
        let env = FakeEnv(HashMap::from([
            ("SNOWGATE_CONFIG", "/env/c.toml"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/a"),
        ]));
        assert_eq!(
            config_file(Some("/flag.toml".into()), &env).unwrap().path,
            PathBuf::from("/flag.toml")
        );
        assert_eq!(
            config_file(None, &env).unwrap().path,
            PathBuf::from("/env/c.toml")
        );
        let env = FakeEnv(HashMap::from([
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/a"),
        ]));
        assert_eq!(
            config_file(None, &env).unwrap().path,
            PathBuf::from("/xdg/snowgate/config.toml")
        );
        let env = FakeEnv(HashMap::from([("HOME", "/home/a")]));
        assert_eq!(
            config_file(None, &env).unwrap().path,
            PathBuf::from("/home/a/.config/snowgate/config.toml")
        );
        assert_eq!(
            data_dir(None, &env).unwrap().path,
            PathBuf::from("/home/a/.local/share/snowgate")
        );
    }

    #[test]
    fn no_home_is_a_clear_error() {
        let env = FakeEnv(HashMap::new());
        let err = data_dir(None, &env).unwrap_err();
        assert!(err.contains("$XDG_DATA_HOME"), "{err}");
    }
}
