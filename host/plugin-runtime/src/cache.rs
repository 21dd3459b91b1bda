//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes far longer than loading a precompiled one, so
//! each compiled component is stored under a key made of the full SHA-256 of the component's
//! bytes and the engine's compatibility hash (wasmtime version and every setting that
//! changes the code). A different component, wasmtime or engine setting gets a different
//! key; a corrupt or unreadable entry is recompiled, never fatal. For plugin files, an
//! index keyed by the file's path, size, modification and change times, inode and device
//! skips reading and hashing a file that has not changed (an 18 MB Python component costs
//! ~10 ms to hash).
//!
//! Loading a compiled entry runs its machine code, so the cache must never be a way to
//! inject code: it is used only in a directory that is owned by the user and private
//! (mode 0700; created so, or tightened to it when it is ours and writable by nobody
//! else), and only entries that are regular files owned by the user and writable by nobody
//! else are loaded. Inside such a directory no one else can create, replace or rename an
//! entry, so the checks made before loading one still hold when it is opened. Entries are
//! written 0600 to a fresh temporary file in the same directory and renamed into place,
//! so a reader never sees half an entry. A directory that fails the checks is not used at
//! all (every component is compiled), and [`ComponentCache::problem`] says why.
//!
//! Every load returns the SHA-256 of the bytes the code was compiled from, so a caller
//! decides trust on exactly the code that runs.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::private_fs::{ensure_private_dir, is_private_file, write_private_atomic};

/// Where compiled components are kept, or `None` to compile every time.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    /// Why the configured directory is not used, if it is not.
    problem: Option<String>,
}

/// Whether a component came from the cache; reported by `agent plugins list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Disabled,
}

/// A compiled component and the SHA-256 (hex) of the bytes it was compiled from.
pub struct Compiled {
    pub component: Component,
    pub outcome: CacheOutcome,
    pub sha256: String,
}

impl ComponentCache {
    /// A cache in `dir`, creating it (mode 0700) if needed. A directory that is not the
    /// user's own, or that others can write to, is not used; see [`ComponentCache::problem`].
    pub fn new(dir: Option<PathBuf>) -> ComponentCache {
        let Some(dir) = dir else {
            return ComponentCache {
                dir: None,
                problem: None,
            };
        };
        match ensure_private_dir(&dir).and_then(|()| ensure_private_dir(&dir.join("by-file"))) {
            Ok(()) => ComponentCache {
                dir: Some(dir),
                problem: None,
            },
            Err(why) => ComponentCache {
                dir: None,
                problem: Some(format!(
                    "the compiled-component cache {} is not used: {why}; every plugin is compiled instead",
                    dir.display()
                )),
            },
        }
    }

