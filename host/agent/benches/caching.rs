//! What prompt caching saves (run: `cargo bench --bench caching`).
//!
//! The real `agent` binary runs one prompt in one-shot mode against a scripted model
//! server on 127.0.0.1 that answers 40 times with a streamed `tool_use` of `read_file` on
//! a 40-line file, then with a final text answer. The server bills each request the way
//! the Messages API bills prompt caching, simulated from the request's bytes:
//!
//! - tokens are estimated as bytes / 4 (the real tokenizer is not at hand; the ratio is
//!   what matters);
//! - a cache mark (`"cache_control":{"type":"ephemeral"}`) ends a prefix at the byte where
//!   the mark begins. At each mark the longest prefix an earlier request wrote is looked
//!   for (the mark's own prefix, or a shorter one at most 20 content blocks back: the API's
//!   documented look-back); what is found is a cache read, the bytes from there to the
//!   request's last mark a cache write, the bytes after it uncached input, and every mark's
//!   prefix is written;
//! - billed input: cache reads 0.1x, cache writes 1.25x, uncached input 1x; output is
//!   left out (caching does not change it). No minimum cacheable length and no expiry
//!   are simulated.
//!
//! Printed: the billed input relative to the same requests without caching (the bar is
//! 0.2), and the ideal for this session, where each request reads all of the previous one
//! and writes only what is new. The server reports its numbers as `usage`, and the agent's
//! own totals (its `--output json` `result` event) are checked against them. Nothing
//! timing-related is measured.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use std::sync::{Arc, Mutex};

#[path = "support/read_file_model.rs"]
mod read_file_model;
use read_file_model::{Scene, answer, read_request};

const TURNS: usize = 40;
const MARK: &[u8] = br#","cache_control":{"type":"ephemeral"}"#;
/// How many content blocks back from a mark the API looks for a cached prefix.
const LOOK_BACK_BLOCKS: usize = 20;

/// The simulated cache and bill, in bytes.
#[derive(Default)]
struct Bill {
    /// Prefixes written to the cache so far.
    written: Vec<Vec<u8>>,
    read: u64,
    write: u64,
    uncached: u64,
    /// What the same requests would bill without caching.
    total: u64,
    /// The ideal: each request reads all it shares with the previous one.
    ideal: f64,
    previous: Vec<u8>,
    /// Tokens as reported to the agent: input, cache read, cache write.
    reported: [u64; 3],
    requests: usize,
    problems: Vec<String>,
}

impl Bill {
    /// Bills one request; returns the `usage` to report (in estimated tokens).
    fn request(&mut self, body: &[u8]) -> [u64; 3] {
        let marks: Vec<usize> = body
            .windows(MARK.len())
            .enumerate()
            .filter(|(_, w)| *w == MARK)
            .map(|(at, _)| at)
            .collect();
        let last = marks.last().copied().unwrap_or(0);
        let mut hit = 0;
        for &mark in &marks {
            let prefix = &body[..mark];
            let found = self
                .written
                .iter()
                .filter(|p| prefix.starts_with(p) && blocks(&prefix[p.len()..]) <= LOOK_BACK_BLOCKS)
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            hit = hit.max(found);
        }
        for &mark in &marks {
            if !self.written.iter().any(|p| p[..] == body[..mark]) {
                self.written.push(body[..mark].to_vec());
            }
        }
        let tokens = |bytes: usize| bytes as u64 / 4;
        let (read, write, uncached) = (
            tokens(hit),
            tokens(last.saturating_sub(hit)),
            tokens(body.len() - last.max(hit)),
        );
        self.read += read;
        self.write += write;
        self.uncached += uncached;
        self.total += tokens(body.len());
        let shared = body
            .iter()
            .zip(&self.previous)
            .take_while(|(a, b)| a == b)
            .count();
        self.ideal += 0.1 * tokens(shared) as f64 + 1.25 * tokens(body.len() - shared) as f64;
        self.previous = body.to_vec();
        let usage = [uncached, read, write];
        for (sum, n) in self.reported.iter_mut().zip(usage) {
            *sum += n;
        }
        usage
    }

    fn billed(&self) -> f64 {
        0.1 * self.read as f64 + 1.25 * self.write as f64 + self.uncached as f64
    }
}

/// Content blocks that begin in `bytes` (each block's JSON starts with its type).
fn blocks(bytes: &[u8]) -> usize {
    let tag = br#"{"type":""#;
    bytes.windows(tag.len()).filter(|w| *w == tag).count()
}

fn main() {
    let text: String = (1..=40)
        .map(|i| format!("line {i}: a note the agent reads back, about forty bytes\n"))
        .collect();
    let scene = Scene::new(&text);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bill = Arc::new(Mutex::new(Bill::default()));
    let server_bill = Arc::clone(&bill);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let bill = Arc::clone(&server_bill);
            std::thread::spawn(move || serve(stream, &bill));
        }
    });

    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("caching-bench-cache");
    let out = scene
        .agent(
            env!("CARGO_BIN_EXE_agent").as_ref(),
            addr,
            "claude-sonnet-4-5",
            &cache,
        )
        .args(["--output", "json", "-p", "Read notes.txt again and again."])
        .output()
        .expect("running agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agent failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .expect("a result event last");
    assert_eq!(result["type"], "result", "{stdout}");

    let bill = bill.lock().unwrap();
    assert!(bill.problems.is_empty(), "{}", bill.problems.join("\n"));
    assert_eq!(bill.requests, TURNS + 1, "model calls");
    let usage = &result["usage"];
    let agent_counted = [
        usage["input_tokens"].as_u64().unwrap(),
        usage["cache_read_input_tokens"].as_u64().unwrap(),
        usage["cache_creation_input_tokens"].as_u64().unwrap(),
    ];
    assert_eq!(
        agent_counted, bill.reported,
        "the agent's totals (input, cache read, cache write) against the server's"
    );
    let ratio = bill.billed() / bill.total as f64;
    println!(
        "prompt caching over a {TURNS}-turn read_file session ({} requests, tokens = bytes/4): billed input {:.3} of uncached (bar: 0.2; ideal for this session {:.3})\n\
         tokens: {} uncached input, {} cache read, {} cache write, {} without caching; the agent's result event agrees; its cost at Sonnet 4.5 prices: ${:.4}",
        bill.requests,
        ratio,
        bill.ideal / bill.total as f64,
        bill.uncached,
        bill.read,
        bill.write,
        bill.total,
        result["cost_usd"].as_f64().unwrap_or(f64::NAN),
    );
}

/// Answers the requests of one connection, in order, until the client closes it.
fn serve(stream: TcpStream, bill: &Mutex<Bill>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(body) = read_request(&mut reader) {
        let (seq, usage) = {
            let mut bill = bill.lock().unwrap();
            let seq = bill.requests;
            bill.requests += 1;
            if seq > 0 {
                let id = format!(r#""tool_use_id":"toolu_{:04}""#, seq - 1);
                if !body.windows(id.len()).any(|w| w == id.as_bytes()) {
                    bill.problems.push(format!(
                        "request {seq} lacks the result of read {}",
                        seq - 1
                    ));
                }
            }
            (seq, bill.request(&body))
        };
        let [input, read, write] = usage;
        let usage = format!(
            r#""input_tokens":{input},"cache_read_input_tokens":{read},"cache_creation_input_tokens":{write},"output_tokens":1"#
        );
        if writer.write_all(&answer(seq, TURNS, &usage)).is_err() {
            return;
        }
    }
}
