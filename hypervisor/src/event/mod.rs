//! Events: every domain's event-channel ports, and the pending and mask bits and the
//! upcall flags in its shared-info page.

pub mod channels;
#[cfg(test)]
mod model_tests;
pub mod upcall;
