//! The Anthropic Messages API client: streaming (SSE), tool use, retries.
//!
//! A request is retried with exponential backoff on 429, 529, other 5xx answers and
//! connection failures, honouring `retry-after`. Once an answer has started streaming it is
//! never re-posted: a stream that breaks midway is an error. Unknown event types are
//! ignored; `tool_use` input arrives as partial JSON and is parsed when its block stops.
//!
//! The server is not trusted with the key or with the host's memory and time: redirects
//! are never followed (the key would go along), and every answer is read within limits
//! ([`Limits`]): bytes per event, per answer and per error body, and time without progress.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::request_body::{RequestEncoder, Settings};
use super::sse::{SseDecoder, SseError};
use super::{ContentBlock, ModelError, ModelEvent, ModelRequest, ModelResponse, StopReason, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// The longest `retry-after` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How long the server may send nothing (before the answer: no byte; while it streams: no
/// complete event) before the call fails. The API streams pings while it works, and its
/// first event comes as soon as a request is accepted, so two silent minutes mean a dead
/// or hostile server.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

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
    fn late(&self) -> ModelError {
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

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub max_tokens: u32,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The first backoff delay; doubled on each retry.
    pub min_retry_delay: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

pub struct AnthropicClient {
    http: reqwest::Client,
    config: AnthropicConfig,
    url: String,
    limits: Limits,
    encoder: RequestEncoder,
}

/// One failed attempt, before retry policy is applied.
#[derive(Debug)]
enum Attempt {
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    /// A 3xx answer: never followed, never retried.
    Redirect {
        status: u16,
        location: String,
    },
    Connect(reqwest::Error),
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Status { status, .. } => *status == 429 || *status == 529 || *status >= 500,
            Attempt::Redirect { .. } => false,
            Attempt::Connect(_) => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attempt::Status { status, body, .. } => {
                let (_, message) = api_error_parts(body);
                format!("HTTP {status}: {message}")
            }
            Attempt::Redirect { status, location } => format!("HTTP {status} to {location}"),
            Attempt::Connect(e) => format!("{e}"),
        }
    }
}

/// The longest server-written message kept in an error.
const MESSAGE_CHARS: usize = 500;

/// The error type and message of an API error body, or the raw body.
fn api_error_parts(body: &str) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(MESSAGE_CHARS).collect())
        .unwrap_or_else(|| {
            let body = body.trim();
            if body.is_empty() {
                "(empty answer)".to_string()
            } else {
                body.chars().take(MESSAGE_CHARS).collect()
            }
        });
    (kind, message)
}

