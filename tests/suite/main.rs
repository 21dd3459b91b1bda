//! The integration-test binary `suite`: every test module of the suite is a
//! `mod` of this file, and `support` holds the shared harness (scripted model
//! server, helpers that run the real `agent` binary).

mod support;

mod approvals;
mod background;
mod background_control;
mod compaction;
mod config_show;
mod cost;
mod file_tools;
mod harness_selftest;
mod hostile;
mod model_api;
mod plugins;
mod providers;
mod readiness;
mod render_view;
mod repl;
mod sandbox;
mod security_escapes;
mod security_host;
mod security_model_terminal;
mod security_plugin_limits;
mod security_plugin_trust;
mod security_sandbox;
mod sessions;
mod wake;
