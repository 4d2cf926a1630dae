//! Scheduling policy: the round-robin queue, slices and accounting.

pub mod policy;
