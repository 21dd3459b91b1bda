//! Linux enforcement of a [`Policy`] in the kernel: Landlock for the file system (plus TCP
//! and the scoping of abstract Unix sockets and signals where the ABI has them), a seccomp
//! filter that refuses non-Unix sockets and io_uring when the network is off, and
//! `no_new_privs`.
//!
//! Everything that allocates or opens paths happens in the parent, once per run
//! ([`Enforcement::prepare`]): the Landlock ruleset fd and the BPF program. The forked child
//! ([`Enforcement::apply`]) only makes three raw system calls before `exec`, which is what a
//! multi-threaded parent's child may do.
//!
//! The Landlock ABI is the best the kernel offers, and every file-system right of that ABI
//! is handled as a hard requirement, so what [`Enforced`] reports is exactly what the kernel
//! enforces; a kernel without Landlock (or, with the network off, without seccomp) makes
//! [`Enforcement::prepare`] fail, and the command is refused.

use std::os::fd::{AsRawFd, OwnedFd};

use super::report::{Enforced, Support};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::policy::{Access as Grant, Policy};

/// The mode cannot be enforced on this machine; the message says why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnforceError {
    #[error(
        "this kernel does not offer Landlock (it needs Linux 5.13 or later with Landlock enabled, e.g. lsm=landlock,... on the kernel command line)"
    )]
    NoLandlock,
    #[error("this kernel does not offer seccomp filters, so the network cannot be closed")]
    NoSeccomp,
    #[error("cannot build the Landlock rules: {0}")]
    Landlock(String),
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(String),
}

/// What the kernel offers on this machine.
pub fn support() -> Support {
    // SAFETY: the version query takes no pointers the kernel writes to.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    // SAFETY: PR_GET_SECCOMP takes no pointers; EINVAL means no seccomp in the kernel.
    let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
    Support {
        landlock_abi: i32::try_from(abi).unwrap_or(0).max(0),
        seccomp,
    }
}

/// A policy made ready for the kernel: applied to each sandboxed child before `exec`.
#[derive(Debug)]
pub struct Enforcement {
    ruleset: OwnedFd,
    filter: Option<BpfProgram>,
    pub enforced: Enforced,
}

impl Enforcement {
    /// Opens every granted path and builds the Landlock ruleset and, with the network off,
    /// the seccomp filter. Fails when the kernel cannot enforce the policy.
    pub fn prepare(policy: &Policy) -> Result<Enforcement, EnforceError> {
        Self::prepare_with(policy, support())
    }

    fn prepare_with(policy: &Policy, support: Support) -> Result<Enforcement, EnforceError> {
        if support.landlock_abi < 1 {
            return Err(EnforceError::NoLandlock);
        }
        if !policy.network && !support.seccomp {
            return Err(EnforceError::NoSeccomp);
        }
        let abi = ABI::from(support.landlock_abi);
        let landlock = |e: landlock::RulesetError| EnforceError::Landlock(e.to_string());
        let fs_all = AccessFs::from_all(abi);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(fs_all)
            .map_err(landlock)?;
        let tcp_refused = !policy.network && abi >= ABI::V4;
        if tcp_refused {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(abi))
                .map_err(landlock)?;
        }
        let mut scopes: BitFlags<Scope> = BitFlags::EMPTY;
        if abi >= ABI::V6 {
            scopes |= Scope::Signal;
            if !policy.network {
                scopes |= Scope::AbstractUnixSocket;
            }
            ruleset = ruleset.scope(scopes).map_err(landlock)?;
        }
        let mut created = ruleset.create().map_err(landlock)?;
        let mut rules = 0;
        for grant in &policy.grants {
            // A path that vanished since the policy was built is simply not granted.
            let Ok(fd) = PathFd::new(&grant.path) else {
                continue;
            };
            let mut access = match grant.access {
                Grant::Read => AccessFs::from_read(abi),
                Grant::Write => fs_all,
            };
            if !grant.path.is_dir() {
                access &= AccessFs::from_file(abi);
            }
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(landlock)?;
            rules += 1;
        }
        let ruleset: Option<OwnedFd> = created.into();
        let ruleset = ruleset.ok_or(EnforceError::NoLandlock)?;
        let filter = if policy.network {
            None
        } else {
            Some(socket_filter().map_err(|e| EnforceError::Seccomp(e.to_string()))?)
        };
        Ok(Enforcement {
            ruleset,
            filter: filter.clone(),
            enforced: Enforced {
                landlock_abi: support.landlock_abi,
                fs_rights: fs_all.iter().map(|r| format!("{r:?}")).collect(),
                rules,
                tcp_refused,
                scoped: scopes.iter().map(|s| format!("{s:?}")).collect(),
                seccomp_sockets_refused: filter.is_some(),
                no_new_privs: true,
            },
        })
    }

    /// Confines the calling process: `no_new_privs`, the Landlock ruleset, the seccomp
    /// filter.
    ///
    /// # Safety
    /// Only for a forked child before `exec`: it makes raw system calls and nothing else
    /// (no allocation, no lock), so it is sound in the child of a multi-threaded parent.
    pub unsafe fn apply(&self) -> std::io::Result<()> {
        // SAFETY: integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the fd is a Landlock ruleset this process owns; flags 0.
        let restricted = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            )
        };
        if restricted != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(filter) = &self.filter {
            let program = libc::sock_fprog {
                len: filter.len() as libc::c_ushort,
                // seccompiler's sock_filter has the kernel's layout.
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: the kernel copies the program; it outlives the call.
            let installed = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0u32,
                    &program as *const libc::sock_fprog,
                )
            };
            if installed != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The x32 ABI's system call numbers are the 64-bit ones with this bit set; its calls pass
/// the same architecture check, so they are refused by number too.
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// A BPF program that makes `socket` and `socketpair` of any family but `AF_UNIX`, and
/// io_uring (which can open sockets without `socket`), fail with EPERM.
fn socket_filter() -> Result<BpfProgram, seccompiler::BackendError> {
    let not_unix = || -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?])?])
    };
    let mut rules = std::collections::BTreeMap::new();
    rules.insert(libc::SYS_socket, not_unix()?);
    rules.insert(libc::SYS_socketpair, not_unix()?);
    for always in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(always, vec![]);
    }
    if cfg!(target_arch = "x86_64") {
        for call in [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ] {
            rules.insert(call | X32_SYSCALL_BIT, vec![]);
        }
    }
    let arch: seccompiler::TargetArch = std::env::consts::ARCH.try_into()?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    filter.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_landlock_nothing_is_prepared() {
        let policy = Policy {
            mode: super::super::Mode::WorkspaceWrite,
            network: false,
            grants: vec![],
            left_out: vec![],
            warnings: vec![],
        };
        let none = Support {
            landlock_abi: 0,
            seccomp: true,
        };
        assert!(matches!(
            Enforcement::prepare_with(&policy, none),
            Err(EnforceError::NoLandlock)
        ));
        let no_seccomp = Support {
            landlock_abi: 1,
            seccomp: false,
        };
        assert!(matches!(
            Enforcement::prepare_with(&policy, no_seccomp),
            Err(EnforceError::NoSeccomp)
        ));
    }

    #[test]
    fn the_socket_filter_compiles() {
        assert!(!socket_filter().unwrap().is_empty());
    }
}
