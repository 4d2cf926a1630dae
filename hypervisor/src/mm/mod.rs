//! Memory: physical frames, page tables, a domain's memory, and the checked accessor
//! for guest virtual memory.

pub mod frames;
pub mod paging;
pub mod domain_memory;
pub mod guest_memory;
#[cfg(test)]
pub(crate) mod fakes;