    /// Why the configured cache directory is not used, if it is not.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Compiles `bytes`, or loads the compiled code from the cache.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<Compiled> {
        let sha256 = sha256_hex(bytes);
        let Some(dir) = &self.dir else {
            return Ok(Compiled {
                component: Component::new(engine, bytes)?,
                outcome: CacheOutcome::Disabled,
                sha256,
            });
        };
        let key = cache_key(engine, &sha256);
        let (component, outcome) = self.load_keyed(engine, dir, bytes, &key)?;
        Ok(Compiled {
            component,
            outcome,
            sha256,
        })
    }

    /// Like [`ComponentCache::load`] for a file, without reading or hashing it when the
    /// file is unchanged since it was last compiled: a small index maps the file's path,
    /// size, modification and change times, inode and device (and the engine) to its
    /// content key. `check` vets the bytes when the file has to be read.
    pub fn load_file(
        &self,
        engine: &Engine,
        path: &Path,
        check: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<Compiled> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        // The key is taken from the file that is then read, so it names these bytes (a
        // later write changes the change time, so the next run reads the file again).
        let index = match (&self.dir, file.metadata()) {
            (Some(dir), Ok(meta)) => {
                file_key(engine, path, &meta).map(|key| dir.join("by-file").join(key))
            }
            _ => None,
        };
        if let Some(entry) = &index
            && let Some(key) = read_index(entry)
            && let Some(component) = self.cached(engine, &key)
        {
            return Ok(Compiled {
                component,
                outcome: CacheOutcome::Hit,
                sha256: key[..64].to_string(),
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        check(&bytes)?;
        let invalid = || format!("{} is not a valid WebAssembly component", path.display());
        let sha256 = sha256_hex(&bytes);
        let Some(dir) = &self.dir else {
            let component = Component::new(engine, &bytes)
                .map_err(anyhow::Error::from)
                .with_context(invalid)?;
            return Ok(Compiled {
                component,
                outcome: CacheOutcome::Disabled,
                sha256,
            });
        };
        let key = cache_key(engine, &sha256);
        let (component, outcome) = self
            .load_keyed(engine, dir, &bytes, &key)
            .with_context(invalid)?;
        if let Some(entry) = &index {
            let _ = write_private_atomic(entry, key.as_bytes());
        }
        Ok(Compiled {
            component,
            outcome,
            sha256,
        })
    }

    fn load_keyed(
        &self,
        engine: &Engine,
        dir: &Path,
        bytes: &[u8],
        key: &str,
    ) -> Result<(Component, CacheOutcome)> {
        if let Some(component) = self.cached(engine, key) {
            return Ok((component, CacheOutcome::Hit));
        }
        let compiled = engine.precompile_component(bytes)?;
        // A cache that cannot be written only costs speed; an entry that was refused is
        // replaced here.
        let _ = write_private_atomic(&dir.join(format!("{key}.cwasm")), &compiled);
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, CacheOutcome::Miss))
    }

    /// The compiled component stored under `key`, if there is a usable one.
    fn cached(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.dir.as_ref()?.join(format!("{key}.cwasm"));
        if !is_private_file(&path) {
            return None;
        }
        // SAFETY: the entry is a regular file owned by this user in this user's private
        // directory (checked in `new`), writable by no one else, so it was written by
        // `load_keyed` from `Engine::precompile_component` of this same engine
        // configuration (the key covers the engine's compatibility hash) and cannot have
        // been swapped since the check; wasmtime also checks the header of what it loads.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }
}

/// Names a file as it is now: its canonical path, size, modification and change times,
/// inode and device, and the engine; any change to the file or the engine gives another
/// key. The change time cannot be set back by a user, so a same-size rewrite with the
/// modification time restored (`cp -p`, `rsync`, `tar`, or an attacker) is still seen.
fn file_key(engine: &Engine, path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let canonical = path.canonicalize().ok()?;
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_os_str().as_encoded_bytes());
    hasher.update([0]);
    for n in [
        meta.len() as i64,
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino() as i64,
        meta.dev() as i64,
    ] {
        hasher.update(n.to_le_bytes());
    }
    hasher.update(engine_tag(engine).as_bytes());
    Some(hex(&hasher.finalize()))
}

/// The key of compiled code: the full SHA-256 of the component's bytes, then the engine.
fn cache_key(engine: &Engine, sha256: &str) -> String {
    format!("{sha256}-{}", engine_tag(engine))
}

/// Whether `key` has the shape [`cache_key`] gives (64 + 16 hex digits), so an index entry
/// can never name a file outside the cache.
fn is_cache_key(key: &str) -> bool {
    let hex_digits = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    key.len() == 64 + 1 + 16
        && key.as_bytes()[64] == b'-'
        && hex_digits(&key[..64])
        && hex_digits(&key[65..])
}

/// The content key an index entry holds, if the entry is usable.
fn read_index(entry: &Path) -> Option<String> {
    if !is_private_file(entry) {
        return None;
    }
    let key = std::fs::read_to_string(entry).ok()?;
    let key = key.trim();
    is_cache_key(key).then(|| key.to_string())
}

