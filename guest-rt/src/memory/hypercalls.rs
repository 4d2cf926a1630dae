//! The memory hypercalls as methods of [`Hypercalls`], so host tests drive them with a
//! fake.

use hypercall_abi::memory::{memory_cmd, space_cmd, split_query, MapEntry, NO_SPACE};
use hypercall_abi::{Errno, Gfn, Hypercall};

use super::entry::{map_entry, protect_entry, unmap_entry};
use super::space::Space;
use crate::hypercall::{HypercallInterface, Hypercalls};

/// What a batched `mmu_update` achieved: how many entries are in effect, and the first
/// error (the entry at index `done` is the one that failed).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BatchResult {
    /// Entries completed, counted from the start of the batch.
    pub done: usize,
    /// `Ok` if every entry completed, else the failing entry's error.
    pub result: Result<(), Errno>,
}

impl<I: HypercallInterface> Hypercalls<I> {
    /// `memory_op(command, a, b, c)` with any arguments.
    ///
    /// # Safety
    ///
    /// As for [`HypercallInterface::call`]: `INCREASE_RESERVATION` writes `b` u64s at `a`.
    pub unsafe fn memory_op(&self, command: u64, a: u64, b: u64, c: u64) -> Result<u64, Errno> {
        // SAFETY: the caller vouches for the pointer arguments.
        let value = unsafe { self.interface().call_fixed::<{ Hypercall::MEMORY_OP.0 }>([command, a, b, c, 0, 0]) };
        Errno::from_return(value)
    }

    /// Populated gfns (`CURRENT_RESERVATION`).
    pub fn current_reservation(&self) -> Result<u64, Errno> {
        // SAFETY: no pointers.
        unsafe { self.memory_op(memory_cmd::CURRENT_RESERVATION, 0, 0, 0) }
    }

    /// The quota in pages (`MAXIMUM_RESERVATION`).
    pub fn maximum_reservation(&self) -> Result<u64, Errno> {
        // SAFETY: no pointers.
        unsafe { self.memory_op(memory_cmd::MAXIMUM_RESERVATION, 0, 0, 0) }
    }

    /// One past the highest gfn this domain may have (`MAXIMUM_GFN`).
    pub fn maximum_gfn(&self) -> Result<u64, Errno> {
        // SAFETY: no pointers.
        unsafe { self.memory_op(memory_cmd::MAXIMUM_GFN, 0, 0, 0) }
    }

    /// One `INCREASE_RESERVATION` of `gfns.len()` extents of order `order` (0 or 9): the
    /// first gfn of each new extent lands in `gfns`. Returns the extents populated (the
    /// hypervisor does at most [`BATCH_MAX`](hypercall_abi::memory::BATCH_MAX) per call).
    pub fn increase_reservation(&self, gfns: &mut [u64], order: u64) -> Result<usize, Errno> {
        // SAFETY: the hypervisor writes at most `gfns.len()` u64s into `gfns`, which is
        // exclusively borrowed for the call.
        let done = unsafe {
            self.memory_op(memory_cmd::INCREASE_RESERVATION, gfns.as_mut_ptr() as u64, gfns.len() as u64, order)
        }?;
        Ok(done as usize)
    }

    /// One `DECREASE_RESERVATION` of the extents whose first gfns are `gfns`. Returns the
    /// extents released.
    pub fn decrease_reservation(&self, gfns: &[u64], order: u64) -> Result<usize, Errno> {
        // SAFETY: the hypervisor only reads `gfns`.
        let done = unsafe {
            self.memory_op(memory_cmd::DECREASE_RESERVATION, gfns.as_ptr() as u64, gfns.len() as u64, order)
        }?;
        Ok(done as usize)
    }

