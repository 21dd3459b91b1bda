//! What a million tokens cost, per model: built-in prices for the models known when this
//! was written, overridden and extended by the `[prices."MODEL"]` tables of the user's
//! `config.toml` (never a file in the workspace).
//!
//! The built-in numbers are the providers' list prices in US dollars per million tokens
//! (Anthropic's and OpenAI's pricing pages, as of late 2025). Prices change: they may have
//! drifted, and a `[prices]` entry corrects them. A model is found by its exact name or by
//! the longest known name it starts with followed by `-` (`claude-sonnet-4-5-20250929`
//! is priced as `claude-sonnet-4-5`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config_file::{ConfigFile, ConfigFileError};
use crate::model::Usage;

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Uncached input.
    pub input: f64,
    pub output: f64,
    /// Input written to the cache.
    pub cache_write: f64,
    /// Input read from the cache.
    pub cache_read: f64,
}

impl Prices {
    /// What `usage` costs, in US dollars.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let millions = |tokens: u64| tokens as f64 / 1e6;
        millions(usage.input_tokens) * self.input
            + millions(usage.output_tokens) * self.output
            + millions(usage.cache_creation_input_tokens) * self.cache_write
            + millions(usage.cache_read_input_tokens) * self.cache_read
    }
}

const fn p(input: f64, output: f64, cache_write: f64, cache_read: f64) -> Prices {
    Prices {
        input,
        output,
        cache_write,
        cache_read,
    }
}

/// List prices (USD per million tokens: input, output, cache write, cache read).
/// Anthropic: cache writes (5-minute) cost 1.25x input, reads 0.1x. OpenAI caches on its
/// own, charging nothing extra to write (so cache_write = input) and a discount to read.
/// Prices for prompts past 200k tokens (Sonnet's long context) are not modelled.
const BUILT_IN: &[(&str, Prices)] = &[
    ("claude-opus-4-5", p(5.0, 25.0, 6.25, 0.50)),
    ("claude-opus-4-1", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-opus-4", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-sonnet-4-5", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-sonnet-4", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-haiku-4-5", p(1.0, 5.0, 1.25, 0.10)),
    ("claude-3-7-sonnet", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-5-sonnet", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-5-haiku", p(0.80, 4.0, 1.0, 0.08)),
    ("claude-3-opus", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-3-haiku", p(0.25, 1.25, 0.30, 0.03)),
    ("gpt-5", p(1.25, 10.0, 1.25, 0.125)),
    ("gpt-5-mini", p(0.25, 2.0, 0.25, 0.025)),
    ("gpt-5-nano", p(0.05, 0.40, 0.05, 0.005)),
    ("gpt-4.1", p(2.0, 8.0, 2.0, 0.50)),
    ("gpt-4.1-mini", p(0.40, 1.60, 0.40, 0.10)),
    ("gpt-4.1-nano", p(0.10, 0.40, 0.10, 0.025)),
    ("gpt-4o", p(2.50, 10.0, 2.50, 1.25)),
    ("gpt-4o-mini", p(0.15, 0.60, 0.15, 0.075)),
    ("o1", p(15.0, 60.0, 15.0, 7.50)),
    ("o1-mini", p(1.10, 4.40, 1.10, 0.55)),
    ("o3", p(2.0, 8.0, 2.0, 0.50)),
    ("o3-mini", p(1.10, 4.40, 1.10, 0.55)),
    ("o4-mini", p(1.10, 4.40, 1.10, 0.275)),
];

/// The prices of this run: the user's entries, then the built-in ones.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    user: BTreeMap<String, Prices>,
}

/// The user's `[prices]` table is wrong; the message says where and how.
#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("{path}: [prices.{model:?}] {message}")]
    Entry {
        path: PathBuf,
        model: String,
        message: String,
    },
}

/// The `[prices]` table of `config.toml`; other tables are left to their own readers.
#[derive(Debug, Default, Deserialize)]
struct PricesFile {
    #[serde(default)]
    prices: BTreeMap<String, Entry>,
}

/// One model's prices; a field left out keeps the built-in price.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    input: Option<f64>,
    output: Option<f64>,
    cache_write: Option<f64>,
    cache_read: Option<f64>,
}

impl PriceTable {
    /// How many models the user's `[prices]` table prices.
    pub fn user_entries(&self) -> usize {
        self.user.len()
    }

