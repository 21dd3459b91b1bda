//! Wiring: builds the runtime objects from a [`Config`] and runs one-shot or REPL mode.
//!
//! This is the only place that knows every module. It owns the shutdown: whatever way the
//! run ends (answer given, error, Ctrl-C, SIGTERM, panic), every background process group
//! is ended before the host exits.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::agent::{Agent, TurnEnd};
use crate::approval::{ApprovalPolicy, Approvals};
use crate::background::{BackgroundConfig, BackgroundManager};
use crate::cli::{Cli, Command, ConfigCommand, SandboxCommand};
use crate::config::Config;
use crate::render::{Event, OutputFormat, Renderer};
use crate::sandbox::Sandbox;
use crate::shutdown::{Outcome, shutdown_signal};
use crate::status::StatusLine;
use crate::tools::ToolRegistry;
use crate::tools::native::{NativeConfig, NativeTools};
use crate::usage::{ExitReason, RunSummary};

/// Ends every background process group when dropped, also on a panic or early return.
struct ShutdownGuard(BackgroundManager);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.kill_all_now();
        crate::orphans::kill_orphans_now();
    }
}

pub async fn run(cli: Cli) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let config = Config::from_cli(&cli)?;
    if let Some(Command::Plugins(command)) = &cli.command {
        let ok = crate::plugin_commands::run(command, &config).await?;
        return Ok(Outcome::of_check(ok));
    }
    if let Some(Command::Sandbox(SandboxCommand::Check)) = &cli.command {
        let ok = crate::sandbox::check::run(
            &config.sandbox,
            &config.workspace,
            &config.agent_dirs,
            config.output,
        )?;
        return Ok(Outcome::of_check(ok));
    }
    if let Some(Command::Config(ConfigCommand::Show { json })) = &cli.command {
        crate::config_show::run(&config, *json);
        return Ok(Outcome::Success);
    }
    if let Some(Command::Sessions(command)) = &cli.command {
        crate::session_commands::run(command, &config)?;
        return Ok(Outcome::Success);
    }
    // Before anything runs: a memory cap that cannot be enforced here refuses the run.
    crate::task_cgroup::configure(config.task_cgroups)?;
    // Check the key before the slower plugin loading, so a missing key fails at once.
    let client = config.model.client()?;
    // A session that is not there fails before anything slower.
    let session = crate::session_commands::open(&config, &crate::session_commands::choice(&cli))?;
    let (plugins, plugin_problems) = crate::plugin_commands::catalog(&config).load().await?;
    crate::orphans::spawn_orphan_reaper();
    // Declared before the shutdown guard, so the commands' temporary directory is removed
    // only after their processes are ended.
    let (sandbox, _sandbox_temp) =
        Sandbox::new(&config.sandbox, &config.workspace, &config.agent_dirs)
            .context("creating the commands' private temporary directory")?;

    let background = BackgroundManager::new(BackgroundConfig {
        workspace: config.workspace.clone(),
        log_dir: config.task_log_dir.clone(),
        max_running: config.max_background,
        max_tasks: config.max_tasks,
        sandbox: sandbox.clone(),
    });
    let _guard = ShutdownGuard(background.clone());
    let renderer = Renderer::new(
        config.output,
        StatusLine::new(describe_tasks(background.clone())),
    )
    .with_style(crate::term::Style::resolve(config.color));
    let (approvals, questions) = Approvals::new(config.approval);
    let native = NativeTools::new(
        NativeConfig {
            workspace: config.workspace.clone(),
            bash_timeout: config.bash_timeout,
            background_timeout: config.background_timeout,
            sandbox: sandbox.clone(),
        },
        background.clone(),
        Arc::new(approvals),
    );
    let (tools, problems) = ToolRegistry::with_plugins(native.into_tools(), &Arc::new(plugins));
    // The first event of a JSON run, before any warning.
    let tool_names: Vec<String> = tools.specs().map(|spec| spec.name.clone()).collect();
    renderer.emit(Event::Session {
        session_id: Some(session.recorder.id()),
        provider: &config.model.provider,
        model: &config.model.model,
        tools: &tool_names,
        workspace: &config.workspace.display().to_string(),
    });
    for warning in sandbox.warnings() {
        renderer.emit(Event::Warning(&warning));
    }
    if config.approval == ApprovalPolicy::Always {
        renderer.emit(Event::Warning(
            "--approval always: every command the model asks to run outside the sandbox runs there without asking you",
        ));
    }
    for problem in plugin_problems.iter().chain(&problems) {
        renderer.emit(Event::Warning(problem));
    }
    let system = system_prompt(&config);
    let mut agent = Agent::new(client, tools, background.clone(), renderer.clone(), system);
    agent.set_context_window(config.context.clone());
    if let Some(resumed) = &session.resumed {
        renderer.emit(Event::SessionResumed(resumed));
    }
    crate::session_commands::attach(session, &mut agent, &background);

    let outcome = match &cli.prompt {
        Some(prompt) => {
            tokio::select! {
                result = one_shot(&mut agent, prompt, &background, &renderer) => result.map(Some),
                () = shutdown_signal() => Ok(None),
            }
        }
        None => crate::repl::run(
            &mut agent,
            &background,
            renderer.clone(),
            &config,
            &sandbox,
            questions,
        )
        .await
        .map(|outcome| match outcome {
            Outcome::Interrupted => None,
            _ => Some(TurnEnd::Done),
        }),
    };
    background.shutdown().await;
    // Whatever no task's cgroup holds and left its group (`setsid daemon &`) was
    // re-parented to the agent: end it.
    crate::orphans::end_orphans(crate::process::KILL_GRACE).await;
    crate::task_cgroup::finish_run(std::time::Duration::from_millis(500)).await;
    renderer.idle();
    let exit = match &outcome {
        Ok(Some(TurnEnd::MaxTokens)) => ExitReason::MaxTokens,
        Ok(Some(_)) => ExitReason::Done,
        Ok(None) => ExitReason::Interrupted,
        Err(error) => ExitReason::Error(format!("{error:#}")),
    };
    // The REPL shows its usage with /cost; a JSON run always ends with its result.
    if cli.prompt.is_some() || renderer.format() == OutputFormat::Json {
        let tally = agent.usage().session();
        let prices = config.prices.lookup(&config.model.model);
        renderer.emit(Event::Result(&RunSummary {
            exit,
            duration: started.elapsed(),
            tally,
            cost_usd: prices.map(|p| p.cost(&tally.usage)),
        }));
    }
    outcome.map(|end| match end {
        Some(_) => Outcome::Success,
        None => Outcome::Interrupted,
    })
}