/// The engine's compatibility hash (wasmtime version and code-changing settings), part of
/// every key, so code compiled by another engine is never loaded.
fn engine_tag(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The SHA-256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest valid component: just the header.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    /// `EMPTY_COMPONENT` with a custom section, so two components of the same size differ.
    fn component_with(byte: u8) -> Vec<u8> {
        let mut bytes = EMPTY_COMPONENT.to_vec();
        bytes.extend_from_slice(&[0, 3, 1, b'x', byte]);
        bytes
    }

    #[test]
    fn an_unchanged_file_is_loaded_without_being_read_and_a_changed_one_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, EMPTY_COMPONENT).unwrap();
        let cache = ComponentCache::new(Some(dir.path().join("cache")));
        let engine = Engine::default();
        let reads = std::cell::Cell::new(0);
        let load = || {
            cache
                .load_file(&engine, &file, |_| {
                    reads.set(reads.get() + 1);
                    Ok(())
                })
                .unwrap()
                .outcome
        };

        assert_eq!((load(), reads.get()), (CacheOutcome::Miss, 1));
        assert_eq!(
            (load(), reads.get()),
            (CacheOutcome::Hit, 1),
            "not read again"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&file, EMPTY_COMPONENT).unwrap();
        assert_eq!(
            (load(), reads.get()),
            (CacheOutcome::Hit, 2),
            "a rewritten file is read and hashed again; same content, same compiled code"
        );
    }

    #[test]
    fn a_same_size_rewrite_with_the_modification_time_restored_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, component_with(1)).unwrap();
        let cache = ComponentCache::new(Some(dir.path().join("cache")));
        let engine = Engine::default();
        let first = cache.load_file(&engine, &file, |_| Ok(())).unwrap();
        assert_eq!(first.sha256, sha256_hex(&component_with(1)));

        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        handle.write_all(&component_with(2)).unwrap();
        handle.set_modified(mtime).unwrap();
        drop(handle);

        let second = cache.load_file(&engine, &file, |_| Ok(())).unwrap();
        assert_eq!(
            second.sha256,
            sha256_hex(&component_with(2)),
            "the code (and the hash trust is decided on) is the new file's"
        );
    }

    #[test]
    fn entries_are_private_and_keyed_by_the_full_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = ComponentCache::new(Some(cache_dir.clone()));
        assert!(cache.problem().is_none());
        let engine = Engine::default();
        let loaded = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(loaded.outcome, CacheOutcome::Miss);
        let entry = cache_dir.join(format!("{}.cwasm", cache_key(&engine, &loaded.sha256)));
        let meta = std::fs::metadata(&entry).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&cache_dir).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(loaded.sha256.len(), 64);
    }

    #[test]
    fn an_entry_others_can_write_is_refused_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = ComponentCache::new(Some(cache_dir.clone()));
        let engine = Engine::default();
        let key = cache_key(&engine, &sha256_hex(EMPTY_COMPONENT));
        let entry = cache_dir.join(format!("{key}.cwasm"));
        std::fs::write(&entry, b"planted").unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        let loaded = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(loaded.outcome, CacheOutcome::Miss);
        let meta = std::fs::metadata(&entry).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "replaced by a private entry");
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT).unwrap().outcome,
            CacheOutcome::Hit
        );
    }

    #[test]
    fn a_directory_others_can_write_is_not_used_and_ours_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = ComponentCache::new(Some(open.clone()));
        assert!(
            cache
                .problem()
                .is_some_and(|p| p.contains("written by others")),
            "{:?}",
            cache.problem()
        );
        let engine = Engine::default();
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT).unwrap().outcome,
            CacheOutcome::Disabled
        );

        let readable = dir.path().join("readable");
        std::fs::create_dir(&readable).unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = ComponentCache::new(Some(readable.clone()));
        assert!(cache.problem().is_none());
        assert_eq!(std::fs::metadata(&readable).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn an_index_entry_cannot_name_a_file_outside_the_cache() {
        assert!(is_cache_key(&format!(
            "{}-{}",
            "a".repeat(64),
            "0".repeat(16)
        )));
        assert!(!is_cache_key(&format!(
            "{}-{}",
            "a".repeat(63),
            "0".repeat(17)
        )));
        assert!(!is_cache_key(&format!("../../{}", "a".repeat(75))));
        assert!(!is_cache_key(""));
    }
}
