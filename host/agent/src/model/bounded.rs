//! Reading a model server's answer within limits, whatever its wire format: a whole body
//! (a non-streamed answer or an error) read up to a byte limit and a deadline, and a
//! streamed answer's server-sent events, each awaited at most the idle time and the whole
//! answer at most its deadline.
//!
//! The server is not trusted with the host's memory or time: every read is bounded by
//! [`Limits`] (bytes per event, per answer and per error body; time without progress and
//! for the whole answer), and the rest of a body past a limit is never read.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::ModelError;
use super::sse::{SseDecoder, SseError, SseEvent};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Bounds on one answer. A real answer is far below each: even 128k output tokens are
/// about 1 MiB of text and tool input, streamed in events of a few hundred bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One SSE event. Real events hold a few tokens; room is left for compatible servers
    /// that send a whole answer in one delta.
    pub event_bytes: usize,
    /// All bytes of one streamed answer, SSE framing included (a delta of a few bytes of
    /// text comes in ~150 bytes of framing).
    pub stream_bytes: usize,
    /// The text and tool input JSON of one answer, and a whole non-streamed answer. It is
    /// kept in the conversation and sent back with every later request, and parsed JSON
    /// takes several times its text in memory, so it stays well below the stream's limit.
    pub content_bytes: usize,
    /// The part of an error answer read for its message.
    pub error_bytes: usize,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle: Duration,
    /// The longest one answer may take to read in all: what ends a server that keeps the
    /// connection alive with a trickle of small events or bytes.
    pub answer_time: Duration,
}

impl Limits {
    /// The error of an answer still incomplete after `answer_time`.
    pub(crate) fn late(&self) -> ModelError {
        ModelError::Stalled(format!(
            "it was not complete after {}s",
            self.answer_time.as_secs_f64()
        ))
    }

    /// The limits for answers of at most `max_tokens` tokens: an answer may take 30
    /// minutes, or longer when `max_tokens` needs it at 20 tokens a second.
    pub fn new(max_tokens: u32, idle: Duration) -> Limits {
        Limits {
            event_bytes: 4 * MIB,
            stream_bytes: 32 * MIB,
            content_bytes: 8 * MIB,
            error_bytes: 64 * KIB,
            idle,
            answer_time: Duration::from_secs(30 * 60)
                .max(Duration::from_millis(u64::from(max_tokens) * 50)),
        }
    }
}

/// How reading a body ended.
pub(super) enum BodyEnd {
    /// All of it was read.
    Complete,
    /// It is longer than the limit.
    Cut,
    /// It was not complete by the deadline.
    Late,
    Failed(reqwest::Error),
}

/// Reads at most `limit` bytes of the body, until `deadline` at the latest; returns what
/// was read and why reading ended. The rest is never read (the connection is dropped with
/// the response).
pub(super) async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
    deadline: Instant,
) -> (Vec<u8>, BodyEnd) {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, BodyEnd::Cut);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Ok(None)) => return (body, BodyEnd::Complete),
            Ok(Err(error)) => return (body, BodyEnd::Failed(error)),
            Err(_) => return (body, BodyEnd::Late),
        }
    }
}

/// A failure while reading an answer's body.
pub(super) fn body_error(error: reqwest::Error, idle: Duration) -> ModelError {
    if error.is_timeout() {
        ModelError::Stalled(format!(
            "the model API sent nothing for {}s",
            idle.as_secs_f64()
        ))
    } else {
        ModelError::Stream(error.to_string())
    }
}

/// The events of a streamed answer, read within [`Limits`]: each `next` waits at most
/// `idle` for the next complete event (a byte now and then does not keep a stream alive)
/// and never past the answer's deadline.
pub(super) struct Events<'a, S> {
    bytes: S,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<SseEvent>,
    limits: &'a Limits,
    event_deadline: Instant,
    answer_deadline: Instant,
}

impl<'a, S, B> Events<'a, S>
where
    S: Stream<Item = Result<B, ModelError>> + Unpin,
    B: AsRef<[u8]>,
{
    pub(super) fn new(bytes: S, limits: &'a Limits) -> Events<'a, S> {
        let now = Instant::now();
        Events {
            bytes,
            decoder: SseDecoder::new(limits.event_bytes, limits.stream_bytes),
            ready: std::collections::VecDeque::new(),
            limits,
            event_deadline: now + limits.idle,
            answer_deadline: now + limits.answer_time,
        }
    }

    pub(super) fn limits(&self) -> &'a Limits {
        self.limits
    }

    /// The next event, `None` at the end of the stream.
    pub(super) async fn next(&mut self) -> Result<Option<SseEvent>, ModelError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.event_deadline = Instant::now() + self.limits.idle;
                return Ok(Some(event));
            }
            let deadline = self.event_deadline.min(self.answer_deadline);
            let chunk = match tokio::time::timeout_at(deadline, self.bytes.next()).await {
                Ok(Some(chunk)) => chunk?,
                Ok(None) => return Ok(None),
                Err(_) if deadline == self.answer_deadline => return Err(self.limits.late()),
                Err(_) => {
                    return Err(ModelError::Stalled(format!(
                        "no complete event came for {}s",
                        self.limits.idle.as_secs_f64()
                    )));
                }
            };
            let events = self.decoder.push(chunk.as_ref()).map_err(|e| match e {
                SseError::EventTooLarge { limit } => ModelError::TooLarge {
                    what: "one event of the stream",
                    limit,
                },
                SseError::StreamTooLarge { limit } => ModelError::TooLarge {
                    what: "the streamed answer",
                    limit,
                },
                SseError::NotUtf8 => ModelError::Stream(e.to_string()),
            })?;
            self.ready.extend(events);
        }
    }
}

/// The text, tool input, ids and names kept of one answer, counted against
/// [`Limits::content_bytes`]: they stay in the conversation and go back with every request.
pub(super) struct Budget {
    kept: usize,
    limit: usize,
}

impl Budget {
    pub(super) fn new(limits: &Limits) -> Budget {
        Budget {
            kept: 0,
            limit: limits.content_bytes,
        }
    }

    /// Counts `bytes` more; an error once the answer is past the limit.
    pub(super) fn take(&mut self, bytes: usize) -> Result<(), ModelError> {
        self.kept += bytes;
        if self.kept > self.limit {
            Err(ModelError::TooLarge {
                what: "the answer's text and tool input",
                limit: self.limit,
            })
        } else {
            Ok(())
        }
    }
}
