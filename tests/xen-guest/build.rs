// Links the image with xen.ld: a static image at Xen's guest-virtual layout, notes in a PT_NOTE.
fn main() {
    let script = format!("{}/xen.ld", std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo::rerun-if-changed={script}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo::rustc-link-arg-bins=-T{script}");
        println!("cargo::rustc-link-arg-bins=--no-pie");
    }
}
