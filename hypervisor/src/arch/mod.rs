//! Everything that touches hardware, per architecture. Policy lives in the library;
//! these modules are the unsafe edge it runs on.

#[macro_use]
pub mod x86_64;
