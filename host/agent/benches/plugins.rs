//! Benchmarks of the plugin runtime (run: `cargo bench --bench plugins`).
//!
//! 1. A warm call of a no-op plugin tool: a fresh store and instance from the pool, the
//!    call, and the drop; p50 and p99 over 20,000 calls (target: p50 under 25 µs).
//! 2. The built-in `read_file` of a 4 KiB file through the component, against a direct
//!    native read of the same file: p50 of each and the ratio.
//! 3. `agent plugins list` with the built-ins and three plugins (the Rust `fetch_url`, the
//!    Python `json-query` and the JavaScript `word-count`): wall time with the compiled-
//!    component cache warm (target: under 50 ms) and cold. The Python and JavaScript
//!    components are built first by `scripts/build-example-plugins` when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_plugin_runtime::manifest::Grants;
use agent_plugin_runtime::{PluginHost, PluginLimits, PluginSource};

const BUILT: &str = env!("AGENT_PLUGIN_BUILD_DIR");

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn load(host: &mut PluginHost, stem: &str, grants: Grants) -> usize {
    let path = Path::new(BUILT).join(format!("{stem}.wasm"));
    let bytes = std::fs::read(&path).expect("the build made the component");
    host.load(stem, PluginSource::BuiltIn, &bytes, grants)
        .await
        .unwrap_or_else(|e| panic!("loading {stem}: {e:#}"))
        .index
}

async fn time_calls(
    host: &Arc<PluginHost>,
    index: usize,
    tool: &str,
    input: &str,
    n: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let out = host.call(index, tool, input, "bench").await;
        samples.push(start.elapsed());
        if i == 0 {
            out.unwrap_or_else(|e| panic!("{tool}: {e}"));
        }
    }
    samples
}

async fn plugin_calls(workspace: &Path) {
    let mut host = PluginHost::new(workspace, None, PluginLimits::default()).unwrap();
    assert!(host.pooling(), "the pooling allocator is in use");
    let hostile = load(&mut host, "hostile", Grants::none()).await;
    let fs_tools = load(&mut host, "fs_tools", Grants::workspace_read_write()).await;
    let host = Arc::new(host);

    time_calls(&host, hostile, "noop", "{}", 2_000).await; // warm the pool's slots
    let mut noop = time_calls(&host, hostile, "noop", "{}", 20_000).await;
    println!(
        "no-op plugin call (fresh instance from the pool + call + drop): p50 {:.1} µs, p99 {:.1} µs over {} calls",
        micros(percentile(&mut noop, 0.5)),
        micros(percentile(&mut noop, 0.99)),
        noop.len()
    );

    let file = workspace.join("four-kib.txt");
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    std::fs::write(&file, line.repeat(4096 / line.len())).unwrap();
    let input = r#"{"path":"four-kib.txt"}"#;
    time_calls(&host, fs_tools, "read_file", input, 500).await;
    let mut component = time_calls(&host, fs_tools, "read_file", input, 5_000).await;
    let mut native = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let start = Instant::now();
        let text = std::fs::read_to_string(&file).unwrap();
        native.push(start.elapsed());
        std::hint::black_box(text);
    }
    let (component, native) = (
        percentile(&mut component, 0.5),
        percentile(&mut native, 0.5),
    );
    println!(
        "read_file of 4 KiB: component p50 {:.1} µs, native std::fs::read_to_string p50 {:.1} µs, ratio {:.0}x",
        micros(component),
        micros(native),
        component.as_secs_f64() / native.as_secs_f64()
    );
}

/// The three third-party plugins of the list benchmark, installed in `dir`.
fn install_three_plugins(root: &Path, dir: &Path) {
    let examples = root.join("target/example-plugins");
    let wanted = ["json-query.wasm", "word-count.wasm"];
    if !wanted.iter().all(|f| examples.join(f).is_file()) {
        let status = Command::new(root.join("scripts/build-example-plugins"))
            .arg(&examples)
            .status()
            .expect("running scripts/build-example-plugins");
        assert!(status.success(), "building the example plugins failed");
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        Path::new(BUILT).join("fetch_url.wasm"),
        dir.join("fetch_url.wasm"),
    )
    .unwrap();
    for file in ["json-query.wasm", "json-query.toml", "word-count.wasm"] {
        if examples.join(file).exists() {
            std::fs::copy(examples.join(file), dir.join(file)).unwrap();
        }
    }
}

fn plugins_list(root: &Path, workspace: &Path, cache: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["plugins", "list"])
        .current_dir(workspace)
        .env("AGENT_CACHE_DIR", cache)
        .env("AGENT_CONFIG_DIR", root.join("target/bench-no-user-config"))
        .output()
        .expect("running agent");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("problem:"), "{text}");
    assert_eq!(
        text.matches(" (workspace: ").count(),
        3,
        "three plugins load:\n{text}"
    );
    elapsed
}

fn list_command(workspace: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    install_three_plugins(&root, &workspace.join(".agent/plugins"));
    let mut cold = Vec::new();
    for _ in 0..3 {
        let cache = tempfile::tempdir().unwrap();
        cold.push(plugins_list(&root, workspace, cache.path()));
    }
    let cache: PathBuf = tempfile::tempdir().unwrap().keep();
    plugins_list(&root, workspace, &cache);
    let mut warm: Vec<Duration> = (0..20)
        .map(|_| plugins_list(&root, workspace, &cache))
        .collect();
    println!(
        "`agent plugins list`, built-ins + 3 plugins: warm cache p50 {:.1} ms (min {:.1} ms), cold cache median {:.0} ms",
        percentile(&mut warm, 0.5).as_secs_f64() * 1e3,
        warm.iter().min().unwrap().as_secs_f64() * 1e3,
        percentile(&mut cold, 0.5).as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(cache);
}

fn main() {
    let workspace = tempfile::tempdir().unwrap();
    let workspace = workspace.path().canonicalize().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(plugin_calls(&workspace));
    list_command(&workspace);
}
