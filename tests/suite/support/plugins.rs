//! Plugin components for the tests: the Rust ones the build compiles from `plugins/`
//! (`hostile`, `fetch_url`, `future_wit`), and putting a component, with or without a
//! manifest, where the agent discovers it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::process::{RunResult, TestEnv, agent, run};
use super::server::ModelServer;

/// A Rust component built by the host's build script, by file stem (`hostile`, ...).
pub fn built(stem: &str) -> PathBuf {
    let path = Path::new(env!("AGENT_PLUGIN_BUILD_DIR")).join(format!("{stem}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A Python or JavaScript example component (`json-query.wasm`, `word-count.wasm`, or a
/// manifest beside them), built by `scripts/build-example-plugins` into
/// `target/example-plugins` once per test run; the script rebuilds only what is stale.
pub fn example(file: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .unwrap();
        let out = root.join("target/example-plugins");
        let output = Command::new(root.join("scripts/build-example-plugins"))
            .arg(&out)
            .output()
            .map_err(|e| format!("running scripts/build-example-plugins: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "scripts/build-example-plugins failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(out)
    });
    match dir {
        Ok(dir) => dir.join(file),
        Err(message) => panic!("{message}"),
    }
}

/// Copies `component` to `dir/NAME.wasm`, with `NAME.toml` holding `manifest` if given.
/// Returns the installed path.
pub fn install_in(dir: &Path, component: &Path, name: &str, manifest: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let target = dir.join(format!("{name}.wasm"));
    std::fs::copy(component, &target)
        .unwrap_or_else(|e| panic!("copying {}: {e}", component.display()));
    if let Some(manifest) = manifest {
        std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
    }
    target
}

/// Installs a component in the workspace's `.agent/plugins`.
pub fn install(env: &TestEnv, component: &Path, name: &str, manifest: Option<&str>) -> PathBuf {
    install_in(&env.path(".agent/plugins"), component, name, manifest)
}

/// A minimal HTTP server on 127.0.0.1 that answers every request with `body`; returns its
/// `host:port`. It runs until the test process exits.
pub fn http_server(body: &'static str) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let address = server.server_addr().to_ip().unwrap().to_string();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let _ = request.respond(tiny_http::Response::from_string(body));
        }
    });
    address
}

/// `agent plugins ARGS...` in `env` (no model is needed; the server is never called).
pub fn plugins_command(env: &TestEnv, args: &[&str]) -> RunResult {
    let server = ModelServer::start(vec![]);
    let mut cmd = agent(env, &server);
    cmd.arg("plugins").args(args);
    run(cmd, std::time::Duration::from_secs(60))
}
