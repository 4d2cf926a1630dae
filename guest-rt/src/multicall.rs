//! Multicall (SPEC.md §13): several hypercalls in one entry into the hypervisor.
//! [`Multicall`] collects up to [`MULTICALL_MAX`] calls in a fixed array (no heap, so it
//! works in exception handlers); [`Multicall::call`] issues them and each entry's result
//! can be read back with [`Multicall::result`].

use hypercall_abi::memory::{memory_cmd, space_cmd, MapEntry};
use hypercall_abi::multicall::{MulticallEntry, MULTICALL_MAX};
use hypercall_abi::{Errno, Hypercall};

use crate::hypercall::{HypercallInterface, Hypercalls, HYPERVISOR};
use crate::memory::Space;

const CAPACITY: usize = MULTICALL_MAX as usize;

/// Results written back for entries the hypervisor did not reach, so an unexecuted entry
/// is never mistaken for one that returned 0.
pub const NOT_EXECUTED: i64 = i64::MIN;

/// A list of hypercalls issued together.
#[derive(Clone, Debug)]
pub struct Multicall {
    entries: [MulticallEntry; CAPACITY],
    length: usize,
}

impl Default for Multicall {
    fn default() -> Self {
        Self::new()
    }
}

impl Multicall {
    /// An empty multicall.
    pub const fn new() -> Self {
        const EMPTY: MulticallEntry = MulticallEntry { op: 0, args: [0; 6], result: NOT_EXECUTED };
        Self { entries: [EMPTY; CAPACITY], length: 0 }
    }

    /// Adds hypercall `op` with `args`; returns its index, or `None` when the list
    /// already holds [`MULTICALL_MAX`] calls.
    ///
    /// # Safety
    ///
    /// Every pointer among `args` must meet [`HypercallInterface::call`]'s contract for
    /// that hypercall at the time [`Multicall::call`] runs.
    pub unsafe fn push(&mut self, op: Hypercall, args: [u64; 6]) -> Option<usize> {
        if self.length == CAPACITY {
            return None;
        }
        let index = self.length;
        self.entries[index] = MulticallEntry { op: op.0, args, result: NOT_EXECUTED };
        self.length += 1;
        Some(index)
    }

    /// Adds `memory_op(command)` for the sub-commands without pointers
    /// (`CURRENT_RESERVATION`, `MAXIMUM_RESERVATION`, `MAXIMUM_GFN`).
    pub fn memory_query(&mut self, command: u64) -> Option<usize> {
        let pointer_free = matches!(
            command,
            memory_cmd::CURRENT_RESERVATION | memory_cmd::MAXIMUM_RESERVATION | memory_cmd::MAXIMUM_GFN
        );
        assert!(pointer_free, "memory_op sub-command {command} takes pointers; use Multicall::push");
        // SAFETY: these sub-commands take no pointers.
        unsafe { self.push(Hypercall::MEMORY_OP, [command, 0, 0, 0, 0, 0]) }
    }

    /// Adds `address_space_op(command, a, b)` (no sub-command takes a pointer).
    pub fn address_space_op(&mut self, command: u64, a: u64, b: u64) -> Option<usize> {
        // SAFETY: address_space_op takes no pointers.
        unsafe { self.push(Hypercall::ADDRESS_SPACE_OP, [command, a, b, 0, 0, 0]) }
    }

    /// Adds `address_space_op(QUERY, space, va)`.
    pub fn query(&mut self, space: Space, virtual_address: u64) -> Option<usize> {
        self.address_space_op(space_cmd::QUERY, space.raw(), virtual_address)
    }

    /// Adds `mmu_update(space, entries, len, 0)` (no done report: the entry's result is the
    /// count or the error).
    ///
    /// # Safety
    ///
    /// `entries` must still be alive and unchanged when [`Multicall::call`] runs (the
    /// hypervisor reads it then, not now).
    pub unsafe fn mmu_update(&mut self, space: Space, entries: &[MapEntry]) -> Option<usize> {
        // SAFETY: the caller keeps `entries` readable until the call; no done pointer.
        unsafe {
            self.push(Hypercall::MMU_UPDATE, [space.raw(), entries.as_ptr() as u64, entries.len() as u64, 0, 0, 0])
        }
    }

