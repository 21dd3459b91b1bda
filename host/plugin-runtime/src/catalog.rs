//! The catalog: which plugins load for a run, in which order.
//!
//! The one place that decides it: the built-in components first (they always win a tool
//! name), then every discovered plugin file in discovery order (the user's directory, the
//! workspace's `.agent/plugins`, files named on the command line). A broken plugin becomes
//! a problem naming its file and the rest load; only a broken built-in is an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::discovery::{self, Origin};
use crate::manifest::Grants;
use crate::trust::TrustStore;
use crate::{Loaded, PluginHost, PluginLimits, PluginSource};

/// A component shipped inside the embedding program, with the grants it always gets.
pub struct BuiltIn {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub grants: Grants,
}

/// Everything that decides what loads and how.
pub struct Catalog {
    /// Absolute and canonical.
    pub workspace: PathBuf,
    /// The compiled-component cache, if any.
    pub cache_dir: Option<PathBuf>,
    pub limits: PluginLimits,
    /// Where plugins' `host.log` lines go.
    pub log_file: Option<PathBuf>,
    pub built_ins: Vec<BuiltIn>,
    /// Directories searched for plugins, in load order.
    pub dirs: Vec<(PathBuf, Origin)>,
    /// Plugin files named explicitly, loaded after those in `dirs`.
    pub files: Vec<PathBuf>,
    /// The approvals of workspace plugins' grants.
    pub trust: TrustStore,
}

impl Catalog {
    /// Loads the built-ins and every discovered plugin. Returns the host and the problems
    /// met (each names its file).
    pub async fn load(&self) -> Result<(PluginHost, Vec<String>)> {
        let mut host = self.host_with_built_ins().await?;
        let (found, mut problems) = discovery::discover(&self.dirs, &self.files);
        problems.extend(host.cache_problem().map(str::to_string));
        for file in &found {
            match host.load_file(file, &self.trust).await {
                Ok(loaded) => problems.extend(loaded.problems.into_iter().chain(loaded.withheld)),
                Err(error) => problems.push(format!("{error:#}; the plugin is skipped")),
            }
        }
        Ok((host, problems))
    }

    /// The built-ins plus one file, as a run would load it: with the origin (and so the
    /// grants) that where the file is gives it.
    pub async fn load_one(&self, file: &Path) -> Result<(PluginHost, Loaded)> {
        if !file.is_file() {
            anyhow::bail!("{}: no such file", file.display());
        }
        let mut host = self.host_with_built_ins().await?;
        let found = discovery::locate(&self.dirs, file);
        let loaded = host.load_file(&found, &self.trust).await?;
        Ok((host, loaded))
    }

    async fn host_with_built_ins(&self) -> Result<PluginHost> {
        let mut host =
            PluginHost::new(&self.workspace, self.cache_dir.clone(), self.limits.clone())?;
        if let Some(file) = &self.log_file {
            host.log_to(file.clone());
        }
        for built_in in &self.built_ins {
            host.load(
                built_in.name,
                PluginSource::BuiltIn,
                built_in.bytes,
                built_in.grants.clone(),
            )
            .await
            .with_context(|| format!("loading the built-in {}", built_in.name))?;
        }
        Ok(host)
    }
}
