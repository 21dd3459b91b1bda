//! The host's time per agent-loop turn (run: `cargo bench --bench turns`).
//!
//! The real `agent` binary runs one prompt in one-shot mode against a scripted model
//! server on 127.0.0.1 that answers 200 times with a streamed (SSE) `tool_use` of
//! `read_file` on a small file, then with a final text answer. The server notes when it
//! began writing answer N and when the first byte of request N+1 arrived; the
//! difference is the host's time for that turn: reading the stream, running the tool
//! in its sandbox, rendering, and building and sending the next request with the whole
//! history. Printed: median, p99, min, max and the sum over the 200 turns.
//!
//! The server is a few lines of blocking HTTP/1.1 on std (one thread per connection,
//! keep-alive, chunked answers written in one piece), so that as little as possible of its own work
//! falls between the two stamps. Set `TURNS_BENCH_RUNS` to repeat the run (each run is a
//! fresh agent process; the numbers are over all turns of all runs), and
//! `TURNS_BENCH_AGENT` to time another `agent` binary (e.g. a copy built before a change,
//! run in turn with this one: the machine's load moves the numbers a lot).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/read_file_model.rs"]
mod read_file_model;
use read_file_model::{Scene, answer, read_request};

const TURNS: usize = 200;
const MARKER: &str = "turns-bench-marker";

/// Stamps and checks of one run, shared by the connection threads.
#[derive(Default)]
struct Log {
    /// When the first byte of request n (0-based) arrived.
    arrived: Vec<Instant>,
    /// When answer n (ready in full) was handed to the socket.
    answered: Vec<Instant>,
    /// What was wrong with a request, if anything.
    problems: Vec<String>,
    /// TCP connections the agent opened.
    connections: usize,
}

/// One agent process: its wall and CPU time, and the TCP connections it opened.
struct Run {
    wall: Duration,
    cpu: Duration,
    connections: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::var("TURNS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut turns = Vec::new();
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let (run, numbers) = one_run();
        turns.extend(run);
        per_run.push(format!(
            "wall {:.0} ms, CPU {:.0} ms, {} connection(s)",
            ms(numbers.wall),
            ms(numbers.cpu),
            numbers.connections
        ));
    }
    let total: Duration = turns.iter().sum();
    turns.sort_unstable();
    println!(
        "host time per read_file turn (model answer written -> next request), {} turns over {runs} run(s): median {:.3} ms, p99 {:.3} ms, min {:.3} ms, max {:.3} ms; sum {:.1} ms per {TURNS} turns\nagent process, start to exit: {}",
        turns.len(),
        ms(percentile(&turns, 0.5)),
        ms(percentile(&turns, 0.99)),
        ms(turns[0]),
        ms(turns[turns.len() - 1]),
        ms(total) / runs as f64,
        per_run.join("; ")
    );
}

/// One agent process through 200 turns; returns the host time of each turn and the
/// process's numbers.
fn one_run() -> (Vec<Duration>, Run) {
    let text: String = (1..=20)
        .map(|i| format!("line {i}: {MARKER} some text to read back\n"))
        .collect();
    let scene = Scene::new(&text);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let server_log = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            server_log.lock().unwrap().connections += 1;
            let log = Arc::clone(&server_log);
            std::thread::spawn(move || serve(stream, &log));
        }
    });

    // A cache that outlives the run, so only the first run compiles the built-in tools.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("turns-bench-cache");
    let cpu_before = children_cpu();
    let start = Instant::now();
    let agent =
        std::env::var_os("TURNS_BENCH_AGENT").unwrap_or_else(|| env!("CARGO_BIN_EXE_agent").into());
    let out = scene
        .agent(&agent, addr, "bench-model", &cache)
        .args(["-p", "Read notes.txt again and again."])
        .output()
        .expect("running agent");
    let wall = start.elapsed();
    let cpu = children_cpu() - cpu_before;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agent failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("done reading"), "final answer: {stdout}");

    let log = log.lock().unwrap();
    assert!(log.problems.is_empty(), "{}", log.problems.join("\n"));
    assert_eq!(log.arrived.len(), TURNS + 1, "model calls");
    let turns = (0..TURNS)
        .map(|n| log.arrived[n + 1] - log.answered[n])
        .collect();
    (
        turns,
        Run {
            wall,
            cpu,
            connections: log.connections,
        },
    )
}

/// The CPU time (user and system) of the waited-for child processes so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Answers the requests of one connection, in order, until the client closes it.
fn serve(stream: TcpStream, log: &Mutex<Log>) {
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        // Blocks until the request's first bytes are here.
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        let arrived = Instant::now();
        let Some(body) = read_request(&mut reader).and_then(|b| String::from_utf8(b).ok()) else {
            return;
        };
        let seq = {
            let mut log = log.lock().unwrap();
            log.arrived.push(arrived);
            log.arrived.len() - 1
        };
        if let Some(problem) = check(seq, &body) {
            log.lock().unwrap().problems.push(problem);
        }
        let response = answer(seq, TURNS, r#""input_tokens":100,"output_tokens":1"#);
        // Stamped before the write, not after it: this thread may be preempted between the
        // write and the stamp while the agent already answers, which would hide host time;
        // this way the one send system call counts as host time instead.
        let answered = Instant::now();
        if writer.write_all(&response).is_err() {
            return;
        }
        let mut log = log.lock().unwrap();
        if log.answered.len() <= seq {
            log.answered.resize(seq + 1, answered);
        }
        log.answered[seq] = answered;
    }
}

/// What is wrong with request `seq` (0-based), if anything: it must stream, and from the
/// second on it must carry the previous read's result.
fn check(seq: usize, body: &str) -> Option<String> {
    if !body.contains(r#""stream":true"#) {
        return Some(format!("request {seq} does not ask for a stream"));
    }
    if seq > 0 {
        let id = format!(r#""tool_use_id":"toolu_{:04}""#, seq - 1);
        if !body.contains(&id) || !body.contains(MARKER) || body.contains(r#""is_error":true"#) {
            return Some(format!(
                "request {seq} lacks a good result of read {}",
                seq - 1
            ));
        }
    }
    None
}
