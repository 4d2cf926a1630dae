//! `cargo xtask build`.

use xtask::Result;

/// Builds the hypervisor and every guest image (the Rust ones in one cargo invocation, the
/// C ones with gcc) and guest-kernel's initramfs.
pub fn main() -> Result<u8> {
    for image in xtask::build::build_all()? {
        println!("built {}", image.display());
    }
    Ok(0)
}