    /// `address_space_op(command, a, b)` with any arguments (none takes a pointer).
    pub fn address_space_op(&self, command: u64, a: u64, b: u64) -> Result<u64, Errno> {
        // SAFETY: no address_space_op sub-command of ABI 0.2 takes a pointer; an unknown
        // one is refused before anything is read.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::ADDRESS_SPACE_OP.0 }>([command, a, b, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// A new empty address space (`CREATE`).
    pub fn create_space(&self) -> Result<Space, Errno> {
        self.address_space_op(space_cmd::CREATE, 0, 0).map(Space::from_raw)
    }

    /// Frees `space`'s page tables (`DESTROY`); `-EBUSY` while it is a root.
    pub fn destroy_space(&self, space: Space) -> Result<(), Errno> {
        self.address_space_op(space_cmd::DESTROY, space.raw(), 0).map(drop)
    }

    /// Installs `kernel` as the guest-kernel root now and `user` as the guest-user root.
    pub fn switch_space(&self, kernel: Space, user: Option<Space>) -> Result<(), Errno> {
        let user = user.map_or(NO_SPACE, |space| space.raw());
        self.address_space_op(space_cmd::SWITCH, kernel.raw(), user).map(drop)
    }

    /// TLB flush of the page at `virtual_address` in `space`.
    pub fn flush_va(&self, space: Space, virtual_address: u64) -> Result<(), Errno> {
        self.address_space_op(space_cmd::FLUSH_VA, space.raw(), virtual_address).map(drop)
    }

    /// TLB flush of all of `space`.
    pub fn flush_all(&self, space: Space) -> Result<(), Errno> {
        self.address_space_op(space_cmd::FLUSH_ALL, space.raw(), 0).map(drop)
    }

    /// `(gfn, map flags)` of the page containing `virtual_address` in `space` (`QUERY`).
    pub fn query(&self, space: Space, virtual_address: u64) -> Result<(Gfn, u32), Errno> {
        self.address_space_op(space_cmd::QUERY, space.raw(), virtual_address).map(split_query)
    }

    /// One raw `mmu_update(space, entries, count, done)` with a done report into a local:
    /// returns what the hypervisor wrote there (`u64::MAX` if it wrote nothing, as for
    /// `-ESRCH`) and its raw result. `count` is passed as given, so tests can pass counts
    /// larger than the array (the hypervisor reads at most
    /// [`BATCH_MAX`](hypercall_abi::memory::BATCH_MAX) entries).
    ///
    /// # Safety
    ///
    /// The first `min(count, BATCH_MAX)` entries at `entries` must be readable, or be
    /// memory the hypervisor refuses with `-EFAULT` (unmapped, hypervisor range).
    pub unsafe fn mmu_update_raw(
        &self,
        space: Space,
        entries: *const MapEntry,
        count: u64,
    ) -> (u64, Result<u64, Errno>) {
        let mut done: u64 = u64::MAX;
        let done_pointer = &mut done as *mut u64 as u64;
        // SAFETY: the entries are the caller's to vouch for; `done` is a local only the
        // hypervisor writes during the call.
        let value = unsafe {
            self.interface().call_fixed::<{ Hypercall::MMU_UPDATE.0 }>([
                space.raw(),
                entries as u64,
                count,
                done_pointer,
                0,
                0,
            ])
        };
        // SAFETY: reading back the local the hypervisor may have written (volatile so
        // the compiler does not assume its initial value survived the hypercall).
        let done = unsafe { core::ptr::read_volatile(&done) };
        (done, Errno::from_return(value))
    }

    /// Applies `entries` to `space` in order, issuing as many `mmu_update`s as
    /// [`BATCH_MAX`](hypercall_abi::memory::BATCH_MAX) requires; stops at the first failing entry.
    pub fn mmu_update(&self, space: Space, entries: &[MapEntry]) -> BatchResult {
        let mut done = 0;
        while done < entries.len() {
            let rest = &entries[done..];
            // SAFETY: `rest` is a live slice of `rest.len()` readable entries.
            let (reported, result) = unsafe { self.mmu_update_raw(space, rest.as_ptr(), rest.len() as u64) };
            match result {
                Ok(count) if count == 0 || count > rest.len() as u64 => {
                    // The hypervisor made no progress on valid entries, or claims more than
                    // it was given: either would loop forever; report it as an ABI break.
                    return BatchResult { done, result: Err(Errno::EINVAL) };
                }
                Ok(count) => done += count as usize,
                Err(errno) => {
                    let completed = if reported <= rest.len() as u64 { reported as usize } else { 0 };
                    return BatchResult { done: done + completed, result: Err(errno) };
                }
            }
        }
        BatchResult { done, result: Ok(()) }
    }

    /// Maps `gfn` at `virtual_address` in `space` (one entry).
    pub fn map_page(&self, space: Space, virtual_address: u64, gfn: u64, flags: u32) -> Result<(), Errno> {
        self.mmu_update(space, &[map_entry(virtual_address, gfn, flags)]).result
    }

    /// Removes the 4 KiB mapping at `virtual_address` in `space` (one entry).
    pub fn unmap_page(&self, space: Space, virtual_address: u64) -> Result<(), Errno> {
        self.mmu_update(space, &[unmap_entry(virtual_address, 0)]).result
    }

    /// Changes the flags of the mapping at `virtual_address` in `space` (one entry).
    pub fn protect_page(&self, space: Space, virtual_address: u64, flags: u32) -> Result<(), Errno> {
        self.mmu_update(space, &[protect_entry(virtual_address, flags)]).result
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake::Fake;
    use core::cell::RefCell;
    use hypercall_abi::layout::PAGE_SIZE;
    use hypercall_abi::memory::{map_flags, BATCH_MAX, INITIAL_SPACE};
    use std::vec::Vec;

    /// A fake `mmu_update` that completes at most `limit` entries per call and fails the
    /// entry whose virtual address is `bad` with `-EEXIST`, writing `done` like the
    /// hypervisor does.
    struct Mmu {
        limit: u64,
        bad: u64,
        calls: RefCell<Vec<(u64, u64)>>,
    }

    impl HypercallInterface for Mmu {
        unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64 {
            assert_eq!(number, Hypercall::MMU_UPDATE.0);
            let [_, entries, count, done_pointer, _, _] = arguments;
            self.calls.borrow_mut().push((entries, count));
            let processed = count.min(self.limit);
            // SAFETY: the wrapper passes a live slice of `count` entries.
            let entries = unsafe { std::slice::from_raw_parts(entries as *const MapEntry, processed as usize) };
            let failing = entries.iter().position(|entry| entry.virtual_address.0 == self.bad);
            let done = failing.map_or(processed, |index| index as u64);
            // SAFETY: the wrapper passes its local `done`.
            unsafe { *(done_pointer as *mut u64) = done };
            match failing {
                Some(_) => Errno::EEXIST.to_return(),
                None => done as i64,
            }
        }
    }

    fn batch(count: u64) -> Vec<MapEntry> {
        (0..count).map(|index| map_entry(0x4000_0000 + index * PAGE_SIZE, index, map_flags::WRITABLE)).collect()
    }

    #[test]
    fn long_batches_are_reissued_from_where_the_hypervisor_stopped() {
        let mmu = Mmu { limit: BATCH_MAX, bad: u64::MAX, calls: RefCell::new(Vec::new()) };
        let entries = batch(2 * BATCH_MAX + 5);
        let result = Hypercalls::new(&mmu).mmu_update(Space::INITIAL, &entries);
        assert_eq!(result, BatchResult { done: entries.len(), result: Ok(()) });
        let calls = mmu.calls.borrow();
        let counts: Vec<u64> = calls.iter().map(|call| call.1).collect();
        assert_eq!(counts, [2 * BATCH_MAX + 5, BATCH_MAX + 5, 5]);
        let base = entries.as_ptr() as u64;
        assert_eq!(calls[1].0, base + BATCH_MAX * 24);
    }

    #[test]
    fn a_failing_entry_reports_done_and_the_error() {
        let bad = 0x4000_0000 + (BATCH_MAX + 3) * PAGE_SIZE;
        let mmu = Mmu { limit: BATCH_MAX, bad, calls: RefCell::new(Vec::new()) };
        let result = Hypercalls::new(&mmu).mmu_update(Space::from_raw(5), &batch(BATCH_MAX * 2));
        assert_eq!(result, BatchResult { done: BATCH_MAX as usize + 3, result: Err(Errno::EEXIST) });
    }

    #[test]
    fn no_progress_is_not_an_endless_loop() {
        let mmu = Mmu { limit: 0, bad: u64::MAX, calls: RefCell::new(Vec::new()) };
        let result = Hypercalls::new(&mmu).mmu_update(Space::INITIAL, &batch(3));
        assert_eq!(result, BatchResult { done: 0, result: Err(Errno::EINVAL) });
        assert_eq!(mmu.calls.borrow().len(), 1);
        // An empty batch makes no call at all.
        assert_eq!(Hypercalls::new(&mmu).mmu_update(Space::INITIAL, &[]), BatchResult { done: 0, result: Ok(()) });
        assert_eq!(mmu.calls.borrow().len(), 1);
    }

    #[test]
    fn reservation_and_space_encodings() {
        let fake = Fake::default();
        // Replies pop from the end: query, create, increase, current.
        fake.replies.borrow_mut().extend([(7 << 12) | 3, 4, 2, 1000]);
        let hypercalls = Hypercalls::new(&fake);
        assert_eq!(hypercalls.current_reservation(), Ok(1000));
        let mut gfns = [0u64; 2];
        assert_eq!(hypercalls.increase_reservation(&mut gfns, 9), Ok(2));
        assert_eq!(hypercalls.create_space(), Ok(Space::from_raw(4)));
        assert_eq!(hypercalls.query(Space::from_raw(4), 0x1234), Ok((Gfn(7), 3)));
        assert_eq!(hypercalls.switch_space(Space::INITIAL, None), Ok(()));
        let calls = fake.calls.borrow();
        assert_eq!(calls[0].number, Hypercall::MEMORY_OP.0);
        assert_eq!(calls[0].arguments, [memory_cmd::CURRENT_RESERVATION, 0, 0, 0, 0, 0]);
        assert_eq!(calls[1].arguments, [memory_cmd::INCREASE_RESERVATION, gfns.as_ptr() as u64, 2, 9, 0, 0]);
        assert_eq!(calls[2].number, Hypercall::ADDRESS_SPACE_OP.0);
        assert_eq!(calls[2].arguments[0], space_cmd::CREATE);
        assert_eq!(calls[3].arguments[..3], [space_cmd::QUERY, 4, 0x1234]);
        assert_eq!(calls[4].arguments[..3], [space_cmd::SWITCH, INITIAL_SPACE, NO_SPACE]);
    }
}
