//! Plugin manifests (`NAME.toml` beside `NAME.wasm`) and the [`Grants`] they declare.
//!
//! Deny by default: a plugin without a manifest gets no files, no environment and no
//! network. A manifest can ask for the workspace (read-only or read-write), extra
//! directories, named environment variables and outgoing HTTP hosts; anything it does not
//! name stays closed. Unknown keys are errors, so a typo never silently drops a grant or
//! widens one.
//!
//! ```toml
//! workspace = "read-only"            # "none" (default), "read-only", "read-write"
//! env = ["LANG"]                     # variables passed in, when set in the agent's env
//! network = ["api.example.com", "127.0.0.1:8080", "*.example.org"]
//!
//! [[dir]]                            # mounted at its own absolute path
//! path = "/usr/share/dict"
//! access = "read-only"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Access to one directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    None,
    ReadOnly,
    ReadWrite,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::None => "none",
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        })
    }
}

/// An extra directory a plugin may use, mounted in the guest at the same absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub path: PathBuf,
    pub access: Access,
}

/// A host a plugin may send HTTP requests to: `name` (any port), `name:port`, or
/// `*.domain` (any subdomain of `domain`, not `domain` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| format!("network host {text:?} is invalid: {why}");
        if text.contains("://") || text.contains('/') {
            return Err(bad("give a host name, optionally with :port, not a URL"));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
                (host, Some(port))
            }
            None => (text, None),
        };
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid {
            return Err(bad(
                "use a DNS name or an IPv4 address (letters, digits, `.`, `-`)",
            ));
        }
        Ok(HostPattern {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this is a `*.domain` pattern.
    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// Whether a request to `host` (without brackets) on `port` is allowed by this pattern.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == self.host,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// A manifest as it was read: where, and the SHA-256 (hex) of the exact bytes its grants
/// were parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: PathBuf,
    pub sha256: String,
}

/// Everything a plugin may reach beyond its own memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub workspace: Access,
    pub dirs: Vec<DirGrant>,
    /// Names of environment variables passed in (those set in the agent's environment).
    pub env: Vec<String>,
    pub network: Vec<HostPattern>,
}

impl Grants {
    /// Nothing at all: what a third-party plugin without a manifest gets.
    pub fn none() -> Grants {
        Grants {
            workspace: Access::None,
            dirs: Vec::new(),
            env: Vec::new(),
            network: Vec::new(),
        }
    }

    /// The workspace, read-write, and nothing else: the built-in file tools.
    pub fn workspace_read_write() -> Grants {
        Grants {
            workspace: Access::ReadWrite,
            ..Grants::none()
        }
    }

    /// Whether anything beyond the workspace is granted: directories, variables, hosts.
    pub fn beyond_workspace(&self) -> bool {
        !(self.dirs.is_empty() && self.env.is_empty() && self.network.is_empty())
    }

    /// The same workspace access, and nothing beyond it.
    pub fn workspace_only(&self) -> Grants {
        Grants {
            workspace: self.workspace,
            ..Grants::none()
        }
    }

