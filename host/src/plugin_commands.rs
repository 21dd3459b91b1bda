//! Loading the plugin set for a run, and the `agent plugins list|inspect|check` commands.
//!
//! [`load_plugins`] is the one place that decides what loads: the built-in file tools
//! first (they always win a tool name), then every discovered third-party component in
//! discovery order. A broken plugin becomes a problem naming its file; the rest load.
//! The commands print text for people or, with `--output json`, one JSON document for
//! scripts.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::cli::PluginsCommand;
use crate::config::Config;
use crate::plugin::cache::sha256_hex;
use crate::plugin::discovery::{self, Found, Origin};
use crate::plugin::manifest::Grants;
use crate::plugin::trust::TrustStore;
use crate::plugin::{LoadedPlugin, PluginHost, PluginSource};
use crate::render::OutputFormat;
use crate::tools::{ToolSpec, name_clashes};

/// The built-in file tools component, built from `plugins/fs-tools` by the build script.
const FS_TOOLS_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fs_tools.wasm"));

/// Loads the built-in plugins and every discovered plugin. Returns the host and the
/// problems met (each names its file); only a broken built-in is an error.
pub async fn load_plugins(config: &Config) -> Result<(PluginHost, Vec<String>)> {
    let mut host = new_host(config).await?;
    let (found, mut problems) = discovery::discover(&config.plugin_dirs, &config.plugin_files);
    let trust = TrustStore::new(config.trusted_plugins.clone());
    for file in &found {
        match host.load_file(file, &trust).await {
            Ok(loaded) => problems.extend(loaded.problems),
            Err(error) => problems.push(format!("{error:#}; the plugin is skipped")),
        }
    }
    Ok((host, problems))
}

/// A plugin host with the built-in plugins loaded.
async fn new_host(config: &Config) -> Result<PluginHost> {
    let mut host = PluginHost::new(
        &config.workspace,
        config.cache_dir.clone(),
        config.plugin_limits.clone(),
    )?;
    host.log_to(config.plugin_log.clone());
    host.load(
        "fs-tools",
        PluginSource::BuiltIn,
        FS_TOOLS_COMPONENT,
        Grants::workspace_read_write(),
    )
    .await
    .context("loading the built-in file tools")?;
    Ok(host)
}

/// The built-ins plus one file, as `inspect` and `check` see it.
async fn load_one(config: &Config, file: &Path) -> Result<(PluginHost, usize, Vec<String>)> {
    if !file.is_file() {
        anyhow::bail!("{}: no such file", file.display());
    }
    let mut host = new_host(config).await?;
    let found = Found {
        path: file.to_path_buf(),
        origin: Origin::CommandLine,
    };
    let loaded = host
        .load_file(&found, &TrustStore::new(config.trusted_plugins.clone()))
        .await?;
    Ok((host, loaded.index, loaded.problems))
}

/// Runs an `agent plugins` command. Returns whether it succeeded (`check` fails when it
/// finds a problem).
pub async fn run(command: &PluginsCommand, config: &Config) -> Result<bool> {
    match command {
        PluginsCommand::List => {
            let (host, mut problems) = load_plugins(config).await?;
            problems.extend(name_clashes(host.plugins()).into_iter().map(|(_, p)| p));
            let report = json!({
                "pooling_allocator": host.pooling(),
                "plugins": host.plugins().iter().map(plugin_json).collect::<Vec<_>>(),
                "problems": problems,
            });
            print(config.output, &report, || list_text(&host, &problems));
            Ok(true)
        }
        PluginsCommand::Inspect { file } => {
            let (host, index, problems) = load_one(config, file).await?;
            let plugin = &host.plugins()[index];
            let mut report = plugin_json(plugin);
            report["sha256"] = json!(file_sha256(file)?);
            report["imports"] = json!(plugin.imports);
            report["problems"] = json!(problems);
            print(config.output, &report, || inspect_text(plugin, &report));
            Ok(true)
        }
        PluginsCommand::Trust { file } => {
            let (grants, manifest) = Grants::for_component(file).map_err(anyhow::Error::msg)?;
            let Some(manifest) = manifest else {
                anyhow::bail!(
                    "{} has no manifest beside it, so it asks for nothing to approve",
                    file.display()
                );
            };
            TrustStore::new(config.trusted_plugins.clone()).trust(file, &manifest)?;
            let report = json!({
                "file": file.display().to_string(),
                "manifest": manifest.display().to_string(),
                "grants": grants_json(&grants),
            });
            print(config.output, &report, || {
                format!(
                    "trusted {} with {}: {}\n",
                    file.display(),
                    manifest.display(),
                    grants.describe().join("; ")
                )
            });
            Ok(true)
        }
        PluginsCommand::Check { file } => {
            let (tools, problems) = match load_one(config, file).await {
                Ok((host, index, mut problems)) => {
                    problems.extend(
                        name_clashes(host.plugins())
                            .into_iter()
                            .filter(|(loser, _)| *loser == index)
                            .map(|(_, problem)| problem),
                    );
                    (Some(host.plugins()[index].tools.len()), problems)
                }
                Err(error) => (None, vec![format!("{error:#}")]),
            };
            let ok = tools.is_some() && problems.is_empty();
            let report = json!({
                "file": file.display().to_string(),
                "ok": ok,
                "tools": tools,
                "problems": problems,
            });
            print(config.output, &report, || {
                let mut text: String = problems.iter().map(|p| format!("problem: {p}\n")).collect();
                text.push_str(&match tools {
                    Some(n) if ok => format!(
                        "ok: {} loads and offers {}\n",
                        file.display(),
                        plural(n, "tool")
                    ),
                    _ => format!(
                        "failed: {} has {}\n",
                        file.display(),
                        plural(problems.len(), "problem")
                    ),
                });
                text
            });
            Ok(ok)
        }
    }
}

