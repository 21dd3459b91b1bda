//! Remembered `describe()` failures, so a component whose `describe()` loops or crashes
//! costs its time limit once, not on every start.
//!
//! A failure is keyed by the full SHA-256 of the component's bytes and the engine's
//! compatibility tag (another wasmtime or engine setting may behave differently), kept in
//! memory for the run and on disk beside the compiled-component cache
//! (`describe-failures/KEY`, a private 0600 file holding only the message). A stored
//! message is used only when the file is the user's own and not writable by others;
//! anything else is ignored, which at worst runs `describe()` again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;

/// The longest stored message read back.
const MAX_MESSAGE: u64 = 8 * 1024;

pub struct DescribeFailures {
    dir: Option<PathBuf>,
    seen: HashMap<String, String>,
}

impl DescribeFailures {
    /// Failures kept under `cache_dir` (none on disk without a cache directory).
    pub fn new(cache_dir: Option<&Path>) -> DescribeFailures {
        DescribeFailures {
            dir: cache_dir.map(|dir| dir.join("describe-failures")),
            seen: HashMap::new(),
        }
    }

    /// The key of a component: the hex SHA-256 of its bytes and the engine's tag.
    pub fn key(engine: &Engine, sha256_hex: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{sha256_hex}-{:016x}", hasher.finish())
    }

    /// The remembered failure of the component with `key`, if any.
    pub fn get(&mut self, key: &str) -> Option<String> {
        if let Some(message) = self.seen.get(key) {
            return Some(message.clone());
        }
        let message = read_private(&self.dir.as_ref()?.join(key))?;
        self.seen.insert(key.to_string(), message.clone());
        Some(message)
    }

    /// Remembers a failure; a store that cannot be written only costs time later.
    pub fn remember(&mut self, key: &str, message: &str) {
        self.seen.insert(key.to_string(), message.to_string());
        if let Some(dir) = &self.dir {
            let _ = write_private(dir, key, message);
        }
    }
}

/// The message stored at `path`, if it is a private file of this user's.
fn read_private(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if crate::private_fs::unsafe_file(&file.metadata().ok()?).is_some() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_MESSAGE).read_to_string(&mut text).ok()?;
    Some(text)
}

fn write_private(dir: &Path, key: &str, message: &str) -> std::io::Result<()> {
    crate::private_fs::ensure_private_dir(dir)?;
    crate::private_fs::write_private_atomic(&dir.join(key), message.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_remembered_across_runs_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let cache = tempfile::tempdir().unwrap();
        let key = DescribeFailures::key(&Engine::default(), &"ab".repeat(32));
        DescribeFailures::new(Some(cache.path())).remember(&key, "it looped");
        let file = cache.path().join("describe-failures").join(&key);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut next_run = DescribeFailures::new(Some(cache.path()));
        assert_eq!(next_run.get(&key).as_deref(), Some("it looped"));
        assert_eq!(next_run.get("other"), None);

        // A file others may write is not believed.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(DescribeFailures::new(Some(cache.path())).get(&key), None);
    }
}
