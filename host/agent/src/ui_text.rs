//! Text from outside the agent made safe to show on a terminal.
//!
//! Model answers, tool output, plugin names, file names, manifests and server messages are
//! untrusted: a raw ESC can write the clipboard (OSC 52), retitle the window (OSC 0) or
//! clear the screen, a C1 control (U+0080..U+009F) does the same on terminals that decode
//! them, and a bare `\r` or a bidi override makes the line shown differ from the text (a
//! `curl ...|sh` overwritten by a fake `ls -la`). Every print path passes such text through
//! [`visible`] (or [`one_line`]), which replaces each of those characters by an escape that
//! names it — `\r`, `\xNN` for the other one-byte controls, `\u{NNNN}` above — so nothing
//! reaches the terminal as a control and nothing is hidden. Each character is replaced on
//! its own, so text streamed in pieces can be made visible piece by piece.
//!
//! JSON output is escaped by serde for the C0 controls; [`json_line`] adds DEL, C1 and
//! bidi controls, so a script that echoes a JSON field is safe too.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as it is (besides `\n` and `\t`, which
/// [`visible`] keeps).
fn is_unsafe(c: char) -> bool {
    // is_control: U+0000..U+001F, U+007F and the C1 range U+0080..U+009F.
    c.is_control() || is_bidi_control(c)
}

/// The Unicode bidi controls, which reorder how the rest of a line is shown.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn push_escape(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escape(c) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with every control character except `\n` and `\t`, and every bidi control,
/// replaced by a visible escape (`\r`, `\x1b`, `\u{9b}`, `\u{202e}`).
pub fn visible(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && c != '\t' && is_unsafe(c))
}

/// Like [`visible`], but `\n` and `\t` become `\n` and `\t` too: for text shown on a single
/// line (a status line, a tool call summary), where a line break would hide what follows.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape_where(text, is_unsafe)
}

/// The first line of `text`, at most `max_chars` characters, with `…` if anything was
/// left out. It does not make the text safe: pass it through [`visible`] or [`one_line`].
pub fn clip(text: &str, max_chars: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    let mut clipped: String = first_line.chars().take(max_chars).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

/// `value` as one line of JSON, with the characters serde leaves as they are (DEL, C1,
/// bidi controls) written as `\uXXXX` escapes: the same JSON value, safe to echo.
pub fn json_line(value: &serde_json::Value) -> String {
    let json = value.to_string();
    // Outside strings JSON is ASCII, so every such character is inside a string, where a
    // \uXXXX escape means the same character. serde already escaped the C0 controls.
    if !json.chars().any(is_unsafe) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) {
            // All of them are in the Basic Multilingual Plane: one \uXXXX each.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "héllo\n\tworld — ✓";
        assert!(matches!(visible(text), Cow::Borrowed(_)));
        assert_eq!(visible(text), text);
    }

    #[test]
    fn terminal_controls_become_visible() {
        let attack =
            "a\x1b]52;c;ZWNobw==\x07b\x1b]0;title\x07\x1b[2J\u{9b}31m\rfake\u{202e}x\u{7f}";
        assert_eq!(
            visible(attack),
            "a\\x1b]52;c;ZWNobw==\\x07b\\x1b]0;title\\x07\\x1b[2J\\u{9b}31m\\rfake\\u{202e}x\\x7f"
        );
        assert_eq!(visible("keep\nlines\tand tabs"), "keep\nlines\tand tabs");
    }

    #[test]
    fn one_line_also_shows_line_breaks() {
        assert_eq!(one_line("ls\ncurl x | sh\t#"), "ls\\ncurl x | sh\\t#");
    }

    #[test]
    fn streamed_pieces_escape_like_the_whole() {
        let text = "x\x1b[2Jy\u{9b}z\r";
        let pieces: String = ["x\x1b", "[2Jy\u{9b}", "z\r"]
            .iter()
            .map(|p| visible(p).into_owned())
            .collect();
        assert_eq!(pieces, visible(text));
    }

    #[test]
    fn json_line_escapes_what_serde_leaves_and_stays_the_same_value() {
        let value = serde_json::json!({"text": "a\u{9b}b\u{202e}c\x1bd\u{7f}"});
        let line = json_line(&value);
        assert!(!line.chars().any(is_unsafe), "{line}");
        assert!(
            line.contains("\\u009b") && line.contains("\\u202e"),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }
}
