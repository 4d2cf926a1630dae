//! Address-space handles.

use hypercall_abi::memory::INITIAL_SPACE;

/// An address-space handle as `address_space_op` hands them out. Handles are plain
/// numbers to the hypervisor, so [`Space::from_raw`] exists for tests that pass unknown
/// ones; nothing stops a guest from using a handle after destroying it (the hypervisor
/// answers `-ESRCH`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Space(u64);

impl Space {
    /// The address space the domain was built in ([`INITIAL_SPACE`]).
    pub const INITIAL: Space = Space(INITIAL_SPACE);

    /// Any handle value, valid or not.
    pub const fn from_raw(handle: u64) -> Self {
        Space(handle)
    }

    /// The handle value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}
