//! Links this package's binaries with guest-rt's linker script when they are built for the
//! bare-metal target, so a plain `cargo build` (one invocation for every image, the
//! hypervisor's too) links them right; host builds (unit tests, clippy) are untouched.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{manifest}/../guest-rt/guest.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
        // Linked at fixed addresses (guest.ld): a static, non-PIE executable.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