/// The status line's text: the tasks running or queued, with their run time.
fn describe_tasks(background: BackgroundManager) -> crate::status::Describe {
    Arc::new(move || crate::task_text::status_line_text(&background.list()))
}

/// Runs the prompt to the end, then waits for the background tasks it started and lets the
/// model see each result, so no result is dropped. Returns how the last turn that ran
/// ended.
async fn one_shot(
    agent: &mut Agent,
    prompt: &str,
    background: &BackgroundManager,
    renderer: &Renderer,
) -> Result<TurnEnd> {
    let mut end = agent.run_turn(Some(prompt)).await?;
    while background.has_pending() {
        renderer.busy("waiting for background tasks");
        // Tasks finishing within the batching window cost one model call.
        crate::wake::gather(background).await;
        renderer.idle();
        match agent.run_turn(None).await? {
            TurnEnd::Idle => break,
            ended => end = ended,
        }
    }
    Ok(end)
}

fn system_prompt(config: &Config) -> String {
    format!(
        "You are a coding agent working in {}. Use the file tools (read_file, write_file, edit_file) for files and bash for short commands. \
Use background_run for anything slow (builds, installs, test runs) and keep working while it runs: \
its result is delivered to you automatically in <background-results>, so never sleep or poll for it.",
        config.workspace.display()
    )
}
