//! The cost of the OS sandbox at command start (run: `cargo bench --bench sandbox_start`).
//!
//! Starts `true` through the real spawn path (`process::spawn_shell`, so `bash -c true` in
//! its own process group with the clean environment) and waits for it, 200 times
//! sandboxed (the default `workspace-write` mode, network off: no_new_privs, the Landlock
//! ruleset and the seccomp filter applied in the child before exec) and 200 times
//! unsandboxed, interleaved so both see the same machine load. Prints the median and p99
//! of each and the median difference (goal: under 2 ms). Also prints the one-off cost of
//! preparing the sandbox (policy, temporary directory, ruleset, BPF program) per run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_host::process::{Confinement, spawn_shell};
use agent_host::sandbox::{Environment, FlagSettings, Sandbox, Settings};

const RUNS: usize = 200;

async fn start_and_wait(workspace: &Path, confinement: &Confinement) -> Duration {
    let started = Instant::now();
    let mut shell = spawn_shell("true", workspace, confinement).expect("spawning true");
    let status = shell.child.wait().await.expect("waiting for true");
    let elapsed = started.elapsed();
    assert!(status.success(), "true failed: {status}");
    elapsed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let workspace = tempfile::tempdir().unwrap();
    let settings = Settings::resolve(
        FlagSettings::default(),
        &agent_host::config_file::ConfigFile::default(),
        Environment::from_process(),
    )
    .expect("default settings");
    let built = Instant::now();
    let policy =
        agent_host::sandbox::policy::build(&settings, workspace.path(), &std::env::temp_dir(), &[]);
    let build_time = built.elapsed();
    let enforcing = Instant::now();
    let _ = agent_host::sandbox::Enforcement::prepare(&policy);
    println!(
        "policy built in {:.2} ms, kernel rules prepared in {:.2} ms",
        ms(build_time),
        ms(enforcing.elapsed())
    );
    let prepared = Instant::now();
    let (sandbox, _temp) =
        Sandbox::new(&settings, workspace.path(), &[]).expect("making the sandbox");
    let prepare_time = prepared.elapsed();
    if let Some(error) = sandbox.unenforceable() {
        eprintln!("SKIPPED: the sandbox cannot be enforced here: {error}");
        return;
    }
    let enforced = sandbox.enforced().expect("enforced");
    println!(
        "sandbox: {} (Landlock ABI {}, {} path rules, seccomp {}), prepared once per run in {:.2} ms",
        sandbox.describe(),
        enforced.landlock_abi,
        enforced.rules,
        enforced.seccomp_sockets_refused,
        ms(prepare_time)
    );
    let sandboxed = Confinement::Sandboxed(Arc::clone(&sandbox));
    let unsandboxed = Confinement::Unsandboxed;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut with, mut without) = runtime.block_on(async {
        // Warm up the page cache and the runtime.
        for _ in 0..10 {
            start_and_wait(workspace.path(), &sandboxed).await;
            start_and_wait(workspace.path(), &unsandboxed).await;
        }
        let mut with = Vec::with_capacity(RUNS);
        let mut without = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            with.push(start_and_wait(workspace.path(), &sandboxed).await);
            without.push(start_and_wait(workspace.path(), &unsandboxed).await);
        }
        (with, without)
    });
    with.sort();
    without.sort();
    let (with_median, without_median) = (percentile(&with, 0.5), percentile(&without, 0.5));
    println!(
        "start+wait of `true` over {RUNS} runs: sandboxed median {:.3} ms, p99 {:.3} ms; unsandboxed median {:.3} ms, p99 {:.3} ms",
        ms(with_median),
        ms(percentile(&with, 0.99)),
        ms(without_median),
        ms(percentile(&without, 0.99)),
    );
    println!(
        "extra start time of the sandbox (median): {:.3} ms (goal: under 2 ms)",
        ms(with_median) - ms(without_median)
    );
}
