//! Benchmarks of the BackgroundManager (run: `cargo bench --bench background`).
//!
//! 1. 200 concurrent `sleep 1` tasks: wall time from the first spawn until all 200
//!    notifications are ready (target: under 1.5 s).
//! 2. Latency from a task's exit to its notification being ready, over 200 tasks (target:
//!    p99 under 5 ms). Each task's last act is printing the wall clock in nanoseconds
//!    (`exec date +%s%N`); the latency is the clock when the notification arrives minus
//!    that stamp, so it covers the exit, the reaping, the drain and the queueing.
//! 3. A task printing 1 GB: the peak resident memory of this process (target: under
//!    64 MB), read from getrusage after the task, and the throughput.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_host::background::{BackgroundConfig, BackgroundManager, Notification};
use agent_host::process::Confinement;

fn manager(max_running: usize, state: &std::path::Path) -> BackgroundManager {
    BackgroundManager::new(BackgroundConfig {
        workspace: std::env::temp_dir(),
        log_dir: state.to_path_buf(),
        max_running,
        max_tasks: usize::MAX,
        sandbox: std::sync::Arc::new(agent_host::sandbox::Sandbox::off()),
    })
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<Notification>) -> Notification {
    rx.recv().await.expect("the manager lives")
}

async fn concurrent_sleeps(state: &std::path::Path) {
    let manager = manager(256, state);
    let mut finished = manager.subscribe();
    let start = Instant::now();
    for _ in 0..200 {
        manager
            .start("sleep 1", Duration::from_secs(30), Confinement::Unsandboxed)
            .unwrap();
    }
    let spawned = start.elapsed();
    for _ in 0..200 {
        let n = next(&mut finished).await;
        assert_eq!(n.status.as_str(), "completed", "{}", n.to_model_text());
    }
    let all = start.elapsed();
    println!(
        "200 concurrent `sleep 1`: all notified {:.3} s after the first spawn (spawning took {:.1} ms)",
        all.as_secs_f64(),
        spawned.as_secs_f64() * 1e3
    );
}

async fn exit_to_notification_latency(state: &std::path::Path) {
    let manager = manager(8, state);
    let mut finished = manager.subscribe();
    let mut samples = Vec::new();
    for _ in 0..200 {
        manager
            .start(
                "exec date +%s%N",
                Duration::from_secs(30),
                Confinement::Unsandboxed,
            )
            .unwrap();
        let n = next(&mut finished).await;
        let ready = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let exited: i128 = n.output.trim().parse().expect("date printed nanoseconds");
        samples.push((ready - exited) as f64 / 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "exit -> notification ready over {} tasks: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        samples.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

async fn big_output(state: &std::path::Path) {
    let manager = manager(1, state);
    let mut finished = manager.subscribe();
    let start = Instant::now();
    manager
        .start(
            "head -c 1000000000 /dev/zero",
            Duration::from_secs(300),
            Confinement::Unsandboxed,
        )
        .unwrap();
    let n = next(&mut finished).await;
    let took = start.elapsed();
    assert_eq!(n.output_bytes, 1_000_000_000);
    let log_size = std::fs::metadata(&n.log_path).unwrap().len();
    println!(
        "1 GB of output: {:.2} s ({:.0} MB/s), log {} bytes, peak RSS of the host process {:.1} MB",
        took.as_secs_f64(),
        1000.0 / took.as_secs_f64(),
        log_size,
        peak_rss_mb()
    );
    let _ = std::fs::remove_file(&n.log_path);
}

/// Peak resident memory of this process (VmHWM). Not getrusage: its ru_maxrss survives
/// exec, so it would report the peak of the `cargo` that started the benchmark.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let state = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        println!("peak RSS at start: {:.1} MB", peak_rss_mb());
        big_output(state.path()).await;
        concurrent_sleeps(state.path()).await;
        exit_to_notification_latency(state.path()).await;
    });
}
