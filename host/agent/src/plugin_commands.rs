//! The `agent plugins list|inspect|check|trust` commands, and the [`catalog`] of what
//! loads for a run (the runtime's [`Catalog`], filled from the agent's [`Config`] and its
//! embedded file tools).
//!
//! The commands print text for people or, with `--output json`, one JSON document for
//! scripts; both go through the one [`print`] that makes untrusted text safe to show.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::PluginsCommand;
use crate::config::Config;
use crate::render::OutputFormat;
use crate::tools::{ToolSpec, name_clashes};
use agent_plugin_runtime::catalog::{BuiltIn, Catalog};
use agent_plugin_runtime::discovery::{self, Origin};
use agent_plugin_runtime::manifest::Grants;
use agent_plugin_runtime::trust::{Approval, TrustStore};
use agent_plugin_runtime::{LoadedPlugin, PluginHost, PluginSource};

/// The built-in file tools component, built from `plugins/fs-tools` by the build script.
const FS_TOOLS_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fs_tools.wasm"));

/// What loads for a run with `config`: the built-in file tools (granted the workspace),
/// then the plugins found where `config` says.
pub fn catalog(config: &Config) -> Catalog {
    Catalog {
        workspace: config.workspace.clone(),
        cache_dir: config.cache_dir.clone(),
        limits: config.plugin_limits.clone(),
        log_file: Some(config.plugin_log.clone()),
        built_ins: vec![BuiltIn {
            name: "fs-tools",
            bytes: FS_TOOLS_COMPONENT,
            grants: Grants::workspace_read_write(),
        }],
        dirs: config.plugin_dirs.clone(),
        files: config.plugin_files.clone(),
        trust: TrustStore::new(config.trusted_plugins.clone()),
    }
}

