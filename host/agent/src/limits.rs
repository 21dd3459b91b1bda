//! The limits of commands and background tasks: `--bash-timeout`, `--background-timeout`,
//! `--max-background` and `--max-tasks`, else the `[limits]` table of the user's
//! config.toml, else the built-in defaults. Each remembers where it came from, for
//! `agent config show`.

use std::time::Duration;

use serde::Deserialize;

use crate::cli::Cli;
use crate::config::ConfigError;
use crate::config_file::ConfigFile;

/// The built-in defaults: `bash` and background time limits (seconds), background tasks
/// at once, and background tasks per session.
const DEFAULTS: [u64; 4] = [120, 300, 8, 300];
/// The names of the settings, as flags and as keys of `[limits]`.
const NAMES: [(&str, &str); 4] = [
    ("--bash-timeout", "bash_timeout"),
    ("--background-timeout", "background_timeout"),
    ("--max-background", "max_background"),
    ("--max-tasks", "max_tasks"),
];

#[derive(Debug, Default, Deserialize)]
struct LimitsFile {
    limits: Option<LimitsTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    bash_timeout: Option<u64>,
    background_timeout: Option<u64>,
    max_background: Option<u64>,
    max_tasks: Option<u64>,
}

/// The limits of this run.
#[derive(Debug, Clone)]
pub struct Limits {
    pub bash_timeout: Duration,
    pub background_timeout: Duration,
    pub max_background: usize,
    pub max_tasks: usize,
    /// Where each came from: (the `[limits]` key, the source).
    pub sources: Vec<(&'static str, String)>,
}

impl Limits {
    /// Flags > config file > defaults. A value of 0 in the file is an error (the flags
    /// refuse it themselves).
    pub fn resolve(cli: &Cli, file: &ConfigFile) -> Result<Limits, ConfigError> {
        let table = file.table::<LimitsFile>()?.limits.unwrap_or_default();
        let flags = [
            cli.bash_timeout,
            cli.background_timeout,
            cli.max_background,
            cli.max_tasks,
        ];
        let in_file = [
            table.bash_timeout,
            table.background_timeout,
            table.max_background,
            table.max_tasks,
        ];
        let mut values = [0u64; 4];
        let mut sources = Vec::new();
        for index in 0..4 {
            let (flag, key) = NAMES[index];
            let (value, source) = match (flags[index], in_file[index]) {
                (Some(value), _) => (value, flag.to_string()),
                (None, Some(0)) => {
                    return Err(ConfigError::Invalid {
                        name: key,
                        what: "at least 1 (in the [limits] table of config.toml)",
                        value: "0".to_string(),
                    });
                }
                (None, Some(value)) => (value, format!("config.toml [limits] {key}")),
                (None, None) => (DEFAULTS[index], "default".to_string()),
            };
            values[index] = value;
            sources.push((key, source));
        }
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Limits {
            bash_timeout: Duration::from_secs(values[0]),
            background_timeout: Duration::from_secs(values[1]),
            max_background: count(values[2]),
            max_tasks: count(values[3]),
            sources,
        })
    }
}
