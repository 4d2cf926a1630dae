//! ABI 0.2 trap hypercalls (SPEC.md §11): trap table, guest-kernel stack, system-call
//! entry, segment bases. `iret` has no wrapper: it consumes a frame at RSP and resumes
//! somewhere else, so only asm can issue it (the entry stubs and user runs).

use hypercall_abi::{Errno, Hypercall};

use super::hypercalls::Hypercalls;
use super::instruction::HypercallInterface;

impl<I: HypercallInterface> Hypercalls<I> {
    /// `set_trap_table(entries, count)`: sets the listed vectors (handler 0 removes one);
    /// an empty slice clears the whole table. All-or-nothing: one bad entry is `-EINVAL`
    /// with no change.
    ///
    /// # Safety
    ///
    /// Every nonzero handler becomes a place the hypervisor jumps to with an
    /// [`hypercall_abi::trap::ExceptionFrame`] at RSP: it must be code that follows that
    /// protocol (guest-rt's `trap` entry does).
    pub unsafe fn set_trap_table(&self, entries: &[hypercall_abi::trap::TrapTableEntry]) -> Result<u64, Errno> {
        // SAFETY: the hypervisor only reads `entries.len()` entries at `entries`; the
        // caller vouches for the handlers.
        let value = unsafe {
            self.interface().call_fixed::<{ Hypercall::SET_TRAP_TABLE.0 }>([
                entries.as_ptr() as u64,
                entries.len() as u64,
                0,
                0,
                0,
                0,
            ])
        };
        Errno::from_return(value)
    }

    /// `stack_switch(ss, rsp)`: the guest-kernel stack events from guest-user mode land on.
    ///
    /// # Safety
    ///
    /// The hypervisor writes exception frames below `rsp` whenever an event arrives in
    /// guest-user mode: the memory there must be a stack no Rust reference uses meanwhile.
    pub unsafe fn stack_switch(&self, ss: u64, rsp: u64) -> Result<u64, Errno> {
        // SAFETY: the caller vouches for the stack; the call itself reads no memory.
        let value = unsafe { self.interface().call_fixed::<{ Hypercall::STACK_SWITCH.0 }>([ss, rsp, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `callback_op(command, kind, address)` (`callback_cmd::REGISTER`,
    /// `trap::callback_type::SYSCALL`); address 0 unregisters.
    ///
    /// # Safety
    ///
    /// A registered address is jumped to on every guest-user `syscall` with an exception
    /// frame at RSP: it must follow that protocol.
    pub unsafe fn callback_op(&self, command: u64, kind: u64, address: u64) -> Result<u64, Errno> {
        // SAFETY: the call reads no memory; the caller vouches for the entry.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::CALLBACK_OP.0 }>([command, kind, address, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `set_segment_base(which, base)` (`trap::segment::{FS, GS_KERNEL, GS_USER}`); a
    /// non-canonical base is `-EINVAL`. Sound: guest-rt code never addresses through FS or GS.
    pub fn set_segment_base(&self, which: u64, base: u64) -> Result<u64, Errno> {
        // SAFETY: takes no pointers; the base only matters to explicit FS/GS accesses.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::SET_SEGMENT_BASE.0 }>([which, base, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }
}
