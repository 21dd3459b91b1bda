//! The `host.log` import: what a plugin may write to `plugins.log`, and how much.
//!
//! A plugin decides how often it calls `log` and how long each message is, so every
//! call's lines are held to a budget: each line is cut at [`MAX_LINE_BYTES`], a call
//! (or a `describe()`) keeps at most [`MAX_LINES`] lines and [`MAX_CALL_BYTES`] bytes,
//! and once the budget is used further lines are only counted, ending in one marker
//! line. The message is not lifted into a host `String` by bindgen: the function is
//! defined by hand and reads it in place from the guest's memory as a [`WasmStr`], so a
//! message over the budget is never copied at all, and the part kept is at most one
//! line's worth.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};

use super::bindings::agent::tool::host::LogLevel;
use crate::sandbox::CallState;

/// The longest line kept; the rest of a longer message is cut with a marker.
pub const MAX_LINE_BYTES: usize = 4 * 1024;
/// The most lines one call or `describe()` keeps.
pub const MAX_LINES: usize = 1000;
/// The most bytes of messages one call or `describe()` keeps, all lines together.
pub const MAX_CALL_BYTES: usize = 64 * 1024;

/// The lines one call logged, within its budget.
#[derive(Debug, Default)]
pub struct CallLog {
    lines: Vec<String>,
    bytes: usize,
    /// Lines (or parts of lines) dropped once the budget was used.
    dropped: usize,
}

impl CallLog {
    /// Whether another line would be kept at all.
    fn full(&self) -> bool {
        self.lines.len() >= MAX_LINES || self.bytes >= MAX_CALL_BYTES
    }

    /// Keeps a line (cut to what the budget allows), or counts it as dropped.
    fn push(&mut self, level: LogLevel, message: &str, total_len: usize) {
        if self.full() {
            self.dropped += 1;
            return;
        }
        let room = MAX_LINE_BYTES.min(MAX_CALL_BYTES - self.bytes);
        let kept = cut(message, room);
        let mut line = format!("{}: {}", level_name(level), kept.replace(['\n', '\r'], " "));
        if kept.len() < total_len {
            line.push_str(&format!(" ... [{} more bytes cut]", total_len - kept.len()));
        }
        self.bytes += kept.len();
        self.lines.push(line);
    }

    /// The kept lines, and a last line saying how many were dropped, if any.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.lines.clone();
        if self.dropped > 0 {
            lines.push(format!(
                "warn: [{} more log lines dropped: a call keeps at most {MAX_LINES} lines and {MAX_CALL_BYTES} bytes]",
                self.dropped
            ));
        }
        lines
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a char boundary.
fn cut(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Defines `agent:tool/host.log` in `linker`, reading the message in place.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> Result<()> {
    let mut host = linker
        .instance(&format!(
            "{}/host@{}",
            super::WIT_PACKAGE,
            super::WIT_VERSION
        ))
        .map_err(anyhow::Error::from)?;
    host.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, CallState>, (level, message): (LogLevel, WasmStr)| {
            if store.data().logs.full() {
                store.data_mut().logs.dropped += 1;
                return Ok(());
            }
            // Only the part that can be kept is copied out of the guest's memory. A
            // string in another encoding than UTF-8 is decoded by wasmtime first, a copy
            // bounded by the guest's own memory limit and freed at once.
            let (kept, total) = {
                let text = message.to_str(&store)?;
                (cut(&text, MAX_LINE_BYTES).to_string(), text.len())
            };
            store.data_mut().logs.push(level, &kept, total);
            Ok(())
        },
    )
    .map_err(anyhow::Error::from)
    .context("defining host.log")?;
    Ok(())
}

/// Appends one call's log lines to `file`, each with the time, plugin, tool and call id.
/// Logging is best effort: a log that cannot be written never fails the call. The file
/// is created private to the user (0600), and written on tokio's blocking pool.
pub async fn append(file: &Path, plugin: &str, tool: &str, call_id: &str, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    let text = format_lines(plugin, tool, call_id, lines);
    let file: PathBuf = file.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || write(&file, text.as_bytes())).await;
}

/// [`append`] on the calling thread, for a caller that may block (a plugin call's own
/// thread).
pub fn append_now(file: &Path, plugin: &str, tool: &str, call_id: &str, lines: Vec<String>) {
    if !lines.is_empty() {
        let _ = write(file, format_lines(plugin, tool, call_id, lines).as_bytes());
    }
}

fn format_lines(plugin: &str, tool: &str, call_id: &str, lines: Vec<String>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut text = String::new();
    for line in lines {
        text.push_str(&format!(
            "{}.{:03} {plugin} {tool} {call_id} {line}\n",
            now.as_secs(),
            now.subsec_millis(),
        ));
    }
    text
}

fn write(file: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent() {
        crate::private_fs::ensure_private_dir(dir)?;
    }
    crate::private_fs::append_private_file(file)?.write_all(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_and_says_how_much() {
        let mut log = CallLog::default();
        let long = "é".repeat(MAX_LINE_BYTES);
        log.push(LogLevel::Info, cut(&long, MAX_LINE_BYTES), long.len());
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].len() < MAX_LINE_BYTES + 100, "{}", lines[0].len());
        assert!(
            lines[0].ends_with(&format!("[{} more bytes cut]", long.len() - MAX_LINE_BYTES)),
            "{}",
            &lines[0][lines[0].len() - 60..]
        );
    }

    #[test]
    fn past_the_budget_lines_are_counted_not_kept() {
        let mut log = CallLog::default();
        let line = "x".repeat(MAX_LINE_BYTES);
        for _ in 0..100 {
            log.push(LogLevel::Debug, &line, line.len());
        }
        let lines = log.lines();
        let kept: usize = lines.iter().map(String::len).sum();
        assert!(kept < MAX_CALL_BYTES + 2000, "{kept}");
        assert_eq!(lines.len(), MAX_CALL_BYTES / MAX_LINE_BYTES + 1);
        assert!(
            lines.last().unwrap().contains("84 more log lines dropped"),
            "{lines:?}"
        );
    }

    #[test]
    fn many_short_lines_stop_at_the_line_limit() {
        let mut log = CallLog::default();
        for _ in 0..MAX_LINES + 5 {
            log.push(LogLevel::Warn, "a\nb", 3);
        }
        let lines = log.lines();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(lines[0], "warn: a b");
        assert!(lines[MAX_LINES].contains("5 more log lines dropped"));
    }
}