    /// Adds `version(command)`.
    pub fn version(&mut self, command: u64) -> Option<usize> {
        // SAFETY: version takes no pointers.
        unsafe { self.push(Hypercall::VERSION, [command, 0, 0, 0, 0, 0]) }
    }

    /// Number of calls collected.
    pub fn len(&self) -> usize {
        self.length
    }

    /// True if no call has been added.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The collected entries (with results after [`Multicall::call`]).
    pub fn entries(&self) -> &[MulticallEntry] {
        &self.entries[..self.length]
    }

    /// Entry `index`'s result split into value or error; `None` if the hypervisor did not
    /// execute it (or no such entry).
    pub fn result(&self, index: usize) -> Option<Result<u64, Errno>> {
        let entry = self.entries().get(index)?;
        (entry.result != NOT_EXECUTED).then(|| Errno::from_return(entry.result))
    }

    /// Issues the collected calls on the real hypervisor; returns how many completed.
    pub fn call(&mut self) -> Result<u64, Errno> {
        HYPERVISOR.multicall(self)
    }
}

impl<I: HypercallInterface> Hypercalls<I> {
    /// `multicall(entries, count)` with any pointer and count.
    ///
    /// # Safety
    ///
    /// `min(count, MULTICALL_MAX)` entries at `entries` must be readable and writable
    /// with no Rust reference alive to them, and every entry's own pointers must meet its
    /// hypercall's contract.
    pub unsafe fn multicall_raw(&self, entries: *mut MulticallEntry, count: u64) -> Result<u64, Errno> {
        // SAFETY: the caller vouches for the array and the calls in it.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::MULTICALL.0 }>([entries as u64, count, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// Issues `calls`; every entry's result is reset first, so entries the hypervisor
    /// does not reach read back as not executed.
    pub fn multicall(&self, calls: &mut Multicall) -> Result<u64, Errno> {
        let length = calls.length;
        for entry in &mut calls.entries[..length] {
            entry.result = NOT_EXECUTED;
        }
        // SAFETY: the array is exclusively borrowed for the call and holds `length`
        // entries; `Multicall::push`'s callers vouched for the pointers inside.
        unsafe { self.multicall_raw(calls.entries.as_mut_ptr(), length as u64) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake::Fake;
    use hypercall_abi::hypercall::version_cmd;

    #[test]
    fn entries_are_laid_out_and_capped() {
        let mut calls = Multicall::new();
        assert_eq!(calls.version(version_cmd::ABI_VERSION), Some(0));
        assert_eq!(calls.memory_query(memory_cmd::MAXIMUM_GFN), Some(1));
        assert_eq!(calls.query(Space::from_raw(2), 0x5000), Some(2));
        assert_eq!(calls.entries()[2].op, Hypercall::ADDRESS_SPACE_OP.0);
        assert_eq!(calls.entries()[2].args[..3], [space_cmd::QUERY, 2, 0x5000]);
        while calls.len() < CAPACITY {
            calls.version(version_cmd::FEATURES).unwrap();
        }
        assert_eq!(calls.version(version_cmd::FEATURES), None);
        assert_eq!(calls.len(), MULTICALL_MAX as usize);
    }

    #[test]
    fn call_passes_the_array_and_unreached_entries_stay_unexecuted() {
        let fake = Fake::default();
        fake.replies.borrow_mut().push(1);
        let mut calls = Multicall::new();
        calls.version(version_cmd::ABI_VERSION);
        calls.version(version_cmd::FEATURES);
        // The fake writes no results: both read back as not executed.
        assert_eq!(Hypercalls::new(&fake).multicall(&mut calls), Ok(1));
        assert_eq!(calls.result(0), None);
        assert_eq!(calls.result(5), None);
        calls.entries[0].result = Errno::EINVAL.to_return();
        assert_eq!(calls.result(0), Some(Err(Errno::EINVAL)));
        let recorded = fake.calls.borrow();
        assert_eq!(recorded[0].number, Hypercall::MULTICALL.0);
        assert_eq!(recorded[0].arguments[..2], [calls.entries.as_ptr() as u64, 2]);
    }
}
