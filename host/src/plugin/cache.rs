//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes far longer than loading a precompiled one, so
//! each compiled component is stored under a key made of the component's SHA-256 and the
//! engine's compatibility hash (wasmtime version and every setting that changes the code).
//! A different component, wasmtime or engine setting gets a different key; a corrupt or
//! unreadable entry is recompiled, never fatal. For plugin files, an index keyed by the
//! file's path, size, modification time and inode skips reading and hashing a file that
//! has not changed (an 18 MB Python component costs ~10 ms to hash).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept, or `None` to compile every time.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// Whether a component came from the cache; reported by `agent plugins list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Disabled,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> ComponentCache {
        ComponentCache { dir }
    }

    /// Compiles `bytes`, or loads the compiled code from the cache.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        self.load_keyed(engine, dir, bytes, &cache_key(engine, bytes))
    }

    /// Like [`ComponentCache::load`] for a file, without reading or hashing it when the
    /// file is unchanged since it was last compiled: a small index maps the file's path,
    /// size, modification time and inode (and the engine) to its content key. `check`
    /// vets the bytes when the file has to be read.
    pub fn load_file(
        &self,
        engine: &Engine,
        path: &Path,
        check: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<(Component, CacheOutcome)> {
        let index = self
            .dir
            .as_ref()
            .zip(file_key(engine, path))
            .map(|(dir, key)| dir.join("by-file").join(key));
        if let Some(entry) = &index
            && let Ok(key) = std::fs::read_to_string(entry)
            && let Some(component) = self.cached(engine, key.trim())
        {
            return Ok((component, CacheOutcome::Hit));
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        check(&bytes)?;
        let Some(dir) = &self.dir else {
            let component = Component::new(engine, &bytes)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("{} is not a valid WebAssembly component", path.display())
                })?;
            return Ok((component, CacheOutcome::Disabled));
        };
        let key = cache_key(engine, &bytes);
        let loaded = self
            .load_keyed(engine, dir, &bytes, &key)
            .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
        if let Some(entry) = &index
            && let Some(index_dir) = entry.parent()
        {
            let _ = store(index_dir, entry, key.as_bytes());
        }
        Ok(loaded)
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
        // A cache that cannot be written only costs speed.
        let _ = store(dir, &dir.join(format!("{key}.cwasm")), &compiled);
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, CacheOutcome::Miss))
    }

    /// The compiled component stored under `key`, if there is a usable one.
    fn cached(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.dir.as_ref()?.join(format!("{key}.cwasm"));
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `load_keyed` from `Engine::precompile_component`
        // of this same engine configuration (the key covers the engine's compatibility
        // hash), and wasmtime checks the header of what it deserializes.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }
}

/// Names a file as it is now: its canonical path, size, modification time and inode, and
/// the engine; any change to the file or the engine gives another key.
fn file_key(engine: &Engine, path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let canonical = path.canonicalize().ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_os_str().as_encoded_bytes());
    for n in [
        meta.len() as i64,
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino() as i64,
        meta.dev() as i64,
    ] {
        hasher.update(n.to_le_bytes());
    }
    hasher.update(engine_tag(engine).as_bytes());
    Some(hex(&hasher.finalize()[..16]))
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    format!(
        "{}-{}",
        hex(&Sha256::digest(bytes)[..16]),
        engine_tag(engine)
    )
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

/// Writes atomically (temporary file, then rename), so a reader never sees half a file.
fn store(dir: &Path, path: &Path, compiled: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: just the header.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

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
                .1
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
}
