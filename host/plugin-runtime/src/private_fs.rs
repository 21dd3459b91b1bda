//! Files and directories that only the user may read or change: state, logs, history,
//! plugin approvals and the compiled-code cache.
//!
//! Task logs can hold secrets a command printed, and the trust store and the cache decide
//! what code runs with which grants, so everything the agent keeps is created private
//! (directories 0700, files 0600) and checked when it already exists: a directory owned
//! by somebody else, or one others can write to, is refused (they may already have put
//! something in it); one of ours that others can only read is tightened. Files are opened
//! without following a symlink at the last component, so a planted link cannot redirect
//! a write.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let refuse = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(refuse(format!("{} is a symbolic link", dir.display())));
    }
    if !meta.is_dir() {
        return Err(refuse(format!("{} is not a directory", dir.display())));
    }
    if meta.uid() != current_uid() {
        return Err(refuse(format!(
            "{} is owned by user {}, not by you",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "{} can be written by others (mode {mode:04o}); make it yours alone (chmod 700) or remove it",
            dir.display()
        )));
    }
    if mode != 0o700 {
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))?;
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

/// Opens `path` for writing as a private file: created 0600, truncated, never through a
/// symlink; an existing file of ours loses any group or other access.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    open_private(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Creates `path` as a new private file (0600) for appending; fails with
/// `AlreadyExists` if anything, a symlink included, is there already.
pub fn create_new_private_file(path: &Path) -> io::Result<File> {
    open_private(path, OpenOptions::new().append(true).create_new(true))
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
    if meta.uid() != current_uid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by user {}, not by you",
                path.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Writes `path` atomically and privately: a new temporary file in the same directory
/// (created exclusively, mode 0600), then renamed over `path`, so a reader never sees
/// half a file, a crash never leaves one, and an existing file, whoever made it, is
/// replaced rather than written through.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
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
        std::fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        assert!(
            ensure_private_dir(&dir).is_err(),
            "one others could write to is refused"
        );
        std::fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();

        let log = dir.join("bg-1.log");
        std::fs::write(&log, "old").unwrap();
        std::fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        create_private_file(&log).unwrap();
        assert_eq!(mode(&log), 0o600);
        let trust = dir.join("trust.json");
        std::fs::write(&trust, b"old").unwrap();
        std::fs::set_permissions(&trust, Permissions::from_mode(0o666)).unwrap();
        write_private_atomic(&trust, b"{}").unwrap();
        assert_eq!(mode(&trust), 0o600);
        assert_eq!(std::fs::read(&trust).unwrap(), b"{}");
        assert!(is_private_file(&trust));
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
