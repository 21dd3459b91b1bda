//! Approval of the grants that a workspace's own plugins ask for.
//!
//! A repository can ship plugins in `.agent/plugins/`, manifests included, so opening an
//! untrusted checkout must not hand its plugins your environment variables, the network or
//! directories outside it. A plugin that came with the workspace therefore gets only the
//! workspace access its manifest asks for until the user approves the rest with
//! `agent plugins trust FILE`. An approval holds for one plugin file in one workspace (the
//! canonical directory it was given in), pinned to the SHA-256 of both the component and
//! its manifest: changing either one, or opening the same plugin in another workspace,
//! asks again. Plugins in the user's own plugin directory and `--plugin` files are the
//! user's choice and need no approval.
//!
//! Approvals are kept as JSON in one file in the state directory, written atomically and
//! privately (0600 in a 0700 directory), under a lock so that changes made at once are all
//! kept; every field is matched exactly. A store that
//! someone else could have written (not the user's, or writable by others) is not read at
//! all, so nothing is trusted. The line format of earlier versions named no workspace, so
//! its approvals are not carried over: such a file counts as empty and is replaced on the
//! next `trust`.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_fs::{
    append_private_file, ensure_private_dir, unsafe_file, write_private_atomic,
};

/// The format version written in the file.
const VERSION: u32 = 1;

/// One approval: this plugin file, with this component and this manifest, in this
/// workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The canonical workspace the approval was given in.
    pub workspace: PathBuf,
    /// The plugin file where the agent finds it: `WORKSPACE/.agent/plugins/NAME.wasm`.
    pub plugin: PathBuf,
    /// SHA-256 (hex) of the component approved.
    pub component_sha256: String,
    /// SHA-256 (hex) of the manifest approved.
    pub manifest_sha256: String,
    /// What the manifest asked for when it was approved (for `trust --list`; the pins
    /// above are what count).
    pub grants: Vec<String>,
    /// When, in seconds since the Unix epoch.
    pub approved_at: u64,
}

impl Approval {
    /// Whether this approval covers exactly this plugin, component, manifest and workspace.
    fn covers(&self, pin: &Pin<'_>) -> bool {
        self.workspace == pin.workspace
            && self.plugin == pin.plugin
            && self.component_sha256 == pin.component_sha256
            && self.manifest_sha256 == pin.manifest_sha256
    }
}

/// What an approval must match: the plugin as it is about to load.
#[derive(Debug, Clone, Copy)]
pub struct Pin<'a> {
    pub workspace: &'a Path,
    pub plugin: &'a Path,
    pub component_sha256: &'a str,
    pub manifest_sha256: &'a str,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    approvals: Vec<Approval>,
}

/// Why the approvals could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the plugin trust store {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the plugin trust store {} is not used, so no workspace plugin is trusted: {why}", .path.display())]
    NotPrivate { path: PathBuf, why: String },
    #[error("the plugin trust store {} is damaged ({why}); fix or remove it", .path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("cannot write the plugin trust store {}: {why}", .path.display())]
    Write { path: PathBuf, why: String },
}

/// The approvals file.
#[derive(Debug, Clone)]
pub struct TrustStore {
    file: PathBuf,
}

impl TrustStore {
    pub fn new(file: PathBuf) -> TrustStore {
        TrustStore { file }
    }

    /// Whether exactly this plugin was approved.
    pub fn is_trusted(&self, pin: &Pin<'_>) -> Result<bool, TrustError> {
        Ok(self.list()?.iter().any(|approval| approval.covers(pin)))
    }

    /// Every approval, in the order given.
    pub fn list(&self) -> Result<Vec<Approval>, TrustError> {
        let text = match self.read()? {
            Some(text) => text,
            None => return Ok(Vec::new()),
        };
        // Earlier versions wrote lines of hashes; they named no workspace (see the module
        // documentation), so they approve nothing now.
        if !text.trim_start().starts_with('{') {
            return Ok(Vec::new());
        }
        let store: StoreFile =
            serde_json::from_str(&text).map_err(|e| self.damaged(e.to_string()))?;
        if store.version != VERSION {
            return Err(self.damaged(format!(
                "format version {} is not known to this agent",
                store.version
            )));
        }
        Ok(store.approvals)
    }

    /// Records `approval`, replacing any earlier approval of the same plugin in the same
    /// workspace (so a changed plugin keeps one entry).
    pub fn trust(&self, approval: Approval) -> Result<(), TrustError> {
        let _lock = self.lock()?;
        let mut approvals = self.list()?;
        approvals.retain(|a| !(a.workspace == approval.workspace && a.plugin == approval.plugin));
        approvals.push(approval);
        self.write(approvals)
    }

    /// Removes every approval of `plugin` (in any workspace); returns how many there were.
    pub fn revoke(&self, plugin: &Path) -> Result<usize, TrustError> {
        let _lock = self.lock()?;
        let mut approvals = self.list()?;
        let before = approvals.len();
        approvals.retain(|a| a.plugin != plugin);
        let removed = before - approvals.len();
        if removed > 0 {
            self.write(approvals)?;
        }
        Ok(removed)
    }

