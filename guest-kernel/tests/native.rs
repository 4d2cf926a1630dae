//! Host tests of the native platform's pure parts: the boot-time bookkeeping of physical
//! ranges and the CMOS clock's calendar. The platform itself is built only for
//! x86_64-unknown-none (feature `native`); these modules use nothing but `core`, so they
//! are compiled here as they are and their unit tests run with `cargo test`.

#[path = "../src/arch/native/calendar.rs"]
mod calendar;
#[path = "../src/arch/native/ranges.rs"]
mod ranges;
