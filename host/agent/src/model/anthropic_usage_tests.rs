//! The usage counts of an answer, cache reads and writes included, streamed or whole.

use futures_util::stream;
use serde_json::json;

use super::*;

#[tokio::test]
async fn cache_tokens_come_from_message_start_and_message_delta() {
    let start = json!({"message": {"usage": {
        "input_tokens": 3, "cache_read_input_tokens": 70,
        "cache_creation_input_tokens": 9, "output_tokens": 1
    }}});
    // Totals so far: the delta repeats what changed, the rest stays.
    let delta = json!({"delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 12, "cache_creation_input_tokens": 10}});
    let text = format!(
        "event: message_start\ndata: {start}\n\nevent: message_delta\ndata: {delta}\n\nevent: message_stop\ndata: {{}}\n\n"
    );
    let limits = Limits::new(1024, std::time::Duration::from_secs(5));
    let chunks = stream::iter([Ok::<_, ModelError>(text.into_bytes())]);
    let answer = read_stream(chunks, &limits, &mut |_| {}).await.unwrap();
    let expected = Usage {
        input_tokens: 3,
        output_tokens: 12,
        cache_read_input_tokens: 70,
        cache_creation_input_tokens: 10,
    };
    assert_eq!(answer.usage, expected);
    let whole = json!({"content": [], "usage": {
        "input_tokens": 3, "output_tokens": 12,
        "cache_read_input_tokens": 70, "cache_creation_input_tokens": 10
    }});
    assert_eq!(parse_message(&whole).unwrap().usage, expected);
}