/// Runs an `agent plugins` command. Returns whether it succeeded (`check` fails when it
/// finds a problem).
pub async fn run(command: &PluginsCommand, config: &Config) -> Result<bool> {
    match command {
        PluginsCommand::List => {
            let (host, mut problems) = catalog(config).load().await?;
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
            let (host, loaded) = catalog(config).load_one(file).await?;
            let plugin = &host.plugins()[loaded.index];
            let warnings: Vec<&str> = host.cache_problem().into_iter().collect();
            let mut report = plugin_json(plugin);
            report["sha256"] = json!(plugin.sha256);
            report["imports"] = json!(plugin.imports);
            report["problems"] = json!(loaded.problems);
            report["warnings"] = json!(warnings);
            print(config.output, &report, || {
                inspect_text(plugin, &loaded.problems, &warnings)
            });
            Ok(true)
        }
        PluginsCommand::Trust { file, list, revoke } => {
            let store = TrustStore::new(config.trusted_plugins.clone());
            if *list {
                let approvals = store.list()?;
                let report = json!({ "approvals": approvals });
                print(config.output, &report, || approvals_text(&approvals));
                return Ok(true);
            }
            if let Some(file) = revoke {
                let plugin = discovery::locate(&config.plugin_dirs, file).path;
                let plugin = std::path::absolute(&plugin).unwrap_or(plugin);
                let removed = store.revoke(&plugin)?;
                if removed == 0 {
                    anyhow::bail!("{}: no approval of this plugin to revoke", plugin.display());
                }
                let report = json!({ "revoked": plugin, "approvals": removed });
                print(config.output, &report, || {
                    format!(
                        "revoked the approval of {}; it gets only its workspace access until trusted again\n",
                        plugin.display()
                    )
                });
                return Ok(true);
            }
            let Some(file) = file else {
                anyhow::bail!("give a plugin FILE, --list or --revoke FILE");
            };
            trust(config, &store, file).await
        }
        PluginsCommand::Check { file } => {
            let (tools, problems, grants, withheld, warnings) =
                match catalog(config).load_one(file).await {
                    Ok((host, loaded)) => {
                        let index = loaded.index;
                        let mut problems = loaded.problems;
                        problems.extend(
                            name_clashes(host.plugins())
                                .into_iter()
                                .filter(|(loser, _)| *loser == index)
                                .map(|(_, problem)| problem),
                        );
                        let plugin = &host.plugins()[index];
                        (
                            Some(plugin.tools.len()),
                            problems,
                            Some(plugin.grants.clone()),
                            plugin.withheld.clone(),
                            host.cache_problem().map(str::to_string),
                        )
                    }
                    Err(error) => (None, vec![format!("{error:#}")], None, None, None),
                };
            let ok = tools.is_some() && problems.is_empty();
            let report = json!({
                "file": file.display().to_string(),
                "ok": ok,
                "tools": tools,
                "grants": grants.as_ref().map(grants_json),
                "withheld": withheld.as_ref().map(grants_json),
                "problems": problems,
                "warnings": warnings.iter().collect::<Vec<_>>(),
            });
            print(config.output, &report, || {
                let mut text: String = problems.iter().map(|p| format!("problem: {p}\n")).collect();
                text.extend(warnings.iter().map(|w| format!("warning: {w}\n")));
                if let Some(grants) = &grants {
                    text.push_str(&format!("grants: {}\n", grants.describe().join("; ")));
                }
                if let Some(withheld) = &withheld {
                    text.push_str(&withheld_line(withheld, &file.display()));
                }
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
            manifest.as_ref().map(|m| m.path.display().to_string()),
        ),
    };
    json!({
        "name": plugin.name,
        "origin": origin,
        "path": path,
        "manifest": manifest,
        "grants": grants_json(&plugin.grants),
        "withheld": plugin.withheld.as_ref().map(grants_json),
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
        if let Some(withheld) = &plugin.withheld {
            text.push_str(&format!("    {}", withheld_line(withheld, &plugin.source)));
        }
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

fn inspect_text(plugin: &LoadedPlugin, problems: &[String], warnings: &[&str]) -> String {
    let mut text = format!("plugin    {}\n", plugin.name);
    text.push_str(&format!("file      {}\n", plugin.source));
    text.push_str(&format!("sha256    {}\n", plugin.sha256));
    let manifest = match &plugin.source {
        PluginSource::File {
            manifest: Some(manifest),
            ..
        } => manifest.path.display().to_string(),
        _ => "none (the plugin is granted nothing)".to_string(),
    };
    text.push_str(&format!("manifest  {manifest}\n"));
    text.push_str("grants\n");
    for line in plugin.grants.describe() {
        text.push_str(&format!("    {line}\n"));
    }
    if let Some(withheld) = &plugin.withheld {
        text.push_str(&format!(
            "withheld until you run `agent plugins trust {}`\n",
            plugin.source
        ));
        for line in withheld.describe_beyond_workspace() {
            text.push_str(&format!("    {line}\n"));
        }
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
    for problem in problems {
        text.push_str(&format!("problem: {problem}\n"));
    }
    for warning in warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    text
}

/// Approves the workspace plugin `file` as it loads now: the pins are the hash of the code
/// that was compiled and of the manifest bytes its grants were read from.
async fn trust(config: &Config, store: &TrustStore, file: &Path) -> Result<bool> {
    if std::fs::symlink_metadata(file).is_err() {
        anyhow::bail!("{}: the file does not exist", file.display());
    }
    let found = discovery::locate(&config.plugin_dirs, file);
    match found.origin {
        Origin::Workspace => {}
        Origin::User => anyhow::bail!(
            "{} is in your own plugin directory: it gets what its manifest asks without approval",
            file.display()
        ),
        Origin::CommandLine => anyhow::bail!(
            "{} is not in this workspace's plugin directory {}: approvals are for a workspace's own plugins (run this in the plugin's workspace, or give it with -w)",
            file.display(),
            config.workspace.join(".agent/plugins").display()
        ),
    }
    let (host, loaded) = catalog(config).load_one(file).await?;
    let plugin = &host.plugins()[loaded.index];
    let PluginSource::File {
        path,
        manifest: Some(manifest),
        ..
    } = &plugin.source
    else {
        anyhow::bail!(
            "{} has no manifest beside it ({}), so it asks for nothing to approve",
            file.display(),
            file.with_extension("toml").display()
        );
    };
    let Some(withheld) = plugin
        .withheld
        .as_ref()
        .or(plugin.grants.beyond_workspace().then_some(&plugin.grants))
    else {
        let report = json!({ "file": path, "manifest": manifest.path, "grants": grants_json(&plugin.grants), "trusted": false });
        print(config.output, &report, || {
            format!(
                "{} asks for nothing beyond the workspace ({}), so there is nothing to approve\n",
                path.display(),
                plugin.grants.describe()[0]
            )
        });
        return Ok(true);
    };
    let asked = withheld.describe_beyond_workspace();
    store.trust(Approval {
        workspace: config.workspace.clone(),
        plugin: path.clone(),
        component_sha256: plugin.sha256.clone(),
        manifest_sha256: manifest.sha256.clone(),
        grants: asked.clone(),
        approved_at: agent_plugin_runtime::trust::now(),
    })?;
    let report = json!({
        "file": path,
        "manifest": manifest.path,
        "workspace": config.workspace,
        "component_sha256": plugin.sha256,
        "manifest_sha256": manifest.sha256,
        "grants": grants_json(withheld),
        "trusted": true,
    });
    print(config.output, &report, || {
        format!(
            "trusted {} with {} in the workspace {}: {}\n",
            path.display(),
            manifest.path.display(),
            config.workspace.display(),
            asked.join("; ")
        )
    });
    Ok(true)
}

fn approvals_text(approvals: &[Approval]) -> String {
    if approvals.is_empty() {
        return "no plugin is trusted\n".to_string();
    }
    let mut text = String::new();
    for approval in approvals {
        text.push_str(&format!(
            "{}\n    workspace  {}\n    component  sha256 {}\n    manifest   sha256 {}\n    grants     {}\n",
            approval.plugin.display(),
            approval.workspace.display(),
            approval.component_sha256,
            approval.manifest_sha256,
            approval.grants.join("; ")
        ));
    }
    text
}

/// `withheld until ...: ...` for a plugin's withheld grants.
fn withheld_line(withheld: &Grants, plugin: &dyn std::fmt::Display) -> String {
    format!(
        "withheld until you run `agent plugins trust {plugin}`: {}\n",
        withheld.describe_beyond_workspace().join("; ")
    )
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

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}
