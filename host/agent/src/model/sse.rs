//! A bounded decoder of server-sent events, the `text/event-stream` format of streamed
//! answers.
//!
//! The answer comes from a server we do not control, so the decoder holds at most one
//! event: bytes are fed as they arrive, an event larger than `max_event` bytes or a stream
//! longer than `max_stream` bytes is an error the moment it is seen, and the work is linear
//! in the bytes read (a general-purpose parser that re-scans or copies its buffer per line
//! can be made to spin on a stream of tiny lines). Only what the Messages API uses is
//! decoded: the `event` and `data` fields; comments, `id` and `retry` are ignored.

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, `message` when the event had none.
    pub event: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
}

/// Why the stream cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("one event is larger than {limit} bytes")]
    EventTooLarge { limit: usize },
    #[error("the stream is longer than {limit} bytes")]
    StreamTooLarge { limit: usize },
    #[error("the stream is not UTF-8 text")]
    NotUtf8,
}

/// Turns bytes into events, within limits.
#[derive(Debug)]
pub struct SseDecoder {
    max_event: usize,
    max_stream: usize,
    /// Bytes of the stream so far.
    total: usize,
    /// Bytes of the event being read (its lines and their line ends).
    event_bytes: usize,
    /// The line being read, without its line end.
    line: Vec<u8>,
    /// The last byte was a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
    /// No line was read yet: a byte order mark before it is dropped.
    first_line: bool,
    name: String,
    data: String,
}

impl SseDecoder {
    pub fn new(max_event: usize, max_stream: usize) -> SseDecoder {
        SseDecoder {
            max_event,
            max_stream,
            total: 0,
            event_bytes: 0,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            name: String::new(),
            data: String::new(),
        }
    }

    /// Reads the next bytes of the stream; returns the events they complete. An event not
    /// yet ended by a blank line stays inside until more bytes come (one cut off by the end
    /// of the stream is dropped, as the SSE rules say).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.total = self.total.saturating_add(bytes.len());
        if self.total > self.max_stream {
            return Err(SseError::StreamTooLarge {
                limit: self.max_stream,
            });
        }
        let mut events = Vec::new();
        while !bytes.is_empty() {
            if std::mem::take(&mut self.after_cr) && bytes[0] == b'\n' {
                // The second half of a `\r\n`.
                bytes = &bytes[1..];
                continue;
            }
            let end = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
            let (part, line_ended) = match end {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            // The line end counts too, so a flood of blank lines is bounded like the rest.
            self.event_bytes += part.len() + usize::from(line_ended);
            if self.event_bytes > self.max_event {
                return Err(SseError::EventTooLarge {
                    limit: self.max_event,
                });
            }
            self.line.extend_from_slice(part);
            let Some(i) = end else { break };
            self.after_cr = bytes[i] == b'\r';
            bytes = &bytes[i + 1..];
            if let Some(event) = self.end_line()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Handles one complete line; a blank one ends the event.
    fn end_line(&mut self) -> Result<Option<SseEvent>, SseError> {
        let bytes = std::mem::take(&mut self.line);
        let mut line = String::from_utf8(bytes).map_err(|_| SseError::NotUtf8)?;
        if std::mem::take(&mut self.first_line) && line.starts_with('\u{feff}') {
            line.drain(..'\u{feff}'.len_utf8());
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.name = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        self.event_bytes = 0;
        let name = std::mem::take(&mut self.name);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        Some(SseEvent {
            event: if name.is_empty() {
                "message".to_string()
            } else {
                name
            },
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn decodes_events_split_anywhere() {
        let stream = "\u{feff}event: a\ndata: {\"x\":1}\n\n: comment\r\nevent:b\r\ndata: one\r\ndata:two\r\n\r\ndata: plain\r\r";
        for split in 0..stream.len() {
            let mut decoder = SseDecoder::new(1024, 4096);
            let (head, tail) = stream.as_bytes().split_at(split);
            let mut events = decoder.push(head).unwrap();
            events.extend(decoder.push(tail).unwrap());
            assert_eq!(
                events,
                [
                    event("a", "{\"x\":1}"),
                    event("b", "one\ntwo"),
                    event("message", "plain")
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_event_past_the_limit_fails_before_it_ends() {
        let mut decoder = SseDecoder::new(100, 1 << 20);
        assert_eq!(decoder.push(b"data: small\n\n").unwrap().len(), 1);
        let big = format!("data: {}", "a".repeat(200));
        assert_eq!(
            decoder.push(big.as_bytes()),
            Err(SseError::EventTooLarge { limit: 100 })
        );
        // Many short lines add up as well.
        let mut decoder = SseDecoder::new(100, 1 << 20);
        assert!(decoder.push("data: a\n".repeat(20).as_bytes()).is_err());
        // A flood of blank lines is fine: each ends an (empty) event.
        let mut decoder = SseDecoder::new(100, 1 << 20);
        assert_eq!(decoder.push(&[b'\n'; 10_000]).unwrap(), []);
    }

    #[test]
    fn the_stream_is_bounded_in_all() {
        let mut decoder = SseDecoder::new(100, 1000);
        for _ in 0..50 {
            decoder.push(b"event: ping\n\n").unwrap();
        }
        assert_eq!(
            decoder.push(&[b'\n'; 400]),
            Err(SseError::StreamTooLarge { limit: 1000 })
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = SseDecoder::new(100, 1000);
        assert_eq!(decoder.push(b"data: \xff\n"), Err(SseError::NotUtf8));
    }
}
