//! A process's memory as the kernel plans it: which ranges exist with which access
//! ([`regions`]), and what a page fault means ([`faults`]: demand paging, copy-on-write,
//! SIGSEGV); the pages behind them are the platform's.

pub mod faults;
pub mod regions;
