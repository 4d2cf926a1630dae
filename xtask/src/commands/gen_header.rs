//! `cargo xtask gen-header`: writes `hypercall-abi/include/ringfence.h` from hypercall-abi.

use xtask::{Error, Result};

/// Regenerates the checked-in C header.
pub fn main() -> Result<u8> {
    let path = xtask::c_header::header_path();
    let text = xtask::c_header::generate();
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        println!("{} is up to date", path.display());
        return Ok(0);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| Error::io("cannot create", parent, error))?;
    }
    std::fs::write(&path, text).map_err(|error| Error::io("cannot write", &path, error))?;
    println!("wrote {}", path.display());
    Ok(0)
}
