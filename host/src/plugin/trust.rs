//! Approval of the grants that a workspace's own plugins ask for.
//!
//! A repository can ship plugins in `.agent/plugins/`, manifests included, so opening an
//! untrusted checkout must not hand its plugins your environment variables, the network or
//! directories outside it. A plugin that came with the workspace therefore gets only the
//! workspace access its manifest asks for until the user approves the rest with
//! `agent plugins trust FILE`. An approval is pinned to the SHA-256 of both the component
//! and its manifest: changing either one asks again. Plugins in the user's own plugin
//! directory and `--plugin` files are the user's choice and need no approval.
//!
//! Approvals are lines `<component sha256> <manifest sha256> <path>` in one file in the
//! state directory; the path is informational.

use std::path::{Path, PathBuf};

use super::cache::sha256_hex;
use anyhow::{Context, Result};

/// The approvals file.
#[derive(Debug, Clone)]
pub struct TrustStore {
    file: PathBuf,
}

impl TrustStore {
    pub fn new(file: PathBuf) -> TrustStore {
        TrustStore { file }
    }

    /// Whether this exact component with this exact manifest was approved.
    pub fn is_trusted(&self, component: &[u8], manifest: &Path) -> bool {
        let Ok(manifest) = std::fs::read(manifest) else {
            return false;
        };
        let wanted = pin(component, &manifest);
        std::fs::read_to_string(&self.file)
            .map(|text| text.lines().any(|line| line.starts_with(&wanted)))
            .unwrap_or(false)
    }

    /// Approves the component at `wasm` with its manifest as they are now.
    pub fn trust(&self, wasm: &Path, manifest: &Path) -> Result<()> {
        let component =
            std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let manifest_bytes =
            std::fs::read(manifest).with_context(|| format!("reading {}", manifest.display()))?;
        if self.is_trusted(&component, manifest) {
            return Ok(());
        }
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let line = format!("{} {}\n", pin(&component, &manifest_bytes), wasm.display());
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .with_context(|| format!("writing {}", self.file.display()))
    }
}

fn pin(component: &[u8], manifest: &[u8]) -> String {
    format!("{} {}", sha256_hex(component), sha256_hex(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_holds_for_the_exact_component_and_manifest_only() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("p.wasm");
        let manifest = dir.path().join("p.toml");
        std::fs::write(&wasm, b"component").unwrap();
        std::fs::write(&manifest, b"network = [\"a.com\"]").unwrap();
        let store = TrustStore::new(dir.path().join("state/trusted-plugins"));
        assert!(!store.is_trusted(b"component", &manifest));

        store.trust(&wasm, &manifest).unwrap();
        assert!(store.is_trusted(b"component", &manifest));
        assert!(!store.is_trusted(b"changed component", &manifest));
        std::fs::write(&manifest, b"network = [\"b.com\"]").unwrap();
        assert!(!store.is_trusted(b"component", &manifest));
    }
}
