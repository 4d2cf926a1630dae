//! Scheduling policy: the round-robin queue, slices and accounting.

#[cfg(test)]
mod model_tests;
pub mod policy;
