//! Reading one Anthropic answer within limits: a streamed answer's SSE events assembled
//! into content (text deltas reported as they come, `tool_use` input parsed when its block
//! stops), or a whole JSON message from a server that ignores `stream`.
//!
//! The server is not trusted with the host's memory or time: every read is bounded by
//! [`Limits`] (bytes per event, per answer and per error body; time without progress and
//! for the whole answer), and the rest of a body past a limit is never read.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use super::sse::{SseDecoder, SseError};
use super::{ContentBlock, ModelError, ModelEvent, ModelResponse, StopReason, ToolInput, Usage};

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
    pub(super) fn late(&self) -> ModelError {
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

/// A content block while its deltas arrive.
enum PartialBlock {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    /// A block type this host does not use (thinking, ...): skipped.
    Ignored,
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
struct Events<'a, S> {
    bytes: S,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<super::sse::SseEvent>,
    limits: &'a Limits,
    event_deadline: Instant,
    answer_deadline: Instant,
}

impl<'a, S, B> Events<'a, S>
where
    S: Stream<Item = Result<B, ModelError>> + Unpin,
    B: AsRef<[u8]>,
{
    fn new(bytes: S, limits: &'a Limits) -> Events<'a, S> {
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

    /// The next event, `None` at the end of the stream.
    async fn next(&mut self) -> Result<Option<super::sse::SseEvent>, ModelError> {
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

/// Assembles a streamed answer from `bytes`, reporting text as it arrives.
pub(super) async fn read_stream<S, B>(
    bytes: S,
    limits: &Limits,
    on_event: &mut (dyn FnMut(ModelEvent) + Send),
) -> Result<ModelResponse, ModelError>
where
    S: Stream<Item = Result<B, ModelError>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut events = Events::new(bytes, limits);
    let mut blocks: BTreeMap<u64, PartialBlock> = BTreeMap::new();
    let mut stop_reason = None;
    let mut usage = Usage::default();
    let mut finished = false;
    // Text, tool input, ids and names kept for the answer, against `content_bytes`.
    let mut kept = 0usize;
    let mut keep = |bytes: usize| {
        kept += bytes;
        if kept > limits.content_bytes {
            Err(ModelError::TooLarge {
                what: "the answer's text and tool input",
                limit: limits.content_bytes,
            })
        } else {
            Ok(())
        }
    };
    while let Some(event) = events.next().await? {
        if event.event == "ping" || event.data.trim().is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            ModelError::Stream(format!("bad JSON in a `{}` event: {e}", event.event))
        })?;
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.event.as_str() {
            "message_start" => take_usage(&mut usage, &data["message"]["usage"]),
            "content_block_start" => {
                let block = &data["content_block"];
                let partial = match block["type"].as_str() {
                    Some("text") => {
                        let text = block["text"].as_str().unwrap_or("");
                        keep(text.len())?;
                        PartialBlock::Text(text.to_string())
                    }
                    Some("tool_use") => {
                        let id = block["id"].as_str().unwrap_or_default();
                        let name = block["name"].as_str().unwrap_or_default();
                        keep(id.len() + name.len())?;
                        PartialBlock::ToolUse {
                            id: id.to_string(),
                            name: name.to_string(),
                            json: String::new(),
                        }
                    }
                    _ => PartialBlock::Ignored,
                };
                blocks.insert(index, partial);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match (blocks.get_mut(&index), delta["type"].as_str()) {
                    (Some(PartialBlock::Text(text)), Some("text_delta")) => {
                        let piece = delta["text"].as_str().unwrap_or("");
                        keep(piece.len())?;
                        text.push_str(piece);
                        on_event(ModelEvent::TextDelta(piece.to_string()));
                    }
                    (Some(PartialBlock::ToolUse { json, .. }), Some("input_json_delta")) => {
                        let piece = delta["partial_json"].as_str().unwrap_or("");
                        keep(piece.len())?;
                        json.push_str(piece);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    stop_reason = Some(StopReason::parse(reason));
                }
                take_usage(&mut usage, &data["usage"]);
            }
            "message_stop" => {
                finished = true;
                break;
            }
            "error" => {
                let kind = data["error"]["type"].as_str().unwrap_or("error");
                let message = data["error"]["message"].as_str().unwrap_or("(no message)");
                return Err(ModelError::Stream(format!("{kind}: {message}")));
            }
            // content_block_stop needs no action: blocks are assembled at the end. Other
            // event types may be added by the API at any time and are ignored.
            _ => {}
        }
    }
    if !finished {
        return Err(ModelError::Stream(
            "the stream ended before message_stop".into(),
        ));
    }
    let content = blocks.into_values().filter_map(finish_block).collect();
    Ok(ModelResponse {
        content,
        stop_reason: stop_reason.unwrap_or(StopReason::EndTurn),
        usage,
    })
}

/// Turns an assembled block into content; a tool input that is not a JSON object becomes
/// [`ToolInput::Invalid`], which the loop answers with an error result instead of calling
/// the tool.
fn finish_block(block: PartialBlock) -> Option<ContentBlock> {
    match block {
        PartialBlock::Text(text) if text.is_empty() => None,
        PartialBlock::Text(text) => Some(ContentBlock::Text { text }),
        PartialBlock::ToolUse { id, name, json } => Some(ContentBlock::ToolUse {
            id,
            name,
            input: ToolInput::parse(&json),
        }),
        PartialBlock::Ignored => None,
    }
}

pub(super) fn parse_message(message: &Value) -> Result<ModelResponse, ModelError> {
    let content: Vec<ContentBlock> = message["content"]
        .as_array()
        .ok_or_else(|| ModelError::Stream("the answer has no content array".into()))?
        .iter()
        .filter_map(|block| serde_json::from_value(block.clone()).ok())
        .collect();
    Ok(ModelResponse {
        content,
        stop_reason: StopReason::parse(message["stop_reason"].as_str().unwrap_or("end_turn")),
        usage: {
            let mut usage = Usage::default();
            take_usage(&mut usage, &message["usage"]);
            usage
        },
    })
}

/// Takes the counts an answer's `usage` object has. The counts are totals so far, not
/// increments: `message_delta` repeats them (often only `output_tokens`), so a count that
/// is absent keeps the value it had.
fn take_usage(usage: &mut Usage, reported: &Value) {
    for (field, key) in [
        (&mut usage.input_tokens, "input_tokens"),
        (&mut usage.output_tokens, "output_tokens"),
        (
            &mut usage.cache_creation_input_tokens,
            "cache_creation_input_tokens",
        ),
        (
            &mut usage.cache_read_input_tokens,
            "cache_read_input_tokens",
        ),
    ] {
        if let Some(n) = reported[key].as_u64() {
            *field = n;
        }
    }
}

#[cfg(test)]
#[path = "anthropic_usage_tests.rs"]
mod usage_tests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::stream;
    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            event_bytes: 1024,
            stream_bytes: 64 * 1024,
            content_bytes: 2048,
            error_bytes: 1024,
            idle: Duration::from_millis(200),
            answer_time: Duration::from_secs(5),
        }
    }

    fn sse(events: &[(&str, Value)]) -> String {
        events
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect()
    }

    fn text_answer(pieces: &[&str]) -> String {
        let mut events = vec![
            (
                "message_start",
                json!({"message": {"usage": {"input_tokens": 3}}}),
            ),
            (
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ];
        for piece in pieces {
            events.push((
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(("message_stop", json!({})));
        sse(&events)
    }

    async fn read(
        chunks: impl Stream<Item = Result<Vec<u8>, ModelError>> + Unpin,
        limits: &Limits,
    ) -> Result<ModelResponse, ModelError> {
        read_stream(chunks, limits, &mut |_| {}).await
    }

    fn chunks(text: &str) -> impl Stream<Item = Result<Vec<u8>, ModelError>> + Unpin + use<> {
        stream::iter(
            text.as_bytes()
                .chunks(7)
                .map(|c| Ok(c.to_vec()))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_streamed_answer_is_assembled() {
        let answer = read(chunks(&text_answer(&["hel", "lo"])), &limits())
            .await
            .unwrap();
        assert_eq!(
            answer.content,
            [ContentBlock::Text {
                text: "hello".into()
            }]
        );
        assert_eq!(answer.usage.input_tokens, 3);
    }

    #[tokio::test]
    async fn text_past_the_content_limit_is_refused() {
        let piece = "x".repeat(500);
        let pieces = vec![piece.as_str(); 5];
        let error = read(chunks(&text_answer(&pieces)), &limits())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ModelError::TooLarge { limit: 2048, .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_drip_that_completes_no_event_stalls_after_the_idle_time() {
        // A byte every 20 ms keeps a per-read timeout happy, but completes no event.
        let drip = Box::pin(stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(b"a".to_vec()), ()))
        }));
        let started = std::time::Instant::now();
        let error = read(drip, &limits()).await.unwrap_err();
        assert!(matches!(error, ModelError::Stalled(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn events_that_never_finish_the_answer_end_at_its_deadline() {
        let pings = Box::pin(stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(b"event: ping\ndata: {}\n\n".to_vec()), ()))
        }));
        let limits = Limits {
            answer_time: Duration::from_millis(500),
            ..limits()
        };
        let error = read(pings, &limits).await.unwrap_err();
        assert!(error.to_string().contains("not complete after"), "{error}");
    }

    #[test]
    fn the_answer_time_grows_with_max_tokens() {
        let idle = super::super::anthropic::DEFAULT_IDLE_TIMEOUT;
        assert_eq!(
            Limits::new(8192, idle).answer_time,
            Duration::from_secs(1800)
        );
        assert_eq!(
            Limits::new(128_000, idle).answer_time,
            Duration::from_secs(6400)
        );
    }
}
