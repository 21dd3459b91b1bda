//! The `agent` binary: parse, run, map the outcome to an exit code. No logic lives here.

use std::process::ExitCode;

use agent_host::app::{self, Outcome};
use agent_host::cli::Cli;
use agent_host::config::{self, ConfigError};
use clap::Parser;

fn main() -> ExitCode {
    if let Err(message) = config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
            // A configuration problem is the user's to fix: exit 2, like a usage error.
            if error.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
