//! Memory: physical frames, page tables, a domain's memory, and the checked accessor
//! for guest virtual memory.

pub mod domain_memory;
#[cfg(test)]
mod domain_memory_tests;
#[cfg(test)]
pub(crate) mod fakes;
pub mod frames;
pub mod guest_memory;
#[cfg(test)]
mod model_tests;
pub mod paging;
