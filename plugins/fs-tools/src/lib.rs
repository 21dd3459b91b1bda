//! The built-in file tools, `read_file`, `write_file` and `edit_file`, as one WASI component.
//!
//! The component runs inside wasmtime with the workspace as its only preopened directory
//! (mounted both as `.` and at its absolute path), so every path check here is done by the
//! sandbox: a path that leaves the workspace fails in the WASI filesystem, and this crate
//! only turns that failure into a clear, typed message for the model.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
    });
}

use bindings::agent::tool::types::{CallContext, ToolError, ToolHints, ToolSpec};
use bindings::exports::agent::tool::tool::Guest;
use serde::Deserialize;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The most text one call returns, in bytes, as in the seed lesson.
const MAX_OUTPUT: usize = 50_000;

struct FsTools;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadInput {
    path: String,
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteInput {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditInput {
    path: String,
    old_text: String,
    new_text: String,
}

impl Guest for FsTools {
    fn describe() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "read_file".into(),
                description: "Read a text file in the workspace. With `limit`, return only the first `limit` lines.".into(),
                input_schema: r#"{"type":"object","properties":{"path":{"type":"string","description":"File path, relative to the workspace or absolute inside it"},"limit":{"type":"integer","minimum":1,"description":"Return at most this many lines"}},"required":["path"],"additionalProperties":false}"#.into(),
                hints: ToolHints::READ_ONLY | ToolHints::IDEMPOTENT,
            },
            ToolSpec {
                name: "write_file".into(),
                description: "Write content to a file in the workspace, creating parent directories and replacing the file if it exists.".into(),
                input_schema: r#"{"type":"object","properties":{"path":{"type":"string","description":"File path, relative to the workspace or absolute inside it"},"content":{"type":"string","description":"The complete new content of the file"}},"required":["path","content"],"additionalProperties":false}"#.into(),
                hints: ToolHints::DESTRUCTIVE | ToolHints::IDEMPOTENT,
            },
            ToolSpec {
                name: "edit_file".into(),
                description: "Replace the first exact occurrence of `old_text` with `new_text` in a file in the workspace.".into(),
                input_schema: r#"{"type":"object","properties":{"path":{"type":"string","description":"File path, relative to the workspace or absolute inside it"},"old_text":{"type":"string","minLength":1,"description":"Text to find, exactly as it appears in the file"},"new_text":{"type":"string","description":"Replacement text"}},"required":["path","old_text","new_text"],"additionalProperties":false}"#.into(),
                hints: ToolHints::DESTRUCTIVE,
            },
        ]
    }

    fn call(name: String, input: String, context: CallContext) -> Result<String, ToolError> {
        let ws = context.workspace.as_str();
        match name.as_str() {
            "read_file" => read_file(parse(&input)?, ws),
            "write_file" => write_file(parse(&input)?, ws),
            "edit_file" => edit_file(parse(&input)?, ws),
            other => Err(ToolError::InvalidInput(format!("unknown tool `{other}`"))),
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(input: &'a str) -> Result<T, ToolError> {
    serde_json::from_str(input).map_err(|e| ToolError::InvalidInput(e.to_string()))
}

/// Where the guest opens `path`.
///
/// Relative paths are opened as given, through the workspace mounted at `.`. An absolute
/// path must lie inside the workspace (mounted at its absolute path too): wasi-libc would
/// otherwise resolve an absolute path that matches no mount against `.`, so that
/// `/etc/passwd` would quietly mean `<workspace>/etc/passwd`. This only picks the mount;
/// `..` and symlinks are still refused by the sandbox when the file is opened.
fn resolve(path: &str, workspace: &str) -> Result<PathBuf, ToolError> {
    let candidate = Path::new(path);
    if !candidate.is_absolute() {
        return Ok(candidate.to_path_buf());
    }
    if !workspace.is_empty() && candidate.starts_with(workspace) {
        return Ok(candidate.to_path_buf());
    }
    Err(ToolError::PermissionDenied(format!(
        "cannot access {path}: the path is outside the workspace ({workspace}); the sandbox only grants the workspace directory"
    )))
}

fn read_file(input: ReadInput, workspace: &str) -> Result<String, ToolError> {
    let path = resolve(&input.path, workspace)?;
    let bytes = std::fs::read(&path).map_err(|e| fs_error(&input.path, &path, "read", e))?;
    let text = String::from_utf8_lossy(&bytes);
    let text = match input.limit {
        Some(limit) => first_lines(&text, usize::try_from(limit).unwrap_or(usize::MAX)),
        None => text.into_owned(),
    };
    Ok(cap(text))
}

fn write_file(input: WriteInput, workspace: &str) -> Result<String, ToolError> {
    let path = resolve(&input.path, workspace)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| fs_error(&input.path, &path, "create the parent directories of", e))?;
    }
    replace_file(&path, input.content.as_bytes(), workspace)
        .map_err(|e| fs_error(&input.path, &path, "write", e))?;
    Ok(format!(
        "Wrote {} bytes to {}",
        input.content.len(),
        input.path
    ))
}

