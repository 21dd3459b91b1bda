//! Keeping a file's mode across the built-in `write_file` and `edit_file`.
//!
//! Those tools replace a file atomically (a new file, renamed over the old one), which
//! also keeps a hard link from carrying a write to a file outside the workspace. The new
//! file gets the default mode, and WASI preview 2 has no call to change a mode, so the
//! component cannot keep an executable script executable. The host does it: before the
//! call it notes the permission bits of the file the path names, and after a successful
//! call it gives them back. Both steps resolve the path the way the sandbox does
//! (cap-std, relative to the workspace, refusing `..` and symlinks that lead out), so
//! they reach nothing the component could not.

use std::path::{Path, PathBuf};

use cap_primitives::fs::{FollowSymlinks, MetadataExt, Permissions, PermissionsExt};

/// The tools of the built-in file component that replace files.
pub const REPLACING_TOOLS: &[&str] = &["write_file", "edit_file"];

/// A file's permission bits, to be given back after it was replaced.
pub struct KeptMode {
    workspace: std::fs::File,
    path: PathBuf,
    mode: u32,
}

/// Notes the mode of the existing regular file `path` (relative to the workspace, or
/// absolute inside it); `None` when there is none or it cannot be reached.
pub fn remember(workspace: &Path, path: &str) -> Option<KeptMode> {
    let path = Path::new(path);
    let relative = if path.is_absolute() {
        path.strip_prefix(workspace).ok()?.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let dir = cap_primitives::fs::open_ambient_dir(workspace, cap_primitives::ambient_authority())
        .ok()?;
    let meta = cap_primitives::fs::stat(&dir, &relative, FollowSymlinks::Yes).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(KeptMode {
        workspace: dir,
        path: relative,
        // Set-id bits are dropped, as the kernel drops them when a file is written.
        mode: meta.mode() & 0o777,
    })
}

impl KeptMode {
    /// Gives the file its old permission bits back; best effort (the write succeeded).
    pub fn restore(self) {
        let _ = cap_primitives::fs::set_permissions(
            &self.workspace,
            &self.path,
            Permissions::from_mode(self.mode),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_mode_is_kept_and_a_path_outside_is_not_touched() {
        let root = tempfile::tempdir().unwrap();
        let workspace = root.path().join("ws");
        std::fs::create_dir(&workspace).unwrap();
        let script = workspace.join("run.sh");
        std::fs::write(&script, "echo").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        let kept = remember(&workspace, "run.sh").unwrap();
        std::fs::remove_file(&script).unwrap();
        std::fs::write(&script, "echo 2").unwrap();
        kept.restore();
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);

        std::fs::write(root.path().join("outside"), "x").unwrap();
        assert!(remember(&workspace, "../outside").is_none());
        let absolute = workspace.join("run.sh");
        assert!(remember(&workspace, absolute.to_str().unwrap()).is_some());
    }
}
