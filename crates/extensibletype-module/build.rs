//! Build script: the target interpreter's cfgs (`Py_LIMITED_API` and
//! `Py_GIL_DISABLED` together mean abi3t: export `PyModExport__core`), and
//! `bind_registers` where `bind`'s register path applies (src/bind.rs:
//! x86-64 System V or AArch64; the code also needs an instance layout it
//! can name, so abi3t leaves it out).
//!
//! It also compiles src/bench_inline.c, the `ExtType_Find` loops of
//! `python -m extensibletype bench`, against include/extensibletype.h with
//! the C compiler a consumer would use (`cc` crate), and sets `bench_c`.
//! Without the header (a copy of the crate alone) or the interpreter's
//! `Python.h` (a Python without its development headers), or with
//! `EXTENSIBLETYPE_BENCH_RUST_PORT=1`, it sets nothing: the bench then times
//! the Rust port of the lookup and says so.

use std::path::PathBuf;
use std::process::Command;

/// The target interpreter's include directory (the one holding Python.h).
fn python_include(config: &pyo3_build_config::InterpreterConfig) -> Option<PathBuf> {
    // The field (deprecated for a getter in pyo3-build-config 0.29) is what
    // 0.28 has too. maturin's abi3 builds pass a config file without it, and
    // the interpreter in PYO3_PYTHON.
    #[allow(deprecated)]
    let exe = config.executable.clone().or_else(|| std::env::var("PYO3_PYTHON").ok().filter(|p| !p.is_empty()))?;
    let out = Command::new(exe)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join("Python.h").is_file().then_some(dir)
}

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    println!("cargo::rustc-check-cfg=cfg(bind_registers)");
    println!("cargo::rustc-check-cfg=cfg(bench_c)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if (arch == "x86_64" && os != "windows") || arch == "aarch64" {
        println!("cargo::rustc-cfg=bind_registers");
    }

    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let include = manifest.join("../../include");
    let source = manifest.join("src/bench_inline.c");
    println!("cargo::rerun-if-changed={}", source.display());
    println!("cargo::rerun-if-changed={}", include.join("extensibletype.h").display());
    // EXTENSIBLETYPE_BENCH_RUST_PORT=1: time the Rust port instead (to
    // compare the two, and to build the fallback).
    println!("cargo::rerun-if-env-changed=EXTENSIBLETYPE_BENCH_RUST_PORT");
    if std::env::var_os("EXTENSIBLETYPE_BENCH_RUST_PORT").is_some_and(|v| v == "1") {
        return;
    }
    if !include.join("extensibletype.h").is_file() {
        println!("cargo::warning=include/extensibletype.h not found: the bench times the Rust port of the lookup");
        return;
    }
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    let config = pyo3_build_config::get();
    let Some(py_include) = python_include(config) else {
        println!("cargo::warning=Python.h not found: the bench times the Rust port of the lookup");
        return;
    };
    let mut build = cc::Build::new();
    build.file(&source).include(&include).include(&py_include).opt_level(2).warnings(true).extra_warnings(true);
    // -O2: a common consumer level (setuptools uses the interpreter's
    // CFLAGS, -O2 or -O3), and the one where inlining the lookup is not free.
    // What the Rust side targets (the cfgs pyo3 derives from the config):
    // the limited API at its minimum version, or PEP 803's abi3t, as a C
    // consumer of the same wheel kind compiles the header.
    let cfgs = config.build_script_outputs();
    let has = |cfg: &str| cfgs.iter().any(|c| c.ends_with(&format!("rustc-cfg={cfg}")));
    let minor = cfgs.iter().filter_map(|c| c.rsplit_once("rustc-cfg=Py_3_")?.1.parse::<u32>().ok()).max();
    if has("Py_LIMITED_API") {
        let Some(minor) = minor else {
            println!("cargo::warning=no Py_3_* cfg: the bench times the Rust port of the lookup");
            return;
        };
        let macro_name = if has("Py_GIL_DISABLED") { "Py_TARGET_ABI3T" } else { "Py_LIMITED_API" };
        build.define(macro_name, Some(format!("0x03{minor:02x}0000").as_str()));
    }
    if let Err(e) = build.try_compile("extensibletype_bench_inline") {
        println!("cargo::warning=src/bench_inline.c did not compile ({e}): the bench times the Rust port");
        return;
    }
    println!("cargo::rustc-cfg=bench_c");
}
