//! Reading one Anthropic answer: a streamed answer's SSE events assembled into content
//! (text deltas reported as they come, `tool_use` input parsed when its block stops), or a
//! whole JSON message from a server that ignores `stream`. The events are read within
//! [`Limits`] by [`super::bounded`].

use std::collections::BTreeMap;

use futures_util::Stream;
use serde_json::Value;

pub use super::bounded::Limits;
use super::bounded::{Budget, Events};
use super::{ContentBlock, ModelError, ModelEvent, ModelResponse, StopReason, ToolInput, Usage};

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

/// Assembles a streamed answer from `bytes`, reporting text as it arrives.
#[cfg(test)]
pub(super) async fn read_stream<S, B>(
    bytes: S,
    limits: &Limits,
    on_event: &mut (dyn FnMut(ModelEvent) + Send),
) -> Result<ModelResponse, ModelError>
where
    S: Stream<Item = Result<B, ModelError>> + Unpin,
    B: AsRef<[u8]>,
{
    read_events(Events::new(bytes, limits), on_event).await
}

/// Assembles a streamed answer from its events, reporting text as it arrives.
pub(super) async fn read_events<S, B>(
    mut events: Events<'_, S>,
    on_event: &mut (dyn FnMut(ModelEvent) + Send),
) -> Result<ModelResponse, ModelError>
where
    S: Stream<Item = Result<B, ModelError>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut blocks: BTreeMap<u64, PartialBlock> = BTreeMap::new();
    let mut stop_reason = None;
    let mut usage = Usage::default();
    let mut finished = false;
    let mut budget = Budget::new(events.limits());
    let mut keep = |bytes: usize| budget.take(bytes);
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
