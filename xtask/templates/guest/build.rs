// Links the guest's binaries with guest-rt's linker script (the image at the top 2 GiB, one
// page-aligned segment per permission, the ABI note kept) when they are built for the
// bare-metal target. guest-rt's build script names the script, wherever guest-rt is, as
// DEP_GUEST_RT_LINKER_SCRIPT; host builds (cargo check, unit tests) are left alone.

fn main() {
    let Ok(script) = std::env::var("DEP_GUEST_RT_LINKER_SCRIPT") else {
        eprintln!("guest-rt did not name its linker script: make guest-rt a direct dependency of this crate");
        std::process::exit(1);
    };
    println!("cargo::rerun-if-changed={script}");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo::rustc-link-arg-bins=-T{script}");
        // Linked at the script's fixed addresses: a static, non-PIE executable.
        println!("cargo::rustc-link-arg-bins=--no-pie");
    }
}
