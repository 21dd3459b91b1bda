//! Files and directories that only the user may read: state, logs, history.
//!
//! Task logs can hold secrets a command printed, and the state directory decides what
//! the agent trusts, so everything the agent keeps is created private (directories
//! 0700, files 0600) and checked when it already exists: a directory owned by somebody
//! else is refused, and one of ours that others can read is tightened. Files are opened
//! without following a symlink at the last component, so a planted link cannot redirect
//! a write.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) private to the user, or checks an existing one:
/// it must be a real directory owned by the user; group and other access is removed.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory (a symlink is not accepted)",
            dir.display()
        )));
    }
    check_owner(dir, &meta)?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens `path` for writing as a private file: created 0600, truncated, never through a
/// symlink; an existing file of ours loses any group or other access.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    open_private(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Like [`create_private_file`], but appends to an existing file.
pub fn append_private_file(path: &Path) -> io::Result<File> {
    open_private(path, OpenOptions::new().append(true).create(true))
}

fn open_private(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    check_owner(path, &meta)?;
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Replaces `path` with `bytes` atomically (a private temporary file in the same
/// directory, then a rename), so a reader never sees half a file and a crash never
/// leaves one.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path needs a directory"))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by you (uid {me}); refusing to use it",
                path.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_created_private_and_loose_ones_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/tasks");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let log = dir.join("bg-1.log");
        std::fs::write(&log, "old").unwrap();
        std::fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        create_private_file(&log).unwrap();
        assert_eq!(mode(&log), 0o600);
        write_private_atomic(&dir.join("trust.json"), b"{}").unwrap();
        assert_eq!(mode(&dir.join("trust.json")), 0o600);
    }

    #[test]
    fn a_symlink_is_neither_written_through_nor_taken_as_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let link = root.path().join("log");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(create_private_file(&link).is_err());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");

        let dir_link = root.path().join("state");
        std::os::unix::fs::symlink(root.path(), &dir_link).unwrap();
        assert!(ensure_private_dir(&dir_link).is_err());
    }
}
