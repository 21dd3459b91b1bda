//! `agent config show`: the settings this run would use and where each came from (a flag,
//! the environment, the user's `config.toml`, or the built-in default). It prints; the
//! settings themselves are worked out by [`crate::config`] and the modules it asks.
//!
//! The API key is never shown, only whether one is set and in which variable.

use clap::parser::ValueSource;
use clap::{CommandFactory, ValueEnum};
use serde_json::json;

use crate::cli::Cli;
use crate::config::Config;
use crate::ui_text::{json_line, visible};

/// One line of the report.
struct Row {
    name: &'static str,
    value: String,
    source: String,
}

/// Prints the effective settings, as text or (with `json`) one JSON object.
pub fn run(config: &Config, json: bool) {
    let rows = rows(config);
    if json {
        let settings: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|row| {
                (
                    row.name.to_string(),
                    json!({"value": row.value, "source": row.source}),
                )
            })
            .collect();
        println!("{}", json_line(&serde_json::Value::Object(settings)));
        return;
    }
    let width = rows.iter().map(|row| row.name.len()).max().unwrap_or(0);
    for row in rows {
        // Values can come from the environment or the config file: show no control.
        println!(
            "{:width$}  {}  ({})",
            row.name,
            visible(&row.value),
            visible(&row.source)
        );
    }
}

fn rows(config: &Config) -> Vec<Row> {
    // The command line again, for clap to say where each of its values came from.
    let matches = Cli::command()
        .try_get_matches_from(std::env::args_os())
        .ok();
    let from_clap = |id: &str, flag: &str, env: Option<&str>| -> String {
        match matches.as_ref().and_then(|m| m.value_source(id)) {
            Some(ValueSource::CommandLine) => flag.to_string(),
            Some(ValueSource::EnvVariable) => env.unwrap_or(flag).to_string(),
            _ => "default".to_string(),
        }
    };
    let file = config
        .config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no config directory)".to_string());
    let mut rows = vec![Row {
        name: "config_file",
        value: file,
        source: if config.config_file.as_ref().is_some_and(|p| p.is_file()) {
            "read".to_string()
        } else {
            "not present".to_string()
        },
    }];
    let model = &config.model;
    let source_of = |name: &str| {
        model
            .sources
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, source)| source.clone())
            .unwrap_or_else(|| "default".to_string())
    };
    for (name, value) in [
        ("provider", model.provider.clone()),
        ("model", model.model.clone()),
        ("base_url", model.base_url.clone()),
        ("max_tokens", model.max_tokens.to_string()),
    ] {
        rows.push(Row {
            name,
            value,
            source: source_of(name),
        });
    }
    rows.push(Row {
        name: "api_key",
        value: match (&model.api_key, &model.key_env) {
            (Some(_), _) => "set".to_string(),
            (None, _) if model.key_optional => "not set (not needed)".to_string(),
            (None, _) => "not set".to_string(),
        },
        source: model
            .key_env
            .clone()
            .unwrap_or_else(|| "none: this provider sends no key".to_string()),
    });
    rows.push(Row {
        name: "context_window",
        value: config.context.window.to_string(),
        source: config.context.source.clone(),
    });
    rows.push(Row {
        name: "compact_at",
        value: config.context.compact_at.to_string(),
        source: "[context] compact_at, or the default 0.8".to_string(),
    });
    rows.push(Row {
        name: "sandbox",
        value: config.sandbox.mode.name().to_string(),
        source: config.sandbox.mode_source.clone(),
    });
    rows.push(Row {
        name: "network",
        value: config.sandbox.network.to_string(),
        source: if matches.as_ref().is_some_and(|m| m.get_flag("network")) {
            "--network".to_string()
        } else if config.sandbox.network {
            "config.toml [sandbox] network".to_string()
        } else {
            "default".to_string()
        },
    });
    rows.push(Row {
        name: "approval",
        value: config
            .approval
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
        source: from_clap("approval", "--approval", None)
            .replace("default", "default (ask in the REPL, never with -p)"),
    });
    let limit_source = |key: &str| {
        config
            .limit_sources
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, source)| source.clone())
            .unwrap_or_else(|| "default".to_string())
    };
    for (name, value) in [
        (
            "bash_timeout",
            format!("{}s", config.bash_timeout.as_secs()),
        ),
        (
            "background_timeout",
            format!("{}s", config.background_timeout.as_secs()),
        ),
        ("max_background", config.max_background.to_string()),
        ("max_tasks", config.max_tasks.to_string()),
    ] {
        rows.push(Row {
            name,
            value,
            source: limit_source(name),
        });
    }
    rows.push(Row {
        name: "prices",
        value: format!("{} model(s) from config.toml", config.prices.user_entries()),
        source: "[prices] over the built-in list prices".to_string(),
    });
    rows
}
