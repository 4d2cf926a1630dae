//! A process's memory as the kernel plans it: which ranges exist with which access
//! ([`regions`]); the pages behind them are the platform's.

pub mod regions;
