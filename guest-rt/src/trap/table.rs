//! The hypervisor's trap table as guest-rt fills it: which vectors reach the common entry,
//! which of them guest-user code may raise, and the Rust handler of each.

use hypercall_abi::trap::{trap_flags, vector, TrapTableEntry};
use hypercall_abi::{Errno, GuestVirtualAddress};

use super::dispatch::{entry_address, store_handler};
use crate::frame::TrapHandler;
use crate::hypercall::HYPERVISOR;

/// A trap-table entry for `vector` pointing at the common entry.
pub fn entry_for(vector: u8, flags: u8) -> TrapTableEntry {
    TrapTableEntry { vector, flags, reserved: [0; 6], handler: GuestVirtualAddress(entry_address()) }
}

fn set_table(entries: &[TrapTableEntry]) -> Result<(), Errno> {
    // SAFETY: every handler in the entries is guest-rt's common entry (or 0), which
    // follows the exception-frame protocol.
    unsafe { HYPERVISOR.set_trap_table(entries) }.map(|_| ())
}

/// Points exception vectors 0..32 at the common entry (no Rust handlers yet: an exception
/// without one prints a report and crashes the domain).
pub fn install() -> Result<(), Errno> {
    let mut entries = [TrapTableEntry::default(); vector::FIRST_SOFTWARE as usize];
    for (index, entry) in entries.iter_mut().enumerate() {
        *entry = entry_for(index as u8, 0);
    }
    set_table(&entries)
}

/// Sets the Rust handler of `vector` and points that trap-table vector at the common
/// entry (keeping guest-user mode out of it: see [`grant_user`]).
pub fn set_handler(vector: u8, handler: TrapHandler) -> Result<(), Errno> {
    store_handler(vector, Some(handler));
    set_table(&[entry_for(vector, 0)])
}

/// Forgets the Rust handler of `vector` (the trap-table entry stays: the dispatcher then
/// reports the vector as unhandled).
pub fn clear_handler(vector: u8) {
    store_handler(vector, None);
}

/// Removes `vector` from the hypervisor's trap table (an event on it then kills the
/// domain: there is no handler).
pub fn remove_vector(vector: u8) -> Result<(), Errno> {
    set_table(&[TrapTableEntry { vector, flags: 0, reserved: [0; 6], handler: GuestVirtualAddress(0) }])
}

/// Lets guest-user code raise `vector` with `int n` (`int3` for 3); the hypervisor accepts
/// this for vectors 3, 4 and 32..=255.
pub fn grant_user(vector: u8) -> Result<(), Errno> {
    set_table(&[entry_for(vector, trap_flags::USER_MAY_RAISE)])
}
