//! The user's own `config.toml` (in the agent's config directory, never a file in the
//! workspace: a cloned repository must not choose its own model server or sandbox).
//!
//! The file is read once per run. Each table belongs to the module that owns those
//! settings, which reads it with [`ConfigFile::table`] into its own `Deserialize` struct
//! (`deny_unknown_fields` inside the table); [`ConfigFile::check_tables`] refuses a table
//! nobody reads. Every error names the file, the line and the column.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// The tables the agent reads, and what each holds (for the unknown-table error).
pub const TABLES: &[&str] = &[
    "model",
    "providers",
    "sandbox",
    "context",
    "prices",
    "limits",
];

/// The file could not be read or says something the agent does not accept.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {at}{message}", path.display())]
    Invalid {
        path: PathBuf,
        /// `line L, column C: ` when the parser knows where.
        at: String,
        message: String,
    },
}

/// The text of `config.toml`, or nothing when there is no such file.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    text: String,
}

impl ConfigFile {
    /// Reads `config.toml` in `dir`; a missing directory or file is an empty config.
    pub fn read(dir: Option<&Path>) -> Result<ConfigFile, ConfigFileError> {
        let Some(path) = dir.map(|d| d.join("config.toml")) else {
            return Ok(ConfigFile::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(ConfigFile {
                path: Some(path),
                text,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile {
                path: Some(path),
                text: String::new(),
            }),
            Err(source) => Err(ConfigFileError::Read { path, source }),
        }
    }

    /// A file with `text`, for tests of the tables' readers.
    #[cfg(test)]
    pub fn from_text(text: &str) -> ConfigFile {
        ConfigFile {
            path: Some(PathBuf::from("config.toml")),
            text: text.to_string(),
        }
    }

    /// Where the file is (or would be).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file parsed as `T`: a struct holding one owner's table (other tables are
    /// ignored there). An empty or missing file gives `T::default()`.
    pub fn table<T: DeserializeOwned + Default>(&self) -> Result<T, ConfigFileError> {
        if self.text.trim().is_empty() {
            return Ok(T::default());
        }
        toml::from_str(&self.text).map_err(|e| self.invalid(&e))
    }

    /// Refuses a top-level key that is not one of [`TABLES`].
    pub fn check_tables(&self) -> Result<(), ConfigFileError> {
        let document = toml::de::DeTable::parse(&self.text).map_err(|e| self.invalid(&e))?;
        for (key, _) in document.get_ref() {
            if !TABLES.contains(&key.get_ref().as_ref()) {
                return Err(ConfigFileError::Invalid {
                    path: self.path.clone().unwrap_or_default(),
                    at: self.position(key.span().start),
                    message: format!(
                        "unknown table `{}`; the agent reads {}",
                        crate::ui_text::one_line(key.get_ref()),
                        TABLES
                            .iter()
                            .map(|t| format!("[{t}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    fn invalid(&self, error: &toml::de::Error) -> ConfigFileError {
        ConfigFileError::Invalid {
            path: self.path.clone().unwrap_or_default(),
            at: error
                .span()
                .map(|span| self.position(span.start))
                .unwrap_or_default(),
            message: error.message().trim().replace('\n', " "),
        }
    }

    /// `line L, column C: ` of byte `offset` (both from 1).
    fn position(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        format!("line {line}, column {column}: ")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    struct File {
        sandbox: Option<Table>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        network: Option<bool>,
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile {
            path: Some(PathBuf::from("/home/u/.config/agent/config.toml")),
            text: text.to_string(),
        }
    }

    #[test]
    fn a_table_is_read_by_its_owner() {
        let config = file("[sandbox]\nnetwork = true\n");
        config.check_tables().unwrap();
        let read: File = config.table().unwrap();
        assert_eq!(read.sandbox.unwrap().network, Some(true));
        let empty: File = ConfigFile::default().table().unwrap();
        assert!(empty.sandbox.is_none());
    }

    #[test]
    fn unknown_keys_and_tables_say_where() {
        let config = file("# comment\n[sandbox]\nnetwork = true\n  colour = 1\n");
        let error = config.table::<File>().unwrap_err().to_string();
        assert!(error.contains("line 4, column 3"), "{error}");
        assert!(error.contains("colour"), "{error}");

        let config = file("[sandbox]\nnetwork = true\n\n[sandbx]\n");
        let error = config.check_tables().unwrap_err().to_string();
        assert!(error.contains("line 4, column 2"), "{error}");
        assert!(error.contains("unknown table `sandbx`"), "{error}");
        assert!(
            error.starts_with("/home/u/.config/agent/config.toml: "),
            "{error}"
        );
    }

    #[test]
    fn a_syntax_error_says_where() {
        let error = file("[sandbox\n").check_tables().unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }
}
