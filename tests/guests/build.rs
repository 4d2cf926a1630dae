//! Links this package's binaries like every guest's, with the build script that `cargo
//! xtask new-guest` writes into a new guest crate (one copy of it, shared): a plain `cargo
//! build` for x86_64-unknown-none (one invocation for every image) then links them right.

include!("../../xtask/templates/guest/build.rs");
