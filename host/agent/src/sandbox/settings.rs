//! Where the sandbox settings come from: `--sandbox` / `--network`, `AGENT_SANDBOX`, and the
//! `[sandbox]` table of the user's own `config.toml` (in the agent's config directory, never
//! a file in the workspace: a cloned repository must not widen its own sandbox).
//! Precedence: flag > environment > config file > default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config_file::{ConfigFile, ConfigFileError};

/// What native commands may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Read the system, the workspace and the toolchains; write the workspace, a private
    /// temporary directory and the toolchain caches.
    WorkspaceWrite,
    /// The same reads; write only the private temporary directory.
    ReadOnly,
    /// No sandbox: commands run with all of the user's rights.
    Off,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::WorkspaceWrite => "workspace-write",
            Mode::ReadOnly => "read-only",
            Mode::Off => "off",
        }
    }
}

/// Toolchain directories commands may read by default (`~` is the home directory).
pub const DEFAULT_TOOLCHAINS: &[&str] = &[
    "~/.cargo",
    "~/.rustup",
    "~/.npm",
    "~/.cache/pip",
    "~/.gitconfig",
    "~/.pyenv",
    "~/.nvm",
];

/// Toolchain caches commands may write by default.
pub const DEFAULT_CACHES: &[&str] = &[
    "~/.cargo/registry",
    "~/.cargo/git",
    "~/.npm",
    "~/.cache/pip",
];

/// The settings of the sandbox for this run, before any path is looked at.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// Whether commands may open network sockets (otherwise only Unix sockets).
    pub network: bool,
    /// Toolchain directories and files to read (defaults, or the config's `toolchains`).
    pub toolchains: Vec<PathBuf>,
    /// Toolchain caches to write (defaults, or the config's `caches`).
    pub caches: Vec<PathBuf>,
    /// Extra directories or files to read (the config's `read`).
    pub read: Vec<PathBuf>,
    /// Extra directories or files to write (the config's `write`).
    pub write: Vec<PathBuf>,
    /// The facts of this environment the policy is derived from.
    pub environment: Environment,
    /// Where the mode was chosen, for `agent sandbox check` (`--sandbox`, `AGENT_SANDBOX`,
    /// the config file's path, or `default`).
    pub mode_source: String,
}

/// What the policy needs to know about the user's environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub home: Option<PathBuf>,
    /// The directories on `PATH`, in order.
    pub path: Vec<PathBuf>,
    /// Toolchain homes named by the environment (`CARGO_HOME`, `RUSTUP_HOME`,
    /// `PYENV_ROOT`, `NVM_DIR`).
    pub toolchain_homes: Vec<PathBuf>,
    /// Cargo's home, whose `registry` and `git` caches are written.
    pub cargo_home: Option<PathBuf>,
    /// Where the private temporary directory is made (the agent's own temp dir).
    pub temp_root: PathBuf,
}

impl Environment {
    /// The facts of this process's environment: `HOME`, `PATH`, the toolchain homes, the
    /// temporary directory.
    pub fn from_process() -> Environment {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        Environment {
            home: var("HOME"),
            path,
            toolchain_homes: ["CARGO_HOME", "RUSTUP_HOME", "PYENV_ROOT", "NVM_DIR"]
                .iter()
                .filter_map(|name| var(name))
                .collect(),
            cargo_home: var("CARGO_HOME"),
            temp_root: std::env::temp_dir(),
        }
    }
}

/// The user's sandbox settings are wrong; the message says where and how.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("{path}: [sandbox] {key}: {value:?} must be an absolute path or start with ~/")]
    RelativePath {
        path: PathBuf,
        key: &'static str,
        value: String,
    },
}

/// The `[sandbox]` table of `config.toml`; other tables are left to their own readers.
#[derive(Debug, Default, Deserialize)]
struct SandboxFile {
    sandbox: Option<SandboxTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxTable {
    mode: Option<Mode>,
    network: Option<bool>,
    toolchains: Option<Vec<String>>,
    caches: Option<Vec<String>>,
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
}

/// What the command line said (`AGENT_SANDBOX` is read by clap into `mode`, so a flag wins
/// over it).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlagSettings {
    pub mode: Option<Mode>,
    /// Where `mode` came from, when given.
    pub mode_from_env: bool,
    pub network: bool,
}

