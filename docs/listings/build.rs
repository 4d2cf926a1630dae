//! Links the listings like every guest's, with the build script that `cargo xtask
//! new-guest` writes into a new guest crate (one copy of it, shared).

include!("../../xtask/templates/guest/build.rs");
