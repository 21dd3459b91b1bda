//! The seam for systems without an enforcement yet (macOS Seatbelt is the next one): every
//! mode but `off` reports that it cannot be enforced, so sandboxed commands are refused,
//! never run unconfined.

use super::report::{Enforced, Support};

use super::policy::Policy;

/// The mode cannot be enforced on this system.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnforceError {
    #[error("no OS sandbox is implemented for this system yet (only Linux Landlock + seccomp)")]
    Unsupported,
}

/// What the system offers: nothing the agent can use.
pub fn support() -> Support {
    Support {
        landlock_abi: 0,
        seccomp: false,
    }
}

#[derive(Debug)]
pub struct Enforcement {
    pub enforced: Enforced,
}

impl Enforcement {
    pub fn prepare(_policy: &Policy) -> Result<Enforcement, EnforceError> {
        Err(EnforceError::Unsupported)
    }

    /// # Safety
    /// Never reached: `prepare` always fails.
    pub unsafe fn apply(&self) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EPERM))
    }
}