    /// One line per grant, for `plugins list` and `plugins inspect`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("workspace: {}", self.workspace)];
        for dir in &self.dirs {
            lines.push(format!(
                "directory: {} ({})",
                dir.path.display(),
                dir.access
            ));
        }
        lines.push(match self.env.is_empty() {
            true => "env: none".to_string(),
            false => format!("env: {}", self.env.join(", ")),
        });
        lines.push(match self.network.is_empty() {
            true => "network: none".to_string(),
            false => format!(
                "network: {}",
                self.network
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        lines
    }

    /// The lines of [`Grants::describe`] that name something beyond the workspace.
    pub fn describe_beyond_workspace(&self) -> Vec<String> {
        self.describe()
            .into_iter()
            .filter(|line| !line.starts_with("workspace:") && !line.ends_with(": none"))
            .collect()
    }

    /// The grants of the plugin at `wasm`: read from `NAME.toml` beside it, or none. The
    /// manifest is read once: the grants and its hash (the trust pin) come from the same
    /// bytes.
    pub fn for_component(wasm: &Path) -> Result<(Grants, Option<ManifestFile>), ManifestError> {
        let manifest = wasm.with_extension("toml");
        match std::fs::read(&manifest) {
            Ok(bytes) => {
                let invalid = |reason: String| ManifestError::Invalid {
                    path: manifest.clone(),
                    reason,
                };
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| invalid("it is not UTF-8 text".into()))?;
                let grants = Grants::parse(text).map_err(|e| invalid(e.0))?;
                Ok((
                    grants,
                    Some(ManifestFile {
                        sha256: super::cache::sha256_hex(&bytes),
                        path: manifest,
                    }),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Grants::none(), None)),
            Err(source) => Err(ManifestError::Read {
                path: manifest,
                source,
            }),
        }
    }

    /// Parses and checks a manifest's text.
    pub fn parse(text: &str) -> Result<Grants, InvalidManifest> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Manifest {
            #[serde(default = "no_access")]
            workspace: Access,
            #[serde(default)]
            dir: Vec<DirEntry>,
            #[serde(default)]
            env: Vec<String>,
            #[serde(default)]
            network: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DirEntry {
            path: PathBuf,
            access: Access,
        }
        fn no_access() -> Access {
            Access::None
        }

        let manifest: Manifest =
            toml::from_str(text).map_err(|e| InvalidManifest(one_line(&e, text)))?;
        let mut dirs = Vec::new();
        for entry in manifest.dir {
            if !entry.path.is_absolute() {
                return Err(InvalidManifest(format!(
                    "directory {} must be an absolute path",
                    entry.path.display()
                )));
            }
            if entry.access == Access::None {
                continue;
            }
            dirs.push(DirGrant {
                path: entry.path,
                access: entry.access,
            });
        }
        for name in &manifest.env {
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(InvalidManifest(format!(
                    "environment variable name {name:?} is invalid (use letters, digits and `_`)"
                )));
            }
        }
        let network = manifest
            .network
            .iter()
            .map(|h| HostPattern::parse(h).map_err(InvalidManifest))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Grants {
            workspace: manifest.workspace,
            dirs,
            env: manifest.env,
            network,
        })
    }
}

/// A manifest that cannot be used; the plugin it belongs to is not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest exists but cannot be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not UTF-8, not valid TOML, or a grant that is not allowed; `reason` says which.
    #[error("manifest {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// What is wrong with a manifest's text, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidManifest(pub String);

/// A TOML error as one line (`line 3, column 13: unknown variant ...`): the library's
/// own rendering spans several lines with a source excerpt.
fn one_line(error: &toml::de::Error, text: &str) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", error.message().trim())
        }
        None => error.message().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_manifest_grants_nothing() {
        assert_eq!(Grants::parse("").unwrap(), Grants::none());
    }

    #[test]
    fn a_full_manifest_parses() {
        let grants = Grants::parse(
            r#"
            workspace = "read-only"
            env = ["LANG", "MY_TOKEN"]
            network = ["api.example.com", "127.0.0.1:8080", "*.example.org"]
            [[dir]]
            path = "/usr/share/dict"
            access = "read-only"
            "#,
        )
        .unwrap();
        assert_eq!(grants.workspace, Access::ReadOnly);
        assert_eq!(grants.env, ["LANG", "MY_TOKEN"]);
        assert_eq!(grants.dirs[0].path, Path::new("/usr/share/dict"));
        assert_eq!(grants.network.len(), 3);
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        for (text, expected) in [
            ("workspace = \"all\"", "unknown variant"),
            ("netwrok = [\"a.com\"]", "unknown field `netwrok`"),
            ("network = [\"https://a.com/x\"]", "not a URL"),
            ("network = [\"a.com:http\"]", "port"),
            ("env = [\"A=B\"]", "environment variable name"),
            (
                "[[dir]]\npath = \"relative\"\naccess = \"read-only\"",
                "absolute",
            ),
        ] {
            let error = Grants::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn host_patterns_match_exactly_what_they_name() {
        let any_port = HostPattern::parse("Example.com").unwrap();
        assert!(any_port.matches("example.com", 443));
        assert!(any_port.matches("EXAMPLE.COM", 80));
        assert!(!any_port.matches("evil-example.com", 443));
        assert!(!any_port.matches("example.com.evil.net", 443));

        let one_port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(one_port.matches("127.0.0.1", 8080));
        assert!(!one_port.matches("127.0.0.1", 8081));

        let wildcard = HostPattern::parse("*.example.org").unwrap();
        assert!(wildcard.matches("api.example.org", 443));
        assert!(!wildcard.matches("example.org", 443));
        assert!(!wildcard.matches("badexample.org", 443));
    }
}
