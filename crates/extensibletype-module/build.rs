//! Build script: the target interpreter's cfgs (`Py_LIMITED_API` and
//! `Py_GIL_DISABLED` together mean abi3t: export `PyModExport__core`), and
//! `bind_registers` where `bind`'s register path applies (src/bind.rs:
//! x86-64 System V or AArch64; the code also needs an instance layout it
//! can name, so abi3t leaves it out).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    println!("cargo::rustc-check-cfg=cfg(bind_registers)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if (arch == "x86_64" && os != "windows") || arch == "aarch64" {
        println!("cargo::rustc-cfg=bind_registers");
    }
}
