//! The `agent` binary: parse, run, map the outcome to an exit code. No logic lives here.

use std::process::ExitCode;

use agent_host::app;
use agent_host::cli::Cli;
use agent_host::config::ConfigError;
use agent_host::shutdown::Outcome;
use agent_host::{dotenv, host_secrets};
use clap::Parser;

/// mimalloc keeps freed memory for reuse where glibc's malloc hands large blocks (a
/// request body with the whole conversation) back to the kernel, to fault them in again
/// on the next turn.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before flags are parsed, since flags read environment defaults. Still
    // single-threaded, so setting the environment is sound.
    if let Ok(cwd) = std::env::current_dir() {
        let found = dotenv::read(&cwd, |name| {
            std::env::var_os(name).is_some_and(|value| !value.is_empty())
        });
        for warning in &found.warnings {
            // A warning may quote the file, which is the project's, not ours.
            eprintln!("warning: {}", agent_host::ui_text::visible(warning));
        }
        dotenv::remember(&found.set);
        for (name, value) in found.set {
            // SAFETY: no other thread exists yet.
            unsafe { std::env::set_var(name, value) };
        }
    }
    // wasmtime's errors capture a Rust backtrace when RUST_BACKTRACE is set, and it makes
    // one each time a plugin call's store is dropped: about 50 µs of every file tool
    // call, for traces the agent never shows. Panics still print theirs (RUST_BACKTRACE
    // governs those), and commands never see this variable (they get a fixed list).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: still single-threaded.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    // No command the model runs may read this process's memory or environment, where
    // the API key is.
    // SAFETY: still single-threaded.
    unsafe { host_secrets::protect_host() };
    let cli = Cli::parse();
    // One thread runs the loop, the HTTP connection and the tasks' supervision: the agent
    // waits on the network and on processes, and a turn's steps then hand over to each
    // other without crossing threads. What computes (plugin calls, file reads) runs on
    // tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(app::run(cli));
    // Do not wait on a blocking thread that is stuck (a pipe read of a killed task).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Ok(Outcome::CheckFailed) => ExitCode::FAILURE,
        Err(error) => {
            // The chain can quote a plugin, a file name or a server: show no control.
            eprintln!(
                "error: {}",
                agent_host::ui_text::visible(&format!("{error:#}"))
            );
            // A configuration problem (or a session that is not there) is the user's to
            // fix: exit 2, like a usage error.
            let usage = error.downcast_ref::<ConfigError>().is_some()
                || error
                    .downcast_ref::<agent_host::session::SessionError>()
                    .is_some_and(|e| e.is_usage());
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
