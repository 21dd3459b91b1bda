//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes far longer than loading a precompiled one, so
//! each compiled component is stored under a key made of the component's SHA-256 and the
//! engine's compatibility hash (wasmtime version and every setting that changes the code).
//! A different component, wasmtime or engine setting gets a different key; a corrupt or
//! unreadable entry is recompiled, never fatal.

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
        let path = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
        if path.exists() {
            // SAFETY: the file was written by `store` below from `Engine::precompile_component`
            // of this same engine configuration (the key covers the engine's compatibility
            // hash), and wasmtime checks the header of what it deserializes.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        // A cache that cannot be written only costs speed.
        let _ = store(dir, &path, &compiled);
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, CacheOutcome::Miss))
    }
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}", hasher.finish())
}

/// Writes atomically (temporary file, then rename), so a reader never sees half a file.
fn store(dir: &Path, path: &Path, compiled: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
