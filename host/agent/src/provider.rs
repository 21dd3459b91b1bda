//! Which model provider a run talks to, and its client: `--provider` / `AGENT_PROVIDER` /
//! `[model] provider` picks a built-in wire format (`anthropic`, `openai`, `openai-chat`)
//! or a `[providers.NAME]` table of the user's `config.toml`; the `[model]` table also
//! gives the model, base URL and answer size, under the flags and environment.
//!
//! The key is the user's, so where it goes is decided only by the user: the config file is
//! in the agent's own config directory (never the workspace), `.env` may not pick the
//! provider (see [`crate::dotenv`]), and a user-defined provider's key is read only from
//! the variable its table names, is refused when a workspace `.env` supplied it, and goes
//! only to that table's `base_url` (no environment variable redirects it).

use std::collections::BTreeMap;
use std::path::Path;

use crate::config_file::ConfigFile;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::Cli;
use crate::config::{AnthropicConfigDraft, ConfigError};
use crate::model::ModelProvider;
use crate::model::anthropic::AnthropicClient;
use crate::model::openai::{OpenAiClient, OpenAiConfig};
use crate::model::openai_chat::OpenAiChatClient;

/// The API format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    /// The Anthropic Messages API.
    Anthropic,
    /// The OpenAI Responses API.
    #[serde(rename = "openai")]
    OpenAi,
    /// Chat Completions.
    #[serde(rename = "openai-chat")]
    OpenAiChat,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::OpenAi => "openai",
            Wire::OpenAiChat => "openai-chat",
        }
    }

    /// The model used when none is named.
    fn default_model(self) -> &'static str {
        match self {
            Wire::Anthropic => "claude-sonnet-4-5",
            Wire::OpenAi => "gpt-5",
            Wire::OpenAiChat => "gpt-4.1",
        }
    }
}

/// The built-in providers, in the order they are listed.
const BUILT_IN: &[Wire] = &[Wire::Anthropic, Wire::OpenAi, Wire::OpenAiChat];

/// The most tokens of one answer when nothing says otherwise.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;

