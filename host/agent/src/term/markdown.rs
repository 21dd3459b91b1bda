//! The model's Markdown drawn for a terminal as it streams.
//!
//! Text is taken a complete line at a time (the rest waits for its newline or the end of
//! the message), so nothing already printed is ever printed again and a piece boundary
//! can fall anywhere: streaming in pieces gives exactly the output of the whole. Block
//! syntax (headings, lists, quotes, rules, fenced code) is read from the line's start;
//! the inline syntax of the rest (emphasis, code, links) by `pulldown-cmark`. Code inside
//! a fence is highlighted line by line until the fence closes.
//!
//! Every text piece is made visible by [`ui_text::visible`] before colour goes around it:
//! the line as it came, and again each text event (an entity such as `&#27;` decodes to
//! ESC), so the model cannot emit a control sequence of its own.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::{Style, highlight, sgr};
use crate::ui_text::visible;

/// An open code fence: its character, its length and the language it names.
struct Fence {
    marker: char,
    len: usize,
    info: String,
}

/// Renders one message; [`MarkdownStream::finish`] ends it and makes it ready for the next.
pub struct MarkdownStream {
    style: Style,
    pending: String,
    fence: Option<Fence>,
}

impl MarkdownStream {
    pub fn new(style: Style) -> MarkdownStream {
        MarkdownStream {
            style,
            pending: String::new(),
            fence: None,
        }
    }

    /// The rendering of every line `piece` completes (each ending in `\n`).
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let mut out = String::new();
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            out.push_str(&self.line(&line[..end]));
            out.push('\n');
        }
        out
    }

    /// The rendering of the unfinished last line (without a newline); the next message
    /// starts outside any fence.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        let out = if rest.is_empty() {
            String::new()
        } else {
            self.line(&rest)
        };
        self.fence = None;
        out
    }

    fn line(&mut self, raw: &str) -> String {
        let safe = visible(raw);
        let line = safe.as_ref();
        let style = self.style;
        let indent_len = line.len() - line.trim_start().len();
        let (indent, body) = line.split_at(indent_len);
        if let Some(fence) = &self.fence {
            let closes = indent_len <= 3 && {
                let run = body.chars().take_while(|c| *c == fence.marker).count();
                run >= fence.len && body[run..].trim().is_empty()
            };
            if closes {
                self.fence = None;
                return style.paint(sgr::DIM, line);
            }
            return highlight::line(&style, &fence.info, line);
        }
        if indent_len <= 3
            && let Some(fence) = opening_fence(body)
        {
            self.fence = Some(fence);
            return style.paint(sgr::DIM, line);
        }
        if let Some(level) = heading_level(body) {
            let text = body[level..].trim();
            if !style.color {
                return format!("{indent}{} {}", &body[..level], inline(&style, text, &[]));
            }
            return format!("{indent}{}", inline(&style, text, &[sgr::HEADING]));
        }
        if is_rule(body) {
            return style.paint(sgr::DIM, &"─".repeat(40));
        }
        if let Some(rest) = body.strip_prefix('>') {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            return format!(
                "{indent}{}{}",
                style.paint(sgr::DIM, "│ "),
                inline(&style, rest, &[sgr::ITALIC])
            );
        }
        if let Some((marker, rest)) = list_marker(body) {
            return format!(
                "{indent}{} {}",
                style.paint(sgr::CYAN, &marker),
                inline(&style, rest, &[])
            );
        }
        format!("{indent}{}", inline(&style, body, &[]))
    }
}

fn opening_fence(body: &str) -> Option<Fence> {
    let marker = body.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = body.chars().take_while(|c| *c == marker).count();
    let info = body[len..].trim();
    // A backtick fence's info string may not contain a backtick (that is inline code).
    (len >= 3 && !(marker == '`' && info.contains('`'))).then(|| Fence {
        marker,
        len,
        info: info.to_string(),
    })
}

fn heading_level(body: &str) -> Option<usize> {
    let level = body.chars().take_while(|c| *c == '#').count();
    let after = &body[level..];
    ((1..=6).contains(&level) && (after.is_empty() || after.starts_with(' '))).then_some(level)
}

fn is_rule(body: &str) -> bool {
    let squeezed: String = body.chars().filter(|c| *c != ' ').collect();
    squeezed.len() >= 3
        && ['-', '*', '_']
            .iter()
            .any(|m| squeezed.chars().all(|c| c == *m))
}

/// A list item's marker as shown (`•` for a bullet, the number kept) and the rest.
fn list_marker(body: &str) -> Option<(String, &str)> {
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = body.strip_prefix(bullet) {
            return Some(("•".to_string(), rest));
        }
    }
    let digits = body.chars().take_while(char::is_ascii_digit).count();
    let after = &body[digits..];
    if (1..=9).contains(&digits) && (after.starts_with(". ") || after.starts_with(") ")) {
        return Some((body[..digits + 1].to_string(), &after[2..]));
    }
    None
}

/// The inline Markdown of `text` (already safe) in the SGR codes `base` plus its own.
fn inline(style: &Style, text: &str, base: &[&str]) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut codes: Vec<&str> = base.to_vec();
    let mut link: Option<(String, String)> = None;
    let emit = |out: &mut String, codes: &[&str], piece: &str| {
        let piece = visible(piece);
        if style.color && !codes.is_empty() && !piece.is_empty() {
            out.push_str(&format!("\x1b[{}m{piece}\x1b[0m", codes.join(";")));
        } else {
            out.push_str(&piece);
        }
    };
    for event in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Text(piece) | Event::Html(piece) | Event::InlineHtml(piece) => {
                if let Some((_, shown)) = link.as_mut() {
                    shown.push_str(&piece);
                }
                emit(&mut out, &codes, &piece);
            }
            Event::Code(piece) => {
                let mut with_code = codes.clone();
                with_code.push(sgr::CYAN);
                if style.color {
                    emit(&mut out, &with_code, &piece);
                } else {
                    emit(&mut out, &codes, &format!("`{piece}`"));
                }
            }
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            Event::Start(Tag::Emphasis) => codes.push(sgr::ITALIC),
            Event::Start(Tag::Strong) => codes.push(sgr::BOLD),
            Event::Start(Tag::Strikethrough) => codes.push(sgr::STRIKE),
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                codes.push(sgr::LINK);
                link = Some((dest_url.to_string(), String::new()));
            }
            Event::End(TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough) => {
                codes.pop();
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                codes.pop();
                if let Some((dest, shown)) = link.take()
                    && dest != shown
                    && !dest.is_empty()
                {
                    emit(&mut out, &[sgr::DIM], &format!(" ({dest})"));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
#[path = "markdown_tests.rs"]
mod tests;
