//! Shared harness of the integration suite.
//!
//! - [`ModelServer`] (in `server.rs`) plays the Anthropic Messages API over real
//!   HTTP on 127.0.0.1, answering each `POST /v1/messages` with the next
//!   scripted [`Reply`] (in `reply.rs`) and checking every request against the
//!   protocol rules (in `protocol.rs`).
//! - [`TestEnv`], [`agent`], [`run`], [`spawn`] and [`processes_with_marker`]
//!   (in `process.rs`) run the real `agent` binary against such a server.
//! - [`plugins`] finds the plugin components the build made and installs them
//!   where the agent discovers them.
//!
//! Typical use:
//!
//! ```ignore
//! let server = ModelServer::start(vec![
//!     Reply::tools(vec![tool_use("t1", "bash", json!({"command": "ls"}))]),
//!     Reply::text("done"),
//! ]);
//! let env = TestEnv::new();
//! let mut cmd = agent(&env, &server);
//! cmd.arg("list the files");
//! let out = run(cmd, Duration::from_secs(60));
//! assert!(out.status.success(), "{out}");
//! server.assert_protocol_ok();
//! ```
//!
//! Test modules use subsets of this API, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod plugins;
mod process;
mod protocol;
mod reply;
mod server;
mod wire;

// Re-exports for the test modules; each uses a subset.
#[allow(unused_imports)]
pub use process::{
    RunResult, Running, TestEnv, agent, cache_dir, landlock_abi, one_shot, processes_with_marker,
    run, spawn,
};
#[allow(unused_imports)]
pub use protocol::check_request;
#[allow(unused_imports)]
pub use reply::{Reply, ToolUse, tool_use};
#[allow(unused_imports)]
pub use server::{ModelServer, Recorded, delivered_in};
#[allow(unused_imports)]
pub use wire::Wire;
