//! When a background task is ready: a line of its output matches a regex
//! (`ready_pattern`), or a TCP port on loopback accepts connections (`ready_port`).
//!
//! [`Watch::new`] checks what the model asked for before anything starts (a bad or huge
//! pattern is the model's error, not the task's); [`LineMatcher`] finds the first
//! matching line in output as it arrives, in chunks that may cut lines anywhere;
//! [`port_accepts`] is one probe of the port. The manager runs them and words nothing:
//! the wording is in [`crate::task_text`].

use std::time::Duration;

use regex::{Regex, RegexBuilder};

/// The longest `ready_pattern` accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1_000;
/// The most memory a compiled pattern may take (the regex crate's own bound).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// The longest line matched; a longer line is matched on its first this many bytes.
const MAX_LINE: usize = 8 * 1024;
/// How often a port is probed.
pub const PORT_POLL: Duration = Duration::from_millis(100);
/// How long one connection attempt may take (loopback answers at once).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// What a task waits for to be ready.
#[derive(Debug, Clone)]
pub enum Watch {
    Pattern(Regex),
    Port(u16),
}

/// What made a task ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyBy {
    /// The first line that matched `ready_pattern` (without its line end).
    Line(String),
    /// `ready_port` accepted a connection.
    Port(u16),
}

/// Why a readiness request is refused; the text is the model's error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("give either ready_pattern or ready_port, not both")]
    Both,
    #[error("ready_pattern is {0} bytes long; at most {MAX_PATTERN_LEN} are accepted")]
    TooLong(usize),
    #[error("ready_pattern is not a valid regex: {0}")]
    BadPattern(String),
    #[error("ready_port must be a TCP port from 1 to 65535")]
    BadPort,
}

impl Watch {
    /// The watch the model asked for, if any.
    pub fn new(pattern: Option<&str>, port: Option<u32>) -> Result<Option<Watch>, WatchError> {
        match (pattern, port) {
            (Some(_), Some(_)) => Err(WatchError::Both),
            (Some(pattern), None) => {
                if pattern.len() > MAX_PATTERN_LEN {
                    return Err(WatchError::TooLong(pattern.len()));
                }
                let regex = RegexBuilder::new(pattern)
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(|e| WatchError::BadPattern(first_line(&e.to_string())))?;
                Ok(Some(Watch::Pattern(regex)))
            }
            (None, Some(port)) => match u16::try_from(port) {
                Ok(port) if port > 0 => Ok(Some(Watch::Port(port))),
                _ => Err(WatchError::BadPort),
            },
            (None, None) => Ok(None),
        }
    }

    /// "a line matching `Listening`" / "port 8080 to accept connections", for the note
    /// of a task that ended before it was ready.
    pub fn describe(&self) -> String {
        match self {
            Watch::Pattern(regex) => format!("a line matching /{}/", regex.as_str()),
            Watch::Port(port) => format!("port {port} on 127.0.0.1 or ::1 to accept connections"),
        }
    }
}

/// The regex crate's errors draw the pattern over several lines; the model needs the gist.
fn first_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// Finds the first line of output that matches, across chunks that cut lines anywhere.
pub struct LineMatcher {
    regex: Regex,
    /// The start of a line whose end has not arrived yet (at most [`MAX_LINE`] bytes).
    partial: Vec<u8>,
    /// Whether the partial line was cut at [`MAX_LINE`]: its rest is skipped.
    overlong: bool,
}

impl LineMatcher {
    pub fn new(regex: Regex) -> LineMatcher {
        LineMatcher {
            regex,
            partial: Vec::new(),
            overlong: false,
        }
    }

    /// Takes the next chunk of output; returns the first whole line in it that matches.
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        let mut found = None;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, ended) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            if self.overlong {
                // The rest of a line already matched on what fit.
                self.overlong = !ended;
                continue;
            }
            let room = MAX_LINE - self.partial.len();
            let cut = body.len() > room;
            self.partial
                .extend_from_slice(&body[..body.len().min(room)]);
            if ended || cut {
                if found.is_none() {
                    found = self.check();
                }
                self.partial.clear();
                self.overlong = cut && !ended;
            }
        }
        found
    }

    /// Matches the last line when the output ends without a line end.
    pub fn finish(&mut self) -> Option<String> {
        let found = (!self.partial.is_empty()).then(|| self.check()).flatten();
        self.partial.clear();
        found
    }

    fn check(&self) -> Option<String> {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.regex.is_match(line).then(|| line.to_string())
    }
}

/// Whether `port` on 127.0.0.1 or ::1 accepts a TCP connection now. The agent connects
/// (outside any sandbox) and closes at once.
pub async fn port_accepts(port: u16) -> bool {
    let probe = |addr: std::net::SocketAddr| async move {
        matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        )
    };
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    probe(v4).await || probe(v6).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: &str) -> LineMatcher {
        match Watch::new(Some(pattern), None).unwrap() {
            Some(Watch::Pattern(regex)) => LineMatcher::new(regex),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_line_cut_across_chunks_matches_once_whole() {
        let mut m = matcher(r"Listening on \d+$");
        assert_eq!(m.push(b"starting\nListen"), None);
        assert_eq!(m.push(b"ing on 80"), None);
        assert_eq!(
            m.push(b"80\r\nmore\n"),
            Some("Listening on 8080".to_string())
        );
        assert_eq!(m.push(b"Listening on 1\n"), Some("Listening on 1".into()));
    }

    #[test]
    fn the_last_line_without_a_line_end_matches_at_the_end() {
        let mut m = matcher("ready");
        assert_eq!(m.push(b"not yet\nready"), None);
        assert_eq!(m.finish(), Some("ready".into()));
        assert_eq!(m.finish(), None);
    }

    #[test]
    fn an_overlong_line_is_matched_on_its_start_and_its_rest_skipped() {
        let mut m = matcher("^x+$");
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(m.push(&long).map(|l| l.len()), Some(MAX_LINE));
        assert_eq!(m.push(b"yyy\nxx\n"), Some("xx".into()));
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        assert!(matches!(
            Watch::new(Some("(unclosed"), None),
            Err(WatchError::BadPattern(_))
        ));
        let huge = "a".repeat(MAX_PATTERN_LEN + 1);
        assert_eq!(
            Watch::new(Some(&huge), None).unwrap_err(),
            WatchError::TooLong(MAX_PATTERN_LEN + 1)
        );
        // Small to write, too big to compile.
        assert!(matches!(
            Watch::new(Some(r"\w{1000}\w{1000}\w{1000}"), None),
            Err(WatchError::BadPattern(_))
        ));
        assert_eq!(Watch::new(None, Some(0)).unwrap_err(), WatchError::BadPort);
        assert_eq!(
            Watch::new(None, Some(70_000)).unwrap_err(),
            WatchError::BadPort
        );
        assert_eq!(
            Watch::new(Some("x"), Some(1)).unwrap_err(),
            WatchError::Both
        );
        assert!(Watch::new(None, None).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_port_accepts_once_something_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(port_accepts(port).await);
        drop(listener);
        assert!(!port_accepts(port).await);
    }
}
