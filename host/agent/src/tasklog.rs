//! Reading a background task's log file by lines, for `check_background` paging.
//!
//! Logs can be gigabytes, so a page is read by streaming the file once with a bounded
//! buffer: memory depends on the page, never on the log. Bytes that are not UTF-8 are
//! shown lossily.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The most lines one page returns.
pub const MAX_PAGE_LINES: usize = 2_000;
/// The most bytes one page returns; a page stops early (and says so) past this.
const MAX_PAGE_BYTES: usize = 50_000;
/// Longer lines are cut to this many bytes in a page.
const MAX_LINE_BYTES: usize = 2_000;

/// Which lines to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `count` lines starting at line `offset` (0-based).
    From { offset: usize, count: usize },
    /// The last `count` lines.
    Tail { count: usize },
}

/// A page of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// 0-based number of the first line shown.
    pub first_line: usize,
    pub lines: Vec<String>,
    /// Lines in the whole log (a last line without a newline counts).
    pub total_lines: usize,
    pub total_bytes: u64,
    /// The page was cut short to stay under its byte limit.
    pub truncated: bool,
}

impl LogPage {
    /// The page as text for the model: a header saying where it is, then the lines.
    pub fn render(&self) -> String {
        let mut text = if self.lines.is_empty() {
            format!(
                "no lines at offset {} (the log has {} lines, {} bytes)",
                self.first_line, self.total_lines, self.total_bytes
            )
        } else {
            format!(
                "lines {}-{} of {} ({} bytes in the log; offsets are 0-based){}",
                self.first_line,
                self.first_line + self.lines.len() - 1,
                self.total_lines,
                self.total_bytes,
                if self.truncated {
                    "; page cut at 50,000 bytes, ask for the next offset"
                } else {
                    ""
                }
            )
        };
        for line in &self.lines {
            text.push('\n');
            text.push_str(line);
        }
        text
    }
}

/// Reads one page of the log at `path`.
pub fn read_page(path: &Path, page: Page) -> std::io::Result<LogPage> {
    let file = std::fs::File::open(path)?;
    let total_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let (offset, count) = match page {
        Page::From { offset, count } => (offset, count.clamp(1, MAX_PAGE_LINES)),
        Page::Tail { count } => (0, count.clamp(1, MAX_PAGE_LINES)),
    };
    let mut kept: VecDeque<String> = VecDeque::new();
    let mut kept_bytes = 0usize;
    let mut truncated = false;
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if read_line_capped(&mut reader, &mut buf)? == 0 {
            break;
        }
        let wanted = match page {
            Page::From { .. } => line_no >= offset && line_no < offset + count && !truncated,
            Page::Tail { .. } => true,
        };
        if wanted {
            let line = String::from_utf8_lossy(trim_newline(&buf)).into_owned();
            kept_bytes += line.len() + 1;
            kept.push_back(line);
            if let Page::Tail { .. } = page {
                while kept.len() > count || (kept_bytes > MAX_PAGE_BYTES && kept.len() > 1) {
                    if let Some(dropped) = kept.pop_front() {
                        kept_bytes -= dropped.len() + 1;
                    }
                }
            } else if kept_bytes > MAX_PAGE_BYTES {
                truncated = true;
            }
        }
        line_no += 1;
    }
    let first_line = match page {
        Page::From { offset, .. } => offset,
        Page::Tail { .. } => {
            truncated = kept.len() < count.min(line_no);
            line_no - kept.len()
        }
    };
    Ok(LogPage {
        first_line,
        lines: kept.into(),
        total_lines: line_no,
        total_bytes,
        truncated,
    })
}

/// Reads one line into `buf`, keeping at most [`MAX_LINE_BYTES`] of it (the rest of the
/// line is read and dropped). Returns the bytes consumed.
fn read_line_capped(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match memchr_newline(available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(contents: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), contents).unwrap();
        file
    }

    fn numbered(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("line {i}\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn pages_from_an_offset() {
        let file = log(&numbered(1000));
        let page = read_page(
            file.path(),
            Page::From {
                offset: 10,
                count: 3,
            },
        )
        .unwrap();
        assert_eq!(page.lines, ["line 10", "line 11", "line 12"]);
        assert_eq!((page.first_line, page.total_lines), (10, 1000));
        assert!(page.render().starts_with("lines 10-12 of 1000"));
    }

    #[test]
    fn tails_the_end() {
        let file = log(&numbered(1000));
        let page = read_page(file.path(), Page::Tail { count: 2 }).unwrap();
        assert_eq!(page.lines, ["line 998", "line 999"]);
        assert_eq!(page.first_line, 998);
    }

    #[test]
    fn an_offset_past_the_end_says_how_much_there_is() {
        let file = log(b"a\nb");
        let page = read_page(
            file.path(),
            Page::From {
                offset: 5,
                count: 3,
            },
        )
        .unwrap();
        assert!(page.lines.is_empty());
        assert_eq!(page.total_lines, 2);
        assert!(page.render().contains("the log has 2 lines"));
    }

    #[test]
    fn invalid_utf8_and_long_lines_are_shown_safely() {
        let mut bytes = vec![0xff, b'x', b'\n'];
        bytes.extend(std::iter::repeat_n(b'y', 10_000));
        bytes.push(b'\n');
        let file = log(&bytes);
        let page = read_page(
            file.path(),
            Page::From {
                offset: 0,
                count: 10,
            },
        )
        .unwrap();
        assert_eq!(page.lines[0], "\u{fffd}x");
        assert_eq!(page.lines[1].len(), MAX_LINE_BYTES);
    }
}