impl Settings {
    /// Merges the flags with the `[sandbox]` table of the user's config file.
    pub fn resolve(
        flags: FlagSettings,
        file: &ConfigFile,
        environment: Environment,
    ) -> Result<Settings, SettingsError> {
        let table = file.table::<SandboxFile>()?.sandbox.unwrap_or_default();
        let config_file = file.path();
        let file_name = || {
            config_file
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let home = environment.home.clone();
        let paths = |key: &'static str,
                     given: &Option<Vec<String>>,
                     default: &[&str]|
         -> Result<Vec<PathBuf>, SettingsError> {
            match given {
                Some(list) => list
                    .iter()
                    .map(|value| {
                        expand(value, home.as_deref()).ok_or_else(|| SettingsError::RelativePath {
                            path: config_file.map(Path::to_path_buf).unwrap_or_default(),
                            key,
                            value: value.clone(),
                        })
                    })
                    .collect(),
                // Defaults under `~` are skipped without a home.
                None => Ok(default
                    .iter()
                    .filter_map(|value| expand(value, home.as_deref()))
                    .collect()),
            }
        };
        let toolchains = paths("toolchains", &table.toolchains, DEFAULT_TOOLCHAINS)?;
        let caches = paths("caches", &table.caches, DEFAULT_CACHES)?;
        let read = paths("read", &table.read, &[])?;
        let write = paths("write", &table.write, &[])?;
        let (mode, mode_source) = match (flags.mode, table.mode) {
            (Some(mode), _) if flags.mode_from_env => (mode, "AGENT_SANDBOX".to_string()),
            (Some(mode), _) => (mode, "--sandbox".to_string()),
            (None, Some(mode)) => (mode, file_name()),
            (None, None) => (Mode::WorkspaceWrite, "default".to_string()),
        };
        Ok(Settings {
            mode,
            network: flags.network || table.network.unwrap_or(false),
            toolchains,
            caches,
            read,
            write,
            environment,
            mode_source,
        })
    }
}

/// `~/x` under `home`, or an absolute path; `None` for anything else (or `~` without a
/// home).
fn expand(value: &str, home: Option<&Path>) -> Option<PathBuf> {
    if value == "~" {
        return home.map(Path::to_path_buf);
    }
    if let Some(rest) = value.strip_prefix("~/") {
        return home.map(|h| h.join(rest));
    }
    let path = PathBuf::from(value);
    path.is_absolute().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_home(home: &Path) -> Environment {
        Environment {
            home: Some(home.to_path_buf()),
            temp_root: std::env::temp_dir(),
            ..Environment::default()
        }
    }

    #[test]
    fn a_flag_beats_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[sandbox]\nmode = \"read-only\"\nnetwork = true\n",
        )
        .unwrap();
        let file = ConfigFile::read(Some(dir.path())).unwrap();
        let env = env_with_home(dir.path());
        let from_file = Settings::resolve(FlagSettings::default(), &file, env.clone()).unwrap();
        assert_eq!(from_file.mode, Mode::ReadOnly);
        assert!(from_file.network);
        let flagged = FlagSettings {
            mode: Some(Mode::Off),
            ..FlagSettings::default()
        };
        let from_flag = Settings::resolve(flagged, &file, env.clone()).unwrap();
        assert_eq!(from_flag.mode, Mode::Off);
        assert_eq!(from_flag.mode_source, "--sandbox");
        let default =
            Settings::resolve(FlagSettings::default(), &ConfigFile::default(), env).unwrap();
        assert_eq!(default.mode, Mode::WorkspaceWrite);
        assert!(!default.network);
        assert!(default.toolchains.contains(&dir.path().join(".cargo")));
    }

    #[test]
    fn bad_files_give_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        let env = env_with_home(dir.path());
        for (text, expected) in [
            ("[sandbox]\nmode = \"wide-open\"\n", "line 2"),
            ("[sandbox]\nmodes = \"off\"\n", "unknown field"),
            ("[sandbox]\nread = [\"relative/dir\"]\n", "absolute path"),
        ] {
            std::fs::write(&file, text).unwrap();
            let config = ConfigFile::read(Some(dir.path())).unwrap();
            let error = Settings::resolve(FlagSettings::default(), &config, env.clone())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn configured_lists_replace_the_defaults_and_expand_home() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[other]\nx = 1\n[sandbox]\ntoolchains = [\"~/tools\"]\nwrite = [\"/var/cache/x\"]\n",
        )
        .unwrap();
        let settings = Settings::resolve(
            FlagSettings::default(),
            &ConfigFile::read(Some(dir.path())).unwrap(),
            env_with_home(dir.path()),
        )
        .unwrap();
        assert_eq!(settings.toolchains, vec![dir.path().join("tools")]);
        assert_eq!(settings.write, vec![PathBuf::from("/var/cache/x")]);
        assert_eq!(settings.caches.len(), DEFAULT_CACHES.len());
    }
}
