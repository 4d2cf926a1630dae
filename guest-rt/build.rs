//! Hands guest-rt's linker script to the guests: `links = "guest_rt"` in Cargo.toml makes
//! this `linker_script` value `DEP_GUEST_RT_LINKER_SCRIPT` in the build script of every
//! crate that depends on guest-rt directly, wherever the two crates live. This is the one
//! place cargo builds learn the script's path; each guest's build script (written by
//! `cargo xtask new-guest`, xtask/templates/guest/build.rs) passes it to the linker.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("guest.ld");
    println!("cargo::rerun-if-changed=guest.ld");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::metadata=linker_script={}", script.display());
}
