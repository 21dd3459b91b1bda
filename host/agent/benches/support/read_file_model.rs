//! The scripted model of the benches that run the real agent through `read_file` turns:
//! reading a request and writing a streamed Messages API answer over plain HTTP/1.1. Each
//! bench includes this file (`#[path]`), so the answers they time are the same.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The file the scripted model asks to read.
pub const FILE: &str = "notes.txt";

/// Private workspace, state, config and home directories for one agent run, removed when
/// dropped; the workspace holds [`FILE`].
pub struct Scene {
    _temp: tempfile::TempDir,
    pub workspace: PathBuf,
    state: PathBuf,
    config: PathBuf,
    home: PathBuf,
}

impl Scene {
    pub fn new(notes: &str) -> Scene {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().canonicalize().unwrap();
        let [workspace, state, config, home] = ["workspace", "state", "config", "home"].map(|d| {
            let dir = root.join(d);
            std::fs::create_dir(&dir).unwrap();
            dir
        });
        std::fs::write(workspace.join(FILE), notes).unwrap();
        Scene {
            _temp: temp,
            workspace,
            state,
            config,
            home,
        }
    }

    /// `agent` (a binary) in the workspace, with nothing of this environment but `PATH`,
    /// talking to the model server at `addr` as `model`; `cache` (compiled components)
    /// may outlive the scene, so only a first run compiles the built-in tools.
    pub fn agent(&self, agent: &OsStr, addr: SocketAddr, model: &str, cache: &Path) -> Command {
        let mut command = Command::new(agent);
        command
            .current_dir(&self.workspace)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("ANTHROPIC_API_KEY", "bench-key")
            .env("ANTHROPIC_BASE_URL", format!("http://{addr}"))
            .env("MODEL_ID", model)
            .env("AGENT_STATE_DIR", &self.state)
            .env("AGENT_CACHE_DIR", cache)
            .env("AGENT_CONFIG_DIR", &self.config)
            .stdin(Stdio::null());
        command
    }
}

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
