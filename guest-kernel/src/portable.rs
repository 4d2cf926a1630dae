//! The parts of guest-rt that are the same on every platform — no hypercall behind them —
//! named here so the core can use them while reaching the platform only through
//! [`arch`](crate::arch).

pub use guest_rt::console::LineWriter;
pub use guest_rt::time::Date;