fn plugin_json(plugin: &LoadedPlugin) -> Value {
    let (path, origin, manifest) = match &plugin.source {
        PluginSource::BuiltIn => (None, "built-in", None),
        PluginSource::File {
            path,
            origin,
            manifest,
        } => (
            Some(path.display().to_string()),
            origin.as_str(),
            manifest.as_ref().map(|m| m.display().to_string()),
        ),
    };
    json!({
        "name": plugin.name,
        "origin": origin,
        "path": path,
        "manifest": manifest,
        "grants": grants_json(&plugin.grants),
        "cache": format!("{:?}", plugin.cache).to_lowercase(),
        "tools": plugin.tools.iter().map(tool_json).collect::<Vec<_>>(),
    })
}

fn grants_json(grants: &Grants) -> Value {
    json!({
        "workspace": grants.workspace.to_string(),
        "dirs": grants.dirs.iter().map(|d| json!({
            "path": d.path.display().to_string(),
            "access": d.access.to_string(),
        })).collect::<Vec<_>>(),
        "env": grants.env,
        "network": grants.network.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn tool_json(tool: &ToolSpec) -> Value {
    let mut hints = Vec::new();
    for (set, name) in [
        (tool.hints.read_only, "read-only"),
        (tool.hints.destructive, "destructive"),
        (tool.hints.idempotent, "idempotent"),
    ] {
        if set {
            hints.push(name);
        }
    }
    json!({
        "name": tool.name,
        "description": tool.description,
        "hints": hints,
        "input_schema": tool.input_schema,
    })
}

fn list_text(host: &PluginHost, problems: &[String]) -> String {
    let mut text = String::new();
    for plugin in host.plugins() {
        let origin = match &plugin.source {
            PluginSource::BuiltIn => "built-in".to_string(),
            PluginSource::File { path, origin, .. } => {
                format!("{}: {}", origin.as_str(), path.display())
            }
        };
        text.push_str(&format!(
            "{} ({origin}; cache {:?})\n    grants: {}\n",
            plugin.name,
            plugin.cache,
            plugin.grants.describe().join("; ")
        ));
        for tool in &plugin.tools {
            text.push_str(&format!(
                "    {:<16} {}\n",
                tool.name,
                first_line(&tool.description)
            ));
        }
    }
    for problem in problems {
        text.push_str(&format!("problem: {problem}\n"));
    }
    text
}

fn inspect_text(plugin: &LoadedPlugin, report: &Value) -> String {
    let mut text = format!("plugin    {}\n", plugin.name);
    text.push_str(&format!("file      {}\n", plugin.source));
    text.push_str(&format!(
        "sha256    {}\n",
        report["sha256"].as_str().unwrap_or("")
    ));
    text.push_str(&format!(
        "manifest  {}\n",
        report["manifest"]
            .as_str()
            .unwrap_or("none (the plugin is granted nothing)")
    ));
    text.push_str("grants\n");
    for line in plugin.grants.describe() {
        text.push_str(&format!("    {line}\n"));
    }
    text.push_str("imports\n");
    for import in &plugin.imports {
        text.push_str(&format!("    {import}\n"));
    }
    text.push_str("tools\n");
    for tool in &plugin.tools {
        let hints = tool_json(tool)["hints"].clone();
        text.push_str(&format!("    {}  {hints}\n", tool.name));
        for line in tool.description.lines() {
            text.push_str(&format!("        {line}\n"));
        }
        text.push_str(&format!("        input schema: {}\n", tool.input_schema));
    }
    for problem in report["problems"].as_array().into_iter().flatten() {
        text.push_str(&format!("problem: {}\n", problem.as_str().unwrap_or("")));
    }
    text
}

/// Prints `report` as JSON, or the text `text` builds. Names, paths, descriptions and
/// problems come from plugins and their files, so both forms go out with every terminal
/// control made visible (see [`crate::ui_text`]).
fn print(format: OutputFormat, report: &Value, text: impl FnOnce() -> String) {
    match format {
        OutputFormat::Json => println!("{}", crate::ui_text::json_line(report)),
        OutputFormat::Text => print!("{}", crate::ui_text::visible(&text())),
    }
}

fn file_sha256(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(sha256_hex(&bytes))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}
