//! How large the model's context window is and when the conversation is compacted.
//!
//! The window comes from, in order: `--context-window`, `AGENT_CONTEXT_WINDOW`, `window`
//! in the `[context]` table of the user's `config.toml` (never a file in the workspace),
//! then a built-in table by model-name prefix, then a conservative default. The threshold
//! (`compact_at`, a fraction of the window) comes from the config file or the default.

use serde::Deserialize;

use crate::config_file::{ConfigFile, ConfigFileError};

/// The window of a model this table does not know: small enough for every current model
/// family, so an unknown model is compacted early rather than overflowed.
pub const DEFAULT_WINDOW: u64 = 128_000;

/// Compact when a request would pass this fraction of the window; the rest is left for
/// the answer and for the error of the size estimate.
pub const DEFAULT_COMPACT_AT: f64 = 0.8;

/// The smallest window accepted: below it not even the tools and a summary fit.
pub const MIN_WINDOW: u64 = 1_024;

/// Context windows by model-name prefix; the longest matching prefix wins. From the
/// providers' model documentation (Anthropic "Models overview": 200K tokens for every
/// Claude model without the 1M beta header; OpenAI model pages: GPT-4.1 1,047,576,
/// GPT-4o 128,000, o1/o3/o4-mini 200,000, o1-mini 128,000, GPT-5 400,000).
const KNOWN_WINDOWS: &[(&str, u64)] = &[
    ("claude-", 200_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-5", 400_000),
    ("o1-mini", 128_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
];

/// The window of this run and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSettings {
    /// Tokens the model accepts in one request (input and answer).
    pub window: u64,
    /// Compact before a request larger than `window * compact_at` is sent.
    pub compact_at: f64,
    /// Tokens kept free for the answer (`--max-tokens`): the API refuses a request whose
    /// input and largest answer together pass the window. At most half the window counts.
    pub answer_tokens: u64,
    /// Where `window` came from (`--context-window`, `AGENT_CONTEXT_WINDOW`, the config
    /// file's path, `built-in table (PREFIX)` or `default`), for `agent config show`.
    pub source: String,
}

impl Default for WindowSettings {
    fn default() -> WindowSettings {
        WindowSettings {
            window: DEFAULT_WINDOW,
            compact_at: DEFAULT_COMPACT_AT,
            answer_tokens: 0,
            source: "default".into(),
        }
    }
}

impl WindowSettings {
    /// The most tokens a request may have before the conversation is compacted:
    /// `compact_at` of the window, and room for the answer.
    pub fn limit(&self) -> u64 {
        let threshold = (self.window as f64 * self.compact_at) as u64;
        let room = self.window - self.answer_tokens.min(self.window / 2);
        threshold.min(room)
    }

    /// Merges the flag, the environment variable's value and the config file (absent is
    /// fine) with the built-in table for `model`.
    pub fn resolve(
        flag: Option<u64>,
        env: Option<String>,
        config: &ConfigFile,
        model: &str,
    ) -> Result<WindowSettings, WindowError> {
        let table = config.table::<ContextFile>()?.context.unwrap_or_default();
        let file = || {
            config
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let from_env = match env {
            None => None,
            Some(value) => Some(
                value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|w| *w >= MIN_WINDOW)
                    .ok_or(WindowError::Invalid {
                        name: "AGENT_CONTEXT_WINDOW".into(),
                        what: "a number of tokens, at least 1024",
                        value,
                    })?,
            ),
        };
        if let Some(window) = table.window
            && window < MIN_WINDOW
        {
            return Err(WindowError::Invalid {
                name: format!("{}: [context] window", file()),
                what: "a number of tokens, at least 1024",
                value: window.to_string(),
            });
        }
        let compact_at = table.compact_at.unwrap_or(DEFAULT_COMPACT_AT);
        if !(compact_at > 0.05 && compact_at <= 1.0) {
            return Err(WindowError::Invalid {
                name: format!("{}: [context] compact_at", file()),
                what: "a fraction of the window above 0.05 and at most 1.0, e.g. 0.8",
                value: compact_at.to_string(),
            });
        }
        let (window, source) = match (flag, from_env, table.window) {
            (Some(w), _, _) => (w, "--context-window".to_string()),
            (None, Some(w), _) => (w, "AGENT_CONTEXT_WINDOW".to_string()),
            (None, None, Some(w)) => (w, file()),
            (None, None, None) => match known_window(model) {
                Some((prefix, w)) => (w, format!("built-in table ({prefix}*)")),
                None => (DEFAULT_WINDOW, "default (unknown model)".to_string()),
            },
        };
        Ok(WindowSettings {
            window,
            compact_at,
            answer_tokens: 0,
            source,
        })
    }
}

/// The built-in window of `model` and the prefix that matched. A router's
/// `vendor/model` name is looked up by its last part.
pub fn known_window(model: &str) -> Option<(&'static str, u64)> {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    KNOWN_WINDOWS
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// The user's context settings are wrong; the message says where and how.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("{name} must be {what}, not {value:?}")]
    Invalid {
        name: String,
        what: &'static str,
        value: String,
    },
}

/// The `[context]` table of `config.toml`; other tables are left to their own readers.
#[derive(Debug, Default, Deserialize)]
struct ContextFile {
    context: Option<ContextTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextTable {
    window: Option<u64>,
    compact_at: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_longest_prefix_and_router_names() {
        assert_eq!(known_window("claude-sonnet-4-5").unwrap().1, 200_000);
        assert_eq!(known_window("gpt-4.1-mini").unwrap().1, 1_047_576);
        assert_eq!(known_window("gpt-4o-2024-08-06").unwrap().1, 128_000);
        assert_eq!(known_window("o1-mini").unwrap().1, 128_000);
        assert_eq!(known_window("o3").unwrap().1, 200_000);
        assert_eq!(known_window("openai/gpt-5").unwrap().1, 400_000);
        assert_eq!(known_window("llama3.1:8b"), None);
    }

    #[test]
    fn flag_beats_environment_beats_file_beats_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[sandbox]\nmode = \"off\"\n[context]\nwindow = 50000\ncompact_at = 0.5\n",
        )
        .unwrap();
        let config = ConfigFile::read(Some(dir.path())).unwrap();
        let resolve = |flag, env: Option<&str>| {
            WindowSettings::resolve(flag, env.map(String::from), &config, "claude-x").unwrap()
        };
        assert_eq!(resolve(Some(9000), Some("8000")).window, 9000);
        assert_eq!(resolve(None, Some("8000")).window, 8000);
        let from_file = resolve(None, None);
        assert_eq!((from_file.window, from_file.compact_at), (50_000, 0.5));
        assert_eq!(from_file.limit(), 25_000);
        let answer = |answer_tokens| {
            WindowSettings {
                answer_tokens,
                ..resolve(Some(10_000), None)
            }
            .limit()
        };
        assert_eq!(
            (answer(1_000), answer(3_000), answer(9_000)),
            (5_000, 5_000, 5_000)
        );
        let tight = WindowSettings {
            compact_at: 0.9,
            answer_tokens: 3_000,
            ..resolve(Some(10_000), None)
        };
        assert_eq!(tight.limit(), 7_000);
        let table =
            WindowSettings::resolve(None, None, &ConfigFile::default(), "claude-x").unwrap();
        assert_eq!(table.window, 200_000);
        assert_eq!(table.source, "built-in table (claude-*)");
        let unknown =
            WindowSettings::resolve(None, None, &ConfigFile::default(), "mystery").unwrap();
        assert_eq!(unknown.window, DEFAULT_WINDOW);
    }

    #[test]
    fn bad_settings_are_errors_that_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "[context]\nwindow = 5000\nsize = 3\n").unwrap();
        let config = ConfigFile::read(Some(dir.path())).unwrap();
        let e = WindowSettings::resolve(None, None, &config, "m").unwrap_err();
        assert!(
            e.to_string().contains("size") && e.to_string().contains("line 3"),
            "{e}"
        );
        std::fs::write(&file, "[context]\ncompact_at = 1.5\n").unwrap();
        let config = ConfigFile::read(Some(dir.path())).unwrap();
        let e = WindowSettings::resolve(None, None, &config, "m").unwrap_err();
        assert!(e.to_string().contains("compact_at"), "{e}");
        let e = WindowSettings::resolve(None, Some("lots".into()), &ConfigFile::default(), "m")
            .unwrap_err();
        assert!(e.to_string().contains("AGENT_CONTEXT_WINDOW"), "{e}");
    }
}
