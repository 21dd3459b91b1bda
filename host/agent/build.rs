//! Builds the Rust WASI components under `plugins/` from source.
//!
//! One nested cargo compiles every component crate for wasm32-wasip2, with its own target
//! directory (`target/wasm-plugins`, so it never waits on the outer build's lock), in
//! release mode and stripped. The built-in file tools are copied to OUT_DIR, where
//! `include_bytes!` embeds them; the others (the example and the test-only plugins) are
//! left where the tests and benchmarks find them, through `AGENT_PLUGIN_BUILD_DIR`.
//! Nothing built is ever committed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Package names of the component crates (each under `plugins/<name>`).
const COMPONENTS: &[&str] = &["fs-tools", "fetch-url", "hostile", "future-wit"];
/// The one component the host embeds.
const EMBEDDED: &str = "fs_tools";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/agent/ sits two levels below the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = root.join("target").join("wasm-plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    for package in COMPONENTS {
        let dir = root.join("plugins").join(package);
        // Only paths that exist: cargo reruns the script every time for a missing one.
        for watched in ["src", "Cargo.toml", "wit"].map(|p| dir.join(p)) {
            if watched.exists() {
                println!("cargo:rerun-if-changed={}", watched.display());
            }
        }
    }
    ensure_wasm_target();
    let built = build_components(&root, &target_dir);
    let embedded = built.join(format!("{EMBEDDED}.wasm"));
    std::fs::copy(&embedded, out_dir.join(format!("{EMBEDDED}.wasm")))
        .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", embedded.display()));
    println!("cargo:rustc-env=AGENT_PLUGIN_BUILD_DIR={}", built.display());
}

/// rustup adds the targets of rust-toolchain.toml only when it installs the toolchain;
/// add the wasm target to an existing toolchain too, so a fresh clone builds.
fn ensure_wasm_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = sysroot.is_some_and(|root| root.join("lib/rustlib/wasm32-wasip2").is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=adding the wasm32-wasip2 target with rustup");
    match Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
    {
        Ok(status) if status.success() => {}
        _ => println!(
            "cargo:warning=`rustup target add wasm32-wasip2` failed; the component build below will say what is missing"
        ),
    }
}

/// Builds every component; returns the directory the `.wasm` files are in.
fn build_components(root: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    for package in COMPONENTS {
        cmd.args(["--package", package]);
    }
    cmd.arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s");
    // Settings meant for the outer (native) build must not leak into the wasm build.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the plugin components: {e}"));
    if !status.success() {
        panic!(
            "building the plugin components failed ({status}); they need the wasm32-wasip2 target (`rustup target add wasm32-wasip2`)"
        );
    }
    target_dir.join("wasm32-wasip2").join("release")
}
