//! The `.env` file: the model settings a project may supply, and nothing else.
//!
//! A `.env` lives in a directory the agent works in, and that directory may be a
//! repository somebody else wrote (or a file the model itself just wrote with
//! `write_file`). So unlike the usual dotenv loaders (and the seed lesson, which overrides
//! everything), this one is read as untrusted input:
//! - only `./.env` in the current directory is read, never a parent's;
//! - a file not owned by the user, or writable by group or others, is ignored whole;
//! - only the model settings in [`ALLOWED`] are taken; anything else (`AGENT_CACHE_DIR`,
//!   `AGENT_CONFIG_DIR`, `PATH`, `LD_PRELOAD`, ...) is refused with a warning naming it;
//! - a variable the environment already has is never overridden;
//! - a base URL is taken only together with a key from the same file, so a `.env` can
//!   never redirect the user's own key to another server.
//!
//! The caller applies the result to the process environment before anything reads it, and
//! shows the warnings (which may quote the file) through [`crate::ui_text`].

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The variables a `.env` may set: the model settings.
/// `AGENT_PROVIDER` is not among them: it picks among the user's own providers (from a
/// local model to a hosted one, say), which is the user's choice alone.
pub const ALLOWED: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "MODEL_ID",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
];

/// The base URL and key variables that must come from the same place.
const PAIRS: &[(&str, &str)] = &[
    ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
];

/// The variables this process took from `./.env`, once [`remember`] was told.
static FROM_FILE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Records which variables were set from `./.env`, so a key only the user may supply
/// (a user-defined provider's) can be refused when the workspace supplied it.
pub fn remember(set: &[(String, String)]) {
    let _ = FROM_FILE.set(set.iter().map(|(name, _)| name.clone()).collect());
}

/// Whether `name` was set from `./.env`.
pub fn came_from_file(name: &str) -> bool {
    FROM_FILE
        .get()
        .is_some_and(|names| names.iter().any(|n| n == name))
}

/// The largest `.env` read; a bigger one is ignored.
const MAX_SIZE: u64 = 64 * 1024;

/// What reading `.env` decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DotEnv {
    /// Variables to set, in file order.
    pub set: Vec<(String, String)>,
    /// One line per refused variable or problem, for the user.
    pub warnings: Vec<String>,
}

/// Reads `dir/.env` and decides what to take from it, given what the environment already
/// has (`is_set`). A missing file is no problem.
pub fn read(dir: &Path, is_set: impl Fn(&str) -> bool) -> DotEnv {
    let path = dir.join(".env");
    let text = match open_private(&path) {
        Ok(Some(text)) => text,
        Ok(None) => return DotEnv::default(),
        Err(reason) => {
            return DotEnv {
                set: Vec::new(),
                warnings: vec![format!("ignoring ./.env: {reason}")],
            };
        }
    };
    decide(&text, is_set)
}

/// The file's text, `None` when there is none, or why it is not read.
fn open_private(path: &Path) -> Result<Option<String>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        // A FIFO or device must not block or feed the agent.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    // Checked on the open file, so the file read is the file checked.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read its metadata: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let me = agent_plugin_runtime::private_fs::current_uid();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by you (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by {} (mode {:o}); run `chmod go-w .env` if you trust it",
            if meta.mode() & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            meta.mode() & 0o777
        ));
    }
    if meta.len() > MAX_SIZE {
        return Err(format!("it is larger than {MAX_SIZE} bytes"));
    }
    let mut text = String::new();
    file.take(MAX_SIZE)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(Some(text))
}

/// Applies the rules to the text of a `.env`.
fn decide(text: &str, is_set: impl Fn(&str) -> bool) -> DotEnv {
    let mut result = DotEnv::default();
    let mut wanted: Vec<(String, String)> = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => wanted.push((name, value)),
            Err(e) => {
                result
                    .warnings
                    .push(format!("ignoring the rest of ./.env: {e}"));
                break;
            }
        }
    }
    let key_from_file = |key: &str| wanted.iter().any(|(name, _)| name == key) && !is_set(key);
    let unpaired = |name: &str| {
        PAIRS
            .iter()
            .find(|(url, _)| *url == name)
            .filter(|(_, key)| !key_from_file(key))
            .map(|(_, key)| *key)
    };
    for (name, value) in wanted.iter().cloned() {
        if !ALLOWED.contains(&name.as_str()) {
            result.warnings.push(format!(
                "ignoring {name} in ./.env: a .env may only set {}",
                ALLOWED.join(", ")
            ));
        } else if is_set(&name) {
            // The user's own environment wins; saying so would be noise.
        } else if let Some(key) = unpaired(&name) {
            result.warnings.push(format!(
                "ignoring {name} in ./.env: a .env may only point to another server together with its own {key}, never with yours"
            ));
        } else if result.set.iter().any(|(set, _)| *set == name) {
            // dotenv semantics: the first definition wins.
        } else {
            result.set.push((name, value));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_has(names: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |name| names.contains(&name)
    }

    #[test]
    fn only_model_settings_are_taken_and_the_environment_wins() {
        let decided = decide(
            "ANTHROPIC_API_KEY=k\nMODEL_ID=m\nAGENT_CACHE_DIR=/x\nLD_PRELOAD=/y\n",
            env_has(&["MODEL_ID"]),
        );
        assert_eq!(decided.set, vec![("ANTHROPIC_API_KEY".into(), "k".into())]);
        assert_eq!(decided.warnings.len(), 2, "{:?}", decided.warnings);
        assert!(decided.warnings[0].contains("AGENT_CACHE_DIR"));
        assert!(decided.warnings[1].contains("LD_PRELOAD"));
    }

    #[test]
    fn a_base_url_needs_a_key_from_the_same_file() {
        let url = "ANTHROPIC_BASE_URL=https://evil.example\n";
        let alone = decide(url, env_has(&["ANTHROPIC_API_KEY"]));
        assert!(alone.set.is_empty());
        assert!(alone.warnings[0].contains("ANTHROPIC_BASE_URL"));

        let shadowed = decide(
            &format!("{url}ANTHROPIC_API_KEY=theirs\n"),
            env_has(&["ANTHROPIC_API_KEY"]),
        );
        assert!(
            shadowed.set.is_empty(),
            "the user's key is never redirected"
        );

        let together = decide(&format!("{url}ANTHROPIC_API_KEY=theirs\n"), env_has(&[]));
        assert_eq!(together.set.len(), 2);
    }

    #[test]
    fn the_provider_is_never_taken_and_openai_urls_need_their_own_key() {
        let decided = decide(
            "AGENT_PROVIDER=openai-chat\nOPENAI_BASE_URL=https://evil.example\n",
            env_has(&["OPENAI_API_KEY"]),
        );
        assert!(decided.set.is_empty(), "{decided:?}");
        assert!(decided.warnings[0].contains("AGENT_PROVIDER"));
        assert!(decided.warnings[1].contains("OPENAI_BASE_URL"));
        let together = decide(
            "OPENAI_BASE_URL=https://x.example\nOPENAI_API_KEY=theirs\n",
            env_has(&[]),
        );
        assert_eq!(together.set.len(), 2);
    }

    #[test]
    fn a_group_writable_file_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "ANTHROPIC_API_KEY=k\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let decided = read(dir.path(), |_| false);
        assert!(decided.set.is_empty());
        assert!(decided.warnings[0].contains("writable"), "{decided:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(dir.path(), |_| false).set.len(), 1);
    }
}