fn edit_file(input: EditInput, workspace: &str) -> Result<String, ToolError> {
    if input.old_text.is_empty() {
        return Err(ToolError::InvalidInput("old_text must not be empty".into()));
    }
    let path = resolve(&input.path, workspace)?;
    let bytes = std::fs::read(&path).map_err(|e| fs_error(&input.path, &path, "read", e))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ToolError::InvalidInput(format!(
            "{} is not valid UTF-8 text; edit_file only edits text files",
            input.path
        ))
    })?;
    let Some(at) = text.find(&input.old_text) else {
        return Err(ToolError::Conflict(format!(
            "old_text was not found in {}; read the file and copy the text to replace exactly, including whitespace",
            input.path
        )));
    };
    let mut edited =
        String::with_capacity(text.len() - input.old_text.len() + input.new_text.len());
    edited.push_str(&text[..at]);
    edited.push_str(&input.new_text);
    edited.push_str(&text[at + input.old_text.len()..]);
    replace_file(&path, edited.as_bytes(), workspace)
        .map_err(|e| fs_error(&input.path, &path, "write", e))?;
    let line = text[..at].matches('\n').count() + 1;
    Ok(format!(
        "Edited {} (replaced the text at line {line})",
        input.path
    ))
}

/// Replaces the file at `path` with `bytes`: written to a new file beside it, then renamed
/// over it. A crash never leaves half a file, and a name hard-linked to a file elsewhere
/// gets a new file instead of changing the other one. A symlink (inside the workspace; the
/// sandbox refuses others) is followed, so the file it points to is replaced, not the
/// link. WASI cannot set a file's mode: the host keeps the old mode for these tools.
fn replace_file(path: &Path, bytes: &[u8], workspace: &str) -> std::io::Result<()> {
    use std::io::Write;
    let target = follow_symlinks(path, workspace)?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "the path names no file"))?
        .to_string_lossy();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let (tmp, mut file) = (0..100)
        .find_map(|attempt| {
            let tmp = dir.join(format!(".{name}.{nonce:x}{attempt}.tmp"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(file) => Some(Ok((tmp, file))),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => None,
                Err(e) => Some(Err(e)),
            }
        })
        .unwrap_or_else(|| Err(std::io::Error::other("no free temporary file name")))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let replaced = written.and_then(|()| std::fs::rename(&tmp, &target));
    if replaced.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    replaced
}

/// Where `path` leads after following symlinks (at most 40, as the kernel does); a path
/// that is no symlink, or does not exist yet, is its own target.
fn follow_symlinks(path: &Path, workspace: &str) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = if link.is_absolute() {
                    // As for the model's own paths: only the workspace mount, never a
                    // quiet re-rooting of another absolute path under `.`.
                    let link = link.to_string_lossy();
                    resolve(&link, workspace).map_err(|_| {
                        std::io::Error::new(
                            ErrorKind::PermissionDenied,
                            format!(
                                "{} is a symlink to {link}, outside the workspace",
                                current.display()
                            ),
                        )
                    })?
                } else {
                    current.parent().unwrap_or(Path::new("")).join(link)
                };
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// The first `limit` lines of `text`, with a marker saying how many were left out.
fn first_lines(text: &str, limit: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= limit {
        return lines.join("\n");
    }
    let mut out = lines[..limit].join("\n");
    out.push_str(&format!("\n... ({} more lines)", lines.len() - limit));
    out
}

/// Keeps the output under [`MAX_OUTPUT`] bytes, on a character boundary, saying what was cut.
fn cap(mut text: String) -> String {
    if text.len() <= MAX_OUTPUT {
        return text;
    }
    let mut end = MAX_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(
        "\n... (output truncated: {cut} more bytes; use `limit` or bash to read parts)"
    ));
    text
}

/// Turns a filesystem error into the typed error the model sees.
///
/// WASI reports a path that leaves the sandbox (through `..`, an absolute path outside the
/// preopened workspace, or a symlink pointing out) as "not permitted" or "not capable";
/// those become `permission-denied`, naming the path.
fn fs_error(path: &str, resolved: &Path, action: &str, err: std::io::Error) -> ToolError {
    if let Some(link) = escaping_symlink(resolved) {
        return ToolError::PermissionDenied(format!(
            "cannot {action} {path}: {} is a symlink that leads outside the workspace (the sandbox only grants the workspace directory)",
            link.display()
        ));
    }
    match err.kind() {
        _ if leaves_sandbox(&err) => ToolError::PermissionDenied(format!(
            "cannot {action} {path}: the path is outside the workspace (the sandbox only grants the workspace directory)"
        )),
        ErrorKind::PermissionDenied => {
            ToolError::PermissionDenied(format!("cannot {action} {path}: {err}"))
        }
        ErrorKind::NotFound => {
            ToolError::NotFound(format!("cannot {action} {path}: no such file or directory"))
        }
        ErrorKind::IsADirectory => {
            ToolError::InvalidInput(format!("cannot {action} {path}: it is a directory"))
        }
        _ => ToolError::Io(format!("cannot {action} {path}: {err}")),
    }
}

/// Whether WASI refused the access because it would leave the preopened directories.
fn leaves_sandbox(err: &std::io::Error) -> bool {
    const EPERM: i32 = 63;
    const ENOTCAPABLE: i32 = 76;
    matches!(err.raw_os_error(), Some(EPERM) | Some(ENOTCAPABLE))
}

/// The first component of `path` (or `path` itself) that is a symlink the sandbox will not
/// follow, because it points outside the workspace.
fn escaping_symlink(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
                && std::fs::metadata(p).is_err_and(|e| leaves_sandbox(&e))
        })
        .map(Path::to_path_buf)
}

bindings::export!(FsTools with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_marks_what_it_left_out() {
        assert_eq!(first_lines("a\nb\nc\n", 2), "a\nb\n... (1 more lines)");
        assert_eq!(first_lines("a\nb", 5), "a\nb");
    }

    #[test]
    fn cap_cuts_on_a_char_boundary() {
        let long = "é".repeat(MAX_OUTPUT);
        let capped = cap(long);
        assert!(capped.contains("output truncated"));
        assert!(capped.len() < MAX_OUTPUT + 200);
    }
}