/// The `[model]` and `[providers]` tables of `config.toml`; other tables are left to their
/// own readers.
#[derive(Debug, Default, Deserialize)]
struct ModelFile {
    model: Option<ModelTable>,
    providers: Option<BTreeMap<String, ProviderTable>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelTable {
    provider: Option<String>,
    model: Option<String>,
    base_url: Option<String>,
    max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderTable {
    wire: Wire,
    base_url: String,
    /// The environment variable holding the key; none for a server that needs no key.
    api_key_env: Option<String>,
    model: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The model settings of this run: flags > environment > `config_dir/config.toml` >
/// defaults.
pub fn resolve(cli: &Cli, config: &ConfigFile) -> Result<AnthropicConfigDraft, ConfigError> {
    let path = config.path().map(Path::to_path_buf);
    let file = config.table::<ModelFile>()?;
    let table = file.model.unwrap_or_default();
    let providers = file.providers.unwrap_or_default();
    for name in providers.keys() {
        if BUILT_IN.iter().any(|wire| wire.name() == name) {
            return Err(file_error(
                path.as_deref(),
                format!("[providers.{name}]: {name} is a built-in provider; pick another name"),
            ));
        }
    }
    // clap reads AGENT_PROVIDER into the flag, so the flag wins over it.
    let name = cli
        .provider
        .clone()
        .or(table.provider.clone())
        .unwrap_or_else(|| Wire::Anthropic.name().to_string());
    let max_tokens = cli
        .max_tokens
        .or(table.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(file_error(
            path.as_deref(),
            "[model] max_tokens must be at least 1".into(),
        ));
    }
    let model = |own: Option<&String>, wire: Wire| {
        cli.model
            .clone()
            .or(own.cloned())
            .or(table.model.clone())
            .unwrap_or_else(|| wire.default_model().to_string())
    };
    let mut sources = vec![
        (
            "provider",
            source(
                cli.provider.is_some(),
                "--provider or AGENT_PROVIDER",
                table.provider.is_some(),
                "[model] provider",
            ),
        ),
        (
            "max_tokens",
            source(
                cli.max_tokens.is_some(),
                "--max-tokens",
                table.max_tokens.is_some(),
                "[model] max_tokens",
            ),
        ),
    ];
    let model_source = |own: bool, own_name: String| {
        if cli.model.is_some() {
            "--model or MODEL_ID".to_string()
        } else if own {
            own_name
        } else {
            source(false, "", table.model.is_some(), "[model] model")
        }
    };
    if let Some(wire) = BUILT_IN.iter().copied().find(|w| w.name() == name) {
        let (url_var, key_var, default_url) = match wire {
            Wire::Anthropic => (
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_API_KEY",
                crate::model::anthropic::DEFAULT_BASE_URL,
            ),
            Wire::OpenAi | Wire::OpenAiChat => (
                "OPENAI_BASE_URL",
                "OPENAI_API_KEY",
                crate::model::openai::DEFAULT_BASE_URL,
            ),
        };
        let (base_url, url_name) = match (env(url_var), &table.base_url) {
            (Some(url), _) => (url, url_var),
            (None, Some(url)) => (url.clone(), "[model] base_url"),
            (None, None) => (default_url.to_string(), url_var),
        };
        crate::config::check_base_url_named(url_name, &base_url)?;
        sources.push(("model", model_source(false, String::new())));
        sources.push((
            "base_url",
            match (url_name == url_var, env(url_var).is_some()) {
                (true, true) => url_var.to_string(),
                (true, false) => "default".to_string(),
                (false, _) => "config.toml [model] base_url".to_string(),
            },
        ));
        return Ok(AnthropicConfigDraft {
            base_url,
            api_key: env(key_var),
            model: model(None, wire),
            max_tokens,
            provider: name,
            wire,
            key_env: Some(key_var.to_string()),
            key_optional: wire == Wire::OpenAiChat,
            headers: Vec::new(),
            sources,
        });
    }
    let Some(own) = providers.get(&name) else {
        let known: Vec<&str> = BUILT_IN
            .iter()
            .map(|w| w.name())
            .chain(providers.keys().map(String::as_str))
            .collect();
        return Err(ConfigError::UnknownProvider {
            name,
            known: known.join(", "),
        });
    };
    crate::config::check_base_url_named("base_url of a [providers] table", &own.base_url)?;
    let api_key = match &own.api_key_env {
        Some(var) if crate::dotenv::came_from_file(var) => {
            return Err(ConfigError::KeyFromWorkspace {
                provider: name,
                var: var.clone(),
            });
        }
        Some(var) => env(var),
        None => None,
    };
    for (header, value) in &own.headers {
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(file_error(
                path.as_deref(),
                format!(
                    "[providers.{name}] headers: {header:?} is not a valid HTTP header name and value"
                ),
            ));
        }
    }
    sources.push((
        "model",
        model_source(
            own.model.is_some(),
            format!("config.toml [providers.{name}] model"),
        ),
    ));
    sources.push((
        "base_url",
        format!("config.toml [providers.{name}] base_url"),
    ));
    Ok(AnthropicConfigDraft {
        sources,
        base_url: own.base_url.clone(),
        api_key,
        model: model(own.model.as_ref(), own.wire),
        max_tokens,
        wire: own.wire,
        key_env: own.api_key_env.clone(),
        // A table without `api_key_env` is a server that needs no key.
        key_optional: own.api_key_env.is_none(),
        headers: own
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        provider: name,
    })
}

/// Where a setting came from: the flag or environment, else the config file, else the
/// default.
fn source(given: bool, flag: &str, in_file: bool, key: &str) -> String {
    if given {
        flag.to_string()
    } else if in_file {
        format!("config.toml {key}")
    } else {
        "default".to_string()
    }
}

fn file_error(path: Option<&Path>, message: String) -> ConfigError {
    ConfigError::ConfigFile {
        path: path.map(Path::to_path_buf).unwrap_or_default(),
        message,
    }
}

impl AnthropicConfigDraft {
    /// The client of the chosen provider; fails when its key is needed and missing.
    pub fn client(&self) -> anyhow::Result<Arc<dyn ModelProvider>> {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).with_context(
                    || format!("provider {}: bad header name {name:?}", self.provider),
                )?;
                let mut value =
                    reqwest::header::HeaderValue::from_str(value).with_context(|| {
                        format!("provider {}: bad value of header {name}", self.provider)
                    })?;
                // Extra headers often carry credentials too.
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if self.wire == Wire::Anthropic {
            let mut config = self.require_key()?;
            config.extra_headers = headers;
            return Ok(Arc::new(
                AnthropicClient::new(config).context("creating the HTTP client")?,
            ));
        }
        let api_key = match (&self.api_key, self.key_optional) {
            (Some(key), _) => Some(key.clone()),
            (None, true) => None,
            (None, false) => {
                return Err(ConfigError::MissingKey {
                    provider: self.provider.clone(),
                    var: self.key_env.clone().unwrap_or_default(),
                }
                .into());
            }
        };
        let config = OpenAiConfig {
            base_url: self.base_url.clone(),
            api_key,
            model: self.model.clone(),
            max_tokens: self.max_tokens,
            max_retries: crate::config::MODEL_RETRIES,
            min_retry_delay: crate::config::MODEL_MIN_RETRY_DELAY,
            idle_timeout: crate::config::model_idle_timeout()?,
            extra_headers: headers,
        };
        Ok(match self.wire {
            Wire::OpenAi => {
                Arc::new(OpenAiClient::new(config).context("creating the HTTP client")?)
            }
            _ => Arc::new(OpenAiChatClient::new(config).context("creating the HTTP client")?),
        })
    }
}