    /// The built-in prices with the `[prices]` table of `config_file` over them (a file
    /// that does not exist is no table).
    pub fn load(config: &ConfigFile) -> Result<PriceTable, PricesError> {
        let file = config.table::<PricesFile>()?;
        let path = config.path().unwrap_or(Path::new("config.toml"));
        let mut user = BTreeMap::new();
        for (model, entry) in file.prices {
            let fail = |message: String| PricesError::Entry {
                path: path.to_path_buf(),
                model: model.clone(),
                message,
            };
            let fields = [
                ("input", entry.input),
                ("output", entry.output),
                ("cache_write", entry.cache_write),
                ("cache_read", entry.cache_read),
            ];
            for (name, value) in fields {
                if let Some(value) = value
                    && !(value.is_finite() && value >= 0.0)
                {
                    return Err(fail(format!(
                        "{name} must be a price in US dollars per million tokens, at least 0, not {value}"
                    )));
                }
            }
            let prices = match built_in(&model) {
                Some(base) => Prices {
                    input: entry.input.unwrap_or(base.input),
                    output: entry.output.unwrap_or(base.output),
                    cache_write: entry.cache_write.unwrap_or(base.cache_write),
                    cache_read: entry.cache_read.unwrap_or(base.cache_read),
                },
                None => {
                    let (Some(input), Some(output)) = (entry.input, entry.output) else {
                        return Err(fail(
                            "a model without built-in prices needs both input and output".into(),
                        ));
                    };
                    // No cache discount is assumed where none is given.
                    Prices {
                        input,
                        output,
                        cache_write: entry.cache_write.unwrap_or(input),
                        cache_read: entry.cache_read.unwrap_or(input),
                    }
                }
            };
            user.insert(model, prices);
        }
        Ok(PriceTable { user })
    }

    /// The prices of `model`, if known: the user's entry, else the built-in one.
    pub fn lookup(&self, model: &str) -> Option<Prices> {
        longest_match(self.user.iter().map(|(name, p)| (name.as_str(), *p)), model)
            .or_else(|| built_in(model))
    }
}

fn built_in(model: &str) -> Option<Prices> {
    longest_match(BUILT_IN.iter().copied(), model)
}

/// The entry named `model`, or the longest name `model` starts with followed by `-`.
fn longest_match<'a>(
    entries: impl Iterator<Item = (&'a str, Prices)>,
    model: &str,
) -> Option<Prices> {
    entries
        .filter(|(name, _)| {
            model
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
        .max_by_key(|(name, _)| name.len())
        .map(|(_, prices)| prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<PriceTable, PricesError> {
        PriceTable::load(&ConfigFile::from_text(text))
    }

    #[test]
    fn dated_names_find_their_family_and_the_longest_name_wins() {
        let prices = PriceTable::default();
        let sonnet = prices.lookup("claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(sonnet.input, 3.0);
        assert_eq!(prices.lookup("claude-opus-4-5").unwrap().input, 5.0);
        assert_eq!(prices.lookup("claude-opus-4-20250514").unwrap().input, 15.0);
        assert_eq!(prices.lookup("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(prices.lookup("o1").unwrap().output, 60.0);
        assert!(prices.lookup("o10").is_none());
        assert!(prices.lookup("my-local-llama").is_none());
    }

    #[test]
    fn the_cost_bills_each_kind_of_token_at_its_price() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_input_tokens: 2_000_000,
            cache_creation_input_tokens: 400_000,
        };
        let cost = p(3.0, 15.0, 3.75, 0.30).cost(&usage);
        assert!((cost - (3.0 + 1.5 + 1.5 + 0.6)).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn the_config_overrides_and_extends_the_built_in_prices() {
        let prices = table(
            "[sandbox]\nmode = \"off\"\n[prices.\"claude-sonnet-4-5\"]\ninput = 1.5\n\
             [prices.\"my-model\"]\ninput = 1\noutput = 2\ncache_read = 0.1\n",
        )
        .unwrap();
        let sonnet = prices.lookup("claude-sonnet-4-5-20250929").unwrap();
        assert_eq!((sonnet.input, sonnet.output), (1.5, 15.0));
        assert_eq!(prices.lookup("my-model").unwrap(), p(1.0, 2.0, 1.0, 0.1));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let unknown_key = table("[prices.\"x\"]\ninput = 1\noutput = 2\nfoo = 3\n").unwrap_err();
        assert!(unknown_key.to_string().contains("line 4"), "{unknown_key}");
        assert!(unknown_key.to_string().contains("foo"), "{unknown_key}");
        let partial = table("[prices.\"x\"]\ninput = 1\n").unwrap_err();
        assert!(
            partial.to_string().contains("both input and output"),
            "{partial}"
        );
        let negative = table("[prices.\"gpt-4o\"]\noutput = -1\n").unwrap_err();
        assert!(negative.to_string().contains("at least 0"), "{negative}");
    }
}
