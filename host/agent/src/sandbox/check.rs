//! `agent sandbox check`: what this machine supports, and what each mode would enforce in
//! this workspace (the kernel features used, the paths read and written, what was left out
//! and why). A print path, like the plugin commands.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Access, Enforced, LeftOut, Mode, Sandbox, Settings, Support};
use crate::render::OutputFormat;

#[derive(Serialize)]
struct Report {
    workspace: PathBuf,
    support: Support,
    chosen_mode: Mode,
    mode_source: String,
    network: bool,
    modes: Vec<ModeReport>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct ModeReport {
    mode: Mode,
    enforceable: bool,
    error: Option<String>,
    enforced: Option<Enforced>,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    left_out: Vec<LeftOut>,
}

/// Prints the report; returns whether the chosen mode can be enforced here.
pub fn run(
    settings: &Settings,
    workspace: &Path,
    agent_dirs: &[PathBuf],
    format: OutputFormat,
) -> anyhow::Result<bool> {
    let mut modes = Vec::new();
    let mut warnings = Vec::new();
    for mode in [Mode::WorkspaceWrite, Mode::ReadOnly] {
        let mut settings = settings.clone();
        settings.mode = mode;
        // The temporary directory is made, and removed again with the guard.
        let (sandbox, _temp) = Sandbox::new(&settings, workspace, agent_dirs)?;
        let policy = sandbox.policy().expect("a policy in a sandboxed mode");
        let paths = |access: Access| {
            policy
                .grants
                .iter()
                .filter(|g| g.access == access)
                .map(|g| g.path.clone())
                .collect()
        };
        // The same in every mode: said once.
        if warnings.is_empty() {
            warnings = policy.warnings.clone();
        }
        modes.push(ModeReport {
            mode,
            enforceable: sandbox.unenforceable().is_none(),
            error: sandbox.unenforceable().map(|e| e.to_string()),
            enforced: sandbox.enforced().cloned(),
            read: paths(Access::Read),
            write: paths(Access::Write),
            left_out: policy.left_out.clone(),
        });
    }
    let ok = settings.mode == Mode::Off
        || modes
            .iter()
            .any(|m| m.mode == settings.mode && m.enforceable);
    let report = Report {
        workspace: workspace.to_path_buf(),
        support: super::support(),
        chosen_mode: settings.mode,
        mode_source: settings.mode_source.clone(),
        network: settings.network,
        modes,
        warnings,
    };
    match format {
        OutputFormat::Json => {
            let value = serde_json::to_value(&report)?;
            println!("{}", crate::ui_text::json_line(&value));
        }
        OutputFormat::Text => print!("{}", crate::ui_text::visible(&text(&report))),
    }
    Ok(ok)
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.support;
    let _ = writeln!(out, "workspace: {}", report.workspace.display());
    let landlock = if s.landlock_abi > 0 {
        format!("Landlock ABI {}", s.landlock_abi)
    } else {
        "no Landlock".to_string()
    };
    let seccomp = if s.seccomp {
        "seccomp filters"
    } else {
        "no seccomp"
    };
    let _ = writeln!(out, "this machine: {landlock}, {seccomp}");
    let _ = writeln!(
        out,
        "chosen: {} (from {}), network {}",
        report.chosen_mode.name(),
        report.mode_source,
        if report.network {
            "on"
        } else {
            "off (only Unix sockets)"
        }
    );
    for m in &report.modes {
        let _ = writeln!(out, "\n{}:", m.mode.name());
        match (&m.enforced, &m.error) {
            (Some(e), _) => {
                let _ = writeln!(
                    out,
                    "  enforced: Landlock ABI {} on {} path rules, rights {}",
                    e.landlock_abi,
                    e.rules,
                    e.fs_rights.join(", ")
                );
                if e.tcp_refused {
                    let _ = writeln!(out, "  enforced: Landlock refuses TCP bind and connect");
                }
                if !e.scoped.is_empty() {
                    let _ = writeln!(
                        out,
                        "  enforced: Landlock scopes {} to the command",
                        e.scoped.join(", ")
                    );
                }
                if e.seccomp_sockets_refused {
                    let _ = writeln!(
                        out,
                        "  enforced: seccomp refuses sockets other than Unix ones, and io_uring"
                    );
                }
                let _ = writeln!(out, "  enforced: no_new_privs");
            }
            (None, Some(error)) => {
                let _ = writeln!(out, "  CANNOT BE ENFORCED: {error}; commands are refused");
            }
            (None, None) => {}
        }
        for (label, paths) in [("read", &m.read), ("write", &m.write)] {
            for line in grouped(paths) {
                let _ = writeln!(out, "  {label:5} {line}");
            }
        }
        for left in &m.left_out {
            let _ = writeln!(
                out,
                "  not granted: {} ({})",
                left.path.display(),
                left.reason
            );
        }
    }
    let _ = writeln!(
        out,
        "\noff: nothing is enforced; commands run with all your rights"
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// The paths, with many entries of one directory (a directory granted entry by entry, to
/// leave a secret out) shown as one line.
fn grouped(paths: &[PathBuf]) -> Vec<String> {
    const GROUP_AT: usize = 12;
    let mut lines = Vec::new();
    let mut shown_groups: Vec<&Path> = Vec::new();
    for path in paths {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let siblings = paths.iter().filter(|p| p.parent() == Some(parent)).count();
        if siblings >= GROUP_AT && parent != Path::new("/") {
            if !shown_groups.contains(&parent) {
                shown_groups.push(parent);
                lines.push(format!(
                    "{}/* ({siblings} entries, all but those not granted)",
                    parent.display()
                ));
            }
        } else {
            lines.push(path.display().to_string());
        }
    }
    lines
}
