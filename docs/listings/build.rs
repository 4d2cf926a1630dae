//! Links the listings with guest-rt's linker script when they are built for the bare-metal
//! target (as tests/guests does), so the one `cargo build` of `cargo xtask build` links
//! them right; host builds (clippy, unit tests) are untouched.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{manifest}/../../guest-rt/guest.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
        // Linked at fixed addresses (guest.ld): a static, non-PIE executable.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
