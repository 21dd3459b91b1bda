//! Builds the built-in WASI components from source, for the host to embed.
//!
//! Each component crate under `plugins/` is compiled for wasm32-wasip2 by a nested cargo
//! with its own target directory (`target/wasm-plugins`, so it never waits on the outer
//! build's lock), in release mode and stripped. The `.wasm` lands in OUT_DIR, where
//! `include_bytes!` picks it up. Nothing built is ever committed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package name, crate directory, output file stem)
const COMPONENTS: &[(&str, &str, &str)] = &[("fs-tools", "plugins/fs-tools", "fs_tools")];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = root.join("target").join("wasm-plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    for (package, dir, stem) in COMPONENTS {
        println!(
            "cargo:rerun-if-changed={}",
            root.join(dir).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            root.join(dir).join("Cargo.toml").display()
        );
        let wasm = build_component(&root, &target_dir, package, stem);
        std::fs::copy(&wasm, out_dir.join(format!("{stem}.wasm")))
            .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", wasm.display()));
    }
}

fn build_component(root: &Path, target_dir: &Path, package: &str, stem: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--package",
            package,
        ])
        .arg("--target-dir")
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
        .unwrap_or_else(|e| panic!("running cargo to build the {package} component: {e}"));
    if !status.success() {
        panic!(
            "building the {package} component failed ({status}); the wasm32-wasip2 target comes from rust-toolchain.toml (`rustup target add wasm32-wasip2` if your rustup does not add it by itself)"
        );
    }
    target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{stem}.wasm"))
}
