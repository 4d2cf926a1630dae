//! A failed hypercall as the core sees it.

use guest_rt::abi::Errno;

use crate::arch::interface::ArchError;

/// An [`ArchError`] for a failed hypercall.
pub(super) fn failed(operation: &'static str) -> impl Fn(Errno) -> ArchError {
    move |errno| ArchError { operation, code: -errno.0 }
}