    /// The file's text, `None` if there is no file. Refuses a file that is not the user's
    /// alone, without following a symbolic link.
    fn read(&self) -> Result<Option<String>, TrustError> {
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.file)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(self.not_private("it is a symbolic link".into()));
            }
            Err(source) => {
                return Err(TrustError::Read {
                    path: self.file.clone(),
                    source,
                });
            }
        };
        let read_error = |source| TrustError::Read {
            path: self.file.clone(),
            source,
        };
        let meta = file.metadata().map_err(read_error)?;
        if let Some(why) = unsafe_file(&meta) {
            return Err(self.not_private(why));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_error)?;
        Ok(Some(text))
    }

    /// Holds an exclusive lock on `FILE.lock` until dropped, so that two `trust` or
    /// `revoke` commands at once do not lose one's change. Creates the private directory.
    fn lock(&self) -> Result<std::fs::File, TrustError> {
        let write_error = |why: String| TrustError::Write {
            path: self.file.clone(),
            why,
        };
        if let Some(dir) = self.file.parent() {
            ensure_private_dir(dir).map_err(|e| write_error(e.to_string()))?;
        }
        let mut name = self.file.clone().into_os_string();
        name.push(".lock");
        let lock = append_private_file(Path::new(&name))
            .and_then(|file| file.lock().map(|()| file))
            .map_err(|e| write_error(format!("cannot lock it: {e}")))?;
        Ok(lock)
    }

    fn write(&self, approvals: Vec<Approval>) -> Result<(), TrustError> {
        let write_error = |why: String| TrustError::Write {
            path: self.file.clone(),
            why,
        };
        let store = StoreFile {
            version: VERSION,
            approvals,
        };
        let mut text =
            serde_json::to_string_pretty(&store).map_err(|e| write_error(e.to_string()))?;
        text.push('\n');
        write_private_atomic(&self.file, text.as_bytes()).map_err(|e| write_error(e.to_string()))
    }

    fn damaged(&self, why: String) -> TrustError {
        TrustError::Damaged {
            path: self.file.clone(),
            why,
        }
    }

    fn not_private(&self, why: String) -> TrustError {
        TrustError::NotPrivate {
            path: self.file.clone(),
            why,
        }
    }
}

/// Seconds since the Unix epoch, for [`Approval::approved_at`].
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn approval(workspace: &str, plugin: &str, component: &str) -> Approval {
        Approval {
            workspace: workspace.into(),
            plugin: plugin.into(),
            component_sha256: component.into(),
            manifest_sha256: "m".into(),
            grants: vec!["network: a.com".into()],
            approved_at: 1,
        }
    }

    fn pin<'a>(workspace: &'a str, plugin: &'a str, component: &'a str) -> Pin<'a> {
        Pin {
            workspace: Path::new(workspace),
            plugin: Path::new(plugin),
            component_sha256: component,
            manifest_sha256: "m",
        }
    }

    #[test]
    fn an_approval_holds_for_the_exact_plugin_in_its_workspace_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("state/trusted-plugins"));
        assert!(!store.is_trusted(&pin("/ws", "/ws/p.wasm", "c")).unwrap());

        store.trust(approval("/ws", "/ws/p.wasm", "c")).unwrap();
        assert!(store.is_trusted(&pin("/ws", "/ws/p.wasm", "c")).unwrap());
        assert!(
            !store
                .is_trusted(&pin("/ws", "/ws/p.wasm", "changed"))
                .unwrap()
        );
        assert!(!store.is_trusted(&pin("/other", "/ws/p.wasm", "c")).unwrap());
        assert!(!store.is_trusted(&pin("/ws", "/ws/q.wasm", "c")).unwrap());

        let meta = std::fs::metadata(dir.path().join("state/trusted-plugins")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let meta = std::fs::metadata(dir.path().join("state")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    #[test]
    fn a_name_with_a_newline_stays_one_exact_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trusted-plugins"));
        store
            .trust(approval("/ws", "/ws/a\nc m /ws/b.wasm\n.wasm", "x"))
            .unwrap();
        assert!(!store.is_trusted(&pin("/ws", "/ws/b.wasm", "c")).unwrap());
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn trusting_again_replaces_and_revoking_removes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trusted-plugins"));
        store.trust(approval("/ws", "/ws/p.wasm", "c1")).unwrap();
        store.trust(approval("/ws", "/ws/p.wasm", "c2")).unwrap();
        store.trust(approval("/ws", "/ws/q.wasm", "c")).unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.revoke(Path::new("/ws/p.wasm")).unwrap(), 1);
        assert!(!store.is_trusted(&pin("/ws", "/ws/p.wasm", "c2")).unwrap());
        assert!(store.is_trusted(&pin("/ws", "/ws/q.wasm", "c")).unwrap());
        assert_eq!(store.revoke(Path::new("/ws/p.wasm")).unwrap(), 0);
    }

    #[test]
    fn a_store_others_can_write_is_not_read_and_the_old_format_counts_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trusted-plugins");
        let store = TrustStore::new(file.clone());
        std::fs::write(&file, "c m /ws/p.wasm\n").unwrap();
        assert!(store.list().unwrap().is_empty(), "old line format");

        store.trust(approval("/ws", "/ws/p.wasm", "c")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            store.is_trusted(&pin("/ws", "/ws/p.wasm", "c")),
            Err(TrustError::NotPrivate { .. })
        ));

        std::fs::write(&file, "{ not json").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(store.list(), Err(TrustError::Damaged { .. })));
    }

    #[test]
    fn approvals_given_at_once_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trusted-plugins"));
        std::thread::scope(|scope| {
            for i in 0..8 {
                let store = &store;
                scope.spawn(move || {
                    let plugin = format!("/ws/p{i}.wasm");
                    store.trust(approval("/ws", &plugin, "c")).unwrap();
                });
            }
        });
        assert_eq!(store.list().unwrap().len(), 8);
    }
}
