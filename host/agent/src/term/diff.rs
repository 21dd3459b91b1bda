//! What a `write_file` or `edit_file` call changed, and its coloured unified diff.
//!
//! The plugin tool adapter reads the named file before the call ([`Before::read`]) and
//! again after it ([`Before::change`]), the way the sandbox resolves paths (cap-std,
//! relative to the workspace, nothing outside it), and hands the pair to the renderer in
//! the tool's output. Sizes are bounded: a file over [`MAX_FILE_BYTES`] or one that is not
//! UTF-8 text gets a note instead of a diff, and a diff shows at most [`MAX_DIFF_LINES`].

use std::io::Read;
use std::path::Path;

use similar::{ChangeTag, TextDiff};

use super::{Style, sgr};
use crate::ui_text::{one_line, visible};

/// The largest file compared.
pub const MAX_FILE_BYTES: u64 = 512 * 1024;
/// The most diff lines shown.
pub const MAX_DIFF_LINES: usize = 200;

/// A file's content as read for a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Missing,
    Text(String),
    /// Not compared: why ("binary", "too large (N bytes)").
    Skipped(String),
}

/// What a call changed in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub before: Content,
    pub after: Content,
}

/// The named file before the call.
pub struct Before {
    workspace: std::path::PathBuf,
    path: String,
    content: Content,
}

impl Before {
    pub fn read(workspace: &Path, path: &str) -> Before {
        Before {
            workspace: workspace.to_path_buf(),
            path: path.to_string(),
            content: read(workspace, path),
        }
    }

    /// The change, read again after the call; `None` when nothing changed.
    pub fn change(self) -> Option<FileChange> {
        let after = read(&self.workspace, &self.path);
        let changed = after != self.content || matches!(after, Content::Skipped(_));
        changed.then_some(FileChange {
            path: self.path,
            before: self.content,
            after,
        })
    }
}

fn read(workspace: &Path, path: &str) -> Content {
    let path = Path::new(path);
    let relative = if path.is_absolute() {
        match path.strip_prefix(workspace) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => return Content::Missing,
        }
    } else {
        path.to_path_buf()
    };
    let Ok(dir) =
        cap_primitives::fs::open_ambient_dir(workspace, cap_primitives::ambient_authority())
    else {
        return Content::Missing;
    };
    // Only a regular file is opened: opening a FIFO the model made would hang the agent.
    match cap_primitives::fs::stat(&dir, &relative, cap_primitives::fs::FollowSymlinks::Yes) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Content::Skipped("not a regular file".to_string()),
        Err(_) => return Content::Missing,
    }
    let mut options = cap_primitives::fs::OpenOptions::new();
    options.read(true);
    let opened = cap_primitives::fs::open(&dir, &relative, &options);
    let Ok(file) = opened else {
        return Content::Missing;
    };
    let Ok(meta) = file.metadata() else {
        return Content::Missing;
    };
    if !meta.is_file() {
        return Content::Skipped("not a regular file".to_string());
    }
    let size = meta.len();
    if size > MAX_FILE_BYTES {
        return Content::Skipped(format!("too large to compare ({size} bytes)"));
    }
    let mut bytes = Vec::new();
    if file
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return Content::Missing;
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Content::Skipped("too large to compare".to_string());
    }
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Content::Text(text),
        _ => Content::Skipped("binary file".to_string()),
    }
}

