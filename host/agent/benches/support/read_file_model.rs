//! The scripted model of the benches that run the real agent through `read_file` turns:
//! reading a request and writing a streamed Messages API answer over plain HTTP/1.1. Each
//! bench includes this file (`#[path]`), so the answers they time are the same.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// Reads one request's head and `Content-Length` body; returns the body.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// The answer to request `seq` (0-based): a `read_file` call of `notes.txt`, or after
/// `turns` of them the final text "done reading", streamed as the Messages API does, with
/// `usage` (the fields of the `usage` object) in its `message_start`.
pub fn answer(seq: usize, turns: usize, usage: &str) -> Vec<u8> {
    let mut sse = String::new();
    let mut event = |name: &str, data: String| {
        sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        format!(
            r#"{{"type":"message_start","message":{{"id":"msg_{seq:04}","type":"message","role":"assistant","model":"bench-model","content":[],"stop_reason":null,"stop_sequence":null,"usage":{{{usage}}}}}}}"#
        ),
    );
    event("ping", r#"{"type":"ping"}"#.to_string());
    let stop_reason = if seq < turns {
        event(
            "content_block_start",
            format!(
                r#"{{"type":"content_block_start","index":0,"content_block":{{"type":"tool_use","id":"toolu_{seq:04}","name":"read_file","input":{{}}}}}}"#
            ),
        );
        for piece in ["", r#"{"path": "#, r#""notes.txt"}"#] {
            event(
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                    serde_json::Value::from(piece)
                ),
            );
        }
        "tool_use"
    } else {
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
                .to_string(),
        );
        event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"done reading"}}"#
                .to_string(),
        );
        "end_turn"
    };
    event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#.to_string(),
    );
    event(
        "message_delta",
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}},"usage":{{"output_tokens":20}}}}"#
        ),
    );
    event("message_stop", r#"{"type":"message_stop"}"#.to_string());
    // Chunked, as the API streams: the last event, then the chunk that ends the body.
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{sse}\r\n0\r\n\r\n",
        sse.len()
    )
    .into_bytes()
}
