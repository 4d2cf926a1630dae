//! `cargo xtask build`.

use xtask::Result;

/// Builds the hypervisor and every guest image (Rust and C).
pub fn main() -> Result<u8> {
    let hypervisor = xtask::build::build_hypervisor()?;
    println!("built {}", hypervisor.display());
    for guest in xtask::build::build_guests()? {
        println!("built {}", guest.display());
    }
    for guest in xtask::c_guests::build_c_guests()? {
        println!("built {}", guest.display());
    }
    Ok(0)
}
