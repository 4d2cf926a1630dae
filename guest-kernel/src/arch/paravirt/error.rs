//! A failed hypercall as the kernel sees it: the operation and `-errno`, the value the
//! hypercall returned.

use guest_rt::abi::Errno;

use crate::arch::machine::MachineError;

/// A [`MachineError`] for a failed hypercall (or a request refused before one): `code` is
/// `-errno`, e.g. -28 for `-ENOSPC`.
pub(super) fn machine_error(operation: &'static str, errno: Errno) -> MachineError {
    MachineError { operation, code: -errno.0 }
}
