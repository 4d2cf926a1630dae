//! Links the hypervisor binary with its own linker script when it is built for the
//! bare-metal target; host builds (unit tests of the library) are untouched.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=hypervisor.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{manifest}/hypervisor.ld");
        // The code is position-independent (the target's default), but the image is
        // linked at fixed addresses: a static, non-PIE executable with no relocations.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
