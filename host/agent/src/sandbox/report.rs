//! What a platform's enforcement offers and applies, in the same shape on every system, for
//! `agent sandbox check` and the start-up warnings.

use serde::Serialize;

/// What the kernel offers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Support {
    /// 0 when Landlock is missing or disabled.
    pub landlock_abi: i32,
    pub seccomp: bool,
}

/// What the kernel enforces on a sandboxed command.
#[derive(Debug, Clone, Serialize)]
pub struct Enforced {
    pub landlock_abi: i32,
    /// The file-system access rights Landlock controls (all of this ABI's).
    pub fs_rights: Vec<String>,
    /// The path rules of the ruleset.
    pub rules: usize,
    /// Whether Landlock also refuses TCP bind and connect (ABI 4 and later, network off).
    pub tcp_refused: bool,
    /// What Landlock scopes to the command (ABI 6 and later): signals to processes
    /// outside it, and, with the network off, abstract Unix sockets made outside it.
    pub scoped: Vec<String>,
    /// Whether a seccomp filter refuses non-Unix sockets and io_uring.
    pub seccomp_sockets_refused: bool,
    pub no_new_privs: bool,
}
