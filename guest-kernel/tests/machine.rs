//! Host tests of the platform boundary's pure parts: which context's extended state the
//! processor holds (lazy switching). `arch/machine.rs` uses nothing but `core`, so it is
//! compiled here as it is and its unit tests run with `cargo test`.

// The kernel uses the boundary's items; this crate only runs the file's tests.
#[allow(dead_code)]
#[path = "../src/arch/machine.rs"]
mod machine;