impl AnthropicClient {
    pub fn new(config: AnthropicConfig) -> anyhow::Result<AnthropicClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Per read, not in all: no byte for this long fails the request.
            .read_timeout(config.idle_timeout)
            // A redirect would carry the API key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        let limits = Limits::new(config.max_tokens, config.idle_timeout);
        Ok(AnthropicClient {
            http,
            config,
            url,
            limits,
            encoder: RequestEncoder::default(),
        })
    }

    /// Sends one request and streams the answer, reporting text as it arrives.
    pub async fn send(
        &self,
        request: ModelRequest<'_>,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<ModelResponse, ModelError> {
        let settings = Settings {
            model: &self.config.model,
            max_tokens: self.config.max_tokens,
            system: request.system,
            tools: request.tools,
        };
        let body = self.encoder.body(&settings, request.messages);

        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.min_retry_delay)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.config.max_retries)
            .with_jitter();
        let mut attempt = 0;
        let response = (|| self.post(&body))
            .retry(backoff)
            .when(Attempt::retryable)
            .adjust(|error, delay| {
                // `delay` is None once retries are used up; keep it that way.
                let retry_after = match error {
                    Attempt::Status { retry_after, .. } => *retry_after,
                    Attempt::Redirect { .. } | Attempt::Connect(_) => None,
                };
                delay.map(|d| retry_after.map_or(d, |r| r.min(MAX_RETRY_AFTER)))
            })
            .notify(|error, delay| {
                attempt += 1;
                on_event(ModelEvent::Retrying {
                    attempt,
                    delay,
                    reason: error.describe(),
                });
            })
            .await
            .map_err(|error| match error {
                Attempt::Status { status, body, .. } => {
                    let (kind, message) = api_error_parts(&body);
                    ModelError::Api {
                        status,
                        kind,
                        message,
                    }
                }
                Attempt::Redirect { status, location } => ModelError::Redirect {
                    url: self.url.clone(),
                    status,
                    location,
                },
                Attempt::Connect(source) => ModelError::Connect {
                    url: self.url.clone(),
                    source,
                },
            })?;

        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            // A server that ignores `stream` answers with the whole message at once.
            let deadline = Instant::now() + self.limits.answer_time;
            let (body, end) = read_at_most(response, self.limits.content_bytes, deadline).await;
            match end {
                BodyEnd::Complete => {}
                BodyEnd::Cut => {
                    return Err(ModelError::TooLarge {
                        what: "the answer",
                        limit: self.limits.content_bytes,
                    });
                }
                BodyEnd::Late => return Err(self.limits.late()),
                BodyEnd::Failed(error) => return Err(body_error(error, self.limits.idle)),
            }
            let message: Value = serde_json::from_slice(&body)
                .map_err(|e| ModelError::Stream(format!("the answer is not JSON: {e}")))?;
            let response = parse_message(&message)?;
            for block in &response.content {
                if let ContentBlock::Text { text } = block {
                    on_event(ModelEvent::TextDelta(text.clone()));
                }
            }
            return Ok(response);
        }
        let idle = self.limits.idle;
        let bytes = Box::pin(
            response
                .bytes_stream()
                .map(move |chunk| chunk.map_err(|e| body_error(e, idle))),
        );
        read_stream(bytes, &self.limits, on_event).await
    }

    async fn post(&self, body: &[u8]) -> Result<reqwest::Response, Attempt> {
        let response = self
            .http
            .post(&self.url)
            .header("x-api-key", &self.config.api_key)
            .header("anthropic-version", API_VERSION)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(Attempt::Connect)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(MESSAGE_CHARS)
                        .collect()
                })
                .unwrap_or_else(|| "(no location)".to_string());
            return Err(Attempt::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64);
        // Only the start is read, for a while: the message is in it, and the rest may never
        // end. A body that breaks off is shown as far as it came.
        let deadline = Instant::now() + self.limits.idle;
        let (body, _) = read_at_most(response, self.limits.error_bytes, deadline).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        Err(Attempt::Status {
            status: status.as_u16(),
            retry_after,
            body,
        })
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
enum BodyEnd {
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
async fn read_at_most(
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
fn body_error(error: reqwest::Error, idle: Duration) -> ModelError {
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
async fn read_stream<S, B>(
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
            "message_start" => {
                usage.input_tokens = data["message"]["usage"]["input_tokens"]
                    .as_u64()
                    .unwrap_or(0);
            }
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
                if let Some(n) = data["usage"]["output_tokens"].as_u64() {
                    usage.output_tokens = n;
                }
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
/// an object carrying the raw text under `__invalid_json`, which the loop answers with an
/// error result instead of calling the tool.
fn finish_block(block: PartialBlock) -> Option<ContentBlock> {
    match block {
        PartialBlock::Text(text) if text.is_empty() => None,
        PartialBlock::Text(text) => Some(ContentBlock::Text { text }),
        PartialBlock::ToolUse { id, name, json } => {
            let input = if json.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(&json) {
                    Ok(value) if value.is_object() => value,
                    _ => json!({ INVALID_JSON_KEY: json }),
                }
            };
            Some(ContentBlock::ToolUse { id, name, input })
        }
        PartialBlock::Ignored => None,
    }
}

/// Where [`finish_block`] keeps tool input that was not a JSON object.
pub const INVALID_JSON_KEY: &str = "__invalid_json";

fn parse_message(message: &Value) -> Result<ModelResponse, ModelError> {
    let content: Vec<ContentBlock> = message["content"]
        .as_array()
        .ok_or_else(|| ModelError::Stream("the answer has no content array".into()))?
        .iter()
        .filter_map(|block| serde_json::from_value(block.clone()).ok())
        .collect();
    Ok(ModelResponse {
        content,
        stop_reason: StopReason::parse(message["stop_reason"].as_str().unwrap_or("end_turn")),
        usage: Usage {
            input_tokens: message["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: message["usage"]["output_tokens"].as_u64().unwrap_or(0),
        },
    })
}

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
        let idle = DEFAULT_IDLE_TIMEOUT;
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
