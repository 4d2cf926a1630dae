//! Links this package's binaries for the bare-metal target. The paravirtualized build
//! links like every guest, with the build script `cargo xtask new-guest` writes into a new
//! guest crate (one copy of it, shared); the native build (feature `native`, no guest-rt)
//! links with its own script, which places the 32-bit PVH entry low and the kernel at the
//! top 2 GiB.

mod guest {
    include!("../xtask/templates/guest/build.rs");

    pub fn link() {
        main();
    }
}

fn main() {
    if std::env::var_os("CARGO_FEATURE_NATIVE").is_none() {
        guest::link();
        return;
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{manifest}/src/arch/native/native.ld");
    println!("cargo::rerun-if-changed={script}");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        for bin in ["guest-kernel-native", "guest-kernel-native-check"] {
            println!("cargo::rustc-link-arg-bin={bin}=-T{script}");
            println!("cargo::rustc-link-arg-bin={bin}=--no-pie");
        }
    }
}