/// The change as lines for stderr: a header, then the hunks (or a note).
pub fn render(style: &Style, change: &FileChange) -> String {
    let path = one_line(&change.path);
    let (old, new) = match (&change.before, &change.after) {
        (Content::Skipped(why), _) | (_, Content::Skipped(why)) => {
            return format!(
                "  {}\n",
                style.paint(sgr::DIM, &format!("{path}: {why}, no diff"))
            );
        }
        (Content::Missing, Content::Missing) => return String::new(),
        (before, after) => (text_of(before), text_of(after)),
    };
    let mut out = String::new();
    let header = match change.before {
        Content::Missing => format!("--- /dev/null\n+++ {path} (new file)"),
        _ => format!("--- {path}\n+++ {path}"),
    };
    for line in header.lines() {
        out.push_str(&style.paint(sgr::BOLD, line));
        out.push('\n');
    }
    let diff = TextDiff::from_lines(old, new);
    let mut shown = 0;
    let mut hidden = 0;
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        let mut lines = vec![style.paint(sgr::CYAN, &hunk.header().to_string())];
        for change in hunk.iter_changes() {
            let (sign, code) = match change.tag() {
                ChangeTag::Delete => ("-", sgr::RED),
                ChangeTag::Insert => ("+", sgr::GREEN),
                ChangeTag::Equal => (" ", ""),
            };
            let text = change.value();
            let text = visible(text.strip_suffix('\n').unwrap_or(text));
            let line = format!("{sign}{text}");
            lines.push(if code.is_empty() {
                line
            } else {
                style.paint(code, &line)
            });
            if change.missing_newline() {
                lines.push(style.paint(sgr::DIM, "\\ No newline at end of file"));
            }
        }
        for line in lines {
            if shown < MAX_DIFF_LINES {
                out.push_str(&line);
                out.push('\n');
                shown += 1;
            } else {
                hidden += 1;
            }
        }
    }
    if hidden > 0 {
        let note = format!("... {hidden} more diff lines not shown");
        out.push_str(&style.paint(sgr::DIM, &note));
        out.push('\n');
    }
    out
}

fn text_of(content: &Content) -> &str {
    match content {
        Content::Text(text) => text,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_renders_as_an_exact_coloured_unified_diff() {
        let change = FileChange {
            path: "src/a.rs".into(),
            before: Content::Text("one\ntwo\nthree\n".into()),
            after: Content::Text("one\n2\nthree\n\x1b[2J\n".into()),
        };
        assert_eq!(
            render(&Style::COLOR, &change),
            "\x1b[1m--- src/a.rs\x1b[0m\n\x1b[1m+++ src/a.rs\x1b[0m\n\
             \x1b[36m@@ -1,3 +1,4 @@\x1b[0m\n one\n\x1b[31m-two\x1b[0m\n\x1b[32m+2\x1b[0m\n three\n\
             \x1b[32m+\\x1b[2J\x1b[0m\n"
        );
        assert_eq!(
            render(&Style::PLAIN, &change),
            "--- src/a.rs\n+++ src/a.rs\n@@ -1,3 +1,4 @@\n one\n-two\n+2\n three\n+\\x1b[2J\n"
        );
    }

    #[test]
    fn new_binary_and_huge_files() {
        let created = FileChange {
            path: "n.txt".into(),
            before: Content::Missing,
            after: Content::Text("hi".into()),
        };
        assert_eq!(
            render(&Style::PLAIN, &created),
            "--- /dev/null\n+++ n.txt (new file)\n@@ -0,0 +1 @@\n+hi\n\\ No newline at end of file\n"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bin"), b"a\0b").unwrap();
        std::fs::write(
            dir.path().join("big"),
            vec![b'x'; MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        assert_eq!(
            read(dir.path(), "bin"),
            Content::Skipped("binary file".into())
        );
        assert!(matches!(read(dir.path(), "big"), Content::Skipped(_)));
        assert_eq!(read(dir.path(), "../etc/passwd"), Content::Missing);
        let fifo = std::ffi::CString::new(
            dir.path()
                .join("fifo")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read(dir.path(), "fifo"),
            Content::Skipped("not a regular file".into()),
            "a FIFO is not waited on"
        );
        assert_eq!(read(dir.path(), "/etc/passwd"), Content::Missing);
        let long = FileChange {
            path: "l".into(),
            before: Content::Missing,
            after: Content::Text("x\n".repeat(500)),
        };
        assert!(render(&Style::PLAIN, &long).ends_with("... 301 more diff lines not shown\n"));
    }
}
