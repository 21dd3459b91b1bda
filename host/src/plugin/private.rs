//! Files only this user may change: private directories (0700), the checks made before
//! trusting a file found in one, and atomic private writes (0600).
//!
//! The compiled-code cache and the plugin trust store both decide what code runs with
//! which grants, so what they read must come from the user alone.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes `dir` a private directory of this user, or says why it cannot be one: created
/// (with any missing parents) with mode 0700 if missing; if present, it must be a real
/// directory (not a symbolic link) owned by this user that neither group nor others can
/// write, and is then tightened to 0700. One that others can write to is refused rather
/// than tightened: they may already have put something in it.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{} cannot be created: {e}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("{} cannot be read: {e}", dir.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!("{} is a symbolic link", dir.display()));
    }
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != current_uid() {
        return Err(format!(
            "{} is owned by user {}, not by you",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} can be written by others (mode {mode:04o}); make it yours alone (chmod 700) or remove it",
            dir.display()
        ));
    }
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

/// Why the file `meta` describes cannot be trusted, if it cannot: it must be a regular
/// file (not a symbolic link) owned by this user that neither group nor others can write.
pub fn unsafe_file(meta: &std::fs::Metadata) -> Option<String> {
    if !meta.file_type().is_file() {
        return Some("it is not a regular file".into());
    }
    if meta.uid() != current_uid() {
        return Some(format!("it is owned by user {}, not by you", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "it can be written by others (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Whether `path` is a file [`unsafe_file`] finds nothing wrong with (not following a
/// symbolic link).
pub fn is_private_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| unsafe_file(&meta).is_none())
}

/// Writes `path` atomically and privately: a new temporary file in the same directory
/// (created exclusively, mode 0600), then renamed over `path`, so a reader never sees
/// half a file and an existing file, whoever made it, is replaced rather than written
/// through.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_writes_are_0600_and_replace_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(is_private_file(&file));
    }
}
